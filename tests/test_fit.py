"""Finding the canvas of an unaligned target (mspe_plugin.fit and projector.py --fit-canvas)."""
import os

import numpy as np
import PIL.Image
import pytest
import torch

import dataset_tool
import legacy
import projector
from mspe_plugin import fit
from mspe_plugin.encoding import Canvas
from test_projector import make_G

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, 'tests', 'data', 'mnist', 't10k-images-idx3-ubyte.gz')
tiny_G = make_G     # the projector tests' tiny random generator

def real_digit(index, colour=(1.0, 0.45, 0.2)):
    """MNIST test digit `index` where the digit models were trained (upper-left quadrant of 32 px,
    as dataset_tool.py --place=upper-left --content-scale=0.5 --colorize): [1, 3, 32, 32] in [-1, 1]."""
    digit = dataset_tool.read_idx(MNIST, 2051)[index]
    img = dataset_tool.place_on_canvas(PIL.Image.fromarray(digit, 'L'), (32, 32), 'upper-left', 0.5, 0, None, PIL.Image.LANCZOS)
    img = dataset_tool.colorize(img, colour)
    return torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1)[None]

def to_target(img):
    return ((img[0] + 1) * 127.5).clamp(0, 255)

@pytest.fixture(scope='module')
def default_model():
    """The committed 32 px digit default (`--cfg=mspe --pe-outside=30`: MS-PE, random resizing and margins; unconditional)."""
    with open(os.path.join(ROOT, 'results', 'models', 'default.pkl'), 'rb') as f:
        return legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False)

#----------------------------------------------------------------------------
# Pieces.

def test_window_scores_find_a_crop_of_the_image():
    """NCC is invariant to contrast and offset: a dimmed crop scores ~0 at its own window only."""
    images = torch.rand([2, 1, 20, 24])
    target = images[1:2, :, 5:13, 7:17] * 0.4 + 0.1
    scores = fit.window_scores(images, target)
    assert scores.shape == (2, 13, 15)
    assert float(scores[1, 5, 7]) < 1e-3
    others = scores.clone()
    others[1, 5, 7] = 2
    assert float(others.min()) > 0.3

@pytest.mark.parametrize('origin, zoom', [((3.0, -5.0), 1.0), ((-2.5, 4.0), 1.5), ((1.0, 2.0), 0.75)])
def test_resample_on_canvas_is_what_the_canvas_sees(origin, zoom):
    """Output pixel p of a resampled image shows training pixel origin + p / zoom: whole-pixel
    shifts are exact translations, and a zoomed image puts a lone bright pixel where expected."""
    images = torch.full([1, 1, 32, 32], -1.0)
    images[0, 0, 12, 9] = 1.0
    canvas = Canvas(origin=origin, zoom=zoom, size=(32, 32))
    out = fit.resample_on_canvas(images, canvas, 32)
    assert out.shape == (1, 1, 32, 32) and float(out.min()) >= -1 and float(out.max()) <= 1
    peak = divmod(int(out[0, 0].argmax()), 32)
    expected = [zoom * (p - o) for p, o in zip((12, 9), origin)]
    assert all(abs(a - b) <= 0.5 * max(zoom, 1) + 1e-6 for a, b in zip(peak, expected))
    if zoom == 1.0 and all(float(v).is_integer() for v in origin):
        dy, dx = (int(-v) for v in origin)
        assert abs(float(out[0, 0, 12 + dy, 9 + dx]) - 1) < 1e-4
        assert int((out > -1 + 1e-4).sum()) == 1

def test_content_centre_is_the_ink_centroid():
    img = torch.full([1, 3, 20, 30], -1.0)
    img[:, :, 4:9, 20:25] = 1.0
    cy, cx = fit.content_centre(img)
    assert abs(cy - 6) < 0.05 and abs(cx - 22) < 0.05

def test_search_finds_latent_shift_and_zoom_of_a_generated_digit(default_model):
    """A digit drawn by one of ten latents on a moved, zoomed canvas (a point of the fine grid):
    the best candidate is that latent, that origin and that zoom."""
    G = default_model
    with torch.no_grad():
        latents = G.mapping(torch.randn([10, G.z_dim], generator=torch.Generator().manual_seed(0)), torch.zeros([10, G.c_dim]))
    zoom = 2 ** 0.25                                                    # half a coarse zoom step
    truth = Canvas(origin=(-6.0, 3.0), zoom=zoom, size=(32, 32))
    render = lambda ws, cv: G.synthesis(ws, canvas=cv, noise_mode='const')
    with torch.no_grad():
        target = render(latents[3:4], truth)
    best = fit.search_canvas(render, latents, target, Canvas(), 32, radius=8, step=4, zoom_range=(2 ** -0.5, 2 ** 0.5), num_refined=1)[0]
    assert best.latent == 3 and best.score < 0.02
    assert max(abs(a - b) for a, b in zip(best.origin, truth.origin)) < 1e-6 and abs(best.zoom - zoom) < 1e-6

