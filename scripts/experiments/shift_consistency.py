"""Shift consistency of the digit models (paper Fig. 2d), through the Canvas.

    python -m scripts.experiments.shift_consistency [--max-shift 16] [--step 0.5] [--num 64] [--out results/paper/shift_consistency]
    python -m scripts.experiments.shift_consistency --wrap --out results/paper/shift_consistency_wrap
    python -m scripts.experiments.shift_consistency --wrap --margin 8 ...   # every rendering with an inference margin

For each shift d (image pixels, fractional included) the canvas is moved by -d along both axes,
so the digit trained in the upper-left corner is asked to appear d pixels further right and
down. We compare G(canvas moved) with G at d = 0 translated by d (Lanczos, exact for integer
d), on the pixels both images cover: PSNR, SSIM, and whether the position-robust digit
classifier gives both the same class. Since a digit that stays where it was keeps its class
too, we also measure where the digit went: the centre of its ink (the colour-blind brightness,
max over RGB, where above INK of the [0, 1] range) against the one at d = 0, along the shift
(`moved`, pixels; d for a digit that follows the canvas, 0 for one that stays put), over the
latents whose rendering still has ink (`ink`: their share). Last, what the digit's position is
tied to (`enlarged`): on the canvas [-R/2, 3R/2]^2 (2R pixels wide, the training grid in its
middle) a digit placed by the encoding moves R/2 pixels down and right in the image, one placed
by the image border (a cue only zero padding gives) stays where it was. Shifts run to R/2 (16 px at our 32 px resolution: the same
fraction of the image as the paper's 0..32 px at 64 px). Writes <out>.json and <out>.png.

With --wrap the reference is G at d = 0 *rolled* by d (torch.roll for whole pixels, the
band-limited Fourier shift for fractions, digits.roll_image) and PSNR / SSIM cover every pixel
of the image, not only the ones the translated reference covers: a generator that follows the
canvas scores high over the whole image, edges included, one that draws by its border does not.
The printed "fractional" mean is over the off-grid shifts (d + 0.5).
"""
import json
import os

import click
import numpy as np
import torch

from scripts.experiments import digits as dg

INK = 0.3    # brightness in [0, 1] above which a pixel counts as the digit's ink

def ink_centre(images):
    """(centre [N, 2] as (y, x) in pixels, has_ink [N] bool) of images [N, C, H, W] in [-1, 1]."""
    ink = ((images.amax(dim=1) + 1) / 2).clamp(0, 1)
    ink = torch.where(ink > INK, ink, torch.zeros_like(ink))
    H, W = ink.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=ink.dtype), torch.arange(W, dtype=ink.dtype), indexing='ij')
    mass = ink.sum(dim=(1, 2))
    safe = mass.clamp(min=1e-8)
    centre = torch.stack([(ink * ys).sum(dim=(1, 2)) / safe, (ink * xs).sum(dim=(1, 2)) / safe], dim=1)
    return centre, mass > 0

def displacement(base, moved):
    """(mean move along the diagonal in pixels, or None when no pair has ink; share of `moved`
    with ink) for renderings at d = 0 and on a canvas that moves the content right and down."""
    c0, ink0 = ink_centre(base)
    c1, ink1 = ink_centre(moved)
    both = ink0 & ink1
    move = float((c1 - c0)[both].mean()) if bool(both.any()) else None
    return move, float(ink1.double().mean())

