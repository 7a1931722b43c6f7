"""The sinusoidal encoding (Eq. 1-2) and the Canvas: shift, zoom, size, roll, extrapolation."""
import math

import pytest
import torch

from mspe_plugin.encoding import Canvas, CanvasError, sinusoidal_encoding

R = 32  # training resolution of the canvases below

#----------------------------------------------------------------------------
# The encoding.

@pytest.mark.parametrize('base', [100.0, 10000.0])
def test_encoding_matches_eq_1_2_by_hand(base):
    """pe(i, 2k) = sin(i / base^(k/d)), pe(i, 2k+1) = cos(i / base^(k/d)), d = C/4; x half first."""
    C, d = 8, 2
    pe = sinusoidal_encoding(torch.tensor([0.0, 3.0]), torch.tensor([0.0, 1.0, 5.0]), C, base=base)
    assert pe.shape == (C, 2, 3) and pe.dtype == torch.float32
    y, x = 3.0, 5.0
    root = math.sqrt(base)  # base^(k/d) for k = 1, d = 2
    expected = [math.sin(x), math.cos(x), math.sin(x / root), math.cos(x / root),     # x (width) half
                math.sin(y), math.cos(y), math.sin(y / root), math.cos(y / root)]     # y (height) half
    assert pe[:, 1, 2].tolist() == pytest.approx(expected, abs=1e-6)
    # Written out for the two bases: the second frequency is 1/10 (paper) or 1/100 (authors' code).
    assert pe[2, 1, 2].item() == pytest.approx(math.sin(0.5) if base == 100.0 else math.sin(0.05), abs=1e-6)
    # Origin: sin 0 = 0, cos 0 = 1 in every frequency.
    assert pe[:, 0, 0].tolist() == pytest.approx([0, 1, 0, 1, 0, 1, 0, 1], abs=1e-7)

def test_encoding_halves_depend_on_one_axis_each():
    pe = sinusoidal_encoding(torch.arange(5.0), torch.arange(7.0), 16)
    assert torch.equal(pe[:8], pe[:8, :1].expand(-1, 5, -1))    # x half constant along y
    assert torch.equal(pe[8:], pe[8:, :, :1].expand(-1, -1, 7))  # y half constant along x

def test_encoding_is_accurate_at_large_fractional_coordinates():
    c = 123456.25
    pe = sinusoidal_encoding(torch.tensor([0.0]), torch.tensor([c], dtype=torch.float64), 4)
    assert pe[0, 0, 0].item() == pytest.approx(math.sin(c), abs=1e-6)
    assert pe[1, 0, 0].item() == pytest.approx(math.cos(c), abs=1e-6)

@pytest.mark.parametrize('channels', [0, 6, 10, -4, 8.0])
def test_encoding_rejects_channels_not_a_multiple_of_4(channels):
    with pytest.raises(ValueError, match='divisible by 4'):
        sinusoidal_encoding(torch.arange(2.0), torch.arange(2.0), channels)

def test_encoding_cache_returns_the_same_values():
    a = sinusoidal_encoding(torch.arange(4.0), torch.arange(6.0) + 0.5, 8)
    b = sinusoidal_encoding(torch.arange(4.0), torch.arange(6.0) + 0.5, 8)
    c = sinusoidal_encoding(torch.arange(4.0), torch.arange(6.0) + 0.25, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)

#----------------------------------------------------------------------------
# Canvas coordinates.

def test_default_canvas_coords_are_exactly_arange():
    for res in (4, 8, 16, 32):
        ys, xs = Canvas().grid(res, R)
        assert torch.equal(ys, torch.arange(res, dtype=torch.float64))
        assert torch.equal(xs, torch.arange(res, dtype=torch.float64))
        assert torch.equal(Canvas(size=(R, R), wrap=True).grid(res, R)[1], xs)
    assert Canvas().is_default(R) and Canvas(size=(R, R)).is_default(R)
    assert not Canvas(origin=(0, 1)).is_default(R) and not Canvas(zoom=2).is_default(R)
    assert not Canvas(size=(R, 2 * R)).is_default(R)

