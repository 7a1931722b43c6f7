"""The MS-PE mirror hook on diffusion UNets: diffusers' UNet2DModel and a guided-diffusion style UNet."""
import copy
import io

import pytest
import torch

from guided_style_unet import UNetModel
from mspe_plugin.diffusion import MultiScalePE, _InputHook, _LevelHook, attach, attached, detach
from mspe_plugin.encoding import Canvas, CanvasError, sinusoidal_encoding

R = 16  # training image size of the tiny UNets

# Tiny models: one thread is fastest, and spares a busy machine OpenMP's spinning between cores.
torch.set_num_threads(1)

def make_diffusers():
    diffusers = pytest.importorskip('diffusers')
    return diffusers.UNet2DModel(
        sample_size=R, in_channels=3, out_channels=3, block_out_channels=(8, 16, 16), layers_per_block=1,
        down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D'),
        up_block_types=('UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'), norm_num_groups=4, attention_head_dim=8)

HOSTS = {
    'diffusers': make_diffusers,
    'guided': lambda: UNetModel(R, use_checkpoint=True),
    'guided-updown': lambda: UNetModel(R, use_checkpoint=True, resblock_updown=True),
}

def make(host, seed=0):
    torch.manual_seed(seed)
    return HOSTS[host]()

def run(unet, x, t):
    out = unet(x, t)
    return out.sample if hasattr(out, 'sample') else out

def inputs(n=2, height=R, width=R, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn([n, 3, height, width], generator=g), torch.tensor([3, 700][:n] + [10] * max(n - 2, 0))

def added_terms(unet, handle, x, t):
    """Per hooked module: its hooked output minus its unhooked output on the same forward ([N, C, h, w])."""
    raw, hooked, handles = {}, {}, []
    for name in handle.points:
        module = unet.get_submodule(name)
        # Hooks run in registration order: move ours between a 'before' and an 'after' recorder.
        ours = [(k, h) for k, h in module._forward_hooks.items() if isinstance(h, _LevelHook)]
        for k, _ in ours:
            del module._forward_hooks[k]
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: raw.__setitem__(n, o.detach().clone())))
        for k, h in ours:
            module._forward_hooks[k] = h
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: hooked.__setitem__(n, o.detach().clone())))
    try:
        with torch.no_grad():
            run(unet, x, t)
    finally:
        for h in handles:
            h.remove()
    return {name: hooked[name] - raw[name] for name in handle.points}

#----------------------------------------------------------------------------

def test_hook_points_are_the_input_level_and_every_resampler():
    assert attach(make('guided'), gamma_init=0).points == (
        'input_blocks.0', 'input_blocks.2', 'input_blocks.4', 'output_blocks.1', 'output_blocks.3')
    assert attach(make('guided'), input_level=False).points[0] == 'input_blocks.2'
    # With resblock_updown the whole resampling block is hooked, never a module inside the checkpointed ResBlock.
    assert attach(make('guided-updown')).points == (
        'input_blocks.0', 'input_blocks.2', 'input_blocks.4', 'output_blocks.1', 'output_blocks.3')
    assert attach(make('diffusers')).points == (
        'conv_in', 'down_blocks.0.downsamplers.0', 'down_blocks.1.downsamplers.0',
        'up_blocks.0.upsamplers.0', 'up_blocks.1.upsamplers.0')

@pytest.mark.parametrize('host', HOSTS)
def test_zero_gammas_equal_the_unhooked_model(host):
    unet = make(host)
    x, t = inputs()
    reference = run(unet, x, t)
    handle = attach(unet, gamma_init=0.0)
    assert torch.equal(run(unet, x, t), reference)
    handle.gamma.data.fill_(1.0)
    assert not torch.allclose(run(unet, x, t), reference, atol=1e-3)

