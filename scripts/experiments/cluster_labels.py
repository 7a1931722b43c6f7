"""Label a digit dataset by its shapes: k-means clusters as the labels of a self-conditioned GAN.

A self-conditioned GAN (Liu et al., "Diverse Image Generation via Self-Conditioned GANs", CVPR
2020) trains a conditional G and D on cluster ids of the data instead of class labels; G then has
to draw every cluster, which is what an unconditional run that collapses to one shape does not do.
The clusters here are computed once, on the colour-blind shapes (brightness = max over RGB, each
image scaled to peak 1, average-pooled 2x), by k-means++ and Lloyd iterations, and written into a
copy of the dataset zip as its labels (the images stay byte-identical):

    python -m scripts.experiments.cluster_labels --data=datasets/mnist60k-ul32.zip --k=100 --dest=datasets/mnist60k-ul32-k100.zip

Then `train.py --cond=1` on the new zip (with the label cross-entropy recipe of the conditional
models: `--label-ce=10 --dmap=1 --dmap-lr=1`). Prints the cluster sizes and the mean share of the
majority digit per cluster (with the source's own labels, where it has them).
"""

import json
import os
import zipfile

import click
import numpy as np
import torch
import torch.nn.functional as F

from scripts.experiments.ddpm_train import load_zip_images

def shape_features(images):
    """uint8 [N, 3, H, W] -> float [N, H/2 * W/2]: colour-blind, peak-normalised, 2x pooled shapes."""
    x = images.to(torch.float32).amax(dim=1, keepdim=True) / 255
    x = x / x.flatten(1).amax(dim=1).clamp(min=1e-6)[:, None, None, None]
    return F.avg_pool2d(x, 2).flatten(1)

def kmeans(x, k, iters=30, seed=0):
    """(centres [k, D], assignment [N]) of x [N, D] by k-means++ seeding and Lloyd iterations."""
    gen = torch.Generator().manual_seed(seed)
    centres = [x[torch.randint(len(x), [1], generator=gen)][0]]
    dist = ((x - centres[0]) ** 2).sum(dim=1)
    for _ in range(1, k):
        idx = torch.multinomial(dist / dist.sum(), 1, generator=gen)[0]
        centres.append(x[idx])
        dist = torch.minimum(dist, ((x - x[idx]) ** 2).sum(dim=1))
    centres = torch.stack(centres)
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
    return centres, torch.cdist(x, centres).argmin(dim=1)

@click.command()
@click.option('--data', required=True, help='Dataset zip (dataset_tool.py output)')
@click.option('--k', type=click.IntRange(min=2), default=100, show_default=True, help='Clusters (labels)')
@click.option('--dest', required=True, help='The labelled copy to write (must not exist)')
@click.option('--iters', type=click.IntRange(min=1), default=30, show_default=True, help='Lloyd iterations')
@click.option('--seed', type=int, default=0, show_default=True)
def main(data, k, dest, iters, seed):
    """Write a copy of a dataset zip whose labels are k-means clusters of its digit shapes."""
    if os.path.exists(dest):
        raise click.ClickException(f'{dest} exists already: remove it or choose another --dest.')
    images, digits = load_zip_images(data)
    if k > len(images):
        raise click.ClickException(f'--k={k} is more than the {len(images)} images of {data}.')
    torch.manual_seed(seed)
    _, assign = kmeans(shape_features(images), k, iters=iters, seed=seed)
    with zipfile.ZipFile(data) as src:
        names = sorted(n for n in src.namelist() if os.path.splitext(n)[1].lower() == '.png')
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        with zipfile.ZipFile(dest + '.tmp', 'w', compression=zipfile.ZIP_STORED) as out:
            for name in names:
                out.writestr(name, src.read(name))
            out.writestr('dataset.json', json.dumps(dict(labels=[[n, int(c)] for n, c in zip(names, assign.tolist())])))
    os.replace(dest + '.tmp', dest)
    sizes = torch.bincount(assign, minlength=k)
    line = f'{k} clusters of {len(images)} images: sizes {int(sizes.min())}..{int(sizes.max())}'
    if (digits >= 0).all():
        purity = [float(torch.bincount(digits[assign == c], minlength=10).max()) / max(int(sizes[c]), 1) for c in range(k) if sizes[c] > 0]
        line += f', majority digit per cluster {np.mean(purity):.3f} on average'
    print(line + f'; written to {dest}')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
