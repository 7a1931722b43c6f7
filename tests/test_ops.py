"""Every host op equals an explicit reference written here, values and gradients."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

torch.set_num_threads(1)

#----------------------------------------------------------------------------
# upfirdn2d: zero-insert + pad + full conv with the flipped filter + stride.

def explicit_upfirdn(x, f2d, up, down, pad):
    """Per-pixel loops over the definition (numpy, float64): slow but unmistakable."""
    x = x.detach().double().numpy()
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    u = np.zeros([n, c, h * up, w * up])
    u[:, :, ::up, ::up] = x
    big = np.zeros([n, c, h * up + abs(py0) + abs(py1) + 2, w * up + abs(px0) + abs(px1) + 2])
    # place u so that index (max(py0,0), max(px0,0)) of the padded signal is u[0, 0]
    v = np.pad(u, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    v = v[:, :, max(-py0, 0): v.shape[2] - max(-py1, 0), max(-px0, 0): v.shape[3] - max(-px1, 0)]
    fh, fw = f2d.shape
    oh, ow = v.shape[2] - fh + 1, v.shape[3] - fw + 1
    out = np.zeros([n, c, oh, ow])
    for i in range(oh):
        for j in range(ow):
            # true convolution: sum_k f[k] v[i + fh - 1 - k]
            patch = v[:, :, i:i + fh, j:j + fw]
            out[:, :, i, j] = (patch * f2d[::-1, ::-1]).sum(axis=(2, 3))
    del big
    return torch.from_numpy(out[:, :, ::down, ::down])

@pytest.mark.parametrize('up,down,pad', [(1, 1, [1, 1, 1, 1]), (2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]),
                                          (3, 1, [0, 2, 1, 0]), (1, 1, [-1, 2, 1, -1]), (2, 2, [1, 0, 1, 0])])
@pytest.mark.parametrize('shape', [(1, 2, 5, 7), (2, 3, 8, 8)])
def test_upfirdn2d_equals_zero_insert_pad_conv_stride(up, down, pad, shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    # Not symmetric; as 1-D taps (separable) and in the default 4x4 layout.
    for filt in [upfirdn2d.setup_filter([1, 2, 3, 1], separable=True), upfirdn2d.setup_filter([1, 2, 3, 1])]:
        f2 = (torch.outer(filt.double(), filt.double()) if filt.ndim == 1 else filt.double()).numpy()
        ref = explicit_upfirdn(x, f2, up, down, pad)
        for impl in ['ref', 'auto']:
            out = upfirdn2d.upfirdn2d(x, filt, up=up, down=down, padding=pad, impl=impl)
            assert out.shape == ref.shape
            assert torch.allclose(out, ref, atol=1e-10)
    # A non-separable 2-D filter through the reference path.
    f2d = torch.tensor([[1., 2., 0.], [0., 1., 3.]])
    out = upfirdn2d.upfirdn2d(x, f2d, up=up, down=down, padding=pad)
    assert torch.allclose(out, explicit_upfirdn(x, f2d.double().numpy(), up, down, pad), atol=1e-10)

def test_setup_filter_stores_short_filters_as_2d_like_upstream():
    """Upstream's layout: fewer than 8 taps -> normalised outer product [taps, taps]; 8 taps or
    more stay separable [taps]; `separable` forces either."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    assert upfirdn2d.setup_filter([1, 3, 3, 1], separable=True).shape == (4,)
    assert upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1]).shape == (8,)
    assert upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1], separable=False).shape == (8, 8)
    assert upfirdn2d.setup_filter(None).shape == (1, 1) and upfirdn2d.setup_filter([[1., 2.], [3., 4.]]).shape == (2, 2)
    # Gain applies to the whole 2-D filter: its taps sum to `gain`.
    assert torch.isclose(upfirdn2d.setup_filter([1, 3, 3, 1], gain=4).sum(), torch.tensor(4.))

def test_upfirdn2d_flip_filter_is_correlation():
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    f = torch.tensor([[1., 2.], [3., 4.]])
    out = upfirdn2d.upfirdn2d(x, f, flip_filter=True)
    assert torch.allclose(out, F.conv2d(x, f.double()[None, None]), atol=1e-12)

def test_resampling_helpers_keep_sizes_and_mean():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.ones(2, 3, 8, 12)
    up = upfirdn2d.upsample2d(x, f)
    down = upfirdn2d.downsample2d(x, f)
    same = upfirdn2d.filter2d(x, f)
    assert up.shape == (2, 3, 16, 24) and down.shape == (2, 3, 4, 6) and same.shape == x.shape
    # Interior pixels of a constant image keep their value (unit DC gain).
    assert torch.allclose(up[:, :, 4:-4, 4:-4], torch.ones(1)) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.ones(1))

def test_upfirdn2d_gradcheck():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert torch.autograd.gradcheck(lambda t: upfirdn2d.upfirdn2d(t, f, up=2, padding=[2, 1, 2, 1]), [x])
    assert torch.autograd.gradcheck(lambda t: upfirdn2d.downsample2d(t, f), [x])

#----------------------------------------------------------------------------
# bias_act: every activation, values and gradients, against explicit formulas.

