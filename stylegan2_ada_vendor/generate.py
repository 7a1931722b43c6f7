"""Generate images with a trained generator (network pickle or weights-only file, path or URL).

    python generate.py --outdir=out --seeds=0-7,12 --network=network-snapshot-000200.pkl
    python generate.py --outdir=out --seeds=0-3 --trunc=0.7 --class=4 --network=cond.pkl --grid
    python generate.py --outdir=out --projected-w=projected_w.npz --network=net.pkl

Writes seed%04d.png per seed (proj%02d.png per projected w), and with --grid also grid.png.
Runs on CUDA when available, else on the CPU (--device to choose).

With mspe_plugin installed (its hook below) any generator renders on a canvas:
    python generate.py --outdir=out --seeds=0-3 --network=mspe.pkl --shift=0,8.5    # moved 8.5 px left
    python generate.py --outdir=out --seeds=0-3 --network=mspe.pkl --zoom=1.5       # 1.5x the size
    python generate.py --outdir=out --seeds=0-3 --network=mspe.pkl --extent=0:32,-16:48   # beyond the border
    python generate.py --outdir=out --seeds=0-3 --network=mspe.pkl --translate-strip=8,2.5
    python generate.py --outdir=out --seeds=0 --network=mspe.pkl --size=1024x4096 --tile=256   # memory of one tile
    python generate.py --outdir=out --seeds=0 --network=mspe.pkl --video=pan --zoom=2 --size=64x128 --frames=48
"""

import math
import os
import re
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
import legacy
from torch_utils import plugins

#----------------------------------------------------------------------------
# Arguments.

def num_range(text):
    """Parse '0-7,12' into [0, 1, ..., 7, 12] (ranges are inclusive, order is kept).

    :raises ValueError: with one sentence when `text` is not such a list.
    """
    values = []
    for part in str(text).split(','):
        part = part.strip()
        match = re.fullmatch(r'(\d+)\s*-\s*(\d+)', part)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if lo > hi:
                raise ValueError(f'range {part!r} runs backwards; write it as {hi}-{lo}.')
            values.extend(range(lo, hi + 1))
        elif re.fullmatch(r'\d+', part):
            values.append(int(part))
        else:
            raise ValueError(f'{text!r} is not a list of numbers and ranges; write e.g. 0-7,12.')
    return values

class SeedList(click.ParamType):
    """click type for --seeds: num_range, seeds in [0, 2^32)."""
    name = 'LIST'

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            seeds = num_range(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)
        too_big = [s for s in seeds if s >= 2 ** 32]
        if too_big:
            self.fail(f'seed {too_big[0]} is too large; seeds go from 0 to {2 ** 32 - 1}.', param, ctx)
        return seeds

def parse_device(text):
    """'auto' -> cuda when present else cpu; otherwise a torch device name (see plugins.parse_device)."""
    try:
        return plugins.parse_device(text)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--device')

PLUGIN = plugins.load_plugin_or_exit()     # None when mspe_plugin is not installed

def load_render_cli():
    """The plugin's tiled-image and video flags (mspe_plugin.render_cli), or None without the plugin."""
    if PLUGIN is None:
        return None
    from mspe_plugin import render_cli
    return render_cli

RENDER = load_render_cli()
RENDER_FLAGS = ('tile', 'video', 'video_path', 'video_out', 'fps', 'frames')

def plugin_options(fn):
    """The plugin's canvas flags (--shift --zoom --size --wrap --extent --translate-strip) and
    render flags (--tile --video --video-path --video-out --fps --frames), when installed."""
    if PLUGIN is None:
        return fn
    return PLUGIN.canvas_options(PLUGIN.translate_strip_option(RENDER.render_options(fn)))

#----------------------------------------------------------------------------
# Networks and images.

def load_generator(network, device):
    """G_ema of a network pickle or weights-only file (path or URL), on `device`, in eval mode.
    Every failure ends in a ClickException of one sentence."""
    if not dnnlib.util.is_url(network, allow_file_urls=True) and not os.path.isfile(network):
        raise click.ClickException(f'--network {network} does not exist; pass a network pickle or weights file (path or URL).')
    try:
        with dnnlib.util.open_url(network) as f:
            data = legacy.load_network_pkl(f)
    except (legacy.NetworkLoadError, OSError) as err:
        raise click.ClickException(str(err))
    G = data['G_ema']
    if G is None or not hasattr(G, 'mapping') or not hasattr(G, 'synthesis'):
        raise click.ClickException(f'{network} holds no generator (G_ema); pass a snapshot written by train.py.')
    return G.eval().requires_grad_(False).to(device)

def class_label(G, class_idx, device):
    """The conditioning label [1, c_dim] for `class_idx` (zeros [1, 0] for an unconditional G)."""
    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print('Warning: --class is ignored: this network is unconditional.')
        return label
    if class_idx is None:
        raise click.ClickException(f'This network is conditional ({G.c_dim} classes); pass --class=N with 0 <= N < {G.c_dim}.')
    if not 0 <= class_idx < G.c_dim:
        raise click.BadParameter(f'{class_idx} is out of range; this network has classes 0 to {G.c_dim - 1}.', param_hint='--class')
    label[:, class_idx] = 1
    return label