def test_zoom_grid_spans_the_range_geometrically():
    zooms = fit.zoom_grid((0.5, 2.0), steps_per_octave=4)
    assert len(zooms) == 9 and zooms[0] == 0.5 and abs(zooms[-1] - 2.0) < 1e-9
    assert np.allclose(np.diff(np.log2(zooms)), 0.25)
    with pytest.raises(ValueError):
        fit.zoom_grid((2.0, 1.0))

def test_content_frame_measures_centre_and_extent_sub_pixel():
    """A bright bar on any plain background: its centre, and its longer side as the extent,
    to a fraction of a pixel; a soft edge moves the extent by less than its own width."""
    img = torch.full([2, 3, 24, 24], 0.6)                   # a grey background (not black)
    img[0, :, 5:9, 10:20] = -1.0                            # a dark 4 x 10 bar: centre (6.5, 14.5)
    img[1, 0, 3:15, 4:7] = 1.0                              # a red 12 x 3 bar on grey: centre (8.5, 5)
    frame = fit.content_frame(img)
    assert torch.allclose(frame[:, :2], torch.tensor([[6.5, 14.5], [8.5, 5.0]]), atol=0.05), frame
    assert abs(float(frame[0, 2]) - 10) < 0.7 and abs(float(frame[1, 2]) - 12) < 0.7, frame
    soft = img[:1].clone()
    soft[0, :, 5:9, 20] = -0.2                              # half-strength column after the bar
    assert 0 < float(fit.content_frame(soft)[0, 2] - frame[0, 2]) < 1

def test_background_share_tells_content_on_a_plain_background_from_a_photo():
    """Digits on black (and the same on white) are mostly background; a smooth random image, like
    a photograph, is not: the test --fit-method=auto uses to choose anchoring."""
    digit = real_digit(0)
    assert float(fit.background_share(digit)[0]) > 0.8 and float(fit.background_share(-digit)[0]) > 0.8
    photo = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                                            size=32, mode='bicubic', align_corners=False).clamp(-1, 1)
    assert (fit.background_share(photo) < 0.5).all()
    assert fit.PLAIN_SHARE > 0.5

def test_content_frame_ignores_the_outer_ring():
    """The faint line a zero-padded generator can draw along its edge at margin 0 is not content."""
    img = torch.full([1, 3, 20, 20], -1.0)
    img[:, :, 6:10, 6:12] = 1.0
    ringed = img.clone()
    ringed[:, :, -1, :] = -0.4
    ringed[:, :, :, -1] = -0.4
    assert torch.allclose(fit.content_frame(img), fit.content_frame(ringed))

def test_a_real_images_ring_is_content_and_a_cut_edge_is_extrapolated():
    """keep_ring: ink in the outermost ring of a real image counts. Content still above a profile
    level at the image's edge goes on beyond it: on a bar with linear ramps, cut inside its ramp,
    the extent is that of the whole bar (the crossings extrapolated; EDGE_REACH caps the farthest)."""
    whole = torch.full([1, 3, 24, 40], -1.0)
    ramp = torch.tensor([0.2, 0.4, 0.6, 0.8])
    profile = torch.cat([ramp, torch.ones(16), ramp.flip(0)])               # 24 px: a bar with 4 px linear ends
    whole[:, :, 10:14, 8:32] = profile * 2 - 1                              # columns 8..31 on black
    cut = whole[:, :, :, 9:].contiguous()                                  # its left ramp starts at 0.4 on the edge
    kept = float(fit.content_frame(cut, keep_ring=True)[0, 2])
    full = float(fit.content_frame(whole, keep_ring=True)[0, 2])
    assert abs(kept - full) < 0.1, (kept, full)                             # level 0.15 would need 1.25 px: capped at 1
    assert float(fit.content_frame(cut)[0, 2]) < full - 0.5                 # the ring left out: the bar looks shorter
    assert torch.allclose(fit.content_frame(whole, keep_ring=True), fit.content_frame(whole))   # nothing at the edge: the same

