"""The projector (stylegan2_ada_vendor/projector.py): latent recovery, canvas fitting, the CLI."""
import os
import pickle
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import projector
from mspe_plugin import networks as pe_networks
from mspe_plugin.encoding import Canvas, FittedCanvas, encoding_from_coords, sinusoidal_encoding
from training import networks as host_networks

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'stylegan2_ada_vendor', 'projector.py')
W_DIM = 8

def make_G(pe='mspe', res=32, seed=0):
    """A tiny random generator with outputs mostly inside [-1, 1] and w_avg set to the mean of w
    (an untrained mapping leaves it at zero)."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=W_DIM, c_dim=0, w_dim=W_DIM, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=2))
    synthesis = dict(channel_base=16 * res, channel_max=32)
    if pe is None:
        G = host_networks.Generator(**kwargs, synthesis_kwargs=synthesis)
    else:
        G = pe_networks.Generator(**kwargs, synthesis_kwargs=dict(synthesis, pe=pe))
    G = G.eval().requires_grad_(False)
    for module in G.modules():
        if isinstance(module, host_networks.ToRGBLayer):
            module.weight.mul_(0.3)
    G.mapping.w_avg.copy_(G.mapping(torch.randn([4000, W_DIM]), None)[:, 0].mean(dim=0))
    return G

def latent(G, seed, psi):
    return G.mapping(torch.randn([1, W_DIM], generator=torch.Generator().manual_seed(seed)), None, truncation_psi=psi)

def to_target(img):
    """[1, C, H, W] in [-1, 1] -> the projector's target [C, H, W] in [0, 255]."""
    return ((img[0] + 1) * 127.5).clamp(0, 255)

def psnr(a, b):
    return float(10 * torch.log10(4 / (a - b).square().mean()))

#----------------------------------------------------------------------------
# The optimisation.

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_projection_recovers_latent_of_tiny_generator(seed):
    """In W space the loss drops by 20x and the reconstruction's MSE is at least 10x (10 dB) lower
    than that of the w_avg image, where the optimisation starts, and above 25 dB absolute
    (RMS error under 6% of the [-1, 1] range)."""
    G = make_G()
    with torch.no_grad():
        target = G.synthesis(latent(G, seed, psi=0.5), noise_mode='const')
        start = G.synthesis(G.mapping.w_avg.expand([1, G.num_ws, -1]), noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=200, loss='pixel', w_avg_samples=1000)
    with torch.no_grad():
        recon = G.synthesis(proj.ws[-1:], noise_mode='const')
    assert proj.ws.shape == (200, G.num_ws, W_DIM)
    assert proj.losses[-1] < proj.losses[0] / 20
    assert psnr(recon, target) > 25
    assert psnr(recon, target) > psnr(start, target) + 10

def test_w_plus_projection_optimises_one_w_per_layer():
    G = make_G()
    with torch.no_grad():
        target = G.synthesis(latent(G, 0, psi=0.5), noise_mode='const')
        start = G.synthesis(G.mapping.w_avg.expand([1, G.num_ws, -1]), noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=200, loss='pixel', w_avg_samples=1000, w_plus=True)
    with torch.no_grad():
        recon = G.synthesis(proj.ws[-1:], noise_mode='const')
    assert not torch.allclose(proj.ws[-1, 0], proj.ws[-1, 1])     # the layers moved apart
    assert proj.losses[-1] < proj.losses[0] / 20
    assert psnr(recon, target) > psnr(start, target) + 10

