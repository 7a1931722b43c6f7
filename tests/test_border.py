"""The image border as a position cue: padding-free generators, canvas margins, training margins.

A zero-padded convolution sees where the image ends, so a generator can place content by its
distance to the edge. These tests check that the padding-free walk (pe_padding='none') and a
canvas margin of at least the receptive radius take that cue away exactly: a canvas moved by whole
coarse pixels gives the same pixels over the whole image, and tiles agree with one big render.
"""
import numpy as np
import pytest
import torch

from mspe_plugin import networks as pe_networks
from mspe_plugin.encoding import Canvas, CanvasError
from torch_utils.ops import upfirdn2d

R = 32
COARSE = R // 4     # training pixels per pixel of the coarsest (4x4) scale

def make_G(pe='mspe', padding='zero', architecture='skip', margin=0, seed=0):
    torch.manual_seed(seed)
    return pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=R, img_channels=3,
        synthesis_kwargs=dict(pe=pe, pe_padding=padding, pe_margin=margin, channel_base=256, channel_max=16,
                              architecture=architecture)).eval()

def latents(G, n=2, seed=1):
    torch.manual_seed(seed)
    return G.mapping(torch.randn([n, G.z_dim]), None).detach()

def render(G, ws, **canvas):
    return G.synthesis(ws, canvas=Canvas(**canvas), noise_mode='const').detach()