@pytest.mark.parametrize('origin, zoom', [((3.8, 0.0), 1.3), ((4.0, 3.0), 1.2), ((4.0, 0.0), 1.0)])
def test_anchor_canvas_places_a_real_digit_that_reaches_the_edge(origin, zoom):
    """A whole real digit moved so that its top reaches the image's first row: anchored on the
    target's frame with the ring kept (what projector.py does) the canvas is found within 0.5 px
    and 4%; leaving the ring out (a generator's renders) measures the digit short."""
    aligned = real_digit(0)
    truth = Canvas(origin=origin, zoom=zoom, size=(32, 32))
    target = fit.resample_on_canvas(aligned, truth, 32)
    assert float((target + 1).sum()) >= 0.99 * float((aligned + 1).sum()) * zoom ** 2        # the digit is all there
    assert float(fit.content_weight(target, keep_ring=True)[0, 0].amax()) > 0.3              # and reaches row 0
    typical = fit.typical_frame(fit.content_frame(aligned))
    found = fit.anchor_canvas(Canvas(size=(32, 32)), 32, fit.content_frame(target, keep_ring=True)[0], typical)
    assert max(abs(a - b) for a, b in zip(found.origin, origin)) < 0.5 and abs(found.zoom / zoom - 1) < 0.04, found
    ringless = fit.anchor_canvas(Canvas(size=(32, 32)), 32, fit.content_frame(target)[0], typical)
    assert ringless.zoom / zoom - 1 < -0.05

@pytest.mark.parametrize('origin, zoom', [((-5.0, 3.0), 1.0), ((2.5, -4.0), 1.3), ((-9.0, -2.0), 0.8)])
def test_anchor_canvas_recovers_the_canvas_of_a_real_digit(origin, zoom):
    """A real digit seen through a known canvas: anchoring its frame to the frame it has on the
    training grid gives back that canvas (origin within 0.25 px, zoom within 2%), and without
    fit_zoom the zoom is kept."""
    aligned = real_digit(0)
    truth = Canvas(origin=origin, zoom=zoom, size=(32, 32))
    target = fit.resample_on_canvas(aligned, truth, 32)
    typical = fit.typical_frame(fit.content_frame(aligned))
    found = fit.anchor_canvas(Canvas(size=(32, 32)), 32, fit.content_frame(target)[0], typical)
    assert max(abs(a - b) for a, b in zip(found.origin, origin)) < 0.25, found
    assert abs(found.zoom / zoom - 1) < 0.02 and found.size == (32, 32)
    kept = fit.anchor_canvas(Canvas(size=(32, 32), zoom=1.0), 32, fit.content_frame(target)[0], typical, fit_zoom=False)
    assert kept.zoom == 1.0

def test_anchoring_refuses_blank_images_in_one_sentence():
    blank = torch.full([2, 3, 16, 16], -1.0)
    with pytest.raises(ValueError, match='has content to measure'):
        fit.typical_frame(fit.content_frame(blank))
    with pytest.raises(ValueError, match='no content'):
        fit.anchor_canvas(Canvas(), 16, fit.content_frame(blank)[0], (8.0, 8.0, 10.0))

#----------------------------------------------------------------------------
# The projector on a real digit.

@pytest.mark.parametrize('down', [4, 6])
def test_fit_canvas_finds_a_real_digit_moved_off_the_training_quadrant(default_model, down):
    """The issue's case: MNIST test digit 0 (a 7), coloured, 4-8 px down and 6 px right of where
    the model was trained. Gradient descent from the training canvas landed far away; the coarse
    search and the restarts bring the fitted origin within a pixel of (-down, -6)."""
    truth = Canvas(origin=(-float(down), -6.0), size=(32, 32))
    target = fit.resample_on_canvas(real_digit(0), truth, 32)
    torch.manual_seed(0)                                        # the noise added to w
    lines = []
    proj = projector.project(default_model, to_target(target), num_steps=60, loss='pixel', w_avg_samples=1000,
                             fit_canvas=True, log=lines.append, progress=lambda *args: None)
    found = proj.canvases[-1]
    assert max(abs(a - b) for a, b in zip(found.origin, truth.origin)) < 1.0, found
    assert found.zoom == 1.0
    assert any(line.startswith('coarse search:') for line in lines) and any(line.startswith('restarts:') for line in lines)
    with torch.no_grad():
        recon = default_model.synthesis(proj.ws[-1:], canvas=found, noise_mode='const')
    assert float(10 * torch.log10(4 / (recon - target).square().mean())) > 22