@pytest.mark.parametrize('seed, origin', [(0, (3.0, -5.0)), (1, (-6.5, 7.25))])
def test_fit_canvas_recovers_known_shift(seed, origin):
    """A target drawn on a canvas moved by `origin` (fractional included, noise off) is projected
    from the training canvas with --fit-canvas: the recovered origin is within a pixel."""
    G = make_G()
    with torch.no_grad():
        target = G.synthesis(latent(G, seed, psi=0.3), canvas=Canvas(origin=origin), noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=200, loss='pixel', w_avg_samples=1000, fit_canvas=True)
    found = proj.canvases[-1]
    assert max(abs(a - b) for a, b in zip(found.origin, origin)) < 1.0
    assert found.zoom == 1.0 and found.output_size(32) == (32, 32)
    with torch.no_grad():
        recon = G.synthesis(proj.ws[-1:], canvas=found, noise_mode='const')
    assert psnr(recon, target) > 25

def test_fit_zoom_recovers_known_zoom():
    G = make_G()
    truth = Canvas(origin=(2.0, -3.0), size=(32, 32), zoom=1.5)
    with torch.no_grad():
        target = G.synthesis(latent(G, 0, psi=0.3), canvas=truth, noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=200, loss='pixel', w_avg_samples=1000,
                             fit_canvas=True, fit_zoom=True)
    found = proj.canvases[-1]
    assert abs(found.zoom - 1.5) < 0.05
    assert max(abs(a - b) for a, b in zip(found.origin, truth.origin)) < 1.0

@pytest.mark.parametrize('canvas', [Canvas(), Canvas(origin=(2.5, -3.25), size=(20, 40), zoom=1.5),
                                    Canvas(origin=(7.0, 40.5), wrap=True), Canvas(origin=(-9.0, 3.0), zoom=0.5)])
