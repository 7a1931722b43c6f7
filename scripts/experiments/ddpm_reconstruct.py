"""DDPM stochastic reconstruction of digits at an unseen position (paper Fig. 9).

Both DDPMs of ddpm_train.py were trained on digits in the upper-left quadrant. Here the
inputs are held-out MNIST digits (8000..) placed in the bottom-left quadrant. Each input x_0 is
encoded to x_t by the forward process q(x_t | x_0) for t in {100, ..., 900} and decoded by the
learned reverse process (ancestral DDPM steps on t, t - stride, ..., 0), several noise seeds
each. We then measure where the digit ended up:

  kept bottom-left   the foreground's centre of mass lies in the bottom-left quadrant
  centre of mass     mean (y, x) of the foreground, in pixels
  class agreement    the position-robust digit classifier reads the input's class

A spatially biased model pulls the digit back to the upper-left once t is large; MS-PE should
keep it where it was.

A model trained on randomly extended canvases (ddpm_train.py --margin=M) reconstructs, by
default, on the input extended by M background pixels split evenly between the sides, the
canvas it was trained on, and the result is cropped back; one trained on random W-px windows
(--window=W) decodes a W-px canvas with the input in its middle, its encoding on that canvas
(`--margin` sets another margin for every model; 0 = the plain input). `--pe-shift=DY,DX` moves the MS-PE models' coordinates (the
canvas API's job): 16,0 gives the bottom-left digit the coordinates the training digits had.

    python -m scripts.experiments.ddpm_reconstruct                          # results/models/ddpm-{none,mspe}.pt
    python -m scripts.experiments.ddpm_reconstruct --num=16 --seeds=2 --stride=20   # quicker

Writes <out>.json, <out>.png (rows: t; per model one reconstruction per input) and
<out>-curve.png (fraction kept bottom-left vs t, both models).
"""

import contextlib
import json
import os
import subprocess
import sys
import time

import click
import numpy as np
import torch

from scripts import HOST
from scripts.experiments import ddpm_train as dt
from scripts.experiments import digits as dg

MODELS = {'none': 'Baseline DDPM', 'mspe': 'MS-PE DDPM'}

def model_name(config):
    """'none' / 'mspe', plus '-margin<M>' for a model trained on randomly extended canvases (and
    '-pe-on-canvas' when its encoding stayed on the extended canvas rather than on the content),
    or '-window<W>' for one trained on random W-px windows."""
    if config.get('window'):
        return f'{config["pe"]}-window{config["window"]}' + ('whole' if config.get('window_place') == 'whole' else '')
    name = config['pe'] + (f'-margin{config["margin"]}' if config.get('margin') else '')
    return name + ('-pe-on-canvas' if config.get('margin_pe') == 'canvas' else '')

def pe_on_canvas(config):
    """Whether the model's encoding lies on the canvas it decodes (random-window and
    --margin-pe=canvas models) rather than on the content."""
    return bool(config.get('window')) or config.get('margin_pe') == 'canvas'

def foreground_mass(images, threshold=0.2):
    """Per-image foreground weight map [N, H, W]: brightness (max over channels, in [0, 1])
    more than `threshold` above the image's median brightness. The digit covers far less than
    half of the canvas, so the median is the background's level: a black background and a
    tinted one (as an undertrained DDPM draws) both count for nothing.

    :param images: float [N, 3, H, W] in [-1, 1].
    """
    v = ((images.clamp(-1, 1) + 1) / 2).amax(dim=1)
    background = v.flatten(1).median(dim=1).values[:, None, None]
    return (v - background - threshold).clamp_min(0)

def centre_of_mass(images, threshold=0.2):
    """(y, x) centre of mass [N, 2] of each image's foreground in pixels; NaN for an empty image."""
    m = foreground_mass(images, threshold)
    n, h, w = m.shape
    total = m.flatten(1).sum(dim=1)
    ys = torch.arange(h, dtype=m.dtype)[None, :, None]
    xs = torch.arange(w, dtype=m.dtype)[None, None, :]
    cy = (m * ys).flatten(1).sum(dim=1) / total
    cx = (m * xs).flatten(1).sum(dim=1) / total
    com = torch.stack([cy, cx], dim=1)
    com[total < 1e-6] = float('nan')
    return com

def in_bottom_left(com, size):
    """True where the centre of mass (y, x) lies in the bottom-left quadrant of a size x size image."""
    h = size / 2 - 0.5      # pixel centres 0..size-1: the quadrant boundary sits at size/2 - 0.5
    return (com[:, 0] > h) & (com[:, 1] < h)

def inference_margin(config, margin):
    """The inference margin for a model of `config`: `margin` pixels, or with margin 'model' the
    margin it was trained with (0 for a model trained on the plain images; a random-window model
    decodes its window, the input in the middle). Raises click.BadParameter
    for a margin the UNet cannot downsample or split evenly between the sides."""
    if margin == 'model':
        if config.get('window'):
            return int(config['window']) - int(config['resolution'])
        return int(config.get('margin', 0))
    try:
        margin = int(margin)
    except ValueError:
        raise click.BadParameter(f"expected 'model' or a number of pixels, got {margin!r}.", param_hint='--margin')
    if margin < 0 or margin % 2:
        raise click.BadParameter(f'{margin} px cannot be split evenly between the sides: choose an even margin >= 0.', param_hint='--margin')
    dt.check_margin(config['resolution'], config['channels'], margin)
    return margin

