"""Adaptive discriminator augmentation (ADA): the augmentation pipeline D sees and the p controller.

`AugmentPipe` applies, per sample and each with probability `strength * p`, the transforms of
Karras et al., "Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020), in
their order: pixel blitting (x-flip, 90-degree rotation, integer translation), general geometry
(isotropic scale, rotation, anisotropic scale, fractional translation), colour (brightness,
contrast, luma flip, hue rotation, saturation), image-space filtering and corruption (additive
noise, cutout). All geometry is composed into one affine matrix per image and applied once:
mirror padding (nothing from outside the image leaks in), a band-limited 2x upsampling, bilinear
sampling, a band-limited 2x downsampling. Transforms that map pixel centres onto pixel centres
(flips, 90-degree rotations, integer shifts) copy pixels exactly instead. Every path is
differentiable with respect to the images, twice (R1 regularisation backpropagates through it).

`AdaptiveP` moves p so that D's mean sign on real images stays at a target (ADA's r_t heuristic).
`AUGPIPE_SPECS` names the pipelines `train.py --augpipe` offers.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import grid_sample_gradfix

#----------------------------------------------------------------------------
# Pipelines of `train.py --augpipe`: strengths (probability multipliers) of each transform.

AUGPIPE_SPECS = {
    'blit':   dict(xflip=1, rotate90=1, xint=1),
    'geom':   dict(scale=1, rotate=1, aniso=1, xfrac=1),
    'color':  dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'filter': dict(imgfilter=1),
    'noise':  dict(noise=1),
    'cutout': dict(cutout=1),
    'bg':     dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    'bgc':    dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                   brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'bgcf':   dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                   brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1),
    'bgcfn':  dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                   brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1),
    'bgcfnc': dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                   brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1,
                   cutout=1),
}

GEOMETRIC_OPS = ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac')
COLOR_OPS = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')

#----------------------------------------------------------------------------
# Filters, designed once in float64.

def _kaiser_sinc(taps, cutoff, beta):
    """Symmetric low-pass FIR: a sinc with `cutoff` (cycles per sample) under a Kaiser window,
    normalised to unit DC gain. Returns float64 numpy [taps]."""
    t = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff * t) * np.kaiser(taps, beta)
    return h / h.sum()

# Half-band filter of the 2x resampling (cutoff at the original Nyquist). 16 taps keep the
# passband within 2% up to 60% of Nyquist and attenuate the mirror images of those frequencies
# by more than 34 dB.
_RESAMPLE_FILTER = _kaiser_sinc(16, 0.25, 6)

def _band_filters(taps=31):
    """Four zero-phase band-pass filters over [0, pi/8], [pi/8, pi/4], [pi/4, pi/2], [pi/2, pi]
    that sum exactly to the identity. Returns float64 numpy [4, taps]."""
    lowpasses = [_kaiser_sinc(taps, cutoff, 8) for cutoff in (1 / 16, 1 / 8, 1 / 4)]
    delta = np.zeros(taps)
    delta[taps // 2] = 1
    edges = [np.zeros(taps)] + lowpasses + [delta]
    return np.stack([hi - lo for lo, hi in zip(edges[:-1], edges[1:])])

# Share of image power per band, for gain normalisation: a 1/f^2 spectrum puts equal power in
# every octave, and the lowest band spans ~4 octaves at typical resolutions.
_BAND_POWER = np.array([4, 1, 1, 1]) / 7

#----------------------------------------------------------------------------
# Random draws, or fixed percentiles for a debug view.

class _Draws:
    """Per-sample random numbers for one batch of `batch` images. With `percentile` (0..1) set,
    every draw is that percentile of its distribution and every transform is applied."""

    def __init__(self, batch, device, percentile=None):
        self.batch = batch
        self.device = device
        self.q = None if percentile is None else min(max(float(percentile), 1e-6), 1 - 1e-6)

    def applied(self, prob):
        """bool [batch]: which samples get a transform applied with probability `prob`."""
        if self.q is not None:
            return torch.ones([self.batch], dtype=torch.bool, device=self.device)
        return torch.rand([self.batch], device=self.device) < prob

    def uniform(self, low, high, *size):
        """float [batch, *size] uniform in [low, high)."""
        if self.q is not None:
            return torch.full([self.batch, *size], low + (high - low) * self.q, device=self.device)
        return low + (high - low) * torch.rand([self.batch, *size], device=self.device)

    def normal(self, *size):
        """float [batch, *size] standard normal."""
        if self.q is not None:
            value = math.sqrt(2) * float(torch.erfinv(torch.tensor(2 * self.q - 1, dtype=torch.float64)))
            return torch.full([self.batch, *size], value, device=self.device)
        return torch.randn([self.batch, *size], device=self.device)

    def integers(self, n):
        """float [batch] uniform over {0, ..., n-1}."""
        return torch.floor(self.uniform(0, n)).clamp(max=n - 1)

    def noise_like(self, x):
        """Gaussian noise of x's shape (a fixed field in debug mode)."""
        if self.q is not None:
            gen = torch.Generator(device=x.device).manual_seed(0)
            return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        return torch.randn_like(x)