@pytest.mark.parametrize('shift', [(5.0, -3.0), (2.5, 0.75), (-0.25, 11.125)])
def test_grid_at_origin_s_is_base_grid_moved_by_s_res_over_R(shift):
    canvas = Canvas(origin=shift)
    for res in (4, 8, 16, 32):
        ys, xs = canvas.grid(res, R)
        base_ys, base_xs = Canvas().grid(res, R)
        assert torch.allclose(ys, base_ys + shift[0] * res / R, atol=1e-12)
        assert torch.allclose(xs, base_xs + shift[1] * res / R, atol=1e-12)

def test_integer_shift_moves_the_encoding_by_whole_pixels():
    """A canvas moved by 8 image pixels equals the wider canvas read 8 * res / R pixels later."""
    wide = Canvas(size=(R, 2 * R))
    moved = Canvas(origin=(0, 8), size=(R, R))
    for res in (4, 8, 16, 32):
        k = 8 * res // R
        assert torch.allclose(moved.encoding(res, R, 16), wide.encoding(res, R, 16)[:, :, k:k + res], atol=1e-6)

def test_shifted_is_origin_plus_shift():
    assert Canvas(origin=(1, 2)).shifted(0.5, -4) == Canvas(origin=(1.5, -2.0))

def test_wrap_is_floor_modulo_of_the_training_extent():
    canvas = Canvas(origin=(-2.25, 3.5), wrap=True)
    for res in (4, 8, 32):
        ys, xs = canvas.grid(res, R)
        plain_ys, plain_xs = Canvas(origin=(-2.25, 3.5)).grid(res, R)
        assert torch.allclose(ys, torch.remainder(plain_ys, res), atol=1e-12)
        assert torch.allclose(xs, torch.remainder(plain_xs, res), atol=1e-12)
        assert ys.min() >= 0 and ys.max() < res and xs.min() >= 0 and xs.max() < res
    xs = canvas.grid(R, R)[1]
    assert xs[:3].tolist() == [3.5, 4.5, 5.5] and xs[-3:].tolist() == [0.5, 1.5, 2.5]  # continuous roll
    assert canvas.grid(R, R)[0][0].item() == 29.75

def test_integer_wrap_is_a_circular_roll_of_the_encoding():
    rolled = Canvas(origin=(0, 12), wrap=True)
    for res in (8, 16, 32):
        k = 12 * res // R
        # sin/cos of c and c mod res differ only by float rounding.
        expected = torch.roll(Canvas().encoding(res, R, 8, base=100.0), shifts=-k, dims=2)
        assert torch.allclose(rolled.encoding(res, R, 8, base=100.0), expected, atol=1e-5)

def test_zoom_spaces_coordinates_by_one_over_zoom():
    for zoom in (1.5, 2.0, 0.5):
        canvas = Canvas(origin=(1.0, 2.0), zoom=zoom)
        for res in (4, 16, 32):
            ys, xs = canvas.grid(res, R)
            assert torch.allclose(xs[1:] - xs[:-1], torch.full_like(xs[1:], 1 / zoom), atol=1e-12)
            assert xs[0].item() == pytest.approx(2.0 * res / R) and ys[0].item() == pytest.approx(1.0 * res / R)
            # The rendered grid covers the training extent (res pixels of this scale) at any zoom.
            assert len(xs) / zoom == pytest.approx(res, abs=4 / zoom)

