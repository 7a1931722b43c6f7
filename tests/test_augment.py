"""ADA augmentation pipeline and p controller (training/augment.py): every transform acts when
asked and is exactly the identity when not, geometry resamples without leaking borders, the
pipeline is differentiable (twice), and p follows D's overfitting."""
import io
import pickle

import numpy as np
import pytest
import torch

import dnnlib
from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training import augment
from training.augment import AUGPIPE_SPECS, AdaptiveP, AugmentPipe, affine_resample

ALL_OPS = ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
           'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout']


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(n=8, c=3, h=16, w=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand([n, c, h, w], generator=gen) * 2 - 1


def _smooth(h, w, dx=0.0, dy=0.0):
    """A band-limited test image [1, 1, h, w] (low frequencies only), shifted by (dx, dy) px."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5 - dy, torch.arange(w) + 0.5 - dx, indexing='ij')
    return (torch.sin(xs * 0.4 + 0.3) * torch.cos(ys * 0.3))[None, None]


def _pipe(p, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.copy_(torch.as_tensor(p))
    return pipe

#----------------------------------------------------------------------------
# Each transform alone.

@pytest.mark.parametrize('op', ALL_OPS)
def test_each_augmentation_changes_images_at_p1(op):
    x = _images()
    torch.manual_seed(1)
    y = _pipe(1.0, **{op: 1})(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y - x).abs().max() > 1e-2


@pytest.mark.parametrize('op', ALL_OPS)
def test_each_augmentation_is_exactly_identity_at_p0(op):
    x = _images()
    torch.manual_seed(1)
    assert torch.equal(_pipe(0.0, **{op: 1})(x), x)


@pytest.mark.parametrize('op, identity', [('xint', dict(xint_max=0)), ('scale', dict(scale_std=0)),
    ('rotate', dict(rotate_max=0)), ('aniso', dict(aniso_std=0)), ('xfrac', dict(xfrac_std=0))])
def test_geometric_ops_with_identity_parameters_keep_image(op, identity):
    x = _images()
    torch.manual_seed(2)
    torch.testing.assert_close(_pipe(1.0, **{op: 1}, **identity)(x), x, atol=1e-5, rtol=0)

#----------------------------------------------------------------------------
# Geometry: resampling quality, exact blits, borders, sizes.

@pytest.mark.parametrize('shape', [(8, 8), (7, 13), (24, 24)])
def test_resampling_filters_match_upfirdn2d_reference(shape):
    # The strided-convolution paths must equal the host op that defines them.
    h, w = shape
    f = torch.as_tensor(augment._RESAMPLE_FILTER, dtype=torch.float32)
    x = _images(n=2, h=h, w=w)
    margin = f.shape[0] // 4
    ref_up = upfirdn2d.upsample2d(augment._mirror_pad(x, margin, margin, margin, margin), f)
    torch.testing.assert_close(augment.upsample2x(x, f),
        ref_up[:, :, 2 * margin : 2 * margin + 2 * h, 2 * margin : 2 * margin + 2 * w], atol=1e-5, rtol=0)
    torch.testing.assert_close(augment.downsample2x(ref_up, f), upfirdn2d.upfirdn2d(ref_up, f, down=2),
        atol=1e-5, rtol=0)


def test_resampling_identity_matrix_keeps_band_limited_image():
    x = _smooth(32, 32)
    y = affine_resample(x, torch.eye(3)[None])
    assert (y - x).abs().max() < 0.01  # the up/down filters' passband ripple only


def test_fractional_translation_moves_image_by_that_amount():
    # Output position u shows input position u - (0.5, -0.25): the image moves by (+0.5, -0.25) px.
    m = torch.tensor([[[1, 0, -0.5], [0, 1, 0.25], [0, 0, 1.0]]])
    y = affine_resample(_smooth(32, 32), m)
    err = (y - _smooth(32, 32, dx=0.5, dy=-0.25))[..., 4:-4, 4:-4]  # away from the mirrored borders
    assert err.abs().max() < 0.01


def test_zoom_out_is_antialiased():
    # Stripes of period 3 px zoomed out 2x would alias to period 3 again if pixels were just
    # picked; the band-limited path removes them.
    stripes = torch.cos(2 * np.pi * (torch.arange(32) + 0.5) / 3).expand(1, 1, 32, 32).contiguous()
    y = augment.apply_geometry(stripes, torch.diag(torch.tensor([2.0, 2.0, 1.0]))[None])
    assert y[..., 4:-4, 4:-4].std() < 0.2 * stripes.std()


def test_rotate90_is_an_exact_pixel_permutation():
    x = _images(n=16)
    torch.manual_seed(3)
    y = _pipe(1.0, rotate90=1)(x)
    ks = []
    for xi, yi in zip(x, y):
        matches = [k for k in range(4) if torch.equal(torch.rot90(xi, k, dims=(1, 2)), yi)]
        assert len(matches) == 1
        ks += matches
    assert len(set(ks)) > 1


def test_xflip_flips_or_keeps_each_image_exactly():
    x = _images(n=16)
    torch.manual_seed(4)
    y = _pipe(1.0, xflip=1)(x)
    flipped = [torch.equal(yi, xi.flip(2)) for xi, yi in zip(x, y)]
    kept = [torch.equal(yi, xi) for xi, yi in zip(x, y)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


@pytest.mark.parametrize('shape', [(16, 16), (12, 20)])
def test_constant_image_stays_constant_under_geometry(shape):
    # Strong zooms and rotations reach far outside the image: mirrored borders must not leak
    # anything (zeros, edges of the filter) in.
    x = torch.full([8, 3, *shape], 0.7)
    torch.manual_seed(5)
    y = _pipe(1.0, **AUGPIPE_SPECS['bg'], scale_std=1.5, aniso_std=1.0)(x)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize('shape', [(8, 8), (13, 21), (64, 64), (1024, 1024)])
def test_geometry_runs_on_any_size(shape):
    n = 1 if shape[0] > 64 else 4
    x = torch.rand([n, 1, *shape]) * 2 - 1
    torch.manual_seed(6)
    y = _pipe(1.0, **AUGPIPE_SPECS['geom'])(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().max() > 1e-2

#----------------------------------------------------------------------------
# Colour.

def test_lumaflip_negates_luma_and_keeps_chroma():
    x = _images(n=16)
    torch.manual_seed(7)
    y = _pipe(1.0, lumaflip=1)(x)
    luma_x, luma_y = x.mean(dim=1, keepdim=True), y.mean(dim=1, keepdim=True)
    torch.testing.assert_close(y - luma_y, x - luma_x, atol=1e-5, rtol=0)
    flipped = [torch.allclose(ly, -lx, atol=1e-5) for lx, ly in zip(luma_x, luma_y)]
    kept = [torch.equal(yi, xi) for xi, yi in zip(x, y)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped)


def test_hue_and_saturation_keep_grey_pixels():
    grey = _images(n=8, c=1).repeat(1, 3, 1, 1)
    torch.manual_seed(8)
    torch.testing.assert_close(_pipe(1.0, hue=1, saturation=1)(grey), grey, atol=1e-5, rtol=0)


def test_grayscale_images_get_only_brightness_and_contrast():
    x = _images(c=1)
    torch.manual_seed(9)
    assert torch.equal(_pipe(1.0, lumaflip=1, hue=1, saturation=1)(x), x)
    y = _pipe(1.0, brightness=1, contrast=1)(x)
    # Per image an affine map of the grey values: a * x + b.
    for xi, yi in zip(x.flatten(1), y.flatten(1)):
        a, b = np.polyfit(xi.numpy(), yi.numpy(), 1)
        assert np.allclose(a * xi.numpy() + b, yi.numpy(), atol=1e-5)


def test_colour_ops_reject_four_channel_images():
    with pytest.raises(ValueError, match='1 or 3 channels'):
        _pipe(1.0, **AUGPIPE_SPECS['bgc'])(_images(c=4))

#----------------------------------------------------------------------------
# Filtering and corruption.

def test_imgfilter_bands_add_up_to_the_identity():
    bands = augment._band_filters()
    delta = np.zeros(bands.shape[1])
    delta[bands.shape[1] // 2] = 1
    assert np.allclose(bands.sum(axis=0), delta, atol=1e-12)


def test_cutout_zeroes_one_rectangle_at_most_half_the_size():
    x = _images(n=8) * 0.5 + 1.0  # no zeros in the input
    torch.manual_seed(10)
    y = _pipe(1.0, cutout=1)(x)
    for yi in y:
        zero = (yi == 0).all(dim=0)
        rows, cols = zero.any(dim=1).nonzero()[:, 0], zero.any(dim=0).nonzero()[:, 0]
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8
        assert zero[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert zero.sum() == len(rows) * len(cols)

#----------------------------------------------------------------------------
# The whole pipeline.

@pytest.mark.parametrize('name', sorted(AUGPIPE_SPECS))
@pytest.mark.parametrize('size', [16, 32])
def test_every_preset_runs_and_keeps_shape_and_dtype(name, size):
    x = _images(n=4, h=size, w=size)
    torch.manual_seed(11)
    y = _pipe(1.0, **AUGPIPE_SPECS[name])(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)


def test_float64_images_stay_float64():
    x = _images(n=4).double()
    y = _pipe(1.0, **AUGPIPE_SPECS['bgcfnc'])(x)
    assert y.dtype == torch.float64


def test_gradients_flow_to_the_input():
    x = _images(n=4).requires_grad_(True)
    torch.manual_seed(12)
    y = _pipe(1.0, **AUGPIPE_SPECS['bgcfnc'])(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_r1_penalty_backpropagates_through_the_pipeline():
    # R1 differentiates D(aug(x)) w.r.t. x with create_graph=True, then backpropagates again.
    x = _images(n=4).requires_grad_(True)
    weight = torch.randn([3, 16, 16], requires_grad=True)
    torch.manual_seed(13)
    logits = ((_pipe(1.0, **AUGPIPE_SPECS['bgcfnc'])(x) * weight).sum(dim=[1, 2, 3]) ** 2)
    grads, = torch.autograd.grad(logits.sum(), x, create_graph=True)
    grads.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_debug_percentile_gives_deterministic_output():
    pipe = _pipe(0.0, **AUGPIPE_SPECS['bgcfnc'])  # debug views ignore p
    x = _images(n=2)
    torch.manual_seed(14)
    a = pipe(x, debug_percentile=0.3)
    torch.manual_seed(15)
    b = pipe(x, debug_percentile=0.3)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert not torch.equal(pipe(x, debug_percentile=0.8), a)


def test_pipeline_pickles_with_its_p():
    # Built the way train.py builds it; snapshots pickle it with its source (persistent class).
    pipe = dnnlib.util.construct_class_by_name(class_name='training.augment.AugmentPipe', **AUGPIPE_SPECS['bgc'])
    pipe.p.copy_(torch.as_tensor(0.37))
    assert persistence.is_persistent(pipe)
    clone = pickle.load(io.BytesIO(pickle.dumps(pipe)))
    assert float(clone.p) == pytest.approx(0.37)
    x = _images(n=2)
    assert torch.equal(clone(x, debug_percentile=0.6), pipe(x, debug_percentile=0.6))


def test_bad_strength_is_one_clear_error():
    with pytest.raises(ValueError, match='xflip'):
        AugmentPipe(xflip=-1)
    with pytest.raises(ValueError, match='imgfilter_bands'):
        AugmentPipe(imgfilter=1, imgfilter_bands=[1, 1])

#----------------------------------------------------------------------------
# ADA's p controller.

def test_adaptive_p_rises_while_discriminator_overfits():
    ada = AdaptiveP(target=0.6, interval=4, kimg=500, batch_size=32)
    step = 32 * 4 / (500 * 1000)
    ps = []
    for _ in range(10):
        for _ in range(4):
            ada.accumulate(torch.ones(32))  # D is sure every real image is real
        ps.append(ada.update())
    assert ps == pytest.approx([step * (i + 1) for i in range(10)])
    assert ada.rt == 1.0


def test_adaptive_p_falls_to_zero_and_stays_there():
    ada = AdaptiveP(target=0.6, interval=4, kimg=1, batch_size=100, p=1.0)
    ps = [ada.update(-torch.ones(400)) for _ in range(5)]
    assert ps[0] < 1.0 and ps[2] == 0.0 and ps[-1] == 0.0
    assert all(b <= a for a, b in zip(ps, ps[1:]))


def test_adaptive_p_takes_a_mean_sign_and_ignores_missing_stats():
    ada = AdaptiveP(target=0.6, interval=4, kimg=500, batch_size=64, p=0.5)
    assert ada.update(0.9) > 0.5  # a Collector's mean of 'Loss/signs/real'
    p = ada.p
    assert ada.update(0.6) == p  # exactly at the target: no move
    assert ada.update(float('nan')) == p  # no reports in this interval
    assert ada.update() == p
    assert ada.update(0.1) < p


@pytest.mark.parametrize('padding_mode', ['zeros', 'border', 'reflection'])
def test_grid_sample_gradfix_matches_pytorch_to_the_second_derivative(padding_mode):
    # torch_utils.ops.grid_sample_gradfix supplies the second derivative that CUDA's grid_sample lacks;
    # on the CPU, PyTorch's own double backward is the reference.
    from torch_utils.ops import grid_sample_gradfix
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([2, 3, 8, 8], dtype=torch.float64, generator=gen).requires_grad_(True)
    grid = torch.rand([2, 6, 5, 2], dtype=torch.float64, generator=gen) * 2.4 - 1.2      # partly outside the image
    weight = torch.randn([3, 6, 5], dtype=torch.float64, generator=gen)
    results = []
    for sample in (lambda a: grid_sample_gradfix.grid_sample(a, grid, padding_mode=padding_mode),
                   lambda a: torch.nn.functional.grid_sample(a, grid, mode='bilinear', padding_mode=padding_mode, align_corners=False)):
        w = weight.clone().requires_grad_(True)
        logits = (sample(x) * w).sum(dim=[1, 2, 3]) ** 2
        grads, = torch.autograd.grad(logits.sum(), x, create_graph=True)
        grads.square().sum().backward()
        results.append((logits.detach(), grads.detach(), w.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(lambda a: grid_sample_gradfix.grid_sample(a, grid, padding_mode=padding_mode), (x,))


def test_grid_sample_gradfix_refuses_to_differentiate_the_grid_twice():
    from torch_utils.ops import grid_sample_gradfix
    x = torch.randn([1, 1, 4, 4], requires_grad=True)
    grid = (torch.rand([1, 3, 3, 2]) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda g: grid_sample_gradfix.grid_sample(x.detach().double(), g), (grid.detach().double().requires_grad_(True),))
    first, = torch.autograd.grad(grid_sample_gradfix.grid_sample(x, grid).square().sum(), grid, create_graph=True)
    with pytest.raises(NotImplementedError, match='sampling grid must be a constant'):
        first.sum().backward()