#----------------------------------------------------------------------------
# Matrices: per-sample [N, k, k] float32, built from per-sample [N] tensors or scalars.

def _matrix(rows, batch, device):
    """Stack nested lists of scalars / [batch] tensors into [batch, len(rows), len(rows[0])]."""
    return torch.stack([torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device).expand(batch)
        for v in row], dim=-1) for row in rows], dim=-2)

def _translate2d(tx, ty, batch, device):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], batch, device)

def _scale2d(sx, sy, batch, device):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], batch, device)

def _rotate2d(cos, sin, batch, device):
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], batch, device)

def _affine3d(linear, offset):
    """[N, 4, 4] from a linear part [N, 3, 3] and an offset [N, 3]."""
    m = torch.zeros([linear.shape[0], 4, 4], device=linear.device)
    m[:, :3, :3] = linear
    m[:, :3, 3] = offset
    m[:, 3, 3] = 1
    return m

def _changed(matrices):
    """bool [N]: which matrices differ from the identity."""
    eye = torch.eye(matrices.shape[-1], device=matrices.device)
    return (matrices != eye).any(dim=-1).any(dim=-1)

#----------------------------------------------------------------------------
# Geometry.

def _mirror_index(idx, n):
    """Map integer indices onto 0..n-1 by mirroring at the borders with the edge repeated
    (..., 1, 0 | 0, 1, ..., n-1 | n-1, n-2, ...), for indices any distance outside."""
    r = torch.remainder(idx, 2 * n)
    return torch.where(r < n, r, 2 * n - 1 - r)

def _mirror_pad(x, left, right, top, bottom):
    """Mirror-pad x [N, C, H, W] by any number of pixels per side."""
    _, _, h, w = x.shape
    ix = _mirror_index(torch.arange(-left, w + right, device=x.device), w)
    iy = _mirror_index(torch.arange(-top, h + bottom, device=x.device), h)
    return x.index_select(3, ix).index_select(2, iy)

def _source_coords(matrices, xs, ys, height, width):
    """Where output positions (xs [w'], ys [h'], pixel units from the top-left corner) come from
    in the input, in the same units. matrices [N, 3, 3] act on centred coordinates."""
    u = (xs - width / 2)[None, None, :]
    v = (ys - height / 2)[None, :, None]
    a = matrices[:, :2, :, None, None]
    sx = a[:, 0, 0] * u + a[:, 0, 1] * v + a[:, 0, 2] + width / 2
    sy = a[:, 1, 0] * u + a[:, 1, 1] * v + a[:, 1, 2] + height / 2
    return sx, sy  # [N, h', w'] each

def _copies_pixels(matrices, height, width):
    """bool [N]: which transforms are flips / 90-degree rotations / integer shifts that map every
    pixel centre onto a pixel centre (scalings or shears never are: they need the filters)."""
    linear = matrices[:, :2, :2]
    rounded = linear.round()
    eye = torch.eye(2, device=matrices.device)
    linear_ok = ((linear - rounded).abs() < 1e-4).all(dim=-1).all(dim=-1)
    linear_ok &= (rounded.transpose(1, 2) @ rounded == eye).all(dim=-1).all(dim=-1)  # signed permutation
    half = torch.tensor([0.5], device=matrices.device)
    sx, sy = _source_coords(matrices, half, half, height, width)  # the first pixel's centre
    on_centre = lambda s: ((s - 0.5 - (s - 0.5).round()).abs() < 1e-4).reshape(-1)
    return linear_ok & on_centre(sx) & on_centre(sy)

