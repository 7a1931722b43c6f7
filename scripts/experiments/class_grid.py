"""Fakes sorted by the digit the classifier reads: one row per digit 0-9 (issue "Diverse digits").

A fakes grid of a model that collapsed within a class shows the same shape along a row; one that
uses its latent shows different shapes. For each network it renders seeds 0..N-1 (psi 1, const
noise, the seeds' labels as digit_diversity.py asks for them), keeps the fakes the classifier calls
a digit with probability > 0.9, and writes the first PER_ROW of each digit into a row:

    python -m scripts.experiments.class_grid results/models/*.pkl --out results/paper/class_grid
    -> results/paper/class_grid_<name>.png (a row left short: fewer confident fakes of that digit)
"""

import os

import click
import torch

from scripts.experiments import digits as dg
import legacy  # noqa: E402  (the vendored host, on sys.path through `scripts`)

def rows_by_class(G, clf, num, per_row):
    """uint8 image rows (one per digit 0-9) of G's confident fakes among seeds 0..num-1."""
    images = dg.render(G, dg.latents(G, num, seed=0))
    labels, probs = dg.classify(clf, images)
    sure = probs.max(dim=1).values > 0.9
    pixels = dg.to_uint8(images)
    blank = pixels[0] * 0 + 255
    rows = []
    for digit in range(10):
        picked = torch.nonzero(sure.cpu() & (labels.cpu() == digit)).flatten()[:per_row].tolist()
        rows.append([pixels[i] for i in picked] or [blank])
    return rows, [int(((labels == d) & sure).sum()) for d in range(10)]

@click.command()
@click.argument('networks', nargs=-1, required=True)
@click.option('--num', type=click.IntRange(min=10), default=400, show_default=True, help='Fakes per network')
@click.option('--per-row', type=click.IntRange(min=1), default=12, show_default=True, help='Fakes per digit row')
@click.option('--out', default=dg.out_path('class_grid'), show_default=True, help='Output prefix: <out>_<name>.png')
@click.option('--classifier', default=None, help='Digit classifier (default results/models/digit_classifier.pt)')
def main(networks, num, per_row, out, classifier):
    """One PNG per network: its confident fakes, a row per digit."""
    device = dg.pick_device()
    clf = dg.load_classifier(classifier, device=device)
    for path in networks:
        if not os.path.isfile(path):
            raise click.ClickException(f'{path} does not exist: pass network pickles (e.g. results/models/*.pkl).')
        with open(path, 'rb') as f:
            G = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False).to(device)
        rows, counts = rows_by_class(G, clf, num, per_row)
        dest = f'{out}_{os.path.splitext(os.path.basename(path))[0]}.png'
        dg.save_rows(rows, dest)
        print(f'{dest}: confident fakes per digit 0-9 of {num}: {counts}')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
