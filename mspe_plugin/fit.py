"""Where does an unaligned target sit on the canvas? A coarse global search over origin and zoom.

The projection loss is multimodal in the canvas origin (a digit 10 px away from where the
generator draws it has no gradient that pulls it there), so gradient descent from the training
canvas finds the target only when it is already nearly aligned. The search here scores
(origin, zoom) placements with a few fixed latents and no optimisation:

    candidates = search_canvas(render, latents, target, canvas, R)
    best = candidates[0]            # Candidate(origin, zoom, latent, score), best first

Coarse to fine: a grid of origins `step` training pixels apart over +- `radius` (times a few
zooms), then a grid `step / 4` apart around the best few distinct placements. Every placement
is rendered as the canvas itself (not cut out of one wide canvas: a generator that reads the
image border draws differently on a wider canvas) with all latents in one batch, and scored by
the normalised cross-correlation (NCC) of blurred grey images: invariant to the target's colour
and contrast, smooth in the offset.

The caller then refines origin, zoom and w jointly from the best few (the projector's restarts).
Host-agnostic: `render(ws, canvas)` is any function that draws ws on a canvas.

The pixel objective alone cannot tell where a real target "is": a generator that can draw a
digit a little larger or a pixel further right reconstructs it as well on a wrong canvas. What
does pin the canvas is the alignment of the training data, which the generator learned: its
samples draw their content at a typical place and size on the training grid. Anchoring measures
the target's content frame (centre and extent, `content_frame`) and returns the canvas on which
the generator's typical frame lands exactly there:

    typical = typical_frame(content_frame(samples_on_the_training_grid))
    canvas = anchor_canvas(canvas, R, content_frame(target, keep_ring=True)[0], typical, fit_zoom=True)

It needs content on a plain background (digits, sketches, objects on white): the frame is
measured on each pixel's distance from the image's background colour. The target's frame counts
its outermost pixels (keep_ring; a generator's renders leave them out), and where its content
reaches the image's edge the extent runs on beyond it by the slope there, EDGE_REACH pixels at
most: a digit that the frame cuts is measured nearer its whole size.
"""

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Candidate:
    """One canvas placement of the target and how well the search's latents match it there."""
    origin: tuple           # (y, x) canvas origin in training pixels.
    zoom: float             # Canvas zoom (output pixels per training pixel).
    latent: int             # Index of the best-matching latent (the class, for a conditional G).
    score: float            # 1 - NCC of the blurred grey images: 0 = identical up to contrast, 2 = inverted.

#----------------------------------------------------------------------------
# Scoring.

def grey(images):
    """[N, C, H, W] in [-1, 1] -> [N, 1, H, W] in [0, 1] (channel mean): black is 0, so the zero
    padding of a blur or of a window beyond the image is the background of a digit on black."""
    return (images.mean(dim=1, keepdim=True) + 1) / 2

def gaussian_blur(images, sigma):
    """[N, 1, H, W] blurred by a separable Gaussian of `sigma` pixels (zero padding); sigma 0 = as is."""
    if sigma <= 0:
        return images
    radius = max(int(math.ceil(2.5 * sigma)), 1)
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    g = torch.exp(-t.square() / (2 * sigma ** 2))
    g = g / g.sum()
    images = F.conv2d(images, g.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(images, g.view(1, 1, -1, 1), padding=(radius, 0))

def window_scores(images, target, eps=1e-4):
    """1 - NCC of `target` [1, 1, h, w] with every h x w window of `images` [N, 1, H, W]:
    [N, H - h + 1, W - w + 1]. A blank window (no variance) scores 1."""
    n = target.shape[2] * target.shape[3]
    t = target - target.mean()
    t = t / t.square().sum().sqrt().clamp_min(eps)
    corr = F.conv2d(images, t)                                  # sum (I - mean I) t, since sum t = 0
    ones = torch.ones_like(target)
    s1 = F.conv2d(images, ones)
    s2 = F.conv2d(images.square(), ones)
    spread = (s2 - s1.square() / n).clamp_min(0).add(eps * n).sqrt()
    return (1 - corr / spread)[:, 0]

#----------------------------------------------------------------------------
# The search.

def zoom_grid(zoom_range, steps_per_octave=2):
    """Zooms spaced geometrically over [lo, hi], both included, `steps_per_octave` per doubling."""
    lo, hi = (float(v) for v in zoom_range)
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f'The zoom range must be 0 < lo <= hi, got {zoom_range!r}.')
    n = max(int(math.ceil(math.log2(hi / lo) * steps_per_octave)), 0) + 1
    return [float(z) for z in np.geomspace(lo, hi, n)] if n > 1 else [lo]