def synthesize(G, label, truncation_psi, noise_mode, z=None, ws=None, **synthesis_kwargs):
    """The one place where images are made: G(z, label, ...) from latents z [N, z_dim], or
    G.synthesis(ws, ...) from projected ws [N, num_ws, w_dim]. Extra keyword arguments (e.g. a
    plugin's canvas) go to the synthesis network. :return: float images [N, C, H, W], ~[-1, 1]."""
    if ws is not None:
        return G.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)
    return G(z, label, truncation_psi=truncation_psi, noise_mode=noise_mode, **synthesis_kwargs)

def to_uint8(img):
    """Float images [N, C, H, W] in [-1, 1] -> uint8 numpy [N, H, W, C]."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

def save_png(array, path):
    """Write uint8 [H, W, C] (C = 1, 3 or 4) as a PNG."""
    channels = array.shape[2]
    if channels == 1:
        PIL.Image.fromarray(array[:, :, 0], 'L').save(path)
    else:
        PIL.Image.fromarray(array, {3: 'RGB', 4: 'RGBA'}[channels]).save(path)

def image_grid(images):
    """Tile uint8 images [N, H, W, C] into one near-square grid (rows of ceil(sqrt(N)))."""
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros([rows * h, cols * w, c], dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return grid

def load_projected_w(path, G, device):
    """ws [N, num_ws, w_dim] from projector.py's projected_w.npz."""
    try:
        ws = np.load(path)['w']
    except (OSError, ValueError, KeyError) as err:
        raise click.ClickException(f'--projected-w {path} is not a projected_w.npz with a "w" array ({type(err).__name__}); '
                                   f'pass the file written by projector.py.')
    if ws.ndim == 2:
        ws = ws[np.newaxis]
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise click.ClickException(f'--projected-w {path} holds w of shape {list(ws.shape)}, but this network '
                                   f'takes [N, {G.num_ws}, {G.w_dim}]; pass a projection made with the same network.')
    return torch.tensor(ws, dtype=torch.float32, device=device)

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or weights file (path or URL)', required=True, metavar='PATH')
@click.option('--seeds', type=SeedList(), help='List of random seeds, e.g. 0-7,12')
@click.option('--trunc', 'truncation_psi', type=float, help='Truncation psi', default=1, show_default=True)
@click.option('--class', 'class_idx', type=int, help='Class label (conditional networks)')
@click.option('--noise-mode', help='Noise mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--projected-w', help='Projection result file (projector.py) to render instead of seeds', type=str, metavar='FILE')
@click.option('--outdir', help='Where to save the output images', type=str, required=True, metavar='DIR')
@click.option('--device', 'device_name', help='auto (cuda when present, else cpu), cpu, cuda, cuda:N', default='auto', show_default=True)
@click.option('--grid', is_flag=True, help='Also write grid.png with all images')
@click.option('--compile', 'compile_mode', help='Compiled G.synthesis (one fixed canvas only): auto, on, off', type=click.Choice(['auto', 'on', 'off']), default='auto', show_default=True)
@plugin_options
def generate_images(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device_name, grid,
                    compile_mode='auto', translate_strip=None, **canvas_flags):
    """Generate images using a pretrained network pickle (or weights-only file).

    \b
    Examples:
    python generate.py --outdir=out --trunc=1 --seeds=0-7 --network=network-snapshot-000200.pkl
    python generate.py --outdir=out --trunc=0.7 --seeds=0-3 --class=1 --grid --network=cond.pkl
    """
    if seeds is None and projected_w is None:
        raise click.UsageError('Pass --seeds (e.g. --seeds=0-7) or --projected-w.')
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f'{outdir} is a file; pass a folder (it is created when missing).', param_hint='--outdir')
    device = parse_device(device_name)
    print(f'Loading networks from "{network_pkl}"...')
    G = load_generator(network_pkl, device)
    synthesis_kwargs = {}   # Plugins add theirs here (they reach G.synthesis).
    strips = None           # Canvases of --translate-strip, one image each.
    render_flags = {name: canvas_flags.pop(name, None) for name in RENDER_FLAGS}
    canvas = tile = None
    if PLUGIN is not None:
        canvas = PLUGIN.canvas_from_options(**canvas_flags)
        canvas = PLUGIN.with_default_margin(G, canvas, canvas_flags.get('margin'))     # a margin-trained G: its margin
        strip = PLUGIN.parse_translate_strip(translate_strip)
        tile = render_flags['tile']
        if tile is not None or RENDER.wants_video(render_flags['video'], render_flags['video_path']):
            G = RENDER.tile_generator(G)    # margins (receptive radius) for tiles and frames
        elif canvas is not None or strip is not None:
            G = PLUGIN.with_canvas_support(G)
        synthesis_kwargs = PLUGIN.synthesis_kwargs(canvas)
        if strip is not None:
            strips = PLUGIN.strip_canvases(canvas, *strip)
        if RENDER.wants_video(render_flags['video'], render_flags['video_path']):
            write_videos(G, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device, canvas, canvas_flags, **render_flags)
            return

    if compile_mode != 'off':    # Not upstream: training/compiled.py (tiles and strips render many canvases: eager)
        if tile is None and strips is None:
            from training import compiled
            calls = len(seeds) if projected_w is None else 1    # projections: a handful of images
            try:
                compiled.compile_forward(G.synthesis, compile_mode, device, calls)
            except ValueError as err:
                raise click.ClickException(str(err))
        elif compile_mode == 'on':
            print('Compile: off (tiles and translate strips render many canvases, which would recompile)')

    def make_image(label, psi, z=None, ws=None):
        """uint8 [H, W, C]: one render, or --tile tiles of the canvas."""
        if tile is None:
            return to_uint8(synthesize(G, label, psi, noise_mode, z=z, ws=ws, **synthesis_kwargs))[0]
        return RENDER.render_tiled_image(G, RENDER.latent_ws(G, label, psi, z=z, ws=ws), canvas, tile, noise_mode)

    def write_strip(name, **latent):
        """<name>-strip.png: the latent rendered on every canvas of the strip, side by side."""
        frames = [to_uint8(synthesize(G, **latent, **PLUGIN.synthesis_kwargs(c)))[0] for c in strips]
        save_png(np.concatenate(frames, axis=1), os.path.join(outdir, f'{name}-strip.png'))

    if projected_w is not None:
        if seeds is not None:
            print('Warning: --seeds is ignored when --projected-w is given.')
        ws = load_projected_w(projected_w, G, device)
        os.makedirs(outdir, exist_ok=True)
        images = []
        with torch.no_grad():
            for idx, w in enumerate(ws):
                img = make_image(None, 1, ws=w.unsqueeze(0))
                save_png(img, os.path.join(outdir, f'proj{idx:02d}.png'))
                images.append(img)
                if strips is not None:
                    write_strip(f'proj{idx:02d}', label=None, truncation_psi=1, noise_mode=noise_mode, ws=w.unsqueeze(0))
    else:
        label = class_label(G, class_idx, device)
        os.makedirs(outdir, exist_ok=True)
        images = []
        with torch.no_grad():
            for seed_idx, seed in enumerate(seeds):
                print(f'Generating image for seed {seed} ({seed_idx}/{len(seeds)}) ...')
                z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device=device, dtype=torch.float32)
                torch.manual_seed(seed)     # noise_mode=random: the same seed gives the same image
                img = make_image(label, truncation_psi, z=z)
                save_png(img, os.path.join(outdir, f'seed{seed:04d}.png'))
                images.append(img)
                if strips is not None:
                    torch.manual_seed(seed)
                    write_strip(f'seed{seed:04d}', label=label, truncation_psi=truncation_psi, noise_mode=noise_mode, z=z)
    if grid:
        if len({img.shape for img in images}) != 1:
            raise click.ClickException('The images differ in size, so they cannot be tiled into grid.png.')
        save_png(image_grid(np.stack(images)), os.path.join(outdir, 'grid.png'))
    extras = (' and grid.png' if grid else '') + (f' and {len(images)} translate strip(s)' if strips is not None else '')
    print(f'Wrote {len(images)} image{"s" if len(images) != 1 else ""}{extras} to {outdir}.')