def ring(fn, x, crop):
    """Pixels per side where fn(x cropped by `crop`) differs from fn(x) cropped to match: how far
    zero padding reaches into fn's output."""
    full, part = fn(x), fn(x[:, :, crop:-crop, crop:-crop])
    offset = (full.shape[-1] - part.shape[-1]) // 2
    diff = (full[:, :, offset:offset + part.shape[-2], offset:offset + part.shape[-1]] - part).abs().amax(dim=(0, 1))
    return next(k for k in range(diff.shape[0] // 2) if diff[k:diff.shape[0] - k, k:diff.shape[1] - k].max() < 1e-5)

def test_padding_rings_match_the_host_layers():
    """The rings the padding-free walk crops are the ones the host's layers really have."""
    G = make_G(architecture='resnet')
    block = G.synthesis.b16
    w = latents(G)[:, 0]
    layer = lambda conv: (lambda x: pe_networks._synthesis_layer(conv, x, w, None, False))
    torch.manual_seed(0)
    assert ring(layer(block.conv0), torch.randn([2, 16, 20, 20]), 4) == pe_networks._RING_UP_CONV
    assert ring(layer(block.conv1), torch.randn([2, 16, 40, 40]), 4) == pe_networks._RING_CONV
    assert ring(lambda x: upfirdn2d.upsample2d(x, block.resample_filter), torch.randn([2, 3, 20, 20]), 4) == pe_networks._RING_UP_FILTER
    assert ring(lambda x: block.skip(x), torch.randn([2, 16, 20, 20]), 4) <= pe_networks._RING_UP_CONV

@pytest.mark.parametrize('architecture', ['skip', 'resnet', 'orig'])
@pytest.mark.parametrize('pe', ['mspe', 'sspe', 'none'])
def test_padding_free_canvas_shift_moves_every_pixel(pe, architecture):
    """Padding-free: a canvas moved by whole coarse pixels shows the same image moved, up to the edge."""
    G = make_G(pe, 'none', architecture)
    ws = latents(G)
    a = render(G, ws, size=(R, R + 2 * COARSE))
    b = render(G, ws, origin=(COARSE, 2 * COARSE), size=(R, R + 2 * COARSE))
    torch.testing.assert_close(b[:, :, :R - COARSE, :R], a[:, :, COARSE:, 2 * COARSE:], atol=1e-5, rtol=0)

def test_zero_padding_shift_differs_at_the_edge_without_margin():
    """The cue the margin removes: zero padded, the edge pixels of a moved canvas differ."""
    G = make_G('mspe', 'zero')
    ws = latents(G)
    a = render(G, ws, size=(R, R + 2 * COARSE))
    b = render(G, ws, origin=(COARSE, 2 * COARSE), size=(R, R + 2 * COARSE))
    assert (b[:, :, :R - COARSE, :R] - a[:, :, COARSE:, 2 * COARSE:]).abs().max() > 1e-2

@pytest.mark.parametrize('architecture', ['skip', 'resnet'])
def test_margin_of_the_receptive_radius_makes_zero_padding_invisible(architecture):
    """Zero padded with a margin >= the receptive radius: a whole-coarse-pixel shift moves every
    pixel exactly, and a smaller margin does not."""
    G = make_G('mspe', 'zero', architecture)
    ws = latents(G)
    radius = G.synthesis.receptive_radius()
    assert radius == 4 * COARSE
    for margin, exact in ((radius, True), (COARSE, False)):
        a = render(G, ws, size=(R, R + 2 * COARSE), margin=margin)
        b = render(G, ws, origin=(COARSE, 2 * COARSE), size=(R, R + 2 * COARSE), margin=margin)
        diff = (b[:, :, :R - COARSE, :R] - a[:, :, COARSE:, 2 * COARSE:]).abs().max()
        assert (diff < 1e-5) == exact, (margin, float(diff))

def test_margin_zero_is_the_plain_render():
    """Margin 0 is the canvas as before: the training grid equals the canvas-free call bit for
    bit, and a margin changes only what zero padding reaches."""
    G = make_G('mspe', 'zero')
    ws = latents(G)
    plain = G.synthesis(ws, noise_mode='const')
    assert torch.equal(plain, G.synthesis(ws, canvas=Canvas(margin=0), noise_mode='const'))
    wide = render(G, ws, size=(3 * R, 3 * R), margin=0)
    with_margin = render(G, ws, size=(3 * R, 3 * R), margin=G.synthesis.receptive_radius())
    centre = (slice(None), slice(None), slice(3 * R // 2 - 4, 3 * R // 2 + 4), slice(3 * R // 2 - 4, 3 * R // 2 + 4))
    torch.testing.assert_close(wide[centre], with_margin[centre], atol=1e-5, rtol=0)
    assert (wide - with_margin).abs().max() > 1e-2

@pytest.mark.parametrize('padding,margin', [('none', 0), ('zero', 32)])
def test_tiles_equal_one_big_render(padding, margin):
    """Tiles rendered independently (padding-free, or zero padded with a margin) are exactly the
    pieces of one render of the whole canvas, including at fractional origins."""
    G = make_G('mspe', padding)
    ws = latents(G, n=1)
    whole = render(G, ws, origin=(-3.5, 5.0), size=(R, 4 * R), margin=margin)
    tiles = [render(G, ws, origin=(-3.5, 5.0 + k * R), size=(R, R), margin=margin) for k in range(4)]
    torch.testing.assert_close(torch.cat(tiles, dim=3), whole, atol=1e-5, rtol=0)

def test_padding_free_default_render_needs_no_plugin_tables():
    """The padding-free training grid renders from the tables stored in the network (a snapshot
    loaded without mspe_plugin) and equals the same canvas computed through mspe_plugin."""
    G = make_G('mspe', 'none')
    ws = latents(G)
    plain = G.synthesis(ws, noise_mode='const')
    via_canvas = G.synthesis(ws, canvas=Canvas(origin=(0.0, 0.0), size=(R, R + 1)), noise_mode='const')[:, :, :, :R]
    torch.testing.assert_close(plain, via_canvas, atol=1e-5, rtol=0)

def test_training_margins_render_the_training_grid_with_a_moved_edge():
    """pe_margin: every training forward shows D exactly R x R pixels of the content at its fixed
    coordinates, rendered inside a larger canvas whose edge moves from step to step."""
    G = make_G('mspe', 'zero', margin=8).train()
    ws = latents(G)
    np.random.seed(3)
    top, bottom, left, right = (int(m) for m in np.random.randint(0, 9, size=4))
    np.random.seed(3)
    trained = G.synthesis(ws, noise_mode='const').detach()
    assert trained.shape == (2, 3, R, R)
    bigger = G.synthesis(ws, canvas=Canvas(origin=(-top, -left), size=(R + top + bottom, R + left + right)), noise_mode='const')
    torch.testing.assert_close(trained, bigger[:, :, top:top + R, left:left + R].detach(), atol=1e-6, rtol=0)
    assert max(top, bottom, left, right) > 0
    assert not torch.allclose(trained, G.eval().synthesis(ws, noise_mode='const').detach(), atol=1e-3)

def test_bad_margins_and_paddings_are_refused():
    with pytest.raises(CanvasError, match='margin'):
        Canvas(margin=-1)
    with pytest.raises(ValueError, match='pe_padding'):
        make_G(padding='reflect')
    with pytest.raises(ValueError, match='pe_margin'):
        make_G(margin=-2)

def test_training_windows_render_a_moved_window_and_move_the_reals_alike():
    """pe_translate: G renders the window [t, t + R) of its canvas; the reals' loss wrapper moves
    real images so that content at x shows at x - t, filling with the image's border colour."""
    from mspe_plugin.translate import TranslatedRealsLoss, translate_images
    G = make_G('mspe', 'zero').train()
    G.synthesis.pe_translate = 8
    ws = latents(G)
    np.random.seed(4)
    np.random.randint(0, 1, size=4)                       # the margin draw (pe_margin = 0)
    ty, tx = (int(t) for t in np.random.randint(-8, 9, size=2))
    np.random.seed(4)
    trained = G.synthesis(ws, noise_mode='const').detach()
    assert (ty, tx) != (0, 0)
    torch.testing.assert_close(trained, render(G.eval(), ws, origin=(ty, tx)), atol=1e-6, rtol=0)

    img = -torch.ones([2, 3, R, R])
    img[:, :, 2:10, 3:9] = torch.rand([2, 3, 8, 6])
    moved = translate_images(img, 5, -3)
    assert torch.equal(moved[:, :, 7:15, 0:6], img[:, :, 2:10, 3:9])
    assert (moved[:, :, :5] == -1).all() and (moved[:, :, :, -3:] == -1).all()

    class Inner:
        pl_mean = torch.tensor(1.5)
        def __init__(self, **kwargs):
            self.seen = []
        def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
            self.seen.append(real_img)
    import sys
    sys.modules[__name__].Inner = Inner
    loss = TranslatedRealsLoss(translate=6, inner_class_name=f'{__name__}.Inner')
    assert float(loss.pl_mean) == 1.5                     # the training loop saves the inner loss's state
    np.random.seed(7)
    dy, dx = (int(t) for t in np.random.randint(-6, 7, size=2))
    np.random.seed(7)
    loss.accumulate_gradients('Dmain', img, None, None, None, True, 1)
    assert torch.equal(loss.inner.seen[0], translate_images(img, -dy, -dx))