def _distinct(candidates, count, min_distance, min_zoom_ratio):
    """The first `count` candidates (sorted) no two of which share an origin within `min_distance`
    training pixels and a zoom within the ratio `min_zoom_ratio`."""
    kept = []
    for cand in candidates:
        if all(max(abs(a - b) for a, b in zip(cand.origin, k.origin)) >= min_distance
               or max(cand.zoom, k.zoom) / min(cand.zoom, k.zoom) >= min_zoom_ratio for k in kept):
            kept.append(cand)
            if len(kept) == count:
                break
    return kept

@torch.no_grad()
def search_canvas(
    render,                         # render(ws [K, num_ws, w_dim], canvas) -> images [K, C, H, W] in [-1, 1].
    latents,                        # ws [K, num_ws, w_dim] to score with (class means, w_avg, ...).
    target,                         # [1, C, H, W] in [-1, 1]; H x W = the canvas' output size.
    canvas,                         # Canvas the search starts from (its size, wrap and margin are kept).
    img_resolution,                 # Training resolution R.
    *,
    radius          = None,         # Origins within +- radius training pixels of canvas.origin (None = R/2).
    step            = None,         # Origin grid step of the coarse level (None = R/8); the fine level has step/4.
    zoom_range      = None,         # (lo, hi) zoom factors relative to canvas.zoom (None = no zoom search).
    zooms_per_octave= 2,            # Coarse zoom grid: this many per doubling; the fine level adds half steps.
    num_refined     = 3,            # Distinct coarse placements searched finely; also the most returned.
    sigma           = 1.5,          # Blur (output pixels) of both images before scoring.
):
    """Candidates for the canvas of `target`, best first (see the module docstring).

    :return: list of Candidate (at most `num_refined`, distinct), sorted by score.
    """
    R = int(img_resolution)
    H, W = canvas.output_size(R)
    if tuple(target.shape[2:]) != (H, W):
        raise ValueError(f'The target is {tuple(target.shape[2:])} pixels; the canvas is {(H, W)}.')
    radius = R / 2 if radius is None else float(radius)
    step = R / 8 if step is None else float(step)
    canvas = dataclasses.replace(canvas, size=(H, W))              # zoom changes keep the output size
    target_grey = gaussian_blur(grey(target.float()), sigma)
    seen = {}

    def score(origin, zoom):
        key = (round(origin[0], 6), round(origin[1], 6), round(zoom, 9))
        if key not in seen:
            placed = dataclasses.replace(canvas, origin=origin, zoom=zoom)
            scores = window_scores(gaussian_blur(grey(render(latents, placed).float()), sigma), target_grey)[:, 0, 0]
            latent = int(scores.argmin())
            seen[key] = Candidate(origin=origin, zoom=zoom, latent=latent, score=float(scores[latent]))
        return seen[key]

    def grid(centre, half, spacing, zooms):
        offsets = np.arange(-half, half + 1e-9, spacing)
        return sorted((score((centre[0] + float(dy), centre[1] + float(dx)), zoom) for zoom in zooms
                       for dy in offsets for dx in offsets), key=lambda c: c.score)

    zooms = [canvas.zoom * z for z in zoom_grid(zoom_range or (1.0, 1.0), zooms_per_octave)]
    coarse = grid(canvas.origin, radius, step, zooms)
    zoom_step = 2 ** (0.5 / zooms_per_octave) if zoom_range is not None else 1.0
    distinct = lambda cands: _distinct(cands, num_refined, step / 2, zoom_step ** 0.5 if zoom_range is not None else 2.0)
    fine = []
    for cand in distinct(coarse):
        near = sorted({cand.zoom / zoom_step, cand.zoom, cand.zoom * zoom_step})
        fine += grid(cand.origin, step / 2, step / 4, near)
    return distinct(sorted(fine, key=lambda c: c.score))

def describe(candidate):
    """One line: 'origin (y, x) zoom z latent k score s'."""
    y, x = candidate.origin
    return f'origin ({y:.2f}, {x:.2f}) zoom {candidate.zoom:.3f} latent {candidate.latent} score {candidate.score:.3f}'

#----------------------------------------------------------------------------
# Targets with a known canvas.