@click.command()
@click.option('--max-shift', type=float, default=None, help='Largest shift in pixels (default R/2)')
@click.option('--step', type=float, default=0.5, help='Shift step in pixels')
@click.option('--num', type=int, default=64, help='Latents per model')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dg.MODELS_DIR)
@click.option('--out', default=None, help='Output path without extension [default: results/paper/shift_consistency, with --wrap shift_consistency_wrap]')
@click.option('--wrap', is_flag=True, help='Compare with G(0) rolled by d (wrap-around), over the whole image')
@dg.margin_option
def main(max_shift, step, num, seed, models_dir, out, wrap, margin):
    if out is None:
        out = dg.out_path('shift_consistency_wrap' if wrap else 'shift_consistency')
    torch.manual_seed(seed)
    models = dg.load_models(models_dir=models_dir)
    classifier = dg.load_classifier(device=dg.pick_device())
    results = {}
    enlarged = {}
    for name, G in models.items():
        R = G.img_resolution
        shifts = np.arange(0, (max_shift if max_shift is not None else R / 2) + 1e-9, step)
        ws = dg.latents(G, num, seed=seed)
        base = dg.render(G, ws, noise_mode='const', margin=margin)
        base_class = dg.classify(classifier, base)[0]
        rows = []
        for d in shifts:
            moved = dg.render(G, ws, dg.shifted_canvas(G, -d, -d), noise_mode='const', margin=margin)
            if wrap:
                ref, mask = dg.roll_image(base, d, d), None
            else:
                ref, mask = dg.translate_image(base, -d, -d)
            move, ink = displacement(base.cpu(), moved.cpu())
            rows.append(dict(
                moved=move,
                ink=ink,
                shift=float(d),
                psnr=float(dg.psnr(moved, ref, mask).mean()),
                ssim=float(dg.ssim(moved, ref, mask).mean()),
                class_agreement=float((dg.classify(classifier, moved)[0] == base_class).float().mean()),
            ))
        results[name] = rows
        big = dg.render(G, ws, dg.Canvas(origin=(-R / 2, -R / 2), size=(2 * R, 2 * R)), noise_mode='const', margin=margin)
        move, ink = displacement(base.cpu(), big.cpu())
        enlarged[name] = dict(moved=move, ink=ink, if_encoding=R / 2, if_border=0.0)
        frac = [r for r in rows if not float(r['shift']).is_integer()]
        print(f'{name:>9}: PSNR mean {np.mean([r["psnr"] for r in rows]):6.2f} dB '
              f'(fractional {np.mean([r["psnr"] for r in frac]) if frac else float("nan"):6.2f}), SSIM mean {np.mean([r["ssim"] for r in rows]):.3f}, '
              f'class agreement mean {np.mean([r["class_agreement"] for r in rows]):.3f}, min {min(r["class_agreement"] for r in rows):.3f}, '
              'digit moved ' + ' '.join(f'{r["moved"]:.1f}@{r["shift"]:g}' if r['moved'] is not None else f'-@{r["shift"]:g}'
                                        for r in rows if float(r['shift']) in (4.0, 8.0, 16.0)) +
              f', on [-R/2, 3R/2]^2 moved {"-" if move is None else f"{move:.1f}"} (encoding {R / 2:g}, border 0)')

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(dict(num=num, step=step, margin=margin, direction='diagonal, content moved right+down', models=results,
                       reference='G(0) rolled by d, whole image' if wrap else 'G(0) translated by d (Lanczos), covered pixels',
                       enlarged=enlarged), f, indent=1)
    plot(results, out + '.png', wrap)
    print(f'wrote {out}.json and {out}.png')

def plot(results, path, wrap=False):
    plt = dg.pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for name, rows in results.items():
        shifts = [r['shift'] for r in rows]
        for ax, key in zip(axes, ['psnr', 'ssim', 'class_agreement', 'moved']):
            values = [np.nan if r.get(key) is None else r[key] for r in rows]
            ax.plot(shifts, values, label=dg.MODELS.get(name, name), marker='.', markersize=3)
    shifts = [r['shift'] for r in next(iter(results.values()))]
    axes[3].plot(shifts, shifts, color='grey', linestyle=':', label='follows the canvas')
    for ax, title in zip(axes, ['PSNR (dB) vs rolled G(0)' if wrap else 'PSNR (dB) vs translated G(0)', 'SSIM', 'classifier agreement', 'digit moved (px; none = no ink)']):
        ax.set_xlabel('shift (px)')
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == '__main__':
    main()