def write_videos(G, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device, canvas, canvas_flags,
                 tile=None, video=None, video_path=None, video_out=None, fps=24, frames=48):
    """--video / --video-path: one video per seed (or projected w), the camera moving over its canvas."""
    keys, size = RENDER.video_keyframes(G, canvas, canvas_flags, video, video_path)
    if projected_w is not None:
        if seeds is not None:
            print('Warning: --seeds is ignored when --projected-w is given.')
        all_ws = load_projected_w(projected_w, G, device)
        latents = [(f'proj{idx:02d}', w.unsqueeze(0)) for idx, w in enumerate(all_ws)]
    else:
        label = class_label(G, class_idx, device)
        latents = []
        for seed in seeds:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device=device, dtype=torch.float32)
            latents.append((f'seed{seed:04d}', RENDER.latent_ws(G, label, truncation_psi, z=z)))
    paths = RENDER.video_files(outdir, video_out, [name for name, _ in latents], video or 'path')
    wrap, margin = canvas_flags.get('wrap', False), canvas.margin if canvas is not None else 0
    RENDER.check_videos(paths, size, noise_mode)
    for (name, ws), path in zip(latents, paths):
        print(f'Rendering {frames} frames of {size[0]}x{size[1]} for {name} ...')
        RENDER.write_video(G, ws, path, keys, size, frames, fps, noise_mode, tile=tile, wrap=wrap, margin=margin)
    print(f'Wrote {len(paths)} video{"s" if len(paths) != 1 else ""}: {", ".join(paths)}.')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    generate_images()  # pylint: disable=no-value-for-parameter