def resample_on_canvas(images, canvas, img_resolution, supersample=None, background=-1.0):
    """What `canvas` sees of images [N, C, R, R] drawn on the training grid: output pixel p shows
    training pixel origin + p / zoom (Canvas.coords at scale R), bicubic, `background` beyond the
    image. Zooming out (zoom < 1) averages `supersample`^2 samples per output pixel against
    aliasing (None: 4 below zoom 1, else 1, so whole-pixel shifts at zoom 1 are exact).
    Targets made this way have a known canvas, the answer a search should find.

    :return: [N, C, H, W], H x W = canvas.output_size(R), values clamped to the input's range
        (bicubic overshoot removed).
    """
    R = int(img_resolution)
    H, W = canvas.output_size(R)
    ss = int(supersample) if supersample is not None else (4 if canvas.zoom < 1 else 1)
    sub = (torch.arange(ss, dtype=torch.float64) + 0.5) / ss - 0.5              # sub-pixel offsets
    def axis(n, origin):
        p = (torch.arange(n, dtype=torch.float64)[:, None] + sub[None, :]).flatten()
        return (origin + p / canvas.zoom) * 2 / (R - 1) - 1                      # align_corners=True units
    ys, xs = axis(H, canvas.origin[0]), axis(W, canvas.origin[1])
    grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1).to(images)  # [H*ss, W*ss, 2] as (x, y)
    out = F.grid_sample(images - background, grid[None].expand(len(images), -1, -1, -1), mode='bicubic',
                        padding_mode='zeros', align_corners=True) + background
    out = F.avg_pool2d(out, ss) if ss > 1 else out
    return out.clamp(min(float(images.amin()), background), float(images.amax()))

def content_centre(target):
    """(y, x) output pixel at the centre of the target's content: the centroid of its blurred grey
    image's distance from the median (the background). Zooming about this point moves the
    content least, so a fit that changes the zoom there keeps the placement it already found.

    :param target: [1, C, H, W] in [-1, 1].
    """
    g = gaussian_blur(grey(target.float()), 1.0)[0, 0]
    weight = (g - g.median()).abs()
    if float(weight.sum()) <= 1e-8:                              # a flat target: its centre
        return ((g.shape[0] - 1) / 2, (g.shape[1] - 1) / 2)
    ys = torch.arange(g.shape[0], dtype=g.dtype, device=g.device)
    xs = torch.arange(g.shape[1], dtype=g.dtype, device=g.device)
    total = weight.sum()
    return (float((weight.sum(dim=1) * ys).sum() / total), float((weight.sum(dim=0) * xs).sum() / total))

#----------------------------------------------------------------------------
# Anchoring: the canvas on which the generator's typical content frame lands on the target's.

CENTRE_FLOOR = 0.3                                  # content weight below this (of the strongest) is left out of the centre
EXTENT_LEVELS = (0.15, 0.25, 0.35, 0.45, 0.55)      # the extent is the mean of the profile's widths at these levels
EDGE_REACH = 1.0                                    # content reaching the image's edge is taken to go on this far (pixels) at most

PLAIN_SHARE = 0.7                                   # content on a plain background: at least this share of pixels is background
PLAIN_TOLERANCE = 0.1                               # background: intensity within this much (of [-1, 1]) of the median's

def _background_distance(images):
    """[N, C, H, W] in [-1, 1] -> [N, H, W]: how far each pixel's intensity (its largest channel)
    is from the background's, the image's median intensity."""
    intensity = images.float().clamp(-1, 1).amax(dim=1)          # a generator overshoots [-1, 1]; an image file cannot
    return (intensity - intensity.flatten(1).median(dim=1).values[:, None, None]).abs()

def background_share(images):
    """[N]: the share of each image's pixels whose intensity lies within PLAIN_TOLERANCE of its
    background's. Near 1 for content on a plain background (digits on black, sketches on white),
    low for photographs; anchoring needs it at PLAIN_SHARE or more."""
    return (_background_distance(images) <= PLAIN_TOLERANCE).flatten(1).float().mean(dim=1)

def content_weight(images, keep_ring=False):
    """[N, C, H, W] in [-1, 1] -> [N, H, W] in [0, 1]: how far each pixel's intensity (its largest
    channel) is from the background's (the image's median intensity), scaled so that the strongest
    pixel is 1. Unless keep_ring, the outermost ring of pixels weighs 0: a zero-padded generator
    drawn without a margin can put a faint line there, which is not content. A real image's ring
    is content (keep_ring=True): a digit that reaches the image's edge has ink there."""
    w = _background_distance(images)
    if not keep_ring:
        w[:, :1] = 0
        w[:, -1:] = 0
        w[:, :, :1] = 0
        w[:, :, -1:] = 0
    return w / w.flatten(1).amax(dim=1).clamp_min(1e-6)[:, None, None]