def test_fitted_canvas_renders_like_canvas_and_has_origin_gradient(canvas):
    """The differentiable canvas reproduces mspe_plugin.encoding's grids and encodings exactly and
    passes a gradient to the origin and the zoom."""
    origin = torch.tensor(canvas.origin, dtype=torch.float64, requires_grad=True)
    log_zoom = torch.tensor(np.log(canvas.zoom), dtype=torch.float64, requires_grad=True)
    fitted = FittedCanvas(canvas, 32, origin, log_zoom)
    for res in (4, 8, 16, 32):
        ys, xs = canvas.grid(res, 32)
        fys, fxs = fitted.grid(res, 32)
        assert torch.allclose(fys.detach(), torch.as_tensor(ys, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(fxs.detach(), torch.as_tensor(xs, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(fitted.encoding(res, 32, 16), canvas.encoding(res, 32, 16), atol=1e-5)
    assert torch.allclose(encoding_from_coords(fys, fxs, 32, 100.0), sinusoidal_encoding(ys, xs, 32, base=100.0), atol=1e-5)
    G = make_G()
    img = G.synthesis(G.mapping.w_avg.expand([1, G.num_ws, -1]), canvas=fitted, noise_mode='const')
    img.square().sum().backward()
    assert origin.grad is not None and log_zoom.grad is not None
    assert torch.isfinite(origin.grad).all() and origin.grad.abs().sum() > 0
    assert fitted.frozen() == Canvas(origin=canvas.origin, size=canvas.output_size(32), zoom=canvas.zoom, wrap=canvas.wrap)

def test_auto_loss_falls_back_to_pixel_loss_with_one_notice():
    notices = []
    target = torch.zeros([1, 3, 16, 16])
    loss = projector.make_loss('auto', target, 'cpu', vgg16_url='/nonexistent/vgg16.pt', log=notices.append)
    assert isinstance(loss, projector.PyramidLoss)
    assert len(notices) == 1 and 'offline loss' in notices[0] and '\n' not in notices[0]
    assert float(loss(target)) == 0 and float(loss(target + 0.5)) > 0

def test_pyramid_loss_sees_large_misalignment_at_coarse_levels():
    """The coarse levels make a far-off blob closer than no blob: gradients for alignment."""
    target = -torch.ones([1, 1, 32, 32])
    target[:, :, 4:12, 4:12] = 1
    near, far = -torch.ones_like(target), -torch.ones_like(target)
    near[:, :, 6:14, 6:14] = 1
    far[:, :, 20:28, 20:28] = 1
    loss = projector.PyramidLoss(target)
    assert float(loss(near)) < float(loss(far))
    assert len(loss.targets) == 4     # 32, 16, 8, 4

#----------------------------------------------------------------------------
# The command line.

def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1')     # one thread: fast on a shared 2-core machine
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

@pytest.fixture(scope='module')
def network_files(tmp_path_factory):
    """Pickles of a tiny MS-PE and a tiny plain host generator, and a 40x48 target image."""
    folder = tmp_path_factory.mktemp('projector')
    paths = {}
    for name, pe in (('mspe', 'mspe'), ('plain', None)):
        paths[name] = str(folder / f'{name}.pkl')
        with open(paths[name], 'wb') as f:
            pickle.dump(dict(G_ema=make_G(pe, res=16)), f)
    G = make_G('mspe', res=32)
    with torch.no_grad():
        img = G.synthesis(latent(G, 3, psi=0.5), canvas=Canvas(size=(40, 48)), noise_mode='const')
    paths['target'] = str(folder / 'target.png')
    PIL.Image.fromarray(to_target(img).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(paths['target'])
    return paths

def test_cli_writes_projection_on_a_shifted_canvas(network_files, tmp_path):
    outdir = tmp_path / 'out'
    result = run_cli('--network', network_files['mspe'], '--target', network_files['target'], '--num-steps', '30',
                     '--outdir', str(outdir), '--save-video', 'false', '--loss', 'pixel', '--shift', '1.5,-2', '--size', '20x24')
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(outdir)) == ['proj.png', 'projected_w.npz', 'target.png']
    assert PIL.Image.open(outdir / 'proj.png').size == (24, 20)          # W x H of the canvas
    assert PIL.Image.open(outdir / 'target.png').size == (24, 20)        # any target size is fitted to it
    data = np.load(outdir / 'projected_w.npz')
    G = make_G('mspe', res=16)
    assert data['w'].shape == (1, G.num_ws, W_DIM)
    assert tuple(data['canvas_origin']) == (1.5, -2.0) and tuple(data['canvas_size']) == (20, 24)

def test_cli_projects_a_margin_trained_generator_at_its_margin(tmp_path):
    # --pe-margin=8 models render with their margin unless --margin says otherwise (generate.py alike).
    pkl = str(tmp_path / 'margin.pkl')
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=W_DIM, c_dim=0, w_dim=W_DIM, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=256, channel_max=32, pe='mspe', pe_margin=8)).eval()
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G_ema=G), f)
    target = str(tmp_path / 'target.png')
    PIL.Image.fromarray(np.full([16, 16, 3], 40, dtype=np.uint8)).save(target)
    for flags, margin in (([], 8), (['--margin', '0'], None), (['--margin', '4', '--shift', '1,1'], 4)):
        outdir = tmp_path / f'out{len(flags)}'
        result = run_cli('--network', pkl, '--target', target, '--num-steps', '2', '--outdir', str(outdir),
                         '--save-video', 'false', '--loss', 'pixel', *flags)
        assert result.returncode == 0, result.stderr
        data = np.load(outdir / 'projected_w.npz')
        assert (int(data['canvas_margin']) if 'canvas_margin' in data else None) == margin, flags

def test_cli_fit_canvas_and_auto_loss_fallback(network_files, tmp_path):
    outdir = tmp_path / 'out'
    result = run_cli('--network', network_files['mspe'], '--target', network_files['target'], '--num-steps', '20',
                     '--outdir', str(outdir), '--fit-canvas', '--vgg16', str(tmp_path / 'missing-vgg16.pt'))
    assert result.returncode == 0, result.stderr
    assert 'using the offline loss' in result.stdout
    assert 'fit method auto: search (' in result.stdout           # a random tiny G draws no plain background
    video = outdir / ('proj.mp4' if projector.video_writer_available() else 'proj.gif')
    assert os.path.isfile(video) and f'video "{video}"' in result.stdout
    data = np.load(outdir / 'projected_w.npz')
    assert tuple(data['canvas_size']) == (16, 16) and np.isfinite(data['canvas_origin']).all()
    assert np.isfinite(data['fit_search_origin']).all() and float(data['fit_search_zoom']) == 1.0
    assert str(data['fit_method']) == 'search'
    fitted = [line for line in result.stdout.splitlines() if line.startswith('Fitted canvas: origin')]
    assert len(fitted) == 1 and 'coarse search' in fitted[0]
    assert result.stdout.count('step ') <= 12                      # progress: one line per tenth of the run

