"""Sinusoidal positional encoding and the Canvas (coordinate grids per scale).

`sinusoidal_encoding(ys, xs, C)` evaluates the 2-D sinusoidal code of Choi et al. (ICCV 2021,
Eq. 1-2) on a grid of (fractional) coordinates. The channel layout follows the authors' released
code: channels [0, C/2) encode x (width), channels [C/2, C) encode y (height); inside each half,
channel 2k is sin(c * f_k) and channel 2k+1 is cos(c * f_k) with f_k = base^(-2k / (C/2)),
k = 0 .. C/4-1. With base=100 this is exactly the paper's text, pe(i, 2k) = sin(i / 100^(k/d)),
d = C/4; the released code (and our default) uses base=10000.

A `Canvas` describes an output image in training-pixel units (origin, size, zoom, wrap) and
derives from it the coordinate grid of every scale, so that moving, stretching, extending or
rolling the grid moves, zooms, extends or rolls the generated image.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import threading

import numpy as np
import torch

#----------------------------------------------------------------------------
# The encoding.

_CACHE_MAX_ENTRIES = 64
_CACHE_MAX_BYTES = 256 << 20        # Encodings are recomputed rather than cached past this total.
_cache = collections.OrderedDict()  # key -> tensor, least recently used first
_cache_bytes = 0
_cache_lock = threading.Lock()

def _as_coords(coords, name):
    """1-D float64 CPU tensor of coordinates from a tensor, array or sequence."""
    coords = torch.as_tensor(coords).detach().to(device='cpu', dtype=torch.float64)
    if coords.ndim != 1:
        raise ValueError(f'{name} must be a 1-D sequence of coordinates, got shape {tuple(coords.shape)}.')
    return coords

def _table(coords, channels, base):
    """Half of the code for one axis: [C/2, n] float64, rows (sin f_0, cos f_0, sin f_1, ...),
    f_k = base^(-2k / (C/2)) = exp(-2k ln(base) / (C/2)), k = 0 .. C/4-1. Differentiable in `coords`."""
    k = torch.arange(channels // 4, dtype=torch.float64, device=coords.device)
    phase = torch.exp(-2 * k * math.log(base) / (channels // 2))[:, None] * coords[None, :]    # [C/4, n]
    return torch.stack([torch.sin(phase), torch.cos(phase)], dim=1).reshape(channels // 2, -1)

def encoding_from_coords(ys, xs, channels, base=10000.0):
    """The encoding of `sinusoidal_encoding`, uncached and differentiable in the float64 coordinate
    tensors ys [h] and xs [w] (the projector fits a canvas through it): float32 [C, h, w]."""
    half = channels // 2
    table_x = _table(xs, channels, base).to(torch.float32)[:, None, :].expand(half, len(ys), len(xs))
    table_y = _table(ys, channels, base).to(torch.float32)[:, :, None].expand(half, len(ys), len(xs))
    return torch.cat([table_x, table_y], dim=0)

def sinusoidal_encoding(ys, xs, channels, base=10000.0, device=None):
    """The 2-D sinusoidal positional encoding PE on the grid ys x xs (Eq. 1-2).

    :param ys: 1-D coordinates of the rows (height), any float, in a scale's pixel units.
    :param xs: 1-D coordinates of the columns (width).
    :param channels: number of channels C, a positive multiple of 4.
    :param base: frequency base (10000: the authors' code; 100: the paper's text).
    :param device: device of the result; None = the device of `xs` (CPU for non-tensors).
    :return: float32 tensor [C, len(ys), len(xs)]: channels [0, C/2) depend on x only,
        channels [C/2, C) on y only. Computed in float64, so large coordinates stay accurate.
        Results are cached (the default grid is reused every forward): the returned tensor is
        shared, so do not modify it in place.
    """
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels <= 0 or channels % 4 != 0:
        raise ValueError(f'The positional encoding needs a positive channel count divisible by 4, got {channels!r}.')
    base = float(base)
    if not (math.isfinite(base) and base > 1):
        raise ValueError(f'The frequency base of the positional encoding must be a finite number > 1, got {base}.')
    if device is None:
        device = xs.device if isinstance(xs, torch.Tensor) else torch.device('cpu')
    device = torch.device(device)
    ys = _as_coords(ys, 'ys')
    xs = _as_coords(xs, 'xs')
    key = (ys.numpy().tobytes(), xs.numpy().tobytes(), int(channels), base, str(device))

    global _cache_bytes
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached

    pe = encoding_from_coords(ys, xs, channels, base).to(device)

    nbytes = pe.numel() * pe.element_size()
    if nbytes <= _CACHE_MAX_BYTES:
        with _cache_lock:
            if key not in _cache:
                _cache[key] = pe
                _cache_bytes += nbytes
            while len(_cache) > _CACHE_MAX_ENTRIES or _cache_bytes > _CACHE_MAX_BYTES:
                _, old = _cache.popitem(last=False)
                _cache_bytes -= old.numel() * old.element_size()
    return pe

#----------------------------------------------------------------------------
# The canvas.

class CanvasError(ValueError):
    """An invalid canvas (size, origin, zoom or extent); the message says what to change."""

def _finite_pair(value, what):
    """(float, float) from a pair of finite numbers, else CanvasError."""
    try:
        a, b = value
        pair = (float(a), float(b))
    except (TypeError, ValueError):
        raise CanvasError(f'The canvas {what} must be a pair of numbers (y, x), got {value!r}.') from None
    if not all(math.isfinite(v) for v in pair):
        raise CanvasError(f'The canvas {what} must be finite numbers, got {value!r}.')
    return pair

def _size_pair(value):
    """(H, W) positive ints from a pair (or one int for a square), else CanvasError."""
    values = (value, value) if isinstance(value, (numbers.Number, np.number)) else value
    try:
        h, w = values
    except (TypeError, ValueError):
        raise CanvasError(f'The canvas size must be a pair of positive integers (H, W), got {value!r}.') from None
    out = []
    for v in (h, w):
        ok = isinstance(v, (numbers.Real, np.number)) and not isinstance(v, bool)
        ok = ok and math.isfinite(float(v)) and float(v).is_integer() and v > 0
        if not ok:
            raise CanvasError(f'The canvas size must be a pair of positive integers (H, W), got {value!r}.')
        out.append(int(v))
    return tuple(out)

def _check_resolution(value, what):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value <= 0:
        raise CanvasError(f'{what} must be a positive integer, got {value!r}.')
    return int(value)

@dataclasses.dataclass(frozen=True)
class Canvas:
    """An output image in training-pixel units.

    origin: (y, x) training pixels sampled by output pixel (0, 0); fractional = sub-pixel shift.
    size:   (H, W) output pixels; None = round(R * zoom) for both, R the training resolution.
    zoom:   output pixels per training pixel (1.5 renders a 256 model at 384).
    wrap:   the paper's rolled shift: coordinates modulo the training extent.
    margin: render this many output pixels beyond every side, then crop them: with a margin at
            least the generator's receptive radius, no output pixel depends on where the
            canvas's own edge is (zero padding stays out of sight), so canvases and tiles agree.

    The protocol a generator uses (mspe_plugin.networks; the projector's FittedCanvas has it too):
    is_default(R), output_size(R), margin, render_size(res, R), grid(res, R, rows, cols) and
    encoding(res, R, C, base, device, rows, cols) (a scale's resolution first, then the training
    resolution R), where rows / cols are index ranges [a, b) of the canvas grid at scale `res`:
    index i sits at coordinate origin / (R / res) + i / zoom.
    """
    origin: tuple = (0.0, 0.0)      # (y, x) in training pixels: where output pixel (0, 0) samples.
    size: tuple | None = None       # (H, W) output pixels; None -> round(R * zoom) for both.
    zoom: float = 1.0               # Output pixels per training pixel.
    wrap: bool = False              # Rolled shift: coordinates modulo the training extent.
    margin: int = 0                 # Output pixels rendered beyond each side and cropped away.

    def __post_init__(self):
        object.__setattr__(self, 'origin', _finite_pair(self.origin, 'origin'))
        if self.size is not None:
            object.__setattr__(self, 'size', _size_pair(self.size))
        try:
            zoom = float(self.zoom)
        except (TypeError, ValueError):
            raise CanvasError(f'The canvas zoom must be a positive number, got {self.zoom!r}.') from None
        if not (math.isfinite(zoom) and zoom > 0):
            raise CanvasError(f'The canvas zoom must be a finite number > 0, got {self.zoom!r}.')
        object.__setattr__(self, 'zoom', zoom)
        object.__setattr__(self, 'wrap', bool(self.wrap))
        margin = self.margin
        if isinstance(margin, bool) or not isinstance(margin, (numbers.Integral, np.integer)) or margin < 0:
            raise CanvasError(f'The canvas margin must be a non-negative number of output pixels, got {margin!r}.')
        object.__setattr__(self, 'margin', int(margin))

    @classmethod
    def from_extent(cls, extent, zoom=1.0, wrap=False):
        """The canvas covering ((y0, y1), (x0, x1)) training pixels, e.g. beyond the boundary of
        an R=32 model: Canvas.from_extent(((0, 32), (-16, 48))) -> origin (0, -16), size (32, 64)."""
        try:
            (y0, y1), (x0, x1) = extent
        except (TypeError, ValueError):
            raise CanvasError(f'A canvas extent must be ((y0, y1), (x0, x1)), got {extent!r}.') from None
        y0, y1 = _finite_pair((y0, y1), 'extent')
        x0, x1 = _finite_pair((x0, x1), 'extent')
        if not (y1 > y0 and x1 > x0):
            raise CanvasError(f'A canvas extent needs y1 > y0 and x1 > x0, got {extent!r}.')
        try:
            zoom = float(zoom)
        except (TypeError, ValueError):
            zoom = math.nan
        if not (math.isfinite(zoom) and zoom > 0):
            raise CanvasError(f'The canvas zoom must be a finite number > 0, got {zoom!r}.')
        size = (round((y1 - y0) * zoom), round((x1 - x0) * zoom))
        if min(size) < 1:
            raise CanvasError(f'The extent {extent!r} at zoom {zoom} is less than one output pixel: widen it or zoom in.')
        return cls(origin=(y0, x0), size=size, zoom=zoom, wrap=wrap)

    def shifted(self, dy, dx):
        """The same canvas moved by (dy, dx) training pixels (the image moves by -(dy, dx))."""
        return dataclasses.replace(self, origin=(self.origin[0] + float(dy), self.origin[1] + float(dx)))

    def output_size(self, img_resolution):
        """(H, W) output pixels of this canvas for a model trained at `img_resolution`."""
        R = _check_resolution(img_resolution, 'The training resolution')
        if self.size is not None:
            return self.size
        n = max(int(round(R * self.zoom)), 1)
        return (n, n)

    def render_size(self, res, img_resolution, coarsest=4):
        """(h, w) feature size at scale `res` (a power of 2 <= R, multiple of `coarsest`).

        The canvas is rendered on whole coarsest pixels, n = ceil(H * coarsest / R), i.e.
        n * res // coarsest at scale res; the image (res = R) is >= (H, W) and is cropped [:H, :W].
        """
        R = _check_resolution(img_resolution, 'The training resolution')
        res = _check_resolution(res, 'The scale resolution')
        coarsest = _check_resolution(coarsest, 'The coarsest resolution')
        H, W = self.output_size(R)
        n_h = -(-H * coarsest // R)
        n_w = -(-W * coarsest // R)
        return (n_h * res // coarsest, n_w * res // coarsest)

    def coords(self, n, axis, stride, train_extent, start=0):
        """1-D float64 coordinates of `n` feature pixels along `axis` (0 = y, 1 = x), from index `start`.

        :param stride: training pixels per feature pixel at zoom 1 (R / res at scale res).
        :param train_extent: the training image extent in training pixels (R), for `wrap`.
        :param start: index of the first pixel (negative: beyond the canvas's top / left edge).
        :return: c_i = origin[axis] / stride + i / zoom, i = start .. start + n - 1, in that scale's
            pixel units; with `wrap`, c mod (train_extent / stride) (floor mod: the integer part
            rolls circularly, the fractional remainder stays, as the authors' continuous roll).
        """
        c = self.origin[axis] / float(stride) + torch.arange(int(start), int(start) + int(n), dtype=torch.float64) / self.zoom
        if self.wrap:
            c = torch.remainder(c, float(train_extent) / float(stride))
        return c

    def grid(self, res, img_resolution, rows=None, cols=None):
        """(ys, xs) float64 coordinates at scale `res` of the index ranges rows = (a, b) and
        cols = (a, b); None = [0, render_size) along that axis."""
        stride = img_resolution / res
        default = self.render_size(res, img_resolution)
        rows = (0, default[0]) if rows is None else rows
        cols = (0, default[1]) if cols is None else cols
        return (self.coords(rows[1] - rows[0], 0, stride, img_resolution, start=rows[0]),
                self.coords(cols[1] - cols[0], 1, stride, img_resolution, start=cols[0]))

    def encoding(self, res, img_resolution, channels, base=10000.0, device=None, rows=None, cols=None):
        """PE [C, h, w] (float32) of this canvas at scale `res` on the index ranges rows / cols
        (see grid and sinusoidal_encoding)."""
        ys, xs = self.grid(res, img_resolution, rows, cols)
        return sinusoidal_encoding(ys, xs, channels, base=base, device=device)

    def is_default(self, img_resolution):
        """True when this canvas is the training grid (origin 0, zoom 1, R x R, no margin); wrap is then moot."""
        R = _check_resolution(img_resolution, 'The training resolution')
        return self.origin == (0.0, 0.0) and self.zoom == 1.0 and self.size in (None, (R, R)) and self.margin == 0

#----------------------------------------------------------------------------
# A canvas the projector can fit.

class FittedCanvas:
    """The Canvas protocol with a learnable `origin` (float64 tensor [2], training pixels) and
    `log_zoom` (float64 tensor []): images rendered on it are differentiable in both, so a
    projection can fit where (and how large) the target sits. Size, wrap and margin stay those of
    the Canvas it starts from; coordinates follow Canvas.coords."""
    def __init__(self, canvas, img_resolution, origin, log_zoom):
        self.fixed = dataclasses.replace(canvas, size=canvas.output_size(img_resolution))
        self.origin = origin
        self.log_zoom = log_zoom

    @property
    def margin(self):
        return self.fixed.margin

    def is_default(self, img_resolution):
        return False                                    # always render through the tensors

    def output_size(self, img_resolution):
        return self.fixed.output_size(img_resolution)

    def render_size(self, res, img_resolution):
        return self.fixed.render_size(res, img_resolution)

    def coords(self, n, axis, stride, train_extent, start=0):
        index = torch.arange(int(start), int(start) + int(n), dtype=torch.float64, device=self.origin.device)
        c = self.origin[axis] / stride + index / self.log_zoom.exp()
        return torch.remainder(c, train_extent / stride) if self.fixed.wrap else c

    grid = Canvas.grid      # the same grids, through this class's (differentiable) coords

    def encoding(self, res, img_resolution, channels, base=10000.0, device=None, rows=None, cols=None):
        return encoding_from_coords(*self.grid(res, img_resolution, rows, cols), channels, base).to(device)

    def frozen(self):
        """The current state as a plain Canvas."""
        origin = tuple(float(v) for v in self.origin.detach().cpu())
        return dataclasses.replace(self.fixed, origin=origin, zoom=float(self.log_zoom.detach().exp()))
