"""MS-PE / SS-PE / baseline generators of mspe_plugin.networks on canvases."""
import numpy as np
import pytest
import torch

from mspe_plugin import networks as pe_networks
from mspe_plugin.encoding import Canvas, sinusoidal_encoding
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

# Canvases of the model card: (canvas, output size, origin (y, x) in training pixels, zoom, wrap).
CANVAS_CASES = {
    'zoom-in':  (Canvas(zoom=1.5), (48, 48), (0.0, 0.0), 1.5, False),
    'zoom-out': (Canvas(zoom=0.5), (16, 16), (0.0, 0.0), 0.5, False),
    'wide':     (Canvas(size=(R, 2 * R)), (R, 2 * R), (0.0, 0.0), 1.0, False),
    'aspect':   (Canvas(size=(R, 3 * R // 2)), (R, 48), (0.0, 0.0), 1.0, False),
    'crop':     (Canvas(size=(21, 37)), (21, 37), (0.0, 0.0), 1.0, False),
    'beyond':   (Canvas.from_extent(((0, R), (-R / 2, 1.5 * R))), (R, 2 * R), (0.0, -R / 2), 1.0, False),
    'wrap':     (Canvas(origin=(3.5, -2.25), wrap=True), (R, R), (3.5, -2.25), 1.0, True),
}

def expected_coords(n_out, origin, zoom, wrap, res):
    """Coordinates, in pixels of scale `res`, that a canvas must give its feature rows (or
    columns), written out from the model card: rendered on whole 4x4 pixels (ceil), c_i =
    origin / (R / res) + i / zoom, modulo res when wrapped."""
    coarse = -(-n_out * 4 // R)
    n = coarse * res // 4
    c = np.float64(origin) / (R / res) + np.arange(n, dtype=np.float64) / zoom
    return np.mod(c, res) if wrap else c

def capture(G, method):
    """Record (args, output) of every call of G.synthesis.<method> (an instance-level wrapper)."""
    calls = []
    original = getattr(G.synthesis, method)
    def wrapper(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((args, out.detach().clone()))
        return out
    setattr(G.synthesis, method, wrapper)
    return calls

@pytest.mark.parametrize('case', list(CANVAS_CASES))
@pytest.mark.parametrize('pe', ['mspe', 'sspe'])
def test_canvas_encodes_the_coordinates_it_describes(pe, case):
    """The encoding every scale receives is sinusoidal_encoding at the coordinates the canvas
    stands for (zoomed, wide, beyond the border, wrapped), and the image has the asked size."""
    canvas, size, origin, zoom, wrap = CANVAS_CASES[case]
    G = make_G(pe)
    calls = capture(G, '_encoding')
    ws = G.mapping(torch.randn([2, 8]), None)
    img = G.synthesis(ws, canvas=canvas, noise_mode='const')
    assert tuple(img.shape) == (2, 3) + size and torch.isfinite(img).all()
    scales = [args[0] for args, _ in calls]
    assert scales == ([4] if pe == 'sspe' else list(G.synthesis.block_resolutions))
    for (res, _canvas, _ranges, _device), pe_map in calls:
        ys = expected_coords(size[0], origin[0], zoom, wrap, res)
        xs = expected_coords(size[1], origin[1], zoom, wrap, res)
        ref = sinusoidal_encoding(torch.from_numpy(ys), torch.from_numpy(xs), pe_map.shape[0], base=10000.0)
        assert pe_map.shape == ref.shape, (res, pe_map.shape, ref.shape)
        assert torch.allclose(pe_map, ref, atol=1e-6), (res, (pe_map - ref).abs().max())
    assert G.synthesis(ws, canvas=canvas, noise_mode='random').shape == img.shape

def periodic_bilinear(const, ys, xs):
    """The learned 4x4 constant [C, 4, 4] read at coarse coordinates (ys, xs), periodically,
    bilinear between pixels: written with explicit loops as the reference."""
    out = torch.zeros([const.shape[0], len(ys), len(xs)], dtype=torch.float64)
    c = const.detach().double()
    for i, y in enumerate(ys):
        y0, fy = int(np.floor(y)), y - np.floor(y)
        for j, x in enumerate(xs):
            x0, fx = int(np.floor(x)), x - np.floor(x)
            out[:, i, j] = ((1 - fy) * (1 - fx) * c[:, y0 % 4, x0 % 4] + (1 - fy) * fx * c[:, y0 % 4, (x0 + 1) % 4]
                            + fy * (1 - fx) * c[:, (y0 + 1) % 4, x0 % 4] + fy * fx * c[:, (y0 + 1) % 4, (x0 + 1) % 4])
    return out.float()

@pytest.mark.parametrize('case', list(CANVAS_CASES))
def test_baseline_reads_its_constant_where_the_canvas_says(case):
    canvas, size, origin, zoom, wrap = CANVAS_CASES[case]
    G = make_G('none')
    calls = capture(G, '_constant')
    ws = G.mapping(torch.randn([2, 8]), None)
    img = G.synthesis(ws, canvas=canvas, noise_mode='const')
    assert tuple(img.shape) == (2, 3) + size
    (_, const), = calls
    ref = periodic_bilinear(G.synthesis.b4.const, expected_coords(size[0], origin[0], zoom, wrap, 4),
                            expected_coords(size[1], origin[1], zoom, wrap, 4))
    assert const.shape == ref.shape and torch.allclose(const, ref, atol=1e-5), (const - ref).abs().max()

# Measured on these 32 px test models: a border changes the image up to 29 px inside it.
BORDER_REACH = 32

@pytest.mark.parametrize('pe', ['mspe', 'none'])
def test_wide_and_beyond_canvases_extend_the_same_image(pe):
    """Where its right border does not reach, a canvas shows exactly what a much wider canvas
    with the same left edge shows: the wide canvas's left part, and the beyond-the-border
    canvas's left part (at negative x, left of the training image)."""
    G = with_noise(make_G(pe, seed=3))
    ws = G.mapping(torch.randn([2, 8]), None)
    keep = 2 * R - BORDER_REACH
    wide = G.synthesis(ws, canvas=Canvas(size=(R, 2 * R)), noise_mode='const')                     # x in [0, 2R)
    wider = G.synthesis(ws, canvas=Canvas(size=(R, 5 * R)), noise_mode='const')                    # x in [0, 5R)
    assert torch.allclose(wide[..., :keep], wider[..., :keep], atol=1e-5)
    beyond = G.synthesis(ws, canvas=Canvas.from_extent(((0, R), (-R / 2, 1.5 * R))), noise_mode='const')
    beyond_wider = G.synthesis(ws, canvas=Canvas.from_extent(((0, R), (-R / 2, 4.5 * R))), noise_mode='const')
    assert torch.allclose(beyond[..., :keep], beyond_wider[..., :keep], atol=1e-5)
    # The default render's own right border (at R) does reach its left part: not the same image.
    assert not torch.allclose(G.synthesis(ws, noise_mode='const')[..., :keep], wider[..., :keep], atol=1e-3)

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

def test_random_resizing_renders_at_random_zooms_but_d_only_sees_the_training_resolution():
    """A few training steps of MS-PE with random resizing through the host's loss: the generator
    renders canvases of varying size, and every image that reaches D is R x R."""
    from training.loss import StyleGAN2Loss
    G = make_G('mspe', pe_resize=(0.5, 2.0)).train().requires_grad_(False)
    torch.manual_seed(7)
    D = host_networks.Discriminator(c_dim=0, img_resolution=R, img_channels=3, channel_base=16 * R, channel_max=32)
    d_inputs, rendered = [], []
    D.register_forward_pre_hook(lambda _module, args: d_inputs.append(tuple(args[0].shape)))
    render = G.synthesis.render
    def recording_render(ws, canvas=None, **kwargs):
        img = render(ws, canvas=canvas, **kwargs)
        rendered.append(tuple(img.shape[2:]))
        return img
    G.synthesis.render = recording_render
    loss = StyleGAN2Loss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, r1_gamma=1, pl_weight=0)
    np.random.seed(0)
    for step in range(4):
        for phase, module in [('Gmain', G), ('Dmain', D), ('Dreg', D)]:
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=phase, real_img=torch.randn([2, 3, R, R]), real_c=torch.zeros([2, 0]),
                                      gen_z=torch.randn([2, 8]), gen_c=torch.zeros([2, 0]), sync=True, gain=1)
            module.requires_grad_(False)
    assert d_inputs and set(d_inputs) == {(2, 3, R, R)}
    assert len(set(rendered)) > 1 and any(size != (R, R) for size in rendered)    # the zoom varied
    assert all(16 <= h <= 64 and h == w for h, w in rendered)                     # within pe_resize (0.5, 2)
    G.eval()
    ws = G.mapping(torch.randn([2, 8]), None)
    assert torch.equal(G.synthesis(ws, noise_mode='none'), G.synthesis(ws, noise_mode='none'))    # no resizing at eval

def test_bad_pe_settings_give_one_sentence():
    with pytest.raises(ValueError, match='Unknown positional encoding'):
        make_G('fourier')
    with pytest.raises(ValueError, match='divisible by 4'):
        pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                              synthesis_kwargs=dict(channel_base=16 * 6, channel_max=6, pe='mspe'))
    with pytest.raises(ValueError, match='pe_resize'):
        make_G('mspe', pe_resize=(2.0, 0.5))

def test_left_out_frequencies_are_zero_on_every_canvas_and_the_rest_is_the_plain_encoding():
    """pe_min_period: the sin/cos pairs whose period is under P output pixels are zero at the
    chosen scales, on the training grid and on moved canvases alike (also after the tables are
    copied from a network without the mask, as a resume does); every other channel, and every
    scale below pe_min_period_res, is the plain encoding; 0 leaves the generator as it was."""
    plain = make_G('mspe')
    masked = make_G('mspe', pe_min_period=16, pe_min_period_res=16)
    misc.copy_params_and_buffers(plain, masked, require_all=False)
    assert not any(name.startswith('pe_keep') for name, _ in plain.synthesis.named_buffers())
    for canvas in [None, Canvas(origin=(3, -5)), Canvas(origin=(1.5, 2.25), zoom=1.5)]:
        for res in masked.synthesis.block_resolutions:
            ranges = ((0, res), (0, res))
            a = plain.synthesis._encoding(res, canvas, ranges, 'cpu')
            b = masked.synthesis._encoding(res, canvas, ranges, 'cpu')
            C = a.shape[0]
            if res < 16:
                assert torch.equal(a, b)
                continue
            k = torch.arange(C // 4, dtype=torch.float64)
            period = 2 * np.pi * 10000.0 ** (k / (C // 4)) * (R // res)        # output pixels
            keep = (period >= 16).repeat_interleave(2).repeat(2)
            assert 0 < int(keep.sum()) < C
            assert torch.equal(b[keep], a[keep]) and (b[~keep] == 0).all()
    ws = plain.mapping(torch.randn([2, 8]), None)
    assert not torch.equal(plain.synthesis(ws, noise_mode='const'), masked.synthesis(ws, noise_mode='const'))
    off = make_G('mspe', pe_min_period=0)
    misc.copy_params_and_buffers(plain, off, require_all=True)
    assert torch.equal(plain.synthesis(ws, noise_mode='const'), off.synthesis(ws, noise_mode='const'))
    with pytest.raises(ValueError, match='pe_min_period'):
        make_G('mspe', pe_min_period=-1)
