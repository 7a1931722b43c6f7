"""Project an image into the latent space of a pretrained generator.

    python projector.py --outdir=out --target=target.png --network=network-snapshot.pkl

Upstream StyleGAN2-ADA's projector (same flags, same optimisation: start at w_avg, Adam with a
learning-rate ramp, a decaying noise on w, optimised per-layer noise maps with a regulariser), on
CPU or GPU and for targets of any size. Additions:
  --w-plus           optimise one w per layer (W+) instead of one broadcast w (W);
  --loss             'lpips' (VGG16 features, the file upstream downloads), 'pixel' (pixel MSE plus
                     the MSE of a downsampled pyramid: needs nothing from the network), or 'auto':
                     LPIPS when its weights can be had, else 'pixel' with a one-line notice;
  --shift --zoom --size --wrap --extent
                     project onto that canvas (MS-PE / SS-PE / canvas-capable generators);
  --fit-canvas       find the canvas origin: a coarse global search (mspe_plugin.fit), then
                     origin and w refined jointly from the best few placements (restarts), then
                     the full run: unaligned targets need no alignment first;
  --fit-zoom         with --fit-canvas, also search and optimise the zoom;
  --fit-method       with --fit-canvas: 'search' (the above), 'anchor': the canvas on which the
                     generator's typical content frame (median centre and extent of its samples)
                     lands on the target's, then w projected on it (content on a plain background),
                     from the best of short runs that start at w_avg and at the samples nearest the
                     target on that canvas (restarts); or 'auto' (the default): anchor where the
                     target and the generator's samples are content on a plain background, else search.
The target is centre-cropped to the canvas' aspect ratio and resized to the canvas' size (the
training resolution when no canvas flag is given). Writes target.png, proj.png,
projected_w.npz (`w` [1, num_ws, w_dim] as upstream, plus the canvas and, with --fit-canvas, the
coarse search's best placement) and proj.mp4 (proj.gif without imageio-ffmpeg; with --fit-canvas
the target carries the box of the training grid on the canvas of that step).
"""

import copy
import dataclasses
import math
import os
import sys
import threading
import time
import warnings

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

import dnnlib
import legacy
from torch_utils import plugins

VGG16_URL = 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt'

#----------------------------------------------------------------------------
# Plugin hook (as train.py): canvas flags exist when mspe_plugin is importable.

PLUGIN = plugins.load_plugin_or_exit()     # None when mspe_plugin is not installed

def canvas_flags(fn):
    """Add the plugin's canvas flags (--shift --zoom --size --wrap --extent) when it is installed."""
    return PLUGIN.canvas_options(fn) if PLUGIN is not None else fn

#----------------------------------------------------------------------------
# Losses. Both take images [1, C, H, W] in [-1, 1] and return a scalar distance to the target.