def test_cli_fit_method_anchor_prints_and_saves_the_anchored_canvas(network_files, tmp_path):
    outdir = tmp_path / 'out'
    result = run_cli('--network', network_files['mspe'], '--target', network_files['target'], '--num-steps', '3', '--outdir', str(outdir),
                     '--fit-canvas', '--fit-zoom', '--fit-method', 'anchor', '--save-video', 'False', '--loss', 'pixel')
    assert result.returncode == 0, result.stderr
    assert any(line.startswith('anchor: typical frame of') for line in result.stdout.splitlines())
    fitted = [line for line in result.stdout.splitlines() if line.startswith('Fitted canvas (anchored')]
    assert len(fitted) == 1
    data = np.load(outdir / 'projected_w.npz')
    assert str(data['fit_method']) == 'anchor' and 'fit_search_origin' not in data
    y, x = data['canvas_origin']
    assert f'origin ({y:.3f}, {x:.3f}), zoom {float(data["canvas_zoom"]):.4f}' in fitted[0]
    result = run_cli('--network', network_files['mspe'], '--target', network_files['target'], '--outdir', str(tmp_path / 'o2'),
                     '--fit-method', 'anchor')
    assert_one_sentence_failure(result, '--fit-method', '--fit-canvas')

def assert_one_sentence_failure(result, *words):
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in message, message

def test_cli_refuses_missing_or_non_image_target(network_files, tmp_path):
    outdir = tmp_path / 'out'
    result = run_cli('--network', network_files['mspe'], '--target', str(tmp_path / 'nope.png'), '--outdir', str(outdir))
    assert_one_sentence_failure(result, 'does not exist')
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    result = run_cli('--network', network_files['mspe'], '--target', str(text), '--outdir', str(outdir))
    assert_one_sentence_failure(result, 'not an image')
    assert not outdir.exists()                                   # nothing written on failure

def test_cli_projects_a_plain_generator_on_a_canvas(network_files, tmp_path):
    """A plain StyleGAN2-ADA generator (ours or upstream's) reads its learned constant on the
    canvas, as in generate.py: canvas flags and --fit-canvas work on it too."""
    outdir = tmp_path / 'out'
    result = run_cli('--network', network_files['plain'], '--target', network_files['target'], '--outdir', str(outdir),
                     '--shift', '2,0', '--size', '16x20', '--fit-canvas', '--num-steps', '2', '--save-video', 'False', '--loss', 'pixel')
    assert result.returncode == 0, result.stderr
    data = np.load(outdir / 'projected_w.npz')
    assert tuple(data['canvas_size']) == (16, 20) and np.isfinite(data['canvas_origin']).all()
    assert np.asarray(PIL.Image.open(outdir / 'proj.png')).shape[:2] == (16, 20)

def test_cli_refuses_missing_network(tmp_path, network_files):
    result = run_cli('--network', str(tmp_path / 'none.pkl'), '--target', network_files['target'], '--outdir', str(tmp_path / 'o'))
    assert_one_sentence_failure(result, 'does not exist')

class _FeatureNet(torch.nn.Module):
    """A TorchScript detector with the call convention of upstream's vgg16.pt."""
    def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False) -> torch.Tensor:
        f = torch.nn.functional.avg_pool2d(img / 255, 4).flatten(1)
        return f / f.square().sum(dim=1, keepdim=True).sqrt()

