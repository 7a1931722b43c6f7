"""Upsample, pad, FIR-filter and downsample 2-D images: the resampling op of the host.

`upfirdn2d(x, f, up, down, padding)` computes, per channel:
  1. upsample by inserting `up - 1` zeros after every pixel,
  2. pad with zeros (negative padding crops),
  3. convolve with the 2-D FIR filter `f` (a 1-D `f` means the separable filter f x f),
  4. keep every `down`-th pixel.
The reference path (`impl='ref'`) does exactly that with one 2-D convolution; the default path
runs a separable filter as two 1-D convolutions (same result, fewer operations).
"""

import numpy as np
import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

def _parse_scaling(scaling):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    assert isinstance(scaling, (list, tuple)) and len(scaling) == 2
    sx, sy = scaling
    assert sx >= 1 and sy >= 1
    return int(sx), int(sy)

def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    assert isinstance(padding, (list, tuple))
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    assert len(padding) == 4
    return [int(p) for p in padding]

def _get_filter_size(f):
    """(width, height) of filter `f`; (1, 1) for None."""
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2)
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)

#----------------------------------------------------------------------------

def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):
    """Turn a list of taps into a filter tensor for `upfirdn2d`.

    :param f: taps as a list/array/tensor of shape [taps] or [height, width]; None = [1].
    :param normalize: scale the filter so its taps sum to 1 (before `gain`).
    :param flip_filter: pre-flip the filter.
    :param gain: overall gain of the filter (its sum after normalising).
    :param separable: return a 1-D filter (meaning f x f); None = as upstream: keep a 1-D `f`
        separable only from 8 taps on, and expand shorter ones to their 2-D outer product (so
        the default [1,3,3,1] is stored as a 4x4 buffer, the layout of upstream's state_dicts
        and pickles; on CPU one 4x4 convolution is also faster than two 1-D passes).
    :return: float32 tensor [taps] (separable) or [height, width].
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    assert f.ndim in (0, 1, 2)
    assert f.numel() > 0
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = f.ger(f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Upsample, pad, filter and downsample a batch of images (see the module docstring).

    :param x: float tensor [N, C, H, W].
    :param f: float filter [taps] (separable) or [fh, fw], or None (identity).
    :param up: integer upsampling factor, or [x, y].
    :param down: integer downsampling factor, or [x, y].
    :param padding: int, [x, y] or [x0, x1, y0, y1]; negative values crop.
    :param flip_filter: False = convolution (filter flipped), True = correlation.
    :param gain: overall scaling of the signal magnitude.
    :param impl: 'ref' (one 2-D convolution: the definition) or 'auto' (separable fast path).
    :return: tensor [N, C, out_h, out_w] with
        out_w = (W * up_x + pad_x0 + pad_x1 - fw + down_x) // down_x, same for height.
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert isinstance(f, torch.Tensor) and f.ndim in (1, 2)
    assert f.is_floating_point() and not f.requires_grad
    batch, channels, in_h, in_w = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)

    # 1. Zero insertion.
    x = x.reshape([batch, channels, in_h, 1, in_w, 1])
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape([batch, channels, in_h * upy, in_w * upx])

    # 2. Pad (positive) and crop (negative).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # 3. Filter. conv2d correlates, so flip unless asked for correlation.
    f = f * (gain ** (f.ndim / 2))
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if impl == 'ref' and f.ndim == 1:
        f = f.ger(f)
    if f.ndim == 2:
        weight = f[np.newaxis, np.newaxis].repeat([channels, 1] + [1] * f.ndim)
        x = F.conv2d(input=x, weight=weight, groups=channels)
    else:
        weight = f[np.newaxis, np.newaxis].repeat([channels, 1, 1])
        x = F.conv2d(input=x, weight=weight.unsqueeze(2), groups=channels)
        x = F.conv2d(input=x, weight=weight.unsqueeze(3), groups=channels)

    # 4. Decimation.
    return x[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Filter a batch of images with `f`, padded so that the output has the input's size
    (for `padding=0`); `padding` adds or removes pixels at the borders."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Upsample a batch of images by `up` with filter `f`: output size = input size * up
    (for `padding=0`). The gain `up**2` keeps the mean intensity."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        px0 + (fw + upx - 1) // 2,
        px1 + (fw - upx) // 2,
        py0 + (fh + upy - 1) // 2,
        py1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)

def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='auto'):
    """Downsample a batch of images by `down` with filter `f`: output size = input size / down
    (for `padding=0` and divisible sizes)."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        px0 + (fw - downx + 1) // 2,
        px1 + (fw - downx) // 2,
        py0 + (fh - downy + 1) // 2,
        py1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
