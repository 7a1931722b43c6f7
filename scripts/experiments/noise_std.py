"""Noise dependence of the digit models (paper Fig. 4): per-pixel standard deviation of the
image over many noise maps for fixed latents.

    python -m scripts.experiments.noise_std [--num 8] [--noises 100] [--out results/paper/noise_std]

A generator that relies on per-pixel noise to decide *where* to draw (SS-PE, in the paper) shows
a large std; MS-PE and the baseline keep the noise to texture. Writes <out>.json (mean std per
model) and <out>.png (rows: one latent's image and its std map per model).
"""
import json
import os

import click
import numpy as np
import torch

from scripts.experiments import digits as dg

@click.command()
@click.option('--num', type=int, default=8, help='Fixed latents per model')
@click.option('--noises', type=int, default=100, help='Noise maps per latent')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dg.MODELS_DIR)
@click.option('--out', default=dg.out_path('noise_std'))
def main(num, noises, seed, models_dir, out):
    torch.manual_seed(seed)
    models = dg.load_models(models_dir=models_dir)
    results, rows = {}, []
    for name, G in models.items():
        ws = dg.latents(G, num, seed=seed)
        stds, means = [], []
        for i in range(num):
            imgs = dg.render(G, ws[i:i + 1].repeat([noises, 1, 1]), noise_mode='random')
            stds.append(imgs.std(dim=0).mean(dim=0))            # [H, W], averaged over colour channels
            means.append(imgs[:1])
        std = torch.stack(stds)
        results[name] = dict(mean_std=float(std.mean()), max_pixel_std=float(std.amax()))
        print(f'{name:>9}: mean per-pixel std {results[name]["mean_std"]:.4f}, max {results[name]["max_pixel_std"]:.4f}')
        heat = (std / max(float(std.amax()), 1e-8) * 2 - 1)[:, None].repeat([1, 3, 1, 1])
        rows.append(list(dg.to_uint8(torch.cat(means))) + list(dg.to_uint8(heat)))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(dict(num=num, noises=noises, models=results, rows=list(models)), f, indent=1)
    dg.save_rows(rows, out + '.png')
    print(f'wrote {out}.json and {out}.png (rows: {", ".join(models)}; left: images, right: std maps, each row normalised)')

if __name__ == '__main__':
    main()