@pytest.mark.parametrize('index, origin, zoom', [(0, (-6.0, -4.0), 1.25), (1, (-3.0, -7.5), 0.85)])
def test_fit_method_anchor_places_real_digits_within_a_pixel_and_5_percent(default_model, index, origin, zoom):
    """Issue 23's measure on real MNIST test digits (a 7 and a 2) moved and zoomed off the
    training quadrant: --fit-method=anchor puts the canvas where the model's typical digit frame
    lands on the target's (origin within 1 px, zoom within 5%), the canvas stays there while w
    is projected, and the reconstruction on it is the digit."""
    truth = Canvas(origin=origin, zoom=zoom, size=(32, 32))
    target = fit.resample_on_canvas(real_digit(index), truth, 32)
    torch.manual_seed(0)
    lines = []
    proj = projector.project(default_model, to_target(target), num_steps=40, loss='pixel', w_avg_samples=1000,
                             fit_canvas=True, fit_zoom=True, fit_method='anchor', log=lines.append, progress=lambda *args: None)
    found = proj.canvases[-1]
    assert max(abs(a - b) for a, b in zip(found.origin, truth.origin)) < 1.0, found
    assert abs(found.zoom / zoom - 1) < 0.05, found
    assert proj.canvases[0] == found and proj.candidates[0].origin == found.origin
    assert any(line.startswith('anchor: typical frame of 1000 samples') for line in lines)
    with torch.no_grad():
        recon = default_model.synthesis(proj.ws[-1:], canvas=found, noise_mode='const')
    assert float(10 * torch.log10(4 / (recon - target).square().mean())) > 20

def test_cli_fit_method_auto_anchors_a_digit_on_the_digit_model(tmp_path):
    """projector.py --fit-canvas --fit-zoom with no --fit-method, a real digit and the committed
    digit model: both are content on a plain background, so it anchors (says so on one line, saves
    'anchor') and the canvas is the known one within 1 px and 5%."""
    import subprocess
    import sys
    truth = Canvas(origin=(-6.0, -4.0), zoom=1.25, size=(32, 32))
    target = fit.resample_on_canvas(real_digit(0), truth, 32)
    PIL.Image.fromarray(to_target(target).permute(1, 2, 0).round().byte().numpy(), 'RGB').save(tmp_path / 'digit.png')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'stylegan2_ada_vendor', 'projector.py'),
                             '--network', os.path.join(ROOT, 'results', 'models', 'default.pkl'), '--target', str(tmp_path / 'digit.png'),
                             '--outdir', str(tmp_path / 'out'), '--fit-canvas', '--fit-zoom', '--num-steps', '5', '--loss', 'pixel',
                             '--save-video', 'False'], capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr
    assert sum(line.startswith('fit method auto: anchor (') for line in result.stdout.splitlines()) == 1, result.stdout
    data = np.load(tmp_path / 'out' / 'projected_w.npz')
    assert str(data['fit_method']) == 'anchor'
    assert np.abs(data['canvas_origin'] - np.array(truth.origin)).max() < 1.0 and abs(float(data['canvas_zoom']) / 1.25 - 1) < 0.05

def test_fit_canvas_of_a_plain_host_generator_uses_its_constant():
    """A plain StyleGAN2-ADA generator (no canvas support) fits a canvas in the same call: the
    projector reads its learned constant on the canvas (register.with_canvas_support)."""
    G = tiny_G(pe=None, res=16)
    with torch.no_grad():
        target = G.synthesis(G.mapping.w_avg.expand([1, G.num_ws, -1]), noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=5, loss='pixel', w_avg_samples=200, fit_canvas=True, fit_zoom=True,
                             search_top=2, restart_steps=2, search_radius=4, search_step=2)
    found = proj.canvases[-1]
    assert np.isfinite(found.origin).all() and found.zoom > 0 and len(proj.ws) == 5
    assert proj.candidates[0].origin == (0.0, 0.0) and proj.candidates[0].zoom == 1.0   # its own image: the training canvas

#----------------------------------------------------------------------------
# The measurement script (scripts/experiments/fit_canvas_eval.py).

EVAL_SCRIPT = os.path.join(ROOT, 'scripts', 'experiments', 'fit_canvas_eval.py')

