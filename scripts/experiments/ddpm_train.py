"""Train a small DDPM (diffusers UNet2DModel + DDPMScheduler) with or without MS-PE on a
spatially biased dataset: the baseline / MS-PE pair of the paper's Fig. 9.

The data are colour-MNIST digits in the upper-left quadrant of a 32 px canvas, made with the
host's dataset tool:

    python stylegan2_ada_vendor/dataset_tool.py --source=tests/data/mnist/t10k-images-idx3-ubyte.gz \\
        --dest=datasets/mnist-ul32.zip --place=upper-left --colorize --resolution=32 --max-images=8000

Both models start from the same weights (same seed) and see the same batches, noise and
timesteps; MS-PE adds `gamma_l * PE_l` at every UNet level (mspe_plugin.diffusion, gamma
initialised to 1 as in the authors' generator). 1000 steps, linear betas, epsilon prediction,
no augmentation (an x-flip would undo the bias). The run is resumable: `--outdir` keeps
`checkpoint.pt` (model, EMA, optimizer, step, RNG) every `--snap` steps; running the same command
again continues a killed run where its last checkpoint left it, with identical batches.

    python -m scripts.experiments.ddpm_train --pe=none --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/none --export=results/models/ddpm-none.pt
    python -m scripts.experiments.ddpm_train --pe=mspe --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/mspe --export=results/models/ddpm-mspe.pt

(the committed models). A larger --steps continues a finished run.

`--margin=M` trains on randomly extended canvases instead (issue "spatially unbiased in fact"):
each step pastes the batch at a random offset in [0, M]^2 into a canvas M pixels larger, filled
with each image's background (the median of its outer ring), and gives MS-PE the canvas whose
coordinate 0 is the pasted image's first pixel, so the encoding stays on the content while the
image border moves (R + M must be divisible by the UNet's total downsampling):

    python -m scripts.experiments.ddpm_train --pe=none --margin=16 --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/none-margin16 --export=results/models/ddpm-none-margin16.pt
    python -m scripts.experiments.ddpm_train --pe=mspe --margin=16 --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/mspe-margin16 --export=results/models/ddpm-mspe-margin16.pt

`--margin-pe=canvas` keeps the encoding on the extended canvas instead, so the content lands at
random coordinates and the encoding says nothing about where digits belong (the comparison that
tells whether MS-PE's coordinates, not only the border, carry the training set's position bias):

    python -m scripts.experiments.ddpm_train --pe=mspe --margin=16 --margin-pe=canvas --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/mspe-margin16-canvas --export=results/models/ddpm-mspe-margin16-canvas.pt

`--window=W` takes the image border and the coordinates away together, at the cost of a W-px
canvas per step: each image is pasted at its own random place in a W-px window of its background
(its centre uniform over the window, cut at the window's edge) and MS-PE lies on the window's
grid, so no position, relative to border or coordinates, is where digits belong. With
`--window-place=whole` each image lies whole inside its window (offsets in [0, W - R]), so no
window lacks its digit:

    python -m scripts.experiments.ddpm_train --pe=mspe --window=48 --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/mspe-window48 --export=results/models/ddpm-mspe-window48.pt
    python -m scripts.experiments.ddpm_train --pe=none --window=48 --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/none-window48 --export=results/models/ddpm-none-window48.pt
    python -m scripts.experiments.ddpm_train --pe=mspe --window=64 --window-place=whole --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/mspe-window64whole --export=results/models/ddpm-mspe-window64whole.pt
    python -m scripts.experiments.ddpm_train --pe=none --window=64 --window-place=whole --steps=3500 --batch=32 --max-images=8000 --outdir=runs/ddpm/none-window64whole --export=results/models/ddpm-none-window64whole.pt

(the committed margin models; their runs read a copy of datasets/mnist-ul32.zip whose first 8000
images are byte-identical, which is why their configs name another path).

Outputs in --outdir: log.txt, checkpoint.pt, final.pt (EMA weights + config), samples.png.
"""