@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_lpips_loss_uses_a_torchscript_vgg16_from_a_local_path(tmp_path):
    path = str(tmp_path / 'vgg16.pt')
    torch.jit.save(torch.jit.script(_FeatureNet()), path)
    target = torch.rand([1, 1, 16, 16]) * 2 - 1
    loss = projector.make_loss('lpips', target, 'cpu', vgg16_url=path, log=pytest.fail)
    assert isinstance(loss, projector.LPIPSLoss)
    assert float(loss(target)) < 1e-10 < float(loss(-target))

def test_lpips_requested_but_unavailable_is_one_sentence():
    with pytest.raises(Exception) as info:
        projector.make_loss('lpips', torch.zeros([1, 3, 8, 8]), 'cpu', vgg16_url='/nonexistent/vgg16.pt')
    assert 'could not be loaded' in str(info.value) and '--loss=pixel' in str(info.value)

def test_projection_of_a_conditional_generator_starts_from_every_class():
    """A class-conditional G: w statistics come from all classes (the start lies near the mean
    w over the classes, not at the w of an all-zero label) and the digit drawn for one class is
    recovered."""
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=W_DIM, c_dim=4, w_dim=W_DIM, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=256, channel_max=32, pe='mspe')).eval().requires_grad_(False)
    for module in G.modules():
        if isinstance(module, host_networks.ToRGBLayer):
            module.weight.mul_(0.3)
    c = torch.nn.functional.one_hot(torch.arange(4000) % 4, 4).float()
    w_classes = G.mapping(torch.randn([4000, W_DIM]), c)[:, 0].mean(dim=0)
    w_nolabel = G.mapping(torch.randn([4000, W_DIM]), torch.zeros([4000, 4]))[:, 0].mean(dim=0)
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn([1, W_DIM]), c[2:3], truncation_psi=0.5), noise_mode='const')
    proj = projector.project(G, to_target(target), num_steps=1, loss="pixel", w_avg_samples=2000, initial_learning_rate=1e-6,
                             initial_noise_factor=0)
    start = proj.ws[0, 0]
    assert (start - w_classes).norm() < 0.2 * (w_nolabel - w_classes).norm()
    proj = projector.project(G, to_target(target), num_steps=200, loss='pixel', w_avg_samples=1000)
    with torch.no_grad():
        assert psnr(G.synthesis(proj.ws[-1:], noise_mode='const'), target) > 25

def test_anchor_restarts_start_from_the_samples_nearest_the_target():
    """With fit_method='anchor', search_top > 1 starts short runs from w_avg and the samples that,
    drawn on the anchored canvas, come closest to the target, and continues from the best: on a target
    drawn by one of the samples it ends well below the run from w_avg alone (same canvas, same steps)."""
    G = make_G(res=16)
    rnd = np.random.RandomState(303)             # the projector's own w samples (seed 303)
    z = torch.from_numpy(rnd.randn(200, W_DIM)).float()
    w = G.mapping(z, None)[7:8]
    with torch.no_grad():
        target = G.synthesis(w, noise_mode='const')
    logs = []
    common = dict(num_steps=20, loss='pixel', w_avg_samples=200, fit_canvas=True, fit_zoom=True, fit_method='anchor', anchor_samples=200)
    plain = projector.project(G, to_target(target), search_top=1, **common)
    restarted = projector.project(G, to_target(target), search_top=3, log=logs.append, **common)
    line = [l for l in logs if l.startswith('restarts: w_avg and the 2 nearest samples')]
    assert len(line) == 1
    distances = [float(v) for v in line[0].split('distances ')[1].split(';')[0].split()]
    assert line[0].endswith(f'continuing from #{int(np.argmin(distances)) + 1}')
    assert restarted.canvases[-1] == plain.canvases[-1]              # the same anchored canvas, so the losses compare
    assert restarted.losses[-1] < plain.losses[-1] * 0.75
