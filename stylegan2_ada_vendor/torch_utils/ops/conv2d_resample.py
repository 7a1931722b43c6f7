"""2-D convolution with optional up/downsampling by an FIR filter, the conv op of the host.

Definition (`impl='ref'`):
    y = downsample(conv2d(upsample_pad_filter(x)))
i.e. `upfirdn2d(x, f, up, padding)` (filter only when up > 1), a valid convolution with `w`,
then `upfirdn2d(., f, down)` when down > 1. Convolution and filtering commute, so the fast path
(`impl='auto'`) instead runs a strided transposed convolution followed by the filter (up), or
the filter followed by a strided convolution (down): same values, a quarter of the work.
"""

import torch
import torch.nn.functional as F

from . import upfirdn2d
from .upfirdn2d import _parse_padding, _get_filter_size

#----------------------------------------------------------------------------

def _conv2d(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """Plain or transposed conv2d; `flip_weight=False` turns correlation into true convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)

def _transposed_weight(w, groups):
    """[out, in/groups, kh, kw] conv weight -> [in, out/groups, kh, kw] conv_transpose weight
    computing the same correlation (spatially flipped)."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    w = w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
    return w.flip([2, 3])

#----------------------------------------------------------------------------

def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False, impl='auto'):
    """Convolve `x` with `w`, upsampling or downsampling by `f` around the convolution.

    :param x: input [N, in_channels, H, W].
    :param w: weight [out_channels, in_channels // groups, kh, kw].
    :param f: FIR filter for the resampling (from `upfirdn2d.setup_filter`), or None.
    :param up: integer upsampling factor (output is `up` times larger for the usual padding).
    :param down: integer downsampling factor.
    :param padding: int, [x, y] or [x0, x1, y0, y1] padding in the convolution's frame.
    :param groups: convolution groups.
    :param flip_weight: True = correlation (as torch's conv2d), False = true convolution.
    :param flip_filter: passed to upfirdn2d.
    :param impl: 'ref' (the definition) or 'auto' (fast path, equal values).
    :return: output [N, out_channels, H', W'].
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4
    assert isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype
    assert isinstance(up, int) and up >= 1
    assert isinstance(down, int) and down >= 1
    assert not (up > 1 and down > 1), 'up and down at once is not supported'
    kh, kw = w.shape[2:]
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if impl == 'ref':
        x = upfirdn2d.upfirdn2d(x, (f if up > 1 else None), up=up, padding=[px0, px1, py0, py1],
                                gain=up ** 2, flip_filter=flip_filter, impl='ref')
        x = _conv2d(x, w, groups=groups, flip_weight=flip_weight)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl='ref')
        return x
    assert impl == 'auto', f'Unknown conv2d_resample impl {impl!r}'

    if up > 1:
        # The transposed conv yields the full correlation of the zero-inserted input starting
        # kw - 1 pixels before it; the filter's padding re-aligns it to the reference frame.
        wt = _transposed_weight(w if flip_weight else w.flip([2, 3]), groups)
        x = F.conv_transpose2d(x, wt, stride=up, groups=groups)
        p = [px0 - kw + 1, px1 - kw + up, py0 - kh + 1, py1 - kh + up]
        return upfirdn2d.upfirdn2d(x, f, padding=p, gain=up ** 2, flip_filter=flip_filter)

    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d.upfirdn2d(x, None, padding=[px0, px1, py0, py1])
    return _conv2d(x, w, groups=groups, flip_weight=flip_weight)