def _copy_pixels(images, matrices):
    """Apply pixel-aligned transforms [N, 3, 3] exactly by copying (mirrored) pixels."""
    n, c, h, w = images.shape
    xs = torch.arange(w, device=images.device) + 0.5
    ys = torch.arange(h, device=images.device) + 0.5
    sx, sy = _source_coords(matrices, xs, ys, h, w)
    ix = _mirror_index((sx - 0.5).round().long(), w)
    iy = _mirror_index((sy - 0.5).round().long(), h)
    flat = (iy * w + ix).reshape(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, flat).reshape(n, c, h, w)

def upsample2x(images, f):
    """Band-limited 2x upsampling of the image's own extent.

    :param images: float [N, C, H, W].
    :param f: symmetric float filter [K], K a multiple of 4, taps summing to 1.
    :return: float [N, C, 2H, 2W]; output pixel k sits at (k + 0.5) / 2 input pixels, as in
        `upfirdn2d.upsample2d` of the mirror-padded image, cropped to the image.
    """
    n, c, h, w = images.shape
    taps = f.shape[0]
    x = _mirror_pad(images, taps // 4, taps // 4, taps // 4, taps // 4)
    k = (f * 2).to(images.dtype)  # zero insertion halves the mean: gain 2 per axis
    x = F.conv_transpose2d(x.reshape(n * c, 1, *x.shape[2:]), k[None, None, None, :], stride=(1, 2))
    x = x[:, :, :, taps - 1 : taps - 1 + 2 * w]
    x = F.conv_transpose2d(x, k[None, None, :, None], stride=(2, 1))
    x = x[:, :, taps - 1 : taps - 1 + 2 * h, :]
    return x.reshape(n, c, 2 * h, 2 * w)

def downsample2x(images, f):
    """Band-limited 2x downsampling without padding, as `upfirdn2d.upfirdn2d(x, f, down=2)`.

    :param images: float [N, C, H, W].
    :param f: symmetric float filter [K], taps summing to 1.
    :return: float [N, C, (H - K) // 2 + 1, (W - K) // 2 + 1].
    """
    n, c, h, w = images.shape
    k = f.to(images.dtype)
    x = F.conv2d(images.reshape(n * c, 1, h, w), k[None, None, None, :], stride=(1, 2))
    x = F.conv2d(x, k[None, None, :, None], stride=(2, 1))
    return x.reshape(n, c, x.shape[2], x.shape[3])

def affine_resample(images, matrices):
    """Resample images under affine maps, band-limited and with mirrored borders.

    :param images: float [N, C, H, W] (any H, W >= 1).
    :param matrices: float [N, 3, 3]; each maps an output position to the input position it
        shows, in pixels relative to the image centre (x right, y down).
    :return: float [N, C, H, W].
    The image is upsampled 2x with a half-band filter (mirrored context), sampled bilinearly
    (grid_sample's reflection at the image edges continues the mirroring to any distance), and
    low-pass filtered back to the original size.
    """
    n, c, h, w = images.shape
    misc.assert_shape(matrices, [n, 3, 3])
    f = torch.as_tensor(_RESAMPLE_FILTER, dtype=torch.float32, device=images.device)
    taps = f.shape[0]
    x = upsample2x(images, f)

    # Sample at 2x resolution, `extra` samples beyond every edge for the downsampling filter.
    extra = taps // 2 - 1
    xs = (torch.arange(2 * w + 2 * extra, device=images.device) - extra + 0.5) / 2
    ys = (torch.arange(2 * h + 2 * extra, device=images.device) - extra + 0.5) / 2
    sx, sy = _source_coords(matrices.to(torch.float32), xs, ys, h, w)
    grid = torch.stack([sx * (2 / w) - 1, sy * (2 / h) - 1], dim=-1).to(images.dtype)
    x = grid_sample_gradfix.grid_sample(x, grid, padding_mode='reflection')     # differentiable twice on CUDA too (R1)

    x = downsample2x(x, f)
    misc.assert_shape(x, [n, c, h, w])
    return x

def apply_geometry(images, matrices):
    """Apply per-sample affine maps (see `affine_resample`): identities leave their images
    untouched, pixel-aligned maps copy pixels exactly, the others are resampled."""
    changed = _changed(matrices)
    if not bool(changed.any()):
        return images
    exact = changed & _copies_pixels(matrices, images.shape[2], images.shape[3])
    resampled = changed & ~exact
    out = images.clone()
    for mask, fn in [(exact, _copy_pixels), (resampled, affine_resample)]:
        idx = mask.nonzero()[:, 0]
        if idx.numel() > 0:
            out[idx] = fn(images[idx], matrices[idx])
    return out

#----------------------------------------------------------------------------
# Colour and filtering.

def apply_color(images, matrices):
    """Apply per-sample colour matrices [N, 4, 4] (acting on [r, g, b, 1]) to images in
    [N, 3, H, W]; for [N, 1, H, W] the grey value maps as the matrix maps (x, x, x), averaged."""
    n, c, h, w = images.shape
    idx = _changed(matrices).nonzero()[:, 0]
    if idx.numel() == 0:
        return images
    m = matrices[idx].to(images.dtype)
    x = images[idx].reshape(idx.numel(), c, h * w)
    if c == 3:
        y = m[:, :3, :3] @ x + m[:, :3, 3:]
    else:
        y = m[:, :3, :3].sum(dim=(1, 2))[:, None, None] / 3 * x + m[:, :3, 3].mean(dim=1)[:, None, None]
    out = images.clone()
    out[idx] = y.reshape(idx.numel(), c, h, w)
    return out

def apply_filter(images, taps):
    """Filter every image of [N, C, H, W] with its own symmetric 1-D kernel taps [N, K] (K odd)
    along x and then y, with mirrored borders."""
    n, c, h, w = images.shape
    r = taps.shape[1] // 2
    x = _mirror_pad(images, r, r, r, r).reshape(1, n * c, h + 2 * r, w + 2 * r)
    k = taps.to(images.dtype).repeat_interleave(c, dim=0)
    x = F.conv2d(x, k[:, None, None, :], groups=n * c)
    x = F.conv2d(x, k[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)

#----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """ADA's augmentation pipeline: `pipe(images)` -> augmented images of the same shape.

    Each constructor strength multiplies the overall probability `p` (a buffer; the training
    loop sets it with `pipe.p.copy_(...)`): a transform with strength s is applied to a sample
    with probability s * p, with parameters drawn per sample. Standard deviations of scale-like
    parameters are in log2 units, angles in units of pi, shifts in units of the image size.
    """

    def __init__(self,
        xflip           = 0,    # Strength of x-flips (flip or not, uniformly).
        rotate90        = 0,    # Strength of rotations by 0, 90, 180 or 270 degrees.
        xint            = 0,    # Strength of integer translations.
        xint_max        = 0.125,# Largest integer translation, in units of the image size.
        scale           = 0,    # Strength of isotropic scaling.
        rotate          = 0,    # Strength of arbitrary rotations.
        aniso           = 0,    # Strength of anisotropic scaling.
        xfrac           = 0,    # Strength of fractional translations.
        scale_std       = 0.2,  # Std of log2 of the isotropic scale.
        rotate_max      = 1,    # Largest rotation angle, in units of pi.
        aniso_std       = 0.2,  # Std of log2 of the anisotropic scale.
        xfrac_std       = 0.125,# Std of fractional translations, in units of the image size.
        brightness      = 0,    # Strength of brightness offsets.
        contrast        = 0,    # Strength of contrast scaling.
        lumaflip        = 0,    # Strength of luma flips (flip or not, uniformly).
        hue             = 0,    # Strength of hue rotations.
        saturation      = 0,    # Strength of saturation scaling.
        brightness_std  = 0.2,  # Std of the brightness offset (images in [-1, 1]).
        contrast_std    = 0.5,  # Std of log2 of the contrast scale.
        hue_max         = 1,    # Largest hue rotation, in units of pi.
        saturation_std  = 1,    # Std of log2 of the saturation scale.
        imgfilter       = 0,    # Strength of per-band gain changes.
        imgfilter_bands = [1, 1, 1, 1], # Strength multipliers of the four octave-wide bands.
        imgfilter_std   = 1,    # Std of log2 of a band's gain.
        noise           = 0,    # Strength of additive Gaussian noise.
        cutout          = 0,    # Strength of cutout (a rectangle set to 0).
        noise_std       = 0.1,  # Std of the noise's std (half-normal).
        cutout_size     = 0.5,  # Cutout rectangle size, in units of the image size.
    ):
        super().__init__()
        strengths = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate, aniso=aniso,
            xfrac=xfrac, brightness=brightness, contrast=contrast, lumaflip=lumaflip, hue=hue,
            saturation=saturation, imgfilter=imgfilter, noise=noise, cutout=cutout)
        for name, value in strengths.items():
            if not float(value) >= 0:
                raise ValueError(f'AugmentPipe strength {name}={value!r} must be a number >= 0.')
        if len(imgfilter_bands) != 4 or not all(float(b) >= 0 for b in imgfilter_bands):
            raise ValueError(f'imgfilter_bands must list four numbers >= 0, got {imgfilter_bands!r}.')
        for name, value in strengths.items():
            setattr(self, name, float(value))
        self.xint_max = float(xint_max)
        self.scale_std = float(scale_std)
        self.rotate_max = float(rotate_max)
        self.aniso_std = float(aniso_std)
        self.xfrac_std = float(xfrac_std)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)
        self.imgfilter_bands = [float(b) for b in imgfilter_bands]
        self.imgfilter_std = float(imgfilter_std)
        self.noise_std = float(noise_std)
        self.cutout_size = float(cutout_size)

        self.register_buffer('p', torch.ones([]))  # Overall probability multiplier (ADA's p).
        self.register_buffer('band_filters', torch.as_tensor(_band_filters(), dtype=torch.float32), persistent=False)

    def forward(self, images, debug_percentile=None):
        """Augment a batch.

        :param images: float [N, C, H, W], values ~[-1, 1]; any H, W; colour transforms need
            C = 3 (C = 1 gets brightness and contrast only).
        :param debug_percentile: None = random. A number q in [0, 1] applies every enabled
            transform to every sample with each parameter at the q-th percentile of its
            distribution (p is ignored): a deterministic view of the pipeline.
        :return: float [N, C, H, W].
        """
        if images.ndim != 4:
            raise ValueError(f'AugmentPipe expects images [N, C, H, W], got shape {tuple(images.shape)}.')
        n, c, h, w = images.shape
        if c not in (1, 3) and any(getattr(self, op) > 0 for op in COLOR_OPS):
            raise ValueError(f'Colour augmentations need images with 1 or 3 channels, got {c}; '
                'choose a pipeline without colour (e.g. --augpipe=bg).')
        draw = _Draws(n, images.device, debug_percentile)
        if any(getattr(self, op) > 0 for op in GEOMETRIC_OPS):
            images = apply_geometry(images, self._geometry_matrices(draw, h, w))
        if any(getattr(self, op) > 0 for op in COLOR_OPS):
            images = apply_color(images, self._color_matrices(draw, c))
        if self.imgfilter > 0:
            images = self._filter_bands(images, draw)
        if self.noise > 0:
            sigma = draw.normal().abs() * self.noise_std
            chosen = draw.applied(self.noise * self.p) & (sigma > 0)
            noisy = images + draw.noise_like(images) * sigma.to(images.dtype)[:, None, None, None]
            images = torch.where(chosen[:, None, None, None], noisy, images)
        if self.cutout > 0:
            size = torch.where(draw.applied(self.cutout * self.p), self.cutout_size, 0.0)
            centre = draw.uniform(0, 1, 2)
            xs = (torch.arange(w, device=images.device) + 0.5) / w
            ys = (torch.arange(h, device=images.device) + 0.5) / h
            outside_x = (xs[None, :] - centre[:, 0:1]).abs() >= size[:, None] / 2
            outside_y = (ys[None, :] - centre[:, 1:2]).abs() >= size[:, None] / 2
            keep = outside_x[:, None, None, :] | outside_y[:, None, :, None]
            images = images * keep.to(images.dtype)
        return images

    def _geometry_matrices(self, draw, h, w):
        """[N, 3, 3] maps from output to input positions (centred pixels), the inverse of the
        drawn transforms applied in ADA's order."""
        n, dev = draw.batch, draw.device
        eye = torch.eye(3, device=dev).expand(n, 3, 3)
        m = eye
        size = torch.tensor([w, h], dtype=torch.float32, device=dev)
        if self.xflip > 0:
            i = torch.where(draw.applied(self.xflip * self.p), draw.integers(2), 0.0)
            m = m @ _scale2d(1 - 2 * i, 1, n, dev)
        if self.rotate90 > 0:
            i = torch.where(draw.applied(self.rotate90 * self.p), draw.integers(4), 0.0).long()
            cos = torch.tensor([1.0, 0, -1, 0], device=dev)[i]  # exact multiples of 90 degrees
            sin = torch.tensor([0.0, 1, 0, -1], device=dev)[i]
            m = m @ _rotate2d(cos, -sin, n, dev)
        if self.xint > 0:
            t = (draw.uniform(-self.xint_max, self.xint_max, 2) * size).round()
            t = torch.where(draw.applied(self.xint * self.p)[:, None], t, 0.0)
            m = m @ _translate2d(-t[:, 0], -t[:, 1], n, dev)
        if self.scale > 0:
            s = torch.where(draw.applied(self.scale * self.p), torch.exp2(draw.normal() * self.scale_std), 1.0)
            m = m @ _scale2d(1 / s, 1 / s, n, dev)
        # Two rotations, each with probability 1 - sqrt(1 - p): at least one with probability p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(min=0))
        if self.rotate > 0:
            theta = torch.where(draw.applied(p_rot), draw.uniform(-np.pi, np.pi) * self.rotate_max, 0.0)
            m = m @ _rotate2d(torch.cos(theta), -torch.sin(theta), n, dev)
        if self.aniso > 0:
            s = torch.where(draw.applied(self.aniso * self.p), torch.exp2(draw.normal() * self.aniso_std), 1.0)
            m = m @ _scale2d(1 / s, s, n, dev)
        if self.rotate > 0:
            theta = torch.where(draw.applied(p_rot), draw.uniform(-np.pi, np.pi) * self.rotate_max, 0.0)
            m = m @ _rotate2d(torch.cos(theta), -torch.sin(theta), n, dev)
        if self.xfrac > 0:
            t = draw.normal(2) * self.xfrac_std * size
            t = torch.where(draw.applied(self.xfrac * self.p)[:, None], t, 0.0)
            m = m @ _translate2d(-t[:, 0], -t[:, 1], n, dev)
        return m

    def _color_matrices(self, draw, channels):
        """[N, 4, 4] colour matrices acting on [r, g, b, 1]; hue, saturation and luma flip only
        for 3-channel images."""
        n, dev = draw.batch, draw.device
        eye3 = torch.eye(3, device=dev).expand(n, 3, 3)
        zero3 = torch.zeros([n, 3], device=dev)
        m = torch.eye(4, device=dev).expand(n, 4, 4)
        luma = torch.full([3], 1 / np.sqrt(3), device=dev)  # unit vector along grey
        luma_proj = torch.outer(luma, luma)
        if self.brightness > 0:
            b = torch.where(draw.applied(self.brightness * self.p), draw.normal() * self.brightness_std, 0.0)
            m = _affine3d(eye3, b[:, None].expand(n, 3)) @ m
        if self.contrast > 0:
            s = torch.where(draw.applied(self.contrast * self.p), torch.exp2(draw.normal() * self.contrast_std), 1.0)
            m = _affine3d(eye3 * s[:, None, None], zero3) @ m
        if channels == 3 and self.lumaflip > 0:
            i = torch.where(draw.applied(self.lumaflip * self.p), draw.integers(2), 0.0)
            m = _affine3d(eye3 - 2 * luma_proj * i[:, None, None], zero3) @ m
        if channels == 3 and self.hue > 0:
            theta = torch.where(draw.applied(self.hue * self.p), draw.uniform(-np.pi, np.pi) * self.hue_max, 0.0)
            cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=torch.float32, device=dev) / np.sqrt(3)
            cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
            rot = cos * eye3 + sin * cross + (1 - cos) * luma_proj  # Rodrigues, about the grey axis
            m = _affine3d(rot, zero3) @ m
        if channels == 3 and self.saturation > 0:
            s = torch.exp2(draw.normal() * self.saturation_std)
            s = torch.where(draw.applied(self.saturation * self.p), s, 1.0)
            m = _affine3d(luma_proj + (eye3 - luma_proj) * s[:, None, None], zero3) @ m
        return m

    def _filter_bands(self, images, draw):
        """Scale the four frequency bands of each image by random gains, normalised so that the
        expected power stays the same."""
        n = images.shape[0]
        gains = torch.ones([n, 4], device=images.device)
        for band, strength in enumerate(self.imgfilter_bands):
            if strength > 0:
                g = torch.exp2(draw.normal() * self.imgfilter_std)
                gains[:, band] = torch.where(draw.applied(self.imgfilter * strength * self.p), g, 1.0)
        idx = (gains != 1).any(dim=1).nonzero()[:, 0]
        if idx.numel() == 0:
            return images
        power = torch.as_tensor(_BAND_POWER, dtype=torch.float32, device=images.device)
        gains = gains[idx] / (gains[idx].square() * power).sum(dim=1, keepdim=True).sqrt()
        out = images.clone()
        out[idx] = apply_filter(images[idx], gains @ self.band_filters)
        return out

#----------------------------------------------------------------------------

class AdaptiveP:
    """ADA's controller of the augmentation probability p.

    D overfits when it grows confident on the real images: r_t = E[sign(D(real))] rises towards
    1. Every `interval` training steps the controller compares r_t (over those steps) with
    `target` and moves p by sign(r_t - target) * batch_size * interval / (kimg * 1000), so p can
    sweep from 0 to 1 within `kimg` thousand images; p never goes below 0 (it may exceed 1, which
    applies every transform at its full strength).

    Use, in the training loop:
        ada = AdaptiveP(target=0.6, interval=4, kimg=500, batch_size=64, p=resumed_p)
        every step, optionally:       ada.accumulate(real_logits.sign())
        every `interval` steps:       p = ada.update(signs)
                                      augment_pipe.p.copy_(torch.as_tensor(p))
    `signs` are the signs of D's real logits over the interval: a tensor of +-1 values (combined
    with whatever `accumulate` gathered), or their mean as a number (e.g. a training_stats
    Collector's mean of 'Loss/signs/real'). With no signs at all (or a NaN mean) p stays as it is.
    Attributes: `p` (current probability, settable), `rt` (last r_t or None), `step` (the
    adjustment per update).
    """

    def __init__(self,
        target      = 0.6,  # Wanted E[sign(D(real))]; above it D overfits and p rises.
        interval    = 4,    # Training steps between updates.
        kimg        = 500,  # Thousands of images over which p may go from 0 to 1.
        batch_size  = None, # Images per training step, all processes together.
        p           = 0.0,  # Starting probability (a resumed run's p).
    ):
        if batch_size is None or not batch_size > 0:
            raise ValueError(f'AdaptiveP needs the batch size (images per step), got {batch_size!r}.')
        if not (interval > 0 and kimg > 0):
            raise ValueError(f'AdaptiveP needs interval > 0 and kimg > 0, got interval={interval!r}, kimg={kimg!r}.')
        self.target = float(target)
        self.interval = int(interval)
        self.kimg = float(kimg)
        self.batch_size = int(batch_size)
        self.step = self.batch_size * self.interval / (self.kimg * 1000)
        self.p = max(float(p), 0.0)
        self.rt = None
        self._sum = 0.0
        self._count = 0

    def accumulate(self, signs):
        """Add the signs of D's real logits of one step (tensor or array of any shape)."""
        signs = torch.as_tensor(signs, dtype=torch.float64).detach()
        self._sum += float(signs.sum())
        self._count += signs.numel()

    def update(self, signs=None):
        """Adjust p from the signs of the last interval (see the class docstring); returns p."""
        if signs is not None and torch.as_tensor(signs).ndim == 0:
            rt = float(signs)
            if self._count > 0:
                raise ValueError('AdaptiveP.update got a mean sign while accumulated signs are pending; '
                    'pass one or the other.')
        else:
            if signs is not None:
                self.accumulate(signs)
            rt = self._sum / self._count if self._count > 0 else float('nan')
        self._sum, self._count = 0.0, 0
        if np.isnan(rt):
            return self.p
        self.rt = rt
        self.p = max(self.p + float(np.sign(rt - self.target)) * self.step, 0.0)
        return self.p

#----------------------------------------------------------------------------