def test_from_extent_beyond_the_boundary():
    canvas = Canvas.from_extent(((0, R), (-0.5 * R, 1.5 * R)))
    assert canvas.origin == (0.0, -16.0) and canvas.size == (R, 2 * R) and canvas.zoom == 1.0
    assert canvas.output_size(R) == (R, 2 * R)
    for res in (4, 8, 32):
        ys, xs = canvas.grid(res, R)
        assert torch.equal(ys, torch.arange(res, dtype=torch.float64))
        assert torch.allclose(xs, torch.arange(2 * res, dtype=torch.float64) - res / 2)
    zoomed = Canvas.from_extent(((0, 8), (-4, 12)), zoom=2)
    assert zoomed.origin == (0.0, -4.0) and zoomed.size == (16, 32) and zoomed.zoom == 2.0

#----------------------------------------------------------------------------
# Canvas sizes.

@pytest.mark.parametrize('canvas, out, render4, render32', [
    (Canvas(), (32, 32), (4, 4), (32, 32)),
    (Canvas(zoom=1.5), (48, 48), (6, 6), (48, 48)),                        # 256 model rendered at 384
    (Canvas(size=(R, 2 * R)), (32, 64), (4, 8), (32, 64)),                  # 2x width
    (Canvas(size=(32, 48)), (32, 48), (4, 6), (32, 48)),                    # 256 x 384 style aspect
    (Canvas(size=(21, 37)), (21, 37), (3, 5), (24, 40)),                    # rendered larger, then cropped
    (Canvas(zoom=0.5), (16, 16), (2, 2), (16, 16)),
    (Canvas.from_extent(((0, R), (-16, 48))), (32, 64), (4, 8), (32, 64)),  # beyond the boundary
])
def test_output_and_render_sizes(canvas, out, render4, render32):
    assert canvas.output_size(R) == out
    assert canvas.render_size(4, R) == render4
    assert canvas.render_size(32, R) == render32
    assert canvas.render_size(8, R) == (2 * render4[0], 2 * render4[1])
    assert canvas.encoding(8, R, 8).shape == (8, 2 * render4[0], 2 * render4[1])
    h, w = canvas.render_size(R, R)
    assert h >= out[0] and w >= out[1]

def test_render_size_with_another_coarsest_scale():
    # Coarsest scale 8 px at R = 32: whole cells of 4 image pixels, ceil(20 / 4) x ceil(33 / 4).
    assert Canvas(size=(20, 33)).render_size(8, R, coarsest=8) == (5, 9)
    assert Canvas(size=(20, 33)).render_size(32, R, coarsest=8) == (20, 36)

#----------------------------------------------------------------------------
# Invalid canvases.

@pytest.mark.parametrize('kwargs', [
    dict(size=(0, 32)), dict(size=(32, -4)), dict(size=(32.5, 32)), dict(size='32x32'), dict(size=(32,)),
    dict(origin=(float('nan'), 0)), dict(origin=(0, float('inf'))), dict(origin=(1, 2, 3)),
    dict(zoom=0), dict(zoom=-1.5), dict(zoom=float('nan')), dict(zoom=float('inf')), dict(zoom='big'),
])
def test_invalid_canvas_raises_one_clear_sentence(kwargs):
    with pytest.raises(CanvasError) as info:
        Canvas(**kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith('The canvas ') and message.endswith('.') and '\n' not in message

@pytest.mark.parametrize('extent, zoom', [
    (((0, 32), (16, 16)), 1.0), (((32, 0), (0, 32)), 1.0), (((0, float('nan')), (0, 32)), 1.0),
    (((0, 32), (0, 32)), 0.0), ((0, 32), 1.0), (((0, 0.1), (0, 0.1)), 1.0),
])
def test_invalid_extent_raises_one_clear_sentence(extent, zoom):
    with pytest.raises(CanvasError) as info:
        Canvas.from_extent(extent, zoom=zoom)
    message = str(info.value)
    assert message.endswith('.') and '\n' not in message

def test_integer_valued_sizes_are_accepted():
    assert Canvas(size=(32.0, 48)).size == (32, 48)
    assert Canvas(size=16).size == (16, 16)
