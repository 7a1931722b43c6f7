"""Shift consistency of the digit models (paper Fig. 2d), through the Canvas.

    python scripts/shift_consistency.py [--max-shift 16] [--step 0.5] [--num 64] [--out results/shift_consistency]

For each shift d (image pixels, fractional included) the canvas is moved by -d along both axes,
so the digit trained in the upper-left corner is asked to appear d pixels further right and
down. We compare G(canvas moved) with G at d = 0 translated by d (Lanczos, exact for integer
d), on the pixels both images cover: PSNR, SSIM, and whether the position-robust digit
classifier gives both the same class. Shifts run to R/2 (16 px at our 32 px resolution: the same
fraction of the image as the paper's 0..32 px at 64 px). Writes <out>.json and <out>.png.
"""
import json
import os

import click
import numpy as np
import torch

import digit_models as dm
from digit_classifier import classify, load_classifier

@click.command()
@click.option('--max-shift', type=float, default=None, help='Largest shift in pixels (default R/2)')
@click.option('--step', type=float, default=0.5, help='Shift step in pixels')
@click.option('--num', type=int, default=64, help='Latents per model')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dm.MODELS_DIR)
@click.option('--out', default=os.path.join(dm.ROOT, 'results', 'shift_consistency'), help='Output path without extension')
def main(max_shift, step, num, seed, models_dir, out):
    torch.manual_seed(seed)
    models = dm.load_models(models_dir=models_dir)
    classifier = load_classifier(device=dm.pick_device())
    results = {}
    for name, G in models.items():
        R = G.img_resolution
        shifts = np.arange(0, (max_shift if max_shift is not None else R / 2) + 1e-9, step)
        ws = dm.latents(G, num, seed=seed)
        base = dm.render(G, ws, noise_mode='const')
        base_class = classify(classifier, base)[0]
        rows = []
        for d in shifts:
            moved = dm.render(G, ws, dm.shifted_canvas(G, -d, -d), noise_mode='const')
            ref, mask = dm.translate_image(base, -d, -d)
            rows.append(dict(
                shift=float(d),
                psnr=float(dm.psnr(moved, ref, mask).mean()),
                ssim=float(dm.ssim(moved, ref, mask).mean()),
                class_agreement=float((classify(classifier, moved)[0] == base_class).float().mean()),
            ))
        results[name] = rows
        frac = [r for r in rows if not float(r['shift']).is_integer()]
        print(f'{name:>9}: PSNR mean {np.mean([r["psnr"] for r in rows]):6.2f} dB '
              f'(fractional {np.mean([r["psnr"] for r in frac]) if frac else float("nan"):6.2f}), SSIM mean {np.mean([r["ssim"] for r in rows]):.3f}, '
              f'class agreement mean {np.mean([r["class_agreement"] for r in rows]):.3f}, min {min(r["class_agreement"] for r in rows):.3f}')

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(dict(num=num, step=step, direction='diagonal, content moved right+down', models=results), f, indent=1)
    plot(results, out + '.png')
    print(f'wrote {out}.json and {out}.png')

def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, rows in results.items():
        shifts = [r['shift'] for r in rows]
        for ax, key in zip(axes, ['psnr', 'ssim', 'class_agreement']):
            ax.plot(shifts, [r[key] for r in rows], label=dm.MODELS.get(name, name), marker='.', markersize=3)
    for ax, title in zip(axes, ['PSNR (dB) vs translated G(0)', 'SSIM', 'classifier agreement']):
        ax.set_xlabel('shift (px)')
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == '__main__':
    main()
