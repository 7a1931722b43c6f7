"""MS-PE / SS-PE / baseline generators of mspe_plugin.networks on canvases."""
import pytest
import torch

from mspe_plugin import networks as pe_networks
from mspe_plugin.encoding import Canvas
from torch_utils import misc
from training import networks as host_networks

torch.set_num_threads(1)
R = 32

def make_G(pe, res=R, seed=0, **synthesis):
    torch.manual_seed(seed)
    return pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                                 mapping_kwargs=dict(num_layers=2),
                                 synthesis_kwargs=dict(channel_base=16 * res, channel_max=32, pe=pe, **synthesis)).eval()

def with_noise(G, strength=0.3):
    for module in G.modules():
        if isinstance(module, host_networks.SynthesisLayer):
            module.noise_strength.data.fill_(strength)
    return G

@pytest.mark.parametrize('pe', ['mspe', 'sspe', 'none'])
def test_default_canvas_is_plain_generation(pe):
    G = with_noise(make_G(pe))
    ws = G.mapping(torch.randn([2, 8]), None)
    plain = G.synthesis(ws, noise_mode='const')
    assert plain.shape == (2, 3, R, R)
    assert torch.equal(plain, G.synthesis(ws, canvas=Canvas(), noise_mode='const'))
    assert torch.equal(plain, G.synthesis(ws, canvas=Canvas(size=(R, R)), noise_mode='const'))

def test_stored_tables_equal_the_encoding_of_the_training_grid():
    G = make_G('mspe')
    for res in G.synthesis.block_resolutions:
        stored = G.synthesis._encoding(res, None, ((0, res), (0, res)), 'cpu')
        channels = stored.shape[0]
        ref = Canvas().encoding(res, R, channels, base=10000.0)
        assert stored.shape == (channels, res, res)
        assert torch.allclose(stored, ref, atol=1e-6)

def test_mspe_structure_replaces_constant_and_adds_one_gamma_per_block():
    G = make_G('mspe')
    names = dict(G.named_parameters())
    assert 'synthesis.b4.const' not in names
    assert sorted(n for n in names if 'pe_gamma' in n) == [f'synthesis.pe_gamma{r}' for r in (16, 32, 8)]
    assert all(names[f'synthesis.pe_gamma{r}'].item() == 1.0 for r in (8, 16, 32))
    assert not any('pe_gamma' in n for n, _ in make_G('sspe').named_parameters())
    assert 'synthesis.b4.const' in dict(make_G('none').named_parameters())
    assert G.num_ws == make_G('none').num_ws == G.mapping.num_ws

def test_gamma_zero_makes_per_block_adds_no_ops():
    """MS-PE with every gamma at 0 equals the same weights without the adds (SS-PE)."""
    mspe, sspe = with_noise(make_G('mspe', seed=1)), with_noise(make_G('sspe', seed=2))
    for name, p in mspe.named_parameters():
        if 'pe_gamma' in name:
            p.data.zero_()
    copied = misc.copy_params_and_buffers(mspe, sspe, require_all=False)
    assert len(copied) == len(dict(sspe.named_parameters())) + len(dict(sspe.named_buffers()))
    ws = mspe.mapping(torch.randn([2, 8]), None)
    assert torch.equal(mspe.synthesis(ws, noise_mode='const'), sspe.synthesis(ws, noise_mode='const'))
    with torch.no_grad():
        mspe.synthesis.pe_gamma16.fill_(0.5)
    assert not torch.allclose(mspe.synthesis(ws, noise_mode='const'), sspe.synthesis(ws, noise_mode='const'))

@pytest.mark.parametrize('pe', ['mspe', 'sspe', 'none'])
@pytest.mark.parametrize('noise_mode', ['none', 'const'])
def test_shift_by_whole_coarse_pixels_is_exactly_equivariant(pe, noise_mode):
    """A canvas moved by R/4 image pixels equals the wide canvas moved by R/4, away from borders."""
    G = with_noise(make_G(pe, seed=3))
    ws = G.mapping(torch.randn([2, 8]), None)
    step = R // 4
    for shift in [(0, step), (step, 2 * step)]:
        wide = G.synthesis(ws, canvas=Canvas(size=(5 * R, 5 * R)), noise_mode=noise_mode)
        moved = G.synthesis(ws, canvas=Canvas(origin=shift, size=(5 * R, 5 * R)), noise_mode=noise_mode)
        dy, dx = shift
        a = wide[:, :, dy + 48:dy + 112, dx + 48:dx + 112]   # 48 px (1.5 R) from every border
        b = moved[:, :, 48:112, 48:112]
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()