def _widths(profiles, level):
    """Widths [N] of profiles [N, L] at `level`: from the first to the last crossing, linearly
    interpolated between pixels (sub-pixel); 0 where nothing rises above the level. Where the
    profile is still above the level at the image's first or last pixel, the content goes on
    beyond the image: that side is extended by the slope there (the crossing extrapolated) or,
    where the profile does not rise inwards (a stroke cut by the edge), by EDGE_REACH pixels at
    most."""
    above = profiles > level
    L = profiles.shape[1]
    idx = torch.arange(L, device=profiles.device)
    first = torch.where(above, idx, L).amin(dim=1).clamp(max=L - 1)
    last = torch.where(above, idx, -1).amax(dim=1).clamp(min=0)
    take = lambda i: profiles.gather(1, i[:, None])[:, 0]
    lo = first.to(profiles.dtype)
    before = take((first - 1).clamp(min=0))
    lo = torch.where(first > 0, lo - (take(first) - level) / (take(first) - before).clamp_min(1e-6), lo)
    hi = last.to(profiles.dtype)
    after = take((last + 1).clamp(max=L - 1))
    hi = torch.where(last < L - 1, hi + (take(last) - level) / (take(last) - after).clamp_min(1e-6), hi)
    for edge, inner in ((profiles[:, 0], profiles[:, 1]), (profiles[:, -1], profiles[:, -2])):
        reach = ((edge - level) / (inner - edge).clamp_min(1e-6)).clamp(max=EDGE_REACH)
        hi = hi + torch.where(edge > level, torch.where(inner > edge, reach, torch.full_like(reach, EDGE_REACH)), torch.zeros_like(reach))
    return torch.where(above.any(dim=1), hi - lo, torch.zeros_like(hi))

def content_frame(images, keep_ring=False):
    """The content frame of every image [N, C, H, W] in [-1, 1] -> [N, 3]: (cy, cx) the centre of
    the content (centroid of the content weight above CENTRE_FLOOR) and its extent, the larger of
    its height and width (widths of the row and column profiles of the weight, mean over
    EXTENT_LEVELS), all in output pixels of the image. keep_ring: see content_weight (True for a
    target image, False for a generator's renders)."""
    w = content_weight(images, keep_ring)
    H, W = w.shape[1:]
    core = (w - CENTRE_FLOOR).clamp_min(0)
    total = core.sum(dim=(1, 2)).clamp_min(1e-6)
    ys = torch.arange(H, dtype=w.dtype, device=w.device)
    xs = torch.arange(W, dtype=w.dtype, device=w.device)
    cy = (core.sum(dim=2) * ys).sum(dim=1) / total
    cx = (core.sum(dim=1) * xs).sum(dim=1) / total
    rows, cols = w.amax(dim=2), w.amax(dim=1)
    height = torch.stack([_widths(rows, level) for level in EXTENT_LEVELS]).mean(dim=0)
    width = torch.stack([_widths(cols, level) for level in EXTENT_LEVELS]).mean(dim=0)
    return torch.stack([cy, cx, torch.maximum(height, width)], dim=1)

def touches_frame(images, band=2):
    """[N] bool: whether content (weight above CENTRE_FLOOR) lies within `band` pixels of the
    image's edge (inside the ignored outer ring), i.e. it may be cut off and its frame partial."""
    w = content_weight(images)
    edge = torch.zeros_like(w, dtype=torch.bool)
    edge[:, :band + 1] = edge[:, -band - 1:] = True
    edge[:, :, :band + 1] = edge[:, :, -band - 1:] = True
    return ((w > CENTRE_FLOOR) & edge).flatten(1).any(dim=1)

def typical_frame(frames):
    """The generator's typical content frame: the per-column median of frames [N, 3] of its
    samples on the training grid (a median: a few odd samples do not move it) -> (cy, cx, extent)."""
    frames = frames[frames[:, 2] > 0]
    if len(frames) == 0:
        raise ValueError('No sample has content to measure (blank images?); anchoring needs a frame of the generator\'s content.')
    return tuple(float(v) for v in frames.median(dim=0).values)

def anchor_canvas(canvas, img_resolution, target_frame, typical, fit_zoom=True):
    """The canvas (keeping `canvas`' output size, wrap and margin) on which the typical frame
    (training pixels) lands on `target_frame` (cy, cx, extent in output pixels): its zoom is the
    ratio of the extents (kept at canvas.zoom without fit_zoom) and its origin puts the typical
    centre under the target's. Output pixel p shows training pixel origin + p / zoom."""
    cy, cx, extent = (float(v) for v in target_frame)
    ty, tx, typical_extent = (float(v) for v in typical)
    if extent <= 0:
        raise ValueError('The target has no content to measure (a blank image?); anchoring needs a target with content.')
    zoom = extent / typical_extent if fit_zoom else float(canvas.zoom)
    origin = (ty - cy / zoom, tx - cx / zoom)
    return dataclasses.replace(canvas, origin=origin, zoom=zoom, size=canvas.output_size(img_resolution))