def explicit_act(name, x, alpha):
    return {
        'linear': lambda: x,
        'relu': lambda: torch.where(x > 0, x, torch.zeros_like(x)),
        'lrelu': lambda: torch.where(x > 0, x, x * alpha),
        'tanh': lambda: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
        'sigmoid': lambda: 1 / (1 + torch.exp(-x)),
        'elu': lambda: torch.where(x > 0, x, torch.exp(x) - 1),
        'selu': lambda: 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * (torch.exp(x) - 1)),
        'softplus': lambda: torch.log(1 + torch.exp(x)),
        'swish': lambda: x / (1 + torch.exp(-x)),
    }[name]()

@pytest.mark.parametrize('act', sorted(bias_act.activation_funcs))
@pytest.mark.parametrize('shape,dim', [((3, 4, 5, 6), 1), ((7, 5), 1), ((2, 3, 4), 2)])
def test_bias_act_matches_explicit_formula(act, shape, dim):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape[dim], dtype=torch.float64, requires_grad=True)
    spec = bias_act.activation_funcs[act]
    for gain, clamp in [(None, None), (0.7, 0.5)]:
        out = bias_act.bias_act(x, b, dim=dim, act=act, gain=gain, clamp=clamp)
        bshape = [-1 if i == dim else 1 for i in range(len(shape))]
        ref = explicit_act(act, x + b.reshape(bshape), spec.def_alpha) * (spec.def_gain if gain is None else gain)
        if clamp is not None:
            ref = ref.clamp(-clamp, clamp)
        assert torch.allclose(out, ref, atol=1e-10)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, [x, b], g)
        grads_ref = torch.autograd.grad(ref, [x, b], g)
        for a, r in zip(grads, grads_ref):
            assert torch.allclose(a, r, atol=1e-8)

def test_bias_act_gradcheck_and_unknown_activation():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: bias_act.bias_act(a, c, act='lrelu', gain=2.0), [x, b])
    assert torch.autograd.gradgradcheck(lambda a, c: bias_act.bias_act(a, c, act='softplus'), [x, b])
    with pytest.raises(ValueError, match='Unknown activation'):
        bias_act.bias_act(x, act='gelu-ish')

#----------------------------------------------------------------------------
# conv2d_resample: up = conv_transpose + blur, down = blur + strided conv, against explicit chains.

@pytest.mark.parametrize('separable', [True, None])
@pytest.mark.parametrize('groups', [1, 2])
@pytest.mark.parametrize('flip_weight', [True, False])
@pytest.mark.parametrize('hw', [(6, 6), (5, 9)])
def test_conv2d_resample_up_down_match_explicit_chains(groups, flip_weight, hw, separable):
    torch.manual_seed(2)
    x = torch.randn(2, 4, *hw, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], separable=separable)
    f2 = (torch.outer(f, f) if f.ndim == 1 else f).double()
    wc = w if flip_weight else w.flip([2, 3])                  # correlation kernel
    blur = lambda t, pad: F.conv2d(F.pad(t, pad), f2.flip([0, 1])[None, None].repeat(t.shape[1], 1, 1, 1), groups=t.shape[1])

    # Up: zero insertion, pad (all padding goes before the filter), blur with gain 4, valid 3x3 conv.
    u = torch.zeros(2, 4, hw[0] * 2, hw[1] * 2, dtype=torch.float64)
    u[:, :, ::2, ::2] = x
    ref_up = F.conv2d(blur(u, [3, 2, 3, 2]) * 4, wc, groups=groups)
    # Down: pad, valid 3x3 conv, blur, keep every second pixel.
    ref_down = blur(F.conv2d(F.pad(x, [2, 2, 2, 2]), wc, groups=groups), [0, 0, 0, 0])[:, :, ::2, ::2]
    ref_same = F.conv2d(x, wc, padding=1, groups=groups)
    for impl in ['ref', 'auto']:
        up = conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1, groups=groups, flip_weight=flip_weight, impl=impl)
        down = conv2d_resample.conv2d_resample(x, w, f, down=2, padding=1, groups=groups, flip_weight=flip_weight, impl=impl)
        same = conv2d_resample.conv2d_resample(x, w, f, padding=1, groups=groups, flip_weight=flip_weight, impl=impl)
        assert up.shape == ref_up.shape and torch.allclose(up, ref_up, atol=1e-10)
        assert down.shape == ref_down.shape and torch.allclose(down, ref_down, atol=1e-10)
        assert torch.allclose(same, ref_same, atol=1e-10)

def test_conv2d_resample_fast_path_equals_definition_with_uneven_padding():
    torch.manual_seed(3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for kernel in [1, 3]:
        x = torch.randn(1, 3, 7, 5, dtype=torch.float64)
        w = torch.randn(2, 3, kernel, kernel, dtype=torch.float64)
        for kwargs in [dict(up=2, padding=[0, 1, 1, 0]), dict(down=2, padding=[1, 0, 0, 1]), dict(padding=[0, 1, 2, 0])]:
            a = conv2d_resample.conv2d_resample(x, w, f, impl='ref', **kwargs)
            b = conv2d_resample.conv2d_resample(x, w, f, impl='auto', **kwargs)
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-10)

def test_conv2d_resample_gradcheck():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: conv2d_resample.conv2d_resample(a, b, f, up=2, padding=1), [x, w])
    assert torch.autograd.gradcheck(lambda a, b: conv2d_resample.conv2d_resample(a, b, f, down=2, padding=1), [x, w])

#----------------------------------------------------------------------------

def test_fma_equals_multiply_add_with_broadcast_gradients():
    a = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    c = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(fma.fma(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fma.fma, [a, b, c])