def load_eval_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location('fit_canvas_eval', EVAL_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def test_eval_targets_sit_where_their_known_canvas_says():
    """Each target is its aligned digit seen through the known canvas: the ink centre lands at
    zoom * (centre - origin), the quadrant centre moves by the drawn offset, most ink stays."""
    ev = load_eval_script()
    targets = ev.make_targets(os.path.dirname(MNIST), 3, 32, seed=1)
    assert len({t['index'] for t in targets}) == 3 and all(t['index'] >= ev.HELD_OUT for t in targets)
    for t in targets:
        canvas = t['canvas']
        assert 0.75 <= canvas.zoom <= 1.5 and all(abs(d) <= 8 for d in t['offset'])
        c = 32 / 4 - 0.5
        assert all(abs(canvas.zoom * (c - o) - (c + d)) < 1e-9 for o, d in zip(canvas.origin, t['offset']))
        aligned = ev.training_placement(dataset_tool.read_idx(MNIST, 2051)[t['index']], 32,
                                        np.random.default_rng([1, t['index']]))
        centre = fit.content_centre(aligned)
        expected = [canvas.zoom * (x - o) for x, o in zip(centre, canvas.origin)]
        found = fit.content_centre(t['target'])
        assert max(abs(a - b) for a, b in zip(found, expected)) < 0.75, (found, expected)

def test_eval_script_refuses_a_bad_zoom_range_in_one_sentence():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, EVAL_SCRIPT, '--zoom-search', '2,1'], capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=120)
    assert result.returncode != 0
    assert '--zoom-search takes MIN,MAX' in result.stderr and 'Traceback' not in result.stderr

def test_eval_figure_shows_each_target_above_its_reconstructions(tmp_path):
    """One column per target: the shared real targets once, then estimated and known per model;
    generated targets (each model its own) get a targets row per model."""
    ev = load_eval_script()
    a, b = -torch.ones(1, 3, 32, 32), torch.ones(1, 3, 32, 32)
    path = tmp_path / 'fit.png'
    rows = ev.save_figure({'mspe': [(a, b, b)] * 3, 'baseline': [(a, a, b)] * 3}, str(path), scale=1)
    assert rows == ['targets', 'mspe estimated', 'mspe known', 'baseline estimated', 'baseline known']
    grid = np.asarray(PIL.Image.open(path))
    assert grid.shape == (5 * 32, 3 * 32, 3)
    assert (grid[:32] == 0).all() and (grid[32:96] == 255).all() and (grid[96:128] == 0).all() and (grid[128:] == 255).all()
    rows = ev.save_figure({'mspe': [(a, b, b)] * 3, 'baseline': [(b, a, b)] * 3}, str(path), scale=1)
    assert rows[0] == 'mspe targets' and rows[3] == 'baseline targets'
    assert np.asarray(PIL.Image.open(path)).shape == (6 * 32, 3 * 32, 3)

#----------------------------------------------------------------------------
# The quickstart's unaligned target (scripts/tools/unaligned_digit.py).

def run_tool(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, '-m', 'scripts.tools.unaligned_digit', *args], cwd=ROOT, capture_output=True, text=True)

def test_unaligned_digit_writes_the_moved_digit_and_its_known_canvas(tmp_path):
    """The PNG is the real digit as the printed canvas sees it (the projector's answer key)."""
    out = tmp_path / 'u.png'
    result = run_tool('--index', '0', '--shift', '5,6', '--zoom', '1.25', '--out', str(out))
    assert result.returncode == 0, result.stderr
    assert 'known canvas: origin (-2.500, -3.300), zoom 1.2500' in result.stdout
    img = torch.from_numpy(np.asarray(PIL.Image.open(out), dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1)[None]
    assert img.shape == (1, 3, 32, 32)
    # Its colour is random, its intensity (largest channel) is the digit's: the same frame as the
    # digit resampled through the printed canvas, to the PNG's rounding.
    truth = fit.resample_on_canvas(real_digit(0), Canvas(origin=(-2.5, -3.3), zoom=1.25, size=(32, 32)), 32)
    assert torch.allclose(fit.content_frame(img)[0], fit.content_frame(truth)[0], atol=0.1)

def test_unaligned_digit_refuses_a_bad_shift_in_one_sentence(tmp_path):
    result = run_tool('--shift', 'five', '--out', str(tmp_path / 'u.png'))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert 'DY,DX' in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / 'u.png').exists()