@torch.no_grad()
def reconstruct(unet, x0, t, stride, seed, margin=0, pe_on_canvas=False, pe_shift=(0, 0)):
    """Encode x0 [N, 3, H, W] to x_t (forward process) and decode it with the reverse process.

    With a margin, x0 is first extended by `margin` background pixels split evenly between the
    sides (as ddpm_train.py --margin extends its training images), decoded on that canvas and
    cropped back; an MS-PE encoding stays on the content, or with `pe_on_canvas` on the
    extended canvas, whichever the model was trained with. `pe_shift` = (dy, dx) moves an MS-PE
    encoding's coordinates: the pixel that had coordinate p gets p - (dy, dx)."""
    from mspe_plugin.encoding import Canvas
    origin = (0, 0)
    if margin:
        x0, _ = dt.extend_canvas(x0, (margin // 2, margin // 2), margin)
        if not pe_on_canvas:
            origin = (-(margin // 2), -(margin // 2))
    origin = (origin[0] - pe_shift[0], origin[1] - pe_shift[1])
    canvas = None if origin == (0, 0) else Canvas(origin=origin, size=tuple(x0.shape[-2:]))
    scheduler = dt.build_scheduler()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen)
    xt = scheduler.add_noise(x0, noise, torch.full([x0.shape[0]], t, dtype=torch.long))
    with (unet.mspe.canvas(canvas) if hasattr(unet, 'mspe') else contextlib.nullcontext()):
        x = dt.reverse_process(unet, scheduler, xt, t, stride, gen)
    if margin:
        size = x.shape[-1] - margin
        x = x[..., margin // 2:margin // 2 + size, margin // 2:margin // 2 + size]
    return x

@click.command()
@click.option('--models', 'model_paths', default='results/models/ddpm-none.pt,results/models/ddpm-mspe.pt', show_default=True,
              help='Comma-separated final.pt files of ddpm_train.py (baseline first)')
@click.option('--inputs', default='datasets/mnist-bl32.zip', show_default=True,
              help='Bottom-left digits (made with dataset_tool.py --place=bottom-left when missing)')
@click.option('--mnist', default=dg.MNIST_TEST_DIR, show_default=True,
              help='Folder with MNIST\'s t10k-images-idx3-ubyte.gz, used to build --inputs when it does not exist')
@click.option('--first', type=int, default=8000, show_default=True, help='First input digit (8000.. are held out from the classifier)')
@click.option('--num', type=click.IntRange(min=1), default=32, show_default=True, help='Input digits')
@click.option('--seeds', type=click.IntRange(min=1), default=3, show_default=True, help='Noise seeds per input and t')
@click.option('--ts', default='100,200,300,400,500,600,700,800,900', show_default=True, help='Timesteps to encode to')
@click.option('--stride', type=click.IntRange(min=1), default=10, show_default=True, help='Reverse-process stride (1 = all steps)')
@click.option('--margin', default='model', show_default=True,
              help="Reconstruct on the input extended by this many background pixels (split evenly) and crop; 'model' = each model's training margin")
@click.option('--pe-shift', default='0,0', show_default=True,
              help="DY,DX: move MS-PE models' coordinates so the pixel at (DY, DX) gets coordinate (0, 0) (16,0 puts the bottom-left digit at the training digits' coordinates)")
@click.option('--threads', type=click.IntRange(min=1), default=2, show_default=True, help='CPU threads')
@click.option('--out', default=dg.out_path('ddpm_reconstruct'), show_default=True, help='Output path without extension')
def main(model_paths, inputs, mnist, first, num, seeds, ts, stride, margin, pe_shift, threads, out):
    """Fig. 9: where do bottom-left digits go when a DDPM trained on upper-left digits reconstructs them?"""
    torch.set_num_threads(threads)
    try:
        ts = [int(t) for t in ts.split(',')]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers, got {ts!r}.', param_hint='--ts')
    try:
        pe_shift = tuple(int(v) for v in pe_shift.split(','))
        assert len(pe_shift) == 2
    except (ValueError, AssertionError):
        raise click.BadParameter(f'expected two comma-separated integers DY,DX, got {pe_shift!r}.', param_hint='--pe-shift')
    if not all(0 < t < 1000 for t in ts):
        raise click.BadParameter(f'timesteps must lie in 1..999, got {ts}.', param_hint='--ts')
    if not os.path.isfile(inputs):
        images_file = os.path.join(mnist, dg.MNIST_FILES['test'][0])
        if not os.path.isfile(images_file):
            raise click.ClickException(f'--inputs {inputs} does not exist and {mnist} lacks {dg.MNIST_FILES["test"][0]} '
                                       '(MNIST\'s standard test images) to build it from; pass --mnist DIR.')
        subprocess.run([sys.executable, os.path.join(HOST, 'dataset_tool.py'), f'--source={images_file}', f'--dest={inputs}',
                        '--place=bottom-left', '--colorize', '--resolution=32', '--seed=1'], check=True)
    images, labels = dt.load_zip_images(inputs, start=first, stop=first + num)
    x0 = dt.to_float(images)
    size = x0.shape[-1]
    classifier = dg.load_classifier(device='cpu')
    input_class = dg.classify(classifier, x0)[0]
    input_com = centre_of_mass(x0)
    print(f'{len(x0)} inputs: {float(in_bottom_left(input_com, size).float().mean()):.3f} bottom-left, '
          f'classifier agrees with the MNIST label on {float((input_class == labels).float().mean()):.3f}')

    results, panels = {}, {}
    for path in model_paths.split(','):
        unet, config, step = dt.load_model(path)
        if config['resolution'] != size:
            raise click.ClickException(f'{path} was trained at {config["resolution"]} px but the inputs are {size} px.')
        name = model_name(config)
        if name in results:
            raise click.ClickException(f'--models names two {name!r} models: compare models trained with different options.')
        m = inference_margin(config, margin)
        rows, panel = [], []
        t0 = time.time()
        for t in ts:
            kept, agree, coms = [], [], []
            for seed in range(seeds):
                rec = reconstruct(unet, x0, t, stride, seed=1000 * t + seed, margin=m, pe_on_canvas=pe_on_canvas(config),
                                  pe_shift=pe_shift if config['pe'] == 'mspe' else (0, 0))
                com = centre_of_mass(rec)
                kept.append(in_bottom_left(com, size).float())
                agree.append((dg.classify(classifier, rec)[0] == input_class).float())
                coms.append(com)
                if seed == 0:
                    panel.append(dt.to_uint8(rec[:8]))
            com = torch.cat(coms)
            rows.append(dict(t=t, kept_bottom_left=float(torch.cat(kept).mean()),
                             class_agreement=float(torch.cat(agree).mean()),
                             com_y=float(np.nanmean(com[:, 0].numpy())), com_x=float(np.nanmean(com[:, 1].numpy()))))
            print(f'{name:>5} t={t:3d}: kept bottom-left {rows[-1]["kept_bottom_left"]:.3f}  class agreement '
                  f'{rows[-1]["class_agreement"]:.3f}  centre of mass (y, x) ({rows[-1]["com_y"]:.1f}, {rows[-1]["com_x"]:.1f})', flush=True)
        results[name] = dict(model=path, train_steps=step, inference_margin=m, pe_shift=list(pe_shift) if config['pe'] == 'mspe' else [0, 0],
                             rows=rows, seconds=round(time.time() - t0, 1))
        panels[name] = panel

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    record = dict(command=dg.command_line('scripts.experiments.ddpm_reconstruct'), inputs=inputs,
                  first=first, num=num, seeds=seeds, stride=stride, size=size,
                  input_kept_bottom_left=float(in_bottom_left(input_com, size).float().mean()), models=results)
    with open(out + '.json', 'w') as f:
        json.dump(record, f, indent=1)
    save_figure(dt.to_uint8(x0[:8]), panels, ts, out + '.png')
    plot_curve(results, out + '-curve.png')
    print(f'wrote {out}.json, {out}.png and {out}-curve.png')

def save_figure(inputs, panels, ts, path):
    """Row 0: inputs; then one row per t: per model, 8 reconstructions (models side by side)."""
    import PIL.Image
    pad = 4
    def strip(batch):
        return np.concatenate(list(batch.permute(0, 2, 3, 1).numpy()), axis=1)
    blocks = [[strip(inputs)] * len(panels)]
    for i in range(len(ts)):
        blocks.append([strip(panel[i]) for panel in panels.values()])
    h, w = blocks[0][0].shape[:2]
    canvas = np.full([len(blocks) * (h + pad), len(panels) * (w + 3 * pad), 3], 255, dtype=np.uint8)
    for r, row in enumerate(blocks):
        for c, img in enumerate(row):
            canvas[r * (h + pad):r * (h + pad) + h, c * (w + 3 * pad):c * (w + 3 * pad) + w] = img
    image = PIL.Image.fromarray(canvas)
    image.resize((image.width * 2, image.height * 2), PIL.Image.NEAREST).save(path)

def plot_curve(results, path):
    plt = dg.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, res in results.items():
        ts = [r['t'] for r in res['rows']]
        axes[0].plot(ts, [r['kept_bottom_left'] for r in res['rows']], marker='o', label=MODELS.get(name, name))
        axes[1].plot(ts, [r['class_agreement'] for r in res['rows']], marker='o', label=MODELS.get(name, name))
    for ax, title in zip(axes, ['fraction kept bottom-left', 'class agreement with input']):
        ax.set_xlabel('t (encoding depth)')
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == '__main__':
    main()