class PyramidLoss:
    """Pixel MSE plus the MSE of every level of an average-pooled pyramid (down to `min_size`):
    coarse levels give smooth gradients for large misalignments, level 0 keeps the detail."""
    name = 'pixel + multi-scale MSE'

    def __init__(self, target, min_size=4):
        self.min_size = min_size
        self.targets = self.pyramid(target)

    def pyramid(self, img):
        levels = [img]
        while min(img.shape[2:]) >= 2 * self.min_size:
            img = F.adaptive_avg_pool2d(img, (img.shape[2] // 2, img.shape[3] // 2))
            levels.append(img)
        return levels

    def __call__(self, img):
        return sum(F.mse_loss(a, b) for a, b in zip(self.pyramid(img), self.targets))

class LPIPSLoss:
    """LPIPS distance with the TorchScript VGG16 that upstream's projector uses."""
    name = 'LPIPS-VGG16'

    def __init__(self, vgg16, target):
        self.vgg16 = vgg16
        self.target_features = self.features(target)

    def features(self, img):
        img = (img + 1) * 127.5                           # the detector takes [0, 255]
        if img.shape[1] == 1:
            img = img.repeat([1, 3, 1, 1])
        if img.shape[2] > 256:                            # as upstream: compare at <= 256 px
            img = F.interpolate(img, size=(256, max(round(256 * img.shape[3] / img.shape[2]), 1)), mode='area')
        return self.vgg16(img, resize_images=False, return_lpips=True)

    def __call__(self, img):
        return (self.features(img) - self.target_features).square().sum()

def load_vgg16(url, device, timeout=20):
    """The TorchScript VGG16 from `url` (or a local path) through dnnlib's download cache.

    :return: (module, None) or (None, reason). Gives up after `timeout` seconds, so an offline
        machine falls back quickly instead of retrying a download.
    """
    result = {}
    def fetch():
        try:
            with dnnlib.util.open_url(url, num_attempts=1, verbose=False) as f, warnings.catch_warnings():
                warnings.simplefilter('ignore', DeprecationWarning)     # TorchScript is the file's format
                result['module'] = torch.jit.load(f, map_location='cpu').eval()
        except BaseException as err:    # any failure means "not available": the caller falls back
            result['reason'] = (f'{type(err).__name__}: {err}'.strip().splitlines() or [''])[0][:400]
    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(timeout)
    if 'module' in result:
        return result['module'].to(device), None
    return None, result.get('reason', f'no answer within {timeout} s')

def make_loss(kind, target, device, vgg16_url=VGG16_URL, log=print):
    """The distance to `target` [1, C, H, W] in [-1, 1]: 'lpips', 'pixel', or 'auto' (LPIPS if the
    VGG16 weights load, else 'pixel' with a one-line notice)."""
    if kind not in ('auto', 'lpips', 'pixel'):
        raise ValueError(f'Unknown loss {kind!r}: choose auto, lpips or pixel.')
    if kind != 'pixel':
        vgg16, reason = load_vgg16(vgg16_url, device)
        if vgg16 is not None:
            return LPIPSLoss(vgg16, target)
        if kind == 'lpips':
            raise click.ClickException(f'The LPIPS weights could not be loaded from {vgg16_url} ({reason}); '
                                       f'pass --vgg16 PATH to a local vgg16.pt, or use --loss=pixel.')
        log(f'LPIPS unavailable ({reason}); using the offline loss: {PyramidLoss.name}.')
    return PyramidLoss(target)

#----------------------------------------------------------------------------

@dataclasses.dataclass
class Projection:
    """What project() found: ws after every step, the canvas after every step, the losses."""
    ws: torch.Tensor        # [num_steps, num_ws, w_dim] (W space: the same w in every row).
    canvases: list          # Canvas after every step (None everywhere without a canvas).
    losses: list            # Loss after every step (floats).
    loss_name: str          # Which distance was minimised.
    candidates: list = None # With fit_canvas: the coarse search's mspe_plugin.fit.Candidate list, best first.
    fit_method: str = None  # With fit_canvas: how the canvas was found, 'search' or 'anchor' (what 'auto' chose).

def _moved(canvas, img_resolution, origin, zoom):
    """`canvas` with another origin and zoom, keeping its output size (and wrap and margin)."""
    return dataclasses.replace(canvas, origin=tuple(float(v) for v in origin), size=canvas.output_size(img_resolution), zoom=float(zoom))

def _render(G, ws, canvas, noise_mode='const'):
    return G.synthesis(ws, noise_mode=noise_mode, **({} if canvas is None else {'canvas': canvas}))

def _noise_regularization(noise_bufs):
    """Squared autocorrelation (one-pixel lag, both axes) of every noise map at every octave."""
    reg = 0.0
    for buf in noise_bufs:
        noise = buf[None, None]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if min(noise.shape[2:]) <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg

def _search_latents(w_samples, labels, c_dim, count, w_avg):
    """The latents the canvas search scores with, [K, 1, w_dim]: the mean w of every class for a
    conditional G (the search also tells the class), else w_avg and `count - 1` samples pulled
    halfway to it (a few shapes, none far from typical)."""
    if c_dim > 0:
        return torch.stack([w_samples[labels == k].mean(dim=0) if bool((labels == k).any()) else w_avg[0] for k in range(c_dim)])
    return torch.cat([w_avg, w_avg.lerp(w_samples[1:count], 0.5)])

def project(
    G,                                  # Generator (G_ema), any StyleGAN2-ADA or mspe_plugin generator.
    target,                             # Target [C, H, W], values in [0, 255], H x W = the canvas' output size.
    *,
    num_steps               = 1000,     # Optimisation steps.
    w_avg_samples           = 10000,    # Samples of z for w_avg and w_std.
    initial_learning_rate   = 0.1,      # Peak learning rate of w (and noise).
    initial_noise_factor    = 0.05,     # Noise added to w at the start, times w_std.
    lr_rampdown_length      = 0.25,     # Fraction of the steps with a cosine ramp-down at the end.
    lr_rampup_length        = 0.05,     # Fraction of the steps with a linear ramp-up at the start.
    noise_ramp_length       = 0.75,     # Fraction of the steps over which the w noise decays to 0.
    regularize_noise_weight = 1e5,      # Weight of the noise-map regulariser.
    w_plus                  = False,    # Optimise one w per layer (W+) instead of one w (W)?
    canvas                  = None,     # mspe_plugin.encoding.Canvas to project onto, None = training grid.
    fit_canvas              = False,    # Also find the canvas origin (coarse search, then jointly with w)?
    fit_zoom                = False,    # Also find the canvas zoom (with fit_canvas)?
    origin_learning_rate    = 0.5,      # Peak learning rate of the origin (training pixels per step).
    zoom_learning_rate      = 0.02,     # Peak learning rate of log(zoom).
    search_radius           = None,     # Coarse search: origins within +- this many training pixels (None = R/2).
    search_step             = None,     # Coarse search: origin grid step, training pixels (None = R/8; fine level: 1/4 of it).
    search_zoom_range       = (0.5, 2.0),# Coarse search with fit_zoom: zooms in this range times canvas.zoom.
    search_latents          = 8,        # Coarse search, unconditional G: latents scored (w_avg and neighbours).
    search_top              = 3,        # Restarts: the best distinct canvases (anchor: w_avg and the nearest samples), each refined briefly.
    fit_method              = 'search', # With fit_canvas: 'search' (search, restarts, joint refinement), 'anchor' (below) or 'auto'.
    anchor_samples          = 1000,     # fit_method='anchor': samples of G whose median content frame is the typical one.
    restart_steps           = None,     # Steps of each restart (None = num_steps // 10, at least 10).
    final_canvas_lr_scale   = 0.25,     # Learning rates of origin and zoom in the full run after the restarts, times this.
    loss                    = 'auto',   # 'auto', 'lpips' or 'pixel' (see make_loss), or a callable.
    vgg16_url               = VGG16_URL,# TorchScript VGG16 for LPIPS (URL or path).
    seed                    = 303,      # Seed of w_avg sampling and the noise maps.
    device                  = None,     # torch.device, None = cuda when present, else cpu.
    log                     = None,     # Printer of one line per stage (e.g. print), None = silent.
    progress                = None,     # progress(step, num_steps, distance, canvas) after every step of the final run.
    compile_mode            = 'off',    # Not upstream: 'auto', 'on' or 'off', G.synthesis compiled (training/compiled.py).
):
    """Find ws (and the canvas) whose image matches `target`. Returns a Projection.

    With fit_canvas the canvas is found in three stages: a coarse global search over origin (and
    zoom) that scores a few latents on every placement (mspe_plugin.fit.search_canvas; for a
    conditional G one latent per class, so it also picks the class to start from); short joint
    refinements of origin, zoom and w from the `search_top` best placements (restarts); the full
    run from the best of them. Origin and zoom are optimised as the training point seen at the
    target's content centre and log(zoom), so a zoom update scales the content in place.

    With fit_method='anchor' the canvas is instead the one on which G's typical content frame
    (the median centre and extent of `anchor_samples` samples on the training grid) lands on the
    target's content frame (mspe_plugin.fit.anchor_canvas): the alignment G learned from its
    data, for content on a plain background. The target's frame counts its outermost pixels, and
    content that reaches its edge is taken to go on beyond it by at most fit.EDGE_REACH pixels
    (the crossings of its profile extrapolated). w is then projected on that canvas, which stays put,
    from the best of short runs from w_avg and the `search_top` - 1 samples whose renderings on
    that canvas come closest to the target (restarts). fit_method='auto' anchors when the target
    and G's typical sample are both content on a plain background (mspe_plugin.fit.background_share
    at least fit.PLAIN_SHARE), and searches otherwise.
    """
    log = log or (lambda *args: None)
    device = torch.device(device) if device is not None else plugins.default_device()
    if fit_zoom and not fit_canvas:
        raise ValueError('fit_zoom needs fit_canvas.')
    if fit_method not in ('search', 'anchor', 'auto'):
        raise ValueError(f"fit_method must be 'search', 'anchor' or 'auto', got {fit_method!r}.")
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    R = G.img_resolution
    if fit_canvas:
        from mspe_plugin import fit, register
        from mspe_plugin.encoding import Canvas, FittedCanvas
        canvas = Canvas() if canvas is None else canvas
        G = register.with_canvas_support(G)     # a plain generator: the baseline variant reads its constant on the canvas
    if compile_mode != 'off':
        from training import compiled
        if fit_canvas:
            log('Compile: off (--fit-canvas moves the canvas every step, which would recompile)')
        else:
            compiled.compile_forward(G.synthesis, compile_mode, device, num_steps, log=log)
    out_size = canvas.output_size(R) if canvas is not None else (R, R)
    if tuple(target.shape) != (G.img_channels, *out_size):
        raise ValueError(f'target has shape {tuple(target.shape)}; expected {(G.img_channels, *out_size)}.')
    target_images = target.to(device, torch.float32).unsqueeze(0) / 127.5 - 1
    loss_fn = loss if callable(loss) else make_loss(loss, target_images, device, vgg16_url, log=log)

    # W statistics.
    rnd = np.random.RandomState(seed)
    z = torch.from_numpy(rnd.randn(w_avg_samples, G.z_dim)).to(device, torch.float32)
    c = torch.zeros([w_avg_samples, G.c_dim], device=device)
    labels = torch.from_numpy(rnd.randint(max(G.c_dim, 1), size=w_avg_samples)).to(device)
    if G.c_dim > 0:     # a conditional G: w statistics over every class, each drawn equally often
        c[torch.arange(w_avg_samples), labels] = 1
    with torch.no_grad():
        w_samples = torch.cat([G.mapping(z[i:i + 1000], c[i:i + 1000])[:, :1, :] for i in range(0, w_avg_samples, 1000)])
    w_avg = w_samples.mean(dim=0, keepdim=True)                                   # [1, 1, C]
    w_std = float((w_samples - w_avg).square().sum() / w_avg_samples) ** 0.5
    num_ws = G.num_ws
    noise_bufs = [buf for name, buf in G.synthesis.named_buffers() if 'noise_const' in name]
    def over_samples(fn, count, cv):
        """fn(images) of the first `count` w samples rendered on `cv`, 100 at a time, concatenated."""
        with torch.no_grad():
            return torch.cat([fn(_render(G, w_samples[i:min(i + 100, count)].expand([-1, num_ws, -1]), cv)) for i in range(0, count, 100)])

    if fit_canvas and fit_method == 'auto':
        shares = float(fit.background_share(target_images)[0]), float(over_samples(fit.background_share, min(100, w_avg_samples), None).median())
        fit_method = 'anchor' if min(shares) >= fit.PLAIN_SHARE else 'search'
        log(f'fit method auto: {fit_method} ({shares[0]:.2f} of the target\'s pixels and {shares[1]:.2f} of a typical sample\'s '
            f'are plain background; anchoring needs {fit.PLAIN_SHARE:g} of both)')
    moving = fit_canvas and fit_method == 'search'     # the canvas is optimised together with w
    pivot = torch.tensor(fit.content_centre(target_images), dtype=torch.float64, device=device) if moving else None

    def run(steps, origin0, zoom0, w0, record, canvas_lr_scale=1.0):
        """One Adam run from w0 [1, 1, C] at (origin0, zoom0) -> (losses, ws per step, canvas per
        step, final (origin, zoom, w)); ws and canvases per step only when `record`."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for buf in noise_bufs:
                buf.copy_(torch.randn(buf.shape, generator=gen).to(device))
                buf.requires_grad = True
        w_opt = w0.repeat([1, num_ws // w0.shape[1] if w_plus else 1, 1]).clone().requires_grad_(True)
        groups = [dict(params=[w_opt] + noise_bufs, base_lr=initial_learning_rate)]
        cv = None
        if canvas is not None:
            log_zoom = torch.tensor(math.log(zoom0), dtype=torch.float64, device=device, requires_grad=fit_zoom and moving)
            origin = torch.tensor(origin0, dtype=torch.float64, device=device)
            # The training point at the content centre: zooming about it keeps the content in place.
            anchor = (origin + pivot / log_zoom.detach().exp()).requires_grad_(True) if moving else None
            place = lambda: anchor - pivot / log_zoom.exp()
            cv = FittedCanvas(canvas, R, place(), log_zoom) if moving else _moved(canvas, R, origin0, zoom0)
            if moving:
                groups.append(dict(params=[anchor], base_lr=origin_learning_rate * canvas_lr_scale))
            if fit_zoom and moving:
                groups.append(dict(params=[log_zoom], base_lr=zoom_learning_rate * canvas_lr_scale))
        optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), lr=initial_learning_rate)
        losses, ws_steps, canvases = [], [], []
        for step in range(steps):
            t = step / steps
            w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
            lr_ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
            lr_ramp = (0.5 - 0.5 * math.cos(lr_ramp * math.pi)) * min(1.0, t / lr_rampup_length)
            for group in optimizer.param_groups:
                group['lr'] = group['base_lr'] * lr_ramp
            if moving:
                cv.origin = place()
            ws = (w_opt + torch.randn_like(w_opt) * w_noise_scale).expand([1, num_ws, -1])
            dist = loss_fn(_render(G, ws, cv))
            total = dist + regularize_noise_weight * _noise_regularization(noise_bufs)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            with torch.no_grad():                          # keep the noise maps N(0, 1)
                for buf in noise_bufs:
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()
            losses.append(float(dist.detach()))
            if moving:
                cv.origin = place()
            if record:
                ws_steps.append(w_opt.detach().expand([1, num_ws, -1])[0].cpu().clone())
                canvases.append(cv.frozen() if moving else cv)
                if progress is not None:
                    progress(step + 1, steps, losses[-1], canvases[-1])
                elif step % max(num_steps // 20, 1) == 0 or step == steps - 1:
                    log(f'step {step + 1:>4d}/{steps}: dist {losses[-1]:<6.4f} loss {float(total.detach()):<6.4f}')
        final = cv.frozen() if moving else cv
        return losses, ws_steps, canvases, (final.origin if final is not None else None, final.zoom if final is not None else None, w_opt.detach())

    def restart(starts):
        """Short runs from every (origin, zoom, w) of `starts` -> (steps, the runs, index of the best,
        its final (origin, zoom, w) to continue from)."""
        short = restart_steps if restart_steps is not None else max(num_steps // 10, 10)
        finals = [run(short, *start, record=False) for start in starts]
        best = int(np.argmin([f[0][-1] for f in finals]))
        origin, zoom, w = finals[best][3]
        return short, finals, best, (origin, zoom, w if w_plus else w[:, :1])

    origin0, zoom0, w0 = (tuple(canvas.origin), float(canvas.zoom), w_avg) if canvas is not None else ((0.0, 0.0), 1.0, w_avg)
    if fit_canvas and fit_method == 'anchor':
        start = time.time()
        count = min(int(anchor_samples), w_avg_samples)
        frames = over_samples(fit.content_frame, count, None)
        typical = fit.typical_frame(frames)
        found = fit.anchor_canvas(canvas, R, fit.content_frame(target_images, keep_ring=True)[0], typical, fit_zoom=fit_zoom)
        candidates = [fit.Candidate(origin=found.origin, zoom=found.zoom, latent=-1, score=float('nan'))]
        origin0, zoom0 = found.origin, found.zoom
        log(f'anchor: typical frame of {len(frames)} samples: centre ({typical[0]:.2f}, {typical[1]:.2f}), extent {typical[2]:.2f} '
            f'training pixels; canvas origin ({origin0[0]:.2f}, {origin0[1]:.2f}) zoom {zoom0:.3f} ({time.time() - start:.1f} s)')
        if bool(fit.touches_frame(target_images)[0]):
            log(f'anchor: the target\'s content reaches its edge; its frame is taken to go on at most {fit.EDGE_REACH:g} px beyond it, '
                'so if more is cut off there, the canvas is partial')
        if search_top > 1:    # restarts: w_avg and the samples that, drawn on the anchored canvas, come closest to the target
            dists = over_samples(lambda img: (img - target_images).square().flatten(1).mean(dim=1), count, _moved(canvas, R, origin0, zoom0))
            starts = [w_avg] + [w_samples[int(i)][None] for i in dists.argsort()[:search_top - 1]]
            short, finals, best, (_, _, w0) = restart([(origin0, zoom0, w) for w in starts])
            log(f'restarts: w_avg and the {len(starts) - 1} nearest samples on that canvas, {short} steps each, distances '
                + ' '.join(f'{f[0][-1]:.4f}' for f in finals) + f'; continuing from #{best + 1}')
    elif fit_canvas:
        start = time.time()
        latents = _search_latents(w_samples[:, 0], labels, G.c_dim, search_latents, w_avg[0])[:, None, :]     # [K, 1, C]
        candidates = fit.search_canvas(lambda ws, cv: _render(G, ws, cv), latents.expand([-1, num_ws, -1]), target_images,
                                       canvas, R, radius=search_radius, step=search_step,
                                       zoom_range=search_zoom_range if fit_zoom else None, num_refined=search_top)
        what = 'class' if G.c_dim > 0 else 'latent'
        log(f'coarse search: {fit.describe(candidates[0]).replace("latent", what)} ({time.time() - start:.1f} s)')
        starts = [(cand.origin, cand.zoom, latents[cand.latent:cand.latent + 1]) for cand in candidates[:search_top]]
        if len(starts) > 1:
            short, finals, best, (origin0, zoom0, w0) = restart(starts)
            log(f'restarts: {len(starts)} x {short} steps, distances ' + ' '.join(f'{f[0][-1]:.4f}' for f in finals)
                + f'; continuing from #{best + 1} at origin ({origin0[0]:.2f}, {origin0[1]:.2f}) zoom {zoom0:.3f}')
        else:
            origin0, zoom0, w0 = starts[0]
    else:
        candidates = None
    # After the search the canvas is close: the full run moves it slowly, so w (which can shift a
    # digit a little too) does not drag it along while it learns the details.
    losses, ws_steps, canvases, _ = run(num_steps, origin0, zoom0, w0, record=True, canvas_lr_scale=final_canvas_lr_scale if moving else 1.0)
    return Projection(ws=torch.stack(ws_steps), canvases=canvases, losses=losses, candidates=candidates,
                      loss_name=loss_fn.name if hasattr(loss_fn, 'name') else 'custom', fit_method=fit_method if fit_canvas else None)

#----------------------------------------------------------------------------
# Command line.

def load_target(path, size, channels):
    """The image at `path`, centre-cropped to the aspect of `size` (H, W) and resized to it, as a
    uint8 array [H, W, channels]. A missing or unreadable file raises click.ClickException."""
    if not os.path.isfile(path):
        raise click.ClickException(f'--target {path} does not exist; pass the path of an image file.')
    try:
        img = PIL.Image.open(path)
        img.load()
    except (PIL.UnidentifiedImageError, OSError, ValueError):
        raise click.ClickException(f'--target {path} is not an image that Pillow can read; pass a PNG or JPEG file.')
    if channels not in (1, 3):
        raise click.ClickException(f'The network draws {channels}-channel images; the projector handles 1 (grey) or 3 (RGB).')
    img = img.convert('RGB' if channels == 3 else 'L')
    height, width = size
    w, h = img.size
    if w * height > h * width:              # too wide: crop the sides
        crop = max(round(h * width / height), 1)
        box = ((w - crop) // 2, 0, (w - crop) // 2 + crop, h)
    else:                                   # too tall: crop top and bottom
        crop = max(round(w * height / width), 1)
        box = (0, (h - crop) // 2, w, (h - crop) // 2 + crop)
    img = img.crop(box).resize((width, height), PIL.Image.LANCZOS)
    return np.asarray(img, dtype=np.uint8).reshape(height, width, channels)

def to_uint8(img):
    """[N, C, H, W] in [-1, 1] -> uint8 numpy [N, H, W, C]."""
    return (img.detach() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

def save_image(array, path):
    """Save uint8 [H, W, C] (C = 1 or 3) as a PNG."""
    PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, 'L' if array.shape[2] == 1 else 'RGB').save(path)

def parse_device(text):
    """'auto' -> cuda when present else cpu; otherwise a torch device name (see plugins.parse_device)."""
    try:
        return plugins.parse_device(text)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint='--device')

def video_writer_available():
    """Whether imageio with its ffmpeg backend is installed (needed for --save-video)."""
    try:
        import imageio          # noqa: F401
        import imageio_ffmpeg   # noqa: F401
    except ImportError:
        return False
    return True

def canvas_box(canvas, img_resolution):
    """(top, left, bottom, right) output pixels where the training grid [0, R)^2 lies on `canvas`:
    training pixel x is output pixel zoom * (x - origin)."""
    (oy, ox), zoom = canvas.origin, canvas.zoom
    return (-oy * zoom, -ox * zoom, (img_resolution - oy) * zoom, (img_resolution - ox) * zoom)

def fit_frame(target_uint8, frame_uint8, canvas, img_resolution, scale=4):
    """One video frame: target | projection, `scale` times enlarged, the target overlaid with the
    box of the training grid on the current canvas (it moves and grows as the fit goes)."""
    import PIL.ImageDraw
    panels = [np.repeat(np.repeat(img, scale, axis=0), scale, axis=1).repeat(3 // img.shape[2], axis=2) for img in (target_uint8, frame_uint8)]
    image = PIL.Image.fromarray(np.concatenate(panels, axis=1), 'RGB')
    if canvas is not None:
        top, left, bottom, right = (v * scale for v in canvas_box(canvas, img_resolution))
        PIL.ImageDraw.Draw(image).rectangle([left, top, right - 1, bottom - 1], outline=(255, 255, 0))
    return np.asarray(image)

def write_video(path_stem, frames, fps=10):
    """Write frames (uint8 [H, W, 3]) as path_stem.mp4 with imageio-ffmpeg when installed, else as
    path_stem.gif with Pillow. Returns the path written."""
    if video_writer_available():
        import imageio
        with imageio.get_writer(path_stem + '.mp4', mode='I', fps=fps, codec='libx264', bitrate='16M') as video:
            for frame in frames:
                video.append_data(frame)
        return path_stem + '.mp4'
    images = [PIL.Image.fromarray(frame, 'RGB') for frame in frames]
    images[0].save(path_stem + '.gif', save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path_stem + '.gif'

def print_progress(step, num_steps, distance, canvas):
    """Progress on one line: step, distance and (when fitted) the canvas, rewritten in place on a
    terminal; into a file or pipe, one such line per tenth of the run."""
    where = '' if canvas is None else f' origin ({canvas.origin[0]:6.2f}, {canvas.origin[1]:6.2f}) zoom {canvas.zoom:.3f}'
    line = f'step {step:>4d}/{num_steps}: dist {distance:<7.4f}{where}'
    if sys.stdout.isatty():
        print('\r' + line, end='\n' if step == num_steps else '', flush=True)
    elif step == num_steps or step % max(num_steps // 10, 1) == 0:
        print(line, flush=True)

def load_generator(network_pkl, device):
    """G_ema of a snapshot pickle (path or URL); a failure ends in one sentence."""
    if '://' not in network_pkl and not os.path.isfile(network_pkl):
        raise click.ClickException(f'--network {network_pkl} does not exist; pass a network-snapshot-*.pkl file.')
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            G = legacy.load_network_pkl(f)['G_ema']
    except legacy.NetworkLoadError as err:      # already one sentence naming the file
        raise click.ClickException(str(err))
    except Exception as err:
        raise click.ClickException(f'Could not load a generator from {network_pkl} ({type(err).__name__}: {err}); '
                                   f'pass a StyleGAN2-ADA network pickle.')
    if G is None or not hasattr(G, 'synthesis'):
        raise click.ClickException(f'{network_pkl} holds no generator (G_ema); pass a StyleGAN2-ADA network pickle.')
    return G.eval().requires_grad_(False).to(device)

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename', required=True)
@click.option('--target', 'target_fname', help='Target image file to project to', required=True, metavar='FILE')
@click.option('--num-steps', help='Number of optimization steps', type=click.IntRange(min=1), default=1000, show_default=True)
@click.option('--seed', help='Random seed', type=int, default=303, show_default=True)
@click.option('--save-video', help='Save a video of optimization progress (mp4 with imageio-ffmpeg, else GIF)', type=bool, default=True, show_default=True)
@click.option('--outdir', help='Where to save the output images', required=True, metavar='DIR')
@click.option('--compile', 'compile_mode', help='Compiled G.synthesis: auto, on, off', type=click.Choice(['auto', 'on', 'off']), default='auto', show_default=True)
@click.option('--device', 'device_name', help='auto (cuda when present, else cpu), cpu, cuda, cuda:N', default='auto', show_default=True)
@click.option('--w-plus', help='Optimise one w per layer (W+) instead of one broadcast w (W)', is_flag=True)
@click.option('--loss', 'loss_kind', help='Distance: LPIPS, pixel + multi-scale MSE, or auto (LPIPS when its weights load)',
              type=click.Choice(['auto', 'lpips', 'pixel']), default='auto', show_default=True)
@click.option('--vgg16', 'vgg16_url', help='URL or local path of the TorchScript VGG16 for LPIPS', default=VGG16_URL, metavar='URL')
@click.option('--fit-canvas', help='Find the canvas origin (coarse search, restarts, joint refinement with w)', is_flag=True)
@click.option('--fit-zoom', help='With --fit-canvas: also find the zoom (searched over 0.5x..2x)', is_flag=True)
@click.option('--fit-method', help='With --fit-canvas: search (coarse search, restarts, joint refinement), anchor (the canvas on which '
              'G\'s typical content frame lands on the target\'s; content on a plain background), or auto: anchor where the target '
              'and G\'s samples are content on a plain background, else search  [default: auto]',
              type=click.Choice(['auto', 'search', 'anchor']), default=None)
@canvas_flags
def run_projection(network_pkl, target_fname, num_steps, seed, save_video, outdir, device_name, w_plus,
                   loss_kind, vgg16_url, fit_canvas, fit_zoom, fit_method=None, compile_mode='auto', **canvas_kwargs):
    """Project given image to the latent space of pretrained network pickle.

    Example:

    \b
    python projector.py --outdir=out --target=~/mytargetimg.png \\
        --network=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl

    On an MS-PE network, an unaligned target: add --fit-canvas (and --fit-zoom).
    """
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = parse_device(device_name)
    if fit_zoom and not fit_canvas:
        raise click.BadParameter('--fit-zoom works together with --fit-canvas; add --fit-canvas.', param_hint='--fit-zoom')
    if fit_method is not None and not fit_canvas:
        raise click.BadParameter('--fit-method chooses how --fit-canvas finds the canvas; add --fit-canvas.', param_hint='--fit-method')
    fit_method = fit_method or 'auto'
    if fit_canvas and PLUGIN is None:
        raise click.ClickException('--fit-canvas needs the mspe plugin: pip install -e ' + os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    canvas = PLUGIN.canvas_from_options(**canvas_kwargs) if PLUGIN is not None else None
    if not os.path.isfile(target_fname):
        raise click.ClickException(f'--target {target_fname} does not exist; pass the path of an image file.')

    G = load_generator(network_pkl, device)
    if PLUGIN is not None:
        canvas = PLUGIN.with_default_margin(G, canvas, canvas_kwargs.get('margin'))     # a margin-trained G: its margin
    if fit_canvas and canvas is None:
        from mspe_plugin.encoding import Canvas
        canvas = Canvas()
    if PLUGIN is not None and canvas is not None:
        G = PLUGIN.with_canvas_support(G)    # a plain generator (e.g. upstream's) reads its constant on the canvas
    size = canvas.output_size(G.img_resolution) if canvas is not None else (G.img_resolution, G.img_resolution)
    target_uint8 = load_target(target_fname, size, G.img_channels)
    print(f'Projecting {target_fname} ({size[0]}x{size[1]}) on {device.type} in {"W+" if w_plus else "W"} space...')
    projection = project(G, torch.tensor(target_uint8.transpose(2, 0, 1), device=device), num_steps=num_steps,
                         w_plus=w_plus, canvas=canvas, fit_canvas=fit_canvas, fit_zoom=fit_zoom, fit_method=fit_method, loss=loss_kind,
                         vgg16_url=vgg16_url, seed=seed, device=device, log=print, progress=print_progress,
                         compile_mode=compile_mode)
    print(f'Loss: {projection.loss_name}; final distance {projection.losses[-1]:.4f}.')

    # Everything below writes outputs: only reached after a successful projection.
    os.makedirs(outdir, exist_ok=True)
    projected_w, final_canvas = projection.ws[-1], projection.canvases[-1]
    with torch.no_grad():
        synth = to_uint8(_render(G, projected_w.unsqueeze(0).to(device), final_canvas))[0]
    if save_video:
        every = max(len(projection.ws) // 100, 1)        # at most ~100 frames
        frames = []
        with torch.no_grad():
            for ws, cv in list(zip(projection.ws, projection.canvases))[::every]:
                frame = to_uint8(_render(G, ws.unsqueeze(0).to(device), cv))[0]
                frames.append(fit_frame(target_uint8, frame, cv if fit_canvas else None, G.img_resolution))
        video_path = write_video(f'{outdir}/proj', frames)
        print(f'Saved the optimization progress video "{video_path}"' + (' (the box: the training grid on the canvas)' if fit_canvas else ''))
    save_image(target_uint8, f'{outdir}/target.png')
    save_image(synth, f'{outdir}/proj.png')
    extra = {}
    if final_canvas is not None:
        extra = dict(canvas_origin=np.array(final_canvas.origin, dtype=np.float64), canvas_size=np.array(size, dtype=np.int64),
                     canvas_zoom=np.float64(final_canvas.zoom), canvas_wrap=np.bool_(final_canvas.wrap),
                     canvas_margin=np.int64(final_canvas.margin))
    if projection.candidates and projection.fit_method == 'anchor':
        extra.update(fit_method=np.str_(projection.fit_method))
        print(f'Fitted canvas (anchored to the typical content frame): origin ({final_canvas.origin[0]:.3f}, '
              f'{final_canvas.origin[1]:.3f}), zoom {final_canvas.zoom:.4f}, size {size[0]}x{size[1]}')
    elif projection.candidates:
        best = projection.candidates[0]
        extra.update(fit_method=np.str_(projection.fit_method), fit_search_origin=np.array(best.origin, dtype=np.float64), fit_search_zoom=np.float64(best.zoom),
                     fit_search_latent=np.int64(best.latent), fit_search_score=np.float64(best.score))
        print(f'Fitted canvas: origin ({final_canvas.origin[0]:.3f}, {final_canvas.origin[1]:.3f}), zoom {final_canvas.zoom:.4f}, '
              f'size {size[0]}x{size[1]} (coarse search: origin ({best.origin[0]:.2f}, {best.origin[1]:.2f}), zoom {best.zoom:.3f}, '
              f'{"class" if G.c_dim > 0 else "latent"} {best.latent})')
    elif final_canvas is not None:
        print(f'Canvas: origin {tuple(round(v, 3) for v in final_canvas.origin)}, zoom {final_canvas.zoom:.4f}, size {size[0]}x{size[1]}')
    np.savez(f'{outdir}/projected_w.npz', w=projected_w.unsqueeze(0).cpu().numpy(), **extra)
    print(f'Wrote {outdir}/target.png, proj.png, projected_w.npz' + (f', {os.path.basename(video_path)}' if save_video else ''))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    run_projection()  # pylint: disable=no-value-for-parameter