import copy
import io
import json
import os
import time
import zipfile

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from scripts.experiments import digits as dg

FORMAT = 'mspe-ddpm-v1'

#----------------------------------------------------------------------------
# Model and data (also used by ddpm_reconstruct.py).

def build_unet(config):
    """The diffusers UNet2DModel of `config`, MS-PE attached when config['pe'] == 'mspe'.

    :param config: dict(resolution, channels, layers, pe, gamma_init, pe_base).
    :return: the UNet (with `unet.mspe` for 'mspe').
    """
    from diffusers import UNet2DModel
    levels = len(config['channels'])
    unet = UNet2DModel(
        sample_size=config['resolution'], in_channels=3, out_channels=3,
        block_out_channels=tuple(config['channels']), layers_per_block=config['layers'],
        down_block_types=('DownBlock2D',) * levels, up_block_types=('UpBlock2D',) * levels,
        norm_num_groups=8)
    if config['pe'] == 'mspe':
        from mspe_plugin.diffusion import attach
        attach(unet, image_size=config['resolution'], gamma_init=config['gamma_init'], base=config['pe_base'])
    return unet

def build_scheduler():
    """The DDPM forward / reverse process: 1000 steps, linear betas 1e-4 .. 0.02, epsilon prediction."""
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', beta_start=1e-4, beta_end=0.02,
                         prediction_type='epsilon', clip_sample=True)

def load_zip_images(path, start=0, stop=None):
    """Images (uint8 [N, 3, H, W]) and labels (int64 [N], -1 when unlabelled) of a dataset zip, in
    file-name order, entries [start, stop)."""
    if not os.path.isfile(path):
        raise click.ClickException(f'Dataset {path} does not exist: build it with stylegan2_ada_vendor/dataset_tool.py.')
    try:
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if os.path.splitext(n)[1].lower() == '.png')[start:stop]
            labels = {}
            if 'dataset.json' in z.namelist():
                labels = dict(json.loads(z.read('dataset.json')).get('labels') or [])
            images = [np.asarray(PIL.Image.open(io.BytesIO(z.read(n))).convert('RGB')) for n in names]
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise click.ClickException(f'Cannot read dataset {path} ({err}): rebuild it with dataset_tool.py.')
    if not images:
        raise click.ClickException(f'Dataset {path} holds no PNG images in the range [{start}, {stop}).')
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([int(labels.get(n, -1)) for n in names], dtype=torch.int64)
    return images, labels

def to_float(images):
    """uint8 [N, 3, H, W] -> float32 in [-1, 1]."""
    return images.to(torch.float32) / 127.5 - 1

