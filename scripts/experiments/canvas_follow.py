"""Does a digit generator draw where its canvas says? Snapshot by snapshot, for training probes.

For each snapshot (a pickle, or the snapshots of a run folder) it renders N latents of G_ema on
the training grid and on moved, enlarged and zoomed canvases, and reports with the ink centre of
scripts/experiments/shift_consistency.py:
  move_d     how far the digit's ink centre moved, as a fraction of d, when the canvas moves so
             that the content should move d pixels right and down (1 = follows the canvas,
             0 = stays where the image border put it), d = 4, 8, 16;
  enlarged   the same on the canvas [-R/2, 3R/2]^2 (should move R/2);
  zoom2      how much the ink's spread grows at zoom 2 (2 = scales with the canvas);
  agreement  share of renderings at d = 4, 8, 16 that the digit classifier reads as the same
             digit as at d = 0;
  ink        share of moved renderings that still have ink;
  stray      on the canvas [-40, R + 40]^2, the ink beyond 2 px of the training grid [0, R)^2 per
             unit of ink inside it: copies of the digit where the encoding (nearly) repeats
             (0 = nothing drawn outside; the digits of the training data lie inside).

    python -m scripts.experiments.canvas_follow runs/probe/p3/00000-... --json results/paper/probes_canvas.json
    python -m scripts.experiments.canvas_follow results/models/wide/*.pkl --margin 8   # every rendering with an inference margin
"""

import json

import click
import numpy as np
import torch

import legacy  # noqa: E402  (the vendored host, on sys.path through `scripts`)
from mspe_plugin.encoding import Canvas
from scripts.experiments import digits as dg
from scripts.experiments.digit_diversity import snapshots
from scripts.experiments.shift_consistency import displacement, ink_centre

SHIFTS = (4, 8, 16)

def ink_spread(images):
    """Root mean squared distance of the ink from its centre, per image [N] (pixels)."""
    centre, _ = ink_centre(images)
    ink = ((images.amax(dim=1) + 1) / 2).clamp(0, 1)
    ink = torch.where(ink > 0.3, ink, torch.zeros_like(ink))
    H, W = ink.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=ink.dtype), torch.arange(W, dtype=ink.dtype), indexing='ij')
    d2 = (ys - centre[:, 0, None, None]) ** 2 + (xs - centre[:, 1, None, None]) ** 2
    return ((d2 * ink).sum(dim=(1, 2)) / ink.sum(dim=(1, 2)).clamp(min=1e-8)).sqrt()

STRAY_REACH = 40    # px beyond every side of the training grid that `stray` looks at
STRAY_SLACK = 2     # px beyond the training grid still counted as inside

def stray_ink(images, R, reach=STRAY_REACH, slack=STRAY_SLACK):
    """Ink beyond `slack` px of the training grid per unit of ink inside the grid, [N], of images
    [N, C, R + 2 reach, R + 2 reach] rendered on the canvas [-reach, R + reach]^2 (ink as ink_spread)."""
    ink = ((images.amax(dim=1) + 1) / 2).clamp(0, 1)
    ink = torch.where(ink > 0.3, ink, torch.zeros_like(ink))
    inside = ink[:, reach:reach + R, reach:reach + R].sum(dim=(1, 2))
    near = ink[:, reach - slack:reach + R + slack, reach - slack:reach + R + slack].sum(dim=(1, 2))
    return (ink.sum(dim=(1, 2)) - near) / inside.clamp(min=1e-8)

def follow(G, clf, num, seed=0, margin=0):
    """The row of one generator (see the module docstring); margin: the inference margin of every rendering."""
    R = G.img_resolution
    ws = dg.latents(G, num, seed=seed)
    base = dg.render(G, ws, margin=margin).cpu()
    base_class = dg.classify(clf, base)[0]
    row, agree, inks = {}, [], []
    for d in SHIFTS:
        moved = dg.render(G, ws, Canvas(origin=(-d, -d)), margin=margin).cpu()
        move, ink = displacement(base, moved)
        row[f'move_{d}'] = None if move is None else move / d
        agree.append(float((dg.classify(clf, moved)[0] == base_class).float().mean()))
        inks.append(ink)
    move, _ = displacement(base, dg.render(G, ws, Canvas(origin=(-R / 2, -R / 2), size=(2 * R, 2 * R)), margin=margin).cpu())
    row['enlarged'] = None if move is None else move / (R / 2)
    row['zoom2'] = float(ink_spread(dg.render(G, ws, Canvas(zoom=2), margin=margin).cpu()).mean() / ink_spread(base).mean())
    row['agreement'] = float(np.mean(agree))
    row['ink'] = float(np.mean(inks))
    wide = Canvas(origin=(-STRAY_REACH, -STRAY_REACH), size=(R + 2 * STRAY_REACH, R + 2 * STRAY_REACH))
    row['stray'] = float(stray_ink(dg.render(G, ws, wide, margin=margin).cpu(), R).mean())
    return row

@click.command()
@click.argument('paths', nargs=-1, required=True)
@click.option('--num', type=click.IntRange(min=2), default=128, show_default=True, help='Latents per snapshot')
@click.option('--every', type=float, default=None, help='Of a run folder, only the snapshots at multiples of this kimg')
@click.option('--json', 'json_path', default=None, help='Also write the rows here')
@click.option('--note', default='', help='A sentence stored with the rows (what the snapshots are)')
@dg.margin_option
def main(paths, num, every, json_path, note, margin):
    """Ink-centre movement of digit generators on moved, enlarged and zoomed canvases."""
    torch.manual_seed(0)
    clf = dg.load_classifier(device='cpu')
    rows = []
    for path in snapshots(paths, every):
        with open(path, 'rb') as f:
            G = legacy.load_network_pkl(f)['G_ema'].eval()
        row = dict(snapshot=path, **follow(G, clf, num, margin=margin))
        rows.append(row)
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(dict(command=dg.command_line('scripts.experiments.canvas_follow'), num=num, margin=margin, note=note, rows=rows), f, indent=1)

if __name__ == '__main__':
    main()    # pylint: disable=no-value-for-parameter
