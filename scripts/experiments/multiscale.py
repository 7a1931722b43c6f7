"""Multi-scale and beyond-the-boundary generation of the digit models (paper Fig. 6-8, Table 1).

    python -m scripts.experiments.multiscale --data datasets/mnist-ul32.zip [--num 1000] [--out results/paper/multiscale]

Canvases: zoom 1, 1.5 and 2; twice the width; the extent [-0.5 W, 1.5 W] (beyond the border).
For each model and canvas: a grid image, and the Frechet distance between digit-classifier
features of the generated images and of the real dataset rendered on the same canvas (resized
by the zoom; the black background continued where the canvas leaves the training extent).
"""
import json
import os

import click
import numpy as np
import torch
import torch.nn.functional as F

from scripts.experiments import digits as dg
from mspe_plugin.encoding import Canvas

def canvases(R):
    return {
        'zoom1': Canvas(),
        'zoom1.5': Canvas(zoom=1.5),
        'zoom2': Canvas(zoom=2.0),
        'width2x': Canvas(size=(R, 2 * R)),
        'beyond': Canvas.from_extent(((0, R), (-R / 2, 1.5 * R))),
    }

def real_on_canvas(real, canvas, R):
    """Real images [N, C, R, R] in [-1, 1] as they would look on `canvas` (zoom + black extension)."""
    height, width = canvas.output_size(R)
    zoom = canvas.zoom
    img = real
    if zoom != 1:
        size = int(round(R * zoom))
        img = F.interpolate(img, size=(size, size), mode='bicubic', align_corners=False, antialias=zoom < 1).clamp(-1, 1)
    oy, ox = (int(round(o * zoom)) for o in canvas.origin)
    out = torch.full([img.shape[0], img.shape[1], height, width], -1.0)
    ys, xs = slice(max(0, -oy), min(height, img.shape[2] - oy)), slice(max(0, -ox), min(width, img.shape[3] - ox))
    out[:, :, ys, xs] = img[:, :, ys.start + oy:ys.stop + oy, xs.start + ox:xs.stop + ox]
    return out

@click.command()
@click.option('--data', required=True, help='The training dataset zip (real images)')
@click.option('--num', type=int, default=1000, help='Images per model and canvas (and real images)')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dg.MODELS_DIR)
@click.option('--out', default=dg.out_path('multiscale'))
def main(data, num, seed, models_dir, out):
    models = dg.load_models(models_dir=models_dir)
    device = dg.pick_device()
    classifier = dg.load_classifier(device=device)
    real = dg.load_real(data, num)
    R = real.shape[-1]
    real_feats = {key: dg.features(classifier, real_on_canvas(real, c, R).to(device)).cpu().numpy() for key, c in canvases(R).items()}
    table, rows = {}, []
    for name, G in models.items():
        ws = dg.latents(G, num, seed=seed)
        table[name] = {}
        for key, canvas in canvases(R).items():
            fake = dg.render(G, ws, canvas)
            table[name][key] = dg.frechet_distance(dg.features(classifier, fake).cpu().numpy(), real_feats[key])
            rows.append(list(dg.to_uint8(fake[:4])))
        print(f'{name:>9}: ' + '  '.join(f'{k} {v:8.2f}' for k, v in table[name].items()))
    for key, canvas in canvases(R).items():
        rows.append(list(dg.to_uint8(real_on_canvas(real[:4], canvas, R))))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(dict(num=num, metric='Frechet distance of digit-classifier features', models=table), f, indent=1)
    dg.save_rows(rows, out + '.png')
    print(f'wrote {out}.json and {out}.png (rows: per model the canvases {", ".join(canvases(R))}; last rows: real data on each canvas)')

if __name__ == '__main__':
    main()
