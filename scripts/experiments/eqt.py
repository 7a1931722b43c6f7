"""StyleGAN3's translation equivariance (EQ-T) of the digit models, through the Canvas.

    python -m scripts.experiments.eqt [--num 256] [--max-frac 0.125] [--margin 0] [--out results/paper/eqt.json]

--margin N renders every canvas, G(0) included, N pixels wider on every side and crops them (the
inference margin, generate.py --margin), so that no pixel depends on where the rendered edge is.

Writes the JSON and, beside it, a bar chart (<out without .json>.png).

For each latent a random translation t (uniform in +-max_frac * R per axis) is applied to the
canvas and compared with G(0) translated by t on the pixels both cover:
EQ-T = 10 log10(I_max^2 / MSE) with I_max = 2 ([-1, 1] images), as in StyleGAN3 (Karras et al.
2021). EQ-T uses integer translations, EQ-T_frac arbitrary ones (reference translated with a
Lanczos-3 kernel). Higher is more equivariant.
"""
import json
import os

import click
import numpy as np
import torch

from scripts.experiments import digits as dg

@click.command()
@click.option('--num', type=int, default=256, help='Latents (one random translation each)')
@click.option('--max-frac', type=float, default=0.125, help='Max translation as a fraction of R')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dg.MODELS_DIR)
@click.option('--out', default=dg.out_path('eqt') + '.json')
@dg.margin_option
def main(num, max_frac, seed, models_dir, out, margin):
    models = dg.load_models(models_dir=models_dir)
    results = {}
    for name, G in models.items():
        R = G.img_resolution
        rnd = np.random.RandomState(seed)
        ws = dg.latents(G, num, seed=seed)
        base = dg.render(G, ws, noise_mode='const', margin=margin)
        scores = {}
        for kind in ['integer', 'fractional']:
            mse_sum = 0.0
            for i in range(num):
                t = rnd.uniform(-max_frac * R, max_frac * R, size=2)
                if kind == 'integer':
                    t = np.round(t)
                moved = dg.render(G, ws[i:i + 1], dg.shifted_canvas(G, t[0], t[1]), noise_mode='const', margin=margin)
                ref, mask = dg.translate_image(base[i:i + 1], t[0], t[1])
                mse_sum += float((moved - ref).square()[:, :, mask].mean())
            scores['eqt_int' if kind == 'integer' else 'eqt_frac'] = float(10 * np.log10(4.0 / (mse_sum / num)))
        results[name] = scores
        print(f'{name:>9}: EQ-T {scores["eqt_int"]:6.2f} dB   EQ-T_frac {scores["eqt_frac"]:6.2f} dB')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(num=num, max_frac=max_frac, margin=margin, models=results), f, indent=1)
    figure = os.path.splitext(out)[0] + '.png'
    plot(results, figure)
    print(f'wrote {out} and {figure}')

def plot(results, path):
    """Bars of EQ-T and EQ-T_frac (dB) per model."""
    plt = dg.pyplot()
    names = list(results)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.2))
    for offset, key, label in [(-0.2, 'eqt_int', 'EQ-T (integer)'), (0.2, 'eqt_frac', 'EQ-T_frac')]:
        bars = ax.bar(x + offset, [results[n][key] for n in names], width=0.4, label=label)
        ax.bar_label(bars, fmt='%.1f', fontsize=8)
    ax.set_xticks(x, [dg.MODELS.get(n, n) for n in names])
    ax.set_ylabel('PSNR (dB), higher = more equivariant')
    ax.legend(loc='lower right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == '__main__':
    main()