def to_uint8(x):
    """float in [-1, 1] -> uint8 (clamped)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

def save_grid(images, rows, path):
    """Save uint8 [N, 3, H, W] as a PNG grid of `rows` rows."""
    n, c, h, w = images.shape
    cols = (n + rows - 1) // rows
    grid = torch.zeros([rows * cols, c, h, w], dtype=torch.uint8)
    grid[:n] = images
    grid = grid.reshape(rows, cols, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, c)
    PIL.Image.fromarray(grid.numpy()).save(path)

@torch.no_grad()
def reverse_process(unet, scheduler, x, t_start, stride, generator):
    """Ancestral (stochastic) DDPM decoding of x_t at t = t_start down to x_0, on the strided
    timesteps t_start, t_start - stride, ..., 0 (the DDPM posterior between them)."""
    timesteps = list(range(t_start, -1, -stride))
    if timesteps[-1] != 0:
        timesteps.append(0)
    scheduler.set_timesteps(timesteps=timesteps)
    for t in scheduler.timesteps:
        eps = unet(x, t.to(x.device).expand(x.shape[0])).sample
        x = scheduler.step(eps, int(t), x, generator=generator).prev_sample
    return x

def background(x):
    """Per image and channel, the median of the outer one-pixel ring of x [N, C, H, W]: [N, C, 1, 1]."""
    ring = torch.cat([x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], dim=-1)
    return ring.median(dim=-1).values[..., None, None]

def extend_canvas(x, offset, margin):
    """The randomly extended training canvas of Fig. 9's models (no border cue at a fixed distance).

    x [N, C, R, R] is pasted at `offset` = (top, left) into a canvas R + margin pixels high and wide,
    filled with each image's background; the returned Canvas puts the pasted image's pixel (0, 0)
    at coordinate 0, so an MS-PE encoding stays attached to the content while the border moves.
    :return: (extended images [N, C, R + margin, R + margin], mspe_plugin.encoding.Canvas).
    """
    from mspe_plugin.encoding import Canvas
    top, left = (int(v) for v in offset)
    if not (0 <= top <= margin and 0 <= left <= margin):
        raise ValueError(f'offset {offset} must lie in [0, {margin}] on both axes.')
    n, c, h, w = x.shape
    out = background(x).expand(n, c, h + margin, w + margin).clone()
    out[:, :, top:top + h, left:left + w] = x
    return out, Canvas(origin=(-top, -left), size=(h + margin, w + margin))

def place_in_window(x, window, generator, place='centre'):
    """The random-window training canvas: each image of x [N, C, R, R] is pasted at its own random
    offset (top, left) into a window x window canvas of its background. place='centre' draws each
    offset from [-R/2, window - R/2] and cuts the image where it leaves the window: the image's
    centre is uniform over the window, and so is any content of it, wherever the dataset keeps it.
    place='whole' draws it from [0, window - R], so the image always lies whole inside (no window
    without its content). Either way neither the window's border nor its coordinates say where
    content belongs.
    :return: float [N, C, window, window].
    """
    n, c, h, w = x.shape
    out = background(x).expand(n, c, window, window).clone()
    low, high = (-(h // 2), window - h // 2) if place == 'centre' else (0, window - h)
    offsets = torch.randint(low, high + 1, [n, 2], generator=generator).tolist()
    for i, (top, left) in enumerate(offsets):
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + h, window), min(left + w, window)
        out[i, :, y0:y1, x0:x1] = x[i, :, y0 - top:y1 - top, x0 - left:x1 - left]
    return out

def check_margin(resolution, channels, margin, option='--margin'):
    """Raise click.BadParameter (for `option`) unless the UNet with `channels` per level can
    downsample a canvas of resolution + margin pixels."""
    multiple = 2 ** (len(channels) - 1)
    if (resolution + margin) % multiple != 0:
        raise click.BadParameter(f'the extended canvas {resolution} + {margin} must be a multiple of {multiple} '
                                 f'(the UNet downsamples {len(channels) - 1} times): choose another margin.', param_hint=option)

def load_model(path, device='cpu'):
    """The EMA UNet of a final.pt / checkpoint.pt of this script (eval mode) and its config."""
    try:
        data = torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise click.ClickException(f'Cannot load DDPM checkpoint {path} ({err}): pass a final.pt written by ddpm_train.py.')
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise click.ClickException(f'{path} is not a checkpoint of scripts/experiments/ddpm_train.py: pass its final.pt.')
    unet = build_unet(data['config'])
    unet.load_state_dict(data['ema'])
    return unet.to(device).eval(), data['config'], data['step']

#----------------------------------------------------------------------------

def _save_atomic(obj, path):
    tmp = path + '.tmp'
    torch.save(obj, tmp)
    os.replace(tmp, path)

def _log(outdir, text):
    print(text, flush=True)
    with open(os.path.join(outdir, 'log.txt'), 'a') as f:
        f.write(text + '\n')

def _update_ema(ema, model, step, decay):
    beta = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1 - beta)

@click.command()
@click.option('--data', default='datasets/mnist-ul32.zip', show_default=True, help='Dataset zip (dataset_tool.py output)')
@click.option('--pe', type=click.Choice(['none', 'mspe']), required=True, help='Baseline or MS-PE')
@click.option('--steps', type=click.IntRange(min=1), default=7000, show_default=True, help='Training steps in total')
@click.option('--outdir', required=True, help='Run folder (resumed when it holds checkpoint.pt)')
@click.option('--export', default=None, help='Also copy final.pt here (must not exist yet)')
@click.option('--batch', type=click.IntRange(min=1), default=64, show_default=True, help='Batch size')
@click.option('--lr', type=float, default=1e-3, show_default=True, help='Adam learning rate (linear warm-up over 200 steps)')
@click.option('--channels', default='16,32,64', show_default=True, help='UNet widths per level')
@click.option('--layers', type=click.IntRange(min=1), default=1, show_default=True, help='ResNet layers per level')
@click.option('--gamma-init', type=float, default=1.0, show_default=True, help='Initial MS-PE gammas')
@click.option('--ema', 'ema_decay', type=float, default=0.999, show_default=True, help='EMA decay')
@click.option('--snap', type=click.IntRange(min=1), default=250, show_default=True, help='Checkpoint every N steps')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of weights, batches and noise')
@click.option('--threads', type=click.IntRange(min=1), default=1, show_default=True, help='CPU threads')
@click.option('--max-images', type=click.IntRange(min=1), default=None, help='Use the first N images only')
@click.option('--margin', type=click.IntRange(min=0), default=0, show_default=True,
              help='Train on canvases extended by M background pixels, split at random between the sides each step (0 = the plain images)')
@click.option('--margin-pe', type=click.Choice(['content', 'canvas']), default='content', show_default=True,
              help='With --margin: MS-PE coordinates stay on the content, or on the extended canvas (content at random coordinates)')
@click.option('--window', type=click.IntRange(min=0), default=0, show_default=True,
              help='Train on W-px windows, each image at its own random place in its window (0 = off; not with --margin)')
@click.option('--window-place', type=click.Choice(['centre', 'whole']), default='centre', show_default=True,
              help='With --window: the image centre uniform over the window (cut at its edge), or the image always whole inside')
def main(data, pe, steps, outdir, export, batch, lr, channels, layers, gamma_init, ema_decay, snap, seed, threads, max_images, margin, margin_pe, window,
         window_place):
    """Train the baseline or MS-PE DDPM of Fig. 9 (see the module docstring)."""
    torch.set_num_threads(threads)
    device = dg.pick_device()
    try:
        channel_list = [int(c) for c in channels.split(',')]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers, got {channels!r}.', param_hint='--channels')
    if export is not None and os.path.exists(export):
        raise click.ClickException(f'{export} exists already: remove it or choose another --export path.')
    images, _ = load_zip_images(data, stop=max_images)
    resolution = images.shape[-1]
    check_margin(resolution, channel_list, margin)
    if window:
        if margin:
            raise click.BadParameter('--window replaces --margin: give one of them.', param_hint='--window')
        if window < resolution:
            raise click.BadParameter(f'the window must hold a whole {resolution} px image: choose --window >= {resolution}.', param_hint='--window')
        check_margin(resolution, channel_list, window - resolution, option='--window')
    elif window_place != 'centre':
        raise click.BadParameter('--window-place applies to --window: give --window=W too.', param_hint='--window-place')
    config = dict(resolution=resolution, channels=channel_list, layers=layers, pe=pe, gamma_init=gamma_init,
                  pe_base=10000.0, batch=batch, lr=lr, ema=ema_decay, seed=seed, data=os.path.abspath(data),
                  num_images=len(images))
    if margin:
        config['margin'] = margin   # absent for margin 0: older checkpoints resume and load unchanged
        if margin_pe != 'content':
            config['margin_pe'] = margin_pe
    if window:
        config['window'] = window   # the encoding lies on the window's own grid
        if window_place != 'centre':
            config['window_place'] = window_place   # absent for 'centre': older checkpoints resume unchanged

    os.makedirs(outdir, exist_ok=True)
    ckpt_path = os.path.join(outdir, 'checkpoint.pt')
    torch.manual_seed(seed)     # same initial weights for both models
    model = build_unet(config).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)     # hooks follow the copy's own gammas
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = build_scheduler()
    gen = torch.Generator().manual_seed(seed)
    step = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if state.get('config') != config:
            raise click.ClickException(f'{outdir} holds a run with other options ({state.get("config")}): '
                                       f'use the same options to resume, or another --outdir.')
        model.load_state_dict(state['model'])
        ema.load_state_dict(state['ema'])
        opt.load_state_dict(state['opt'])
        gen.set_state(state['rng'].cpu())     # map_location moved it to the training device
        step = state['step']
        _log(outdir, f'Resumed from {ckpt_path} at step {step}.')
    else:
        _log(outdir, f'Config: {json.dumps(config)}')
        _log(outdir, f'Parameters: {sum(p.numel() for p in model.parameters())}, device {device}, threads {threads}.')

    x_all = to_float(images)
    alphas = scheduler.alphas_cumprod
    losses, t0 = [], time.time()
    model.train()
    while step < steps:
        idx = torch.randint(len(x_all), [batch], generator=gen)
        x0 = x_all[idx].to(device)
        canvas = None
        if margin:
            offset = torch.randint(0, margin + 1, [2], generator=gen).tolist()
            x0, canvas = extend_canvas(x0, offset, margin)
            if margin_pe == 'canvas':
                canvas = None       # the extended canvas's own grid: the content lands at random coordinates
        if window:
            x0 = place_in_window(x0, window, gen, window_place)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, [batch], generator=gen)
        a = alphas[t].to(device).view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise       # q(x_t | x_0)
        if pe == 'mspe':
            model.mspe.set_canvas(canvas)     # None = the input's own grid
        loss = F.mse_loss(model(xt, t.to(device)).sample, noise)
        for group in opt.param_groups:
            group['lr'] = lr * min(1.0, (step + 1) / 200)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        _update_ema(ema, model, step, ema_decay)
        losses.append(loss.item())
        if not np.isfinite(losses[-1]):
            raise click.ClickException(f'The loss became {losses[-1]} at step {step}: lower --lr and resume from the last checkpoint.')
        if step % 50 == 0 or step == steps:
            gammas = '' if pe == 'none' else ' gamma ' + ' '.join(f'{g:.3f}' for g in model.mspe.gamma.tolist())
            _log(outdir, f'step {step:6d} loss {np.mean(losses):.4f} sec/step {(time.time() - t0) / len(losses):.3f}{gammas}')
            losses, t0 = [], time.time()
        if step % snap == 0 or step == steps:
            _save_atomic(dict(format=FORMAT, config=config, step=step, model=model.state_dict(), ema=ema.state_dict(),
                              opt=opt.state_dict(), rng=gen.get_state()), ckpt_path)

    final_path = os.path.join(outdir, 'final.pt')
    _save_atomic(dict(format=FORMAT, config=config, step=step, ema=ema.state_dict()), final_path)
    sample_gen = torch.Generator().manual_seed(seed)
    side = window or resolution
    x = torch.randn([16, 3, side, side], generator=sample_gen).to(device)
    samples = reverse_process(ema, build_scheduler(), x, 999, 10, sample_gen)
    save_grid(to_uint8(samples.cpu()), 2, os.path.join(outdir, 'samples.png'))
    if export is not None:
        os.makedirs(os.path.dirname(os.path.abspath(export)), exist_ok=True)
        if os.path.exists(export):
            raise click.ClickException(f'{export} appeared during training: final weights are in {final_path}.')
        _save_atomic(torch.load(final_path, weights_only=False), export)
    _log(outdir, f'Done: {step} steps; EMA weights in {final_path}{f" and {export}" if export else ""}; samples.png.')

if __name__ == '__main__':
    main()
