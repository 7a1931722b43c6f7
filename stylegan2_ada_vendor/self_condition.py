"""Not upstream: turn a self-conditioned snapshot into an unconditional generator (training/self_conditioning.py).

A self-conditioned run trains a conditional G on cluster labels of the data (made by
scripts/experiments/cluster_labels.py). This writes a pickle whose G_ema takes no label: every
latent draws its cluster with the frequency the training data has it, so generate.py, projector.py
and every other tool treat it as the unconditional model it stands for.

    python self_condition.py --network=runs/00000-digits-k100/network-snapshot-000320.pkl --dest=digits.pkl
    python self_condition.py --network=snap.pkl --data=datasets/digits-k100.zip --dest=digits.pkl

The label prior comes from --data (default: the training data the snapshot records) and is stored
in the pickle as `label_prior`.
"""

import os
import pickle
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click

import dnnlib
import legacy
from training.self_conditioning import label_prior, self_conditioned

@click.command()
@click.option('--network', 'network_pkl', required=True, help='Snapshot of a run trained with --cond=1 on cluster labels (path or URL)')
@click.option('--dest', required=True, help='Where to write the unconditional pickle (.pkl)')
@click.option('--data', default=None, help="Labelled training data for the label prior [default: the snapshot's training_set_kwargs.path]")
def main(network_pkl, dest, data):
    """Write an unconditional view of a self-conditioned snapshot's G_ema."""
    with dnnlib.util.open_url(network_pkl) as f:
        snapshot = legacy.load_network_pkl(f)
    G = snapshot.get('G_ema')
    if G is None or G.c_dim < 2:
        raise click.ClickException(f'{network_pkl} holds no conditional G_ema (c_dim {getattr(G, "c_dim", None)}): '
                                   f'train with --cond=1 on cluster labels (scripts/experiments/cluster_labels.py) first.')
    set_kwargs = dict(snapshot.get('training_set_kwargs') or {})
    if data is not None:
        set_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=data)
    if not set_kwargs.get('path'):
        raise click.ClickException(f'{network_pkl} does not record its training data; pass --data=DATASET.zip.')
    if not os.path.exists(set_kwargs['path']):
        raise click.ClickException(f'The training data {set_kwargs["path"]} does not exist here; pass --data=DATASET.zip.')
    set_kwargs.update(use_labels=True, xflip=False, max_size=None)
    dataset = dnnlib.util.construct_class_by_name(**set_kwargs)
    if dataset.label_dim != G.c_dim:
        raise click.ClickException(f'{set_kwargs["path"]} has labels of {dataset.label_dim} classes and G_ema {G.c_dim}: pass the data it was trained on.')
    prior = label_prior(dataset)
    out = dict(G_ema=self_conditioned(G, prior), training_set_kwargs=snapshot.get('training_set_kwargs'), label_prior=prior)
    with dnnlib.util.atomic_write(dest) as f:
        pickle.dump(out, f)
    used = sum(p > 0 for p in prior)
    print(f'{dest}: unconditional G_ema (z_dim {out["G_ema"].z_dim}, c_dim 0) over {used} of {G.c_dim} labels of {set_kwargs["path"]}.')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