def test_fractional_shift_changes_mspe_output_smoothly():
    G = make_G('mspe', seed=4)
    ws = G.mapping(torch.randn([1, 8]), None)
    base = G.synthesis(ws, canvas=Canvas(origin=(0.0, 0.0), size=(R, R)), noise_mode='none')
    tiny = G.synthesis(ws, canvas=Canvas(origin=(0.0, 0.01), size=(R, R)), noise_mode='none')
    half = G.synthesis(ws, canvas=Canvas(origin=(0.0, 0.5), size=(R, R)), noise_mode='none')
    assert 0 < (tiny - base).abs().max() < (half - base).abs().max()

@pytest.mark.parametrize('pe', ['mspe', 'sspe', 'none'])
def test_canvas_outputs_have_requested_sizes(pe):
    G = make_G(pe)
    ws = G.mapping(torch.randn([2, 8]), None)
    cases = [
        (Canvas(zoom=1.5), (48, 48)),
        (Canvas(size=(R, 2 * R)), (R, 2 * R)),
        (Canvas(size=(R, 3 * R // 2)), (R, 48)),                      # 256 x 384 style aspect
        (Canvas(size=(21, 37)), (21, 37)),                            # not a multiple of R/4: crop
        (Canvas.from_extent(((0, R), (-R / 2, 1.5 * R))), (R, 2 * R)),  # beyond the boundary
        (Canvas(origin=(3.5, -2.25), wrap=True), (R, R)),
        (Canvas(zoom=0.5), (16, 16)),
    ]
    for canvas, size in cases:
        img = G.synthesis(ws, canvas=canvas, noise_mode='const')
        assert tuple(img.shape) == (2, 3) + size, canvas
        assert torch.isfinite(img).all()
        assert G.synthesis(ws, canvas=canvas, noise_mode='random').shape == img.shape

def test_cropped_canvas_is_the_corner_of_the_larger_render():
    G = make_G('mspe')
    ws = G.mapping(torch.randn([1, 8]), None)
    big = G.synthesis(ws, canvas=Canvas(size=(24, 40)), noise_mode='const')
    small = G.synthesis(ws, canvas=Canvas(size=(21, 37)), noise_mode='const')
    assert torch.equal(big[:, :, :21, :37], small)

def test_baseline_reads_its_constant_rolled_and_blended():
    G = make_G('none')
    const = G.synthesis.b4.const
    rolled = G.synthesis._constant(Canvas(origin=(0, R // 4), wrap=True))
    assert torch.allclose(rolled, torch.roll(const, shifts=-1, dims=2), atol=1e-6)
    half = G.synthesis._constant(Canvas(origin=(0, R // 8)))
    assert torch.allclose(half, 0.5 * (const + torch.roll(const, shifts=-1, dims=2)), atol=1e-6)

def test_mspe_resumes_every_matching_parameter_from_a_baseline():
    torch.manual_seed(5)
    host = host_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=R, img_channels=3,
                                   mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=16 * R, channel_max=32))
    G = make_G('mspe', seed=6)
    copied = set(misc.copy_params_and_buffers(host, G))
    host_names = {n for n, _ in misc.named_params_and_buffers(host)}
    assert copied == host_names - {'synthesis.b4.const'}
    for name in copied:
        assert torch.equal(dict(misc.named_params_and_buffers(G))[name], dict(misc.named_params_and_buffers(host))[name])

def test_random_resizing_renders_at_training_resolution():
    G = make_G('mspe', pe_resize=(0.5, 2.0)).train()
    ws = G.mapping(torch.randn([2, 8]), None)
    shapes = {tuple(G.synthesis(ws).shape) for _ in range(6)}
    assert shapes == {(2, 3, R, R)}
    outs = [G.synthesis(ws, noise_mode='none') for _ in range(4)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])    # the zoom varies per step
    G.eval()
    assert torch.equal(G.synthesis(ws, noise_mode='none'), G.synthesis(ws, noise_mode='none'))

def test_bad_pe_settings_give_one_sentence():
    with pytest.raises(ValueError, match='Unknown positional encoding'):
        make_G('fourier')
    with pytest.raises(ValueError, match='divisible by 4'):
        pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                              synthesis_kwargs=dict(channel_base=16 * 6, channel_max=6, pe='mspe'))
    with pytest.raises(ValueError, match='pe_resize'):
        make_G('mspe', pe_resize=(2.0, 0.5))
