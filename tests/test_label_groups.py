"""train.py --label-groups=1 (training/label_groups.py): every minibatch-std group of D holds one label."""

import itertools
import json
import os

import numpy as np
import torch

from conftest import HOST  # noqa: F401  (puts the host on sys.path)
from test_train import invoke, make_digits_zip, only_run_dir, run_train, train_module  # noqa: F401  (fixture)

class _Labelled:
    """A stand-in dataset: one-hot labels only (the sampler never loads an image)."""
    def __init__(self, labels, c_dim):
        self.labels = np.asarray(labels)
        self.label_dim = c_dim
    def __len__(self):
        return len(self.labels)
    def get_label(self, idx):
        onehot = np.zeros(self.label_dim, dtype=np.float32)
        onehot[self.labels[idx]] = 1
        return onehot

def test_minibatch_std_groups_of_real_rounds_hold_one_label_at_the_data_frequencies():
    from training.label_groups import LabelGroupSampler
    from training.networks import MinibatchStdLayer
    # 70% label 0, 20% label 1, 10% label 2.
    ds = _Labelled([0] * 700 + [1] * 200 + [2] * 100, c_dim=3)
    sampler = LabelGroupSampler(ds, round_size=16, group_size=4, seed=3)
    indices = np.array(list(itertools.islice(iter(sampler), 16 * 500)))
    rounds = ds.labels[indices].reshape(500, 16)
    # MinibatchStdLayer's own grouping: a feature equal to the label has zero std within each group.
    layer = MinibatchStdLayer(group_size=4)
    for labels in rounds[:20]:
        x = torch.from_numpy(labels.astype(np.float32)).reshape(-1, 1, 1, 1)
        assert torch.allclose(layer(x)[:, 1], torch.full([16, 1, 1], 1e-4), atol=1e-6)
    # Each round: 4 groups, so every label value sits at positions j, j+4, j+8, j+12.
    assert (rounds == np.tile(rounds[:, :4], (1, 4))).all()
    share = np.bincount(rounds[:, :4].reshape(-1), minlength=3) / rounds[:, :4].size
    assert np.allclose(share, [0.7, 0.2, 0.1], atol=0.04), share
    # Distinct images inside a group where the label has enough of them.
    groups = indices.reshape(500, 4, 4).transpose(0, 2, 1).reshape(-1, 4)
    assert all(len(set(g)) == 4 for g in groups)
    # Two processes (ranks) draw different rounds; the same seed draws the same rounds again.
    other = LabelGroupSampler(ds, round_size=16, group_size=4, rank=1, num_replicas=2, seed=3)
    assert list(itertools.islice(iter(other), 64)) != indices[:64].tolist()
    assert list(itertools.islice(iter(sampler), 64)) == indices[:64].tolist()

def test_fake_labels_take_the_layout_of_the_real_rounds():
    from training.label_groups import grouped_labels
    ds = _Labelled(np.arange(100) % 10, c_dim=10)
    np.random.seed(0)
    c = grouped_labels(ds, count=64, round_size=32, group_size=4)
    labels = c.argmax(axis=1).reshape(2, 32)
    assert c.shape == (64, 10)
    assert (labels == np.tile(labels[:, :8], (1, 4))).all()
    assert len(set(labels[:, :8].reshape(-1))) > 3    # random labels per group, not one label per round

def test_train_with_label_groups_runs_and_refuses_unlabelled_data(tmp_path, train_module):  # noqa: F811
    data = make_digits_zip(tmp_path / 'digits16.zip', with_labels=True)
    result = run_train(tmp_path / 'runs', f'--data={data}', '--cfg=cpu', '--cmax=16', '--cond=1', '--label-groups=1',
                       '--batch=8', '--mbstd-group=4', '--tick=0.016', '--snap=1', '--kimg=0.016', '--metrics=none', '--aug=noaug')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / 'runs')
    assert '-lgroups' in os.path.basename(run_dir)
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        assert json.load(f)['label_groups'] is True
    plain = make_digits_zip(tmp_path / 'plain16.zip')
    result = invoke(train_module, [f'--outdir={tmp_path}/x', f'--data={plain}', '--label-groups=1', '--dry-run'])
    assert result.exit_code != 0 and 'needs --cond=1' in result.output
    result = invoke(train_module, [f'--outdir={tmp_path}/x', f'--data={data}', '--cond=1', '--label-groups=1', '--mbstd-group=1', '--dry-run'])
    assert result.exit_code != 0 and 'group size of at least 2' in result.output

def test_label_groups_kimg_ends_the_groups_also_when_a_run_is_continued(tmp_path, train_module):  # noqa: F811
    data = make_digits_zip(tmp_path / 'digits16.zip', with_labels=True)
    common = ['--tick=0.008', '--snap=1', '--metrics=none']
    result = run_train(tmp_path / 'runs', f'--data={data}', '--cfg=cpu', '--cmax=16', '--cond=1', '--label-groups=1',
                       '--batch=8', '--mbstd-group=4', '--kimg=0.016', '--aug=noaug', *common)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Label groups end' not in result.stdout
    run_dir = only_run_dir(tmp_path / 'runs')
    # Continue past 16 images with the groups ending at 24: the switch happens inside the continued run.
    result = run_train(tmp_path / 'runs', f'--resume-run={run_dir}', '--kimg=0.032', '--label-groups-kimg=0.024')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Label groups end at kimg 0.024' in result.stdout
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        options = json.load(f)
    assert options['label_groups'] is True and options['label_groups_kimg'] == 0.024
    with open(os.path.join(run_dir, 'log.txt')) as f:
        assert 'label groups until kimg 0.024' in f.read()
    # A later continuation keeps the end from training_options.json and starts with random batches.
    result = run_train(tmp_path / 'runs', f'--resume-run={run_dir}', '--kimg=0.04')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Label groups ended at kimg 0.024; random batches.' in result.stdout
    result = invoke(train_module, [f'--outdir={tmp_path}/x', f'--data={data}', '--cond=1', '--label-groups-kimg=8', '--dry-run'])
    assert result.exit_code != 0 and 'this run has none' in result.output