@pytest.mark.parametrize('host', HOSTS)
def test_one_training_step_gives_gammas_gradients_and_moves_them(host):
    """Also under guided-diffusion's custom checkpoint, which drops gradients of outside parameters."""
    unet = make(host)
    handle = attach(unet, gamma_init=0.0)
    assert any(p is handle.gamma for p in unet.parameters())
    opt = torch.optim.Adam(unet.parameters(), lr=1e-2)
    x, t = inputs()
    loss = (run(unet, x, t) - torch.randn_like(x)).square().mean()
    loss.backward()
    assert handle.gamma.grad is not None and bool((handle.gamma.grad != 0).all()), handle.gamma.grad
    before = handle.gamma.detach().clone()
    opt.step()
    assert bool((handle.gamma.detach() != before).all())

def test_hook_inside_a_checkpointed_block_is_refused():
    unet = make('guided-updown')
    with pytest.raises(ValueError, match='checkpointed block'):
        attach(unet, modules=['input_blocks.2.0.h_upd'])
    assert attached(unet) is None

@pytest.mark.parametrize('host', HOSTS)
def test_state_dict_round_trip_restores_gammas(host):
    unet = make(host)
    handle = attach(unet)
    with torch.no_grad():
        handle.gamma.copy_(torch.linspace(-0.5, 2.0, len(handle.points)))
    assert 'mspe.gamma' in unet.state_dict()
    buffer = io.BytesIO()
    torch.save(unet.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(host, seed=5)
    fresh_handle = attach(fresh)
    fresh.load_state_dict(torch.load(buffer))
    assert torch.equal(fresh_handle.gamma, handle.gamma)
    x, t = inputs()
    assert torch.equal(run(fresh, x, t), run(unet, x, t))

@pytest.mark.parametrize('host', HOSTS)
def test_detach_restores_the_original_model(host):
    unet = make(host)
    x, t = inputs()
    reference = run(unet, x, t)
    keys = list(unet.state_dict())
    handle = attach(unet, gamma_init=1.0)
    assert not torch.allclose(run(unet, x, t), reference, atol=1e-3)
    handle.remove()
    assert torch.equal(run(unet, x, t), reference)
    assert list(unet.state_dict()) == keys and not hasattr(unet, 'mspe') and attached(unet) is None
    for module in unet.modules():
        hooks = list(module._forward_hooks.values()) + list(module._forward_pre_hooks.values())
        assert not any(isinstance(h, (_LevelHook, _InputHook)) for h in hooks)
    attach(unet, gamma_init=0.0)    # attachable again
    detach(unet)
    with pytest.raises(ValueError, match='no MS-PE attached'):
        detach(unet)

@pytest.mark.parametrize('host', HOSTS)
def test_added_term_is_gamma_times_the_encoding_of_the_level(host):
    unet = make(host)
    handle = attach(unet, gamma_init=0.5)
    x, t = inputs()
    for name, term in added_terms(unet, handle, x, t).items():
        channels, h, w = term.shape[1:]
        stride = R // h
        expected = sinusoidal_encoding(torch.arange(h) * 1.0, torch.arange(w) * 1.0, channels // 4 * 4)
        assert torch.allclose(term, 0.5 * expected[None, :channels].expand_as(term), atol=1e-6), name
        assert stride in (1, 2, 4)

@pytest.mark.parametrize('host', HOSTS)
@pytest.mark.parametrize('shift', [4.0, 4.5, -3.75])
def test_shifted_canvas_shifts_the_added_encoding(host, shift):
    """The added term of a canvas moved by s image pixels equals, at every level, the added term of a
    wider canvas read s * res / R pixels further (whole pixels at the coarsest level, R / 4)."""
    unet = make(host)
    handle = attach(unet, gamma_init=1.0)
    offset = 4 * int(shift // 4) + R    # whole coarsest pixels, >= 0: the wide canvas starts R pixels further left
    x, t = inputs()
    wide_x, _ = inputs(width=3 * R)
    with handle.canvas(Canvas(origin=(0.0, shift))):
        moved = added_terms(unet, handle, x, t)
    with handle.canvas(Canvas(origin=(0.0, shift - offset))):
        wide = added_terms(unet, handle, wide_x, t)
    base = added_terms(unet, handle, x, t)
    for name in handle.points:
        w = moved[name].shape[-1]
        k = offset * w // R
        assert torch.allclose(moved[name], wide[name][..., k:k + w], atol=1e-5), name
        assert not torch.allclose(moved[name], base[name], atol=1e-3), name

@pytest.mark.parametrize('host', ['diffusers', 'guided'])
def test_zoomed_canvas_samples_the_grid_at_one_over_zoom(host):
    unet = make(host)
    handle = attach(unet, gamma_init=1.0)
    x, t = inputs()
    big_x, _ = inputs(height=2 * R, width=2 * R)
    base = added_terms(unet, handle, x, t)
    with handle.canvas(Canvas(zoom=2.0)):
        zoomed = added_terms(unet, handle, big_x, t)
    for name in handle.points:
        assert zoomed[name].shape[-1] == 2 * base[name].shape[-1]
        assert torch.allclose(zoomed[name][..., ::2, ::2], base[name], atol=1e-6), name

def test_canvas_context_restores_and_set_canvas_persists():
    unet = make('guided')
    handle = attach(unet)
    canvas = Canvas(origin=(1.0, 2.0))
    with handle.canvas(canvas):
        assert handle.module.current_canvas == canvas
    assert handle.module.current_canvas is None
    handle.set_canvas(canvas)
    assert handle.module.current_canvas == canvas
    handle.set_canvas(None)
    with pytest.raises(CanvasError, match='Canvas or None'):
        handle.set_canvas((1, 2))

def test_canvas_size_must_match_the_input():
    unet = make('guided')
    handle = attach(unet)
    x, t = inputs()
    with handle.canvas(Canvas(size=(R, 2 * R))), pytest.raises(CanvasError, match='differs from the UNet input size'):
        run(unet, x, t)
    with handle.canvas(Canvas(size=(R, 2 * R))):
        assert run(unet, *inputs(width=2 * R)).shape[-1] == 2 * R

@pytest.mark.parametrize('host', ['diffusers', 'guided'])
def test_deepcopy_for_ema_uses_its_own_gammas(host):
    unet = make(host)
    x, t = inputs()
    reference = run(unet, x, t)
    attach(unet, gamma_init=1.0)
    ema = copy.deepcopy(unet)
    with torch.no_grad():
        ema.mspe.gamma.zero_()
    assert torch.equal(run(ema, x, t), reference)
    assert not torch.allclose(run(unet, x, t), reference, atol=1e-3)
    detach(ema)
    assert hasattr(unet, 'mspe') and torch.equal(run(ema, x, t), reference)

def test_partial_channel_encoding_leaves_other_channels_untouched():
    unet = make('guided')
    handle = attach(unet, channels_per_level=4, gamma_init=1.0)
    terms = added_terms(unet, handle, *inputs())
    for name, term in terms.items():
        assert term[:, 4:].abs().max() == 0 and term[:, :4].abs().max() > 0.5, name
    with pytest.raises(ValueError, match='positive multiple of 4'):
        attach(make('guided'), channels_per_level=6)
    with pytest.raises(ValueError, match='one entry per hooked module'):
        attach(make('guided'), channels_per_level=[4, 4])

class _PlainUNet(torch.nn.Module):
    """A UNet with a layout the hook does not know."""
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2)
        self.head = torch.nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x, t):
        h = self.stem(x)
        return self.head(torch.cat([h, self.up(self.down(h))], dim=1))

def test_any_unet_by_module_names():
    unet = _PlainUNet()
    with pytest.raises(ValueError, match='name them with attach'):
        attach(unet, image_size=R)
    with pytest.raises(ValueError, match='no module named'):
        attach(unet, image_size=R, modules=['down', 'nope'])
    with pytest.raises(ValueError, match='image size'):
        attach(unet, modules=['down'])
    handle = attach(unet, image_size=R, modules=['stem', 'down', 'up'], gamma_init=1.0)
    terms = added_terms(unet, handle, *inputs())
    assert [tuple(terms[n].shape[-2:]) for n in handle.points] == [(R, R), (R // 2, R // 2), (R, R)]
    # The upsampled level reads the same grid as the stem's level.
    assert torch.allclose(terms['up'], terms['stem'], atol=1e-6)
    with pytest.raises(ValueError, match='already attached'):
        attach(unet, image_size=R, modules=['down'])
    assert isinstance(unet.mspe, MultiScalePE)
