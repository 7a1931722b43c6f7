"""Pickles written by NVlabs' stylegan2-ada-pytorch (or a fork) work with every tool of the host,
and so do our own earlier pickles, whose filters are stored in the older 1-D layout.

An upstream snapshot differs from ours in three ways, all reproduced here without any upstream
code: (1) every persistent object carries its checkout's own copy of the module source and no
module name, so it runs as a fresh `_imported_module_*` against OUR torch_utils; (2) its tensors
have upstream's layout, which the host's networks now share (test_upstream_layout.py), e.g. 4x4
resampling filters; (3) its AugmentPipe's source imports op modules of upstream's torch_utils
(conv2d_gradfix, grid_sample_gradfix) and calls upfirdn2d and misc.constant with upstream's
keywords. AUGMENT_SOURCE below is a small pipeline of ours written against that interface."""
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import legacy
from conftest import HOST, ROOT
from torch_utils import misc
from torch_utils import persistence

torch.set_num_threads(1)

AUGMENT_SOURCE = '''
"""An augmentation pipe written against upstream's torch_utils interface."""
import numpy as np
import torch
from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import grid_sample_gradfix
from torch_utils.ops import upfirdn2d

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    def __init__(self, rotate=0, blur=0):
        super().__init__()
        self.rotate = float(rotate)
        self.blur = float(blur)
        self.register_buffer('p', torch.ones([]))
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(np.hanning(14)[1:-1]))   # 12 taps: stays 1-D

    def forward(self, images):
        n, c, h, w = images.shape
        x = upfirdn2d.upsample2d(x=images, f=self.Hz_geom, up=2)
        angle = self.p * self.rotate
        zero = misc.constant(0.0, device=images.device)
        theta = torch.stack([torch.stack([angle.cos(), -angle.sin(), zero]), torch.stack([angle.sin(), angle.cos(), zero])])
        grid = torch.nn.functional.affine_grid(theta[None].repeat(n, 1, 1), list(x.shape), align_corners=False)
        x = grid_sample_gradfix.grid_sample(x, grid)
        x = upfirdn2d.downsample2d(x=x, f=self.Hz_geom, down=2, flip_filter=True)
        kernel = misc.constant([[1 - self.blur, self.blur]], device=images.device)[None, None].repeat(n * c, 1, 1, 1)
        x = conv2d_gradfix.conv2d(input=x.reshape(1, n * c, h, w), weight=kernel, padding=[0, 1], groups=n * c)
        return x[:, :, :, :w].reshape(n, c, h, w)
'''

class ForeignCheckoutPickler(pickle.Pickler):
    """Pickles persistent objects as another checkout does: with that checkout's own copy of the
    module source (here the host's, plus a line, so it is not recognised as this host's module)
    and no module name (upstream's format records none)."""
    def reducer_override(self, obj):
        if isinstance(obj, type) or not persistence.is_persistent(obj):
            return NotImplemented
        fn, (meta,), *rest = obj.__reduce__()
        meta = dict(meta)
        del meta['module_name']
        meta['module_src'] += '\n# stored by another StyleGAN2-ADA checkout\n'
        return (fn, (meta,), *rest)

def tiny_networks(c_dim=0, z_dim=8, w_dim=8, channel_base=256, channel_max=32, seed=0):
    from training.networks import Discriminator, Generator
    torch.manual_seed(seed)
    G = Generator(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, channel_base=channel_base, channel_max=channel_max)
    with torch.no_grad():   # a trained-looking G: noise and biases that matter
        for name, t in G.named_parameters():
            if name.endswith('noise_strength') or name.endswith('.bias'):
                t.normal_(0, 0.2)
        G.mapping.w_avg.normal_(0, 0.5)
    return G.eval(), D.eval()

def make_augment_pipe(folder):
    """An AugmentPipe of AUGMENT_SOURCE, imported from a module file in `folder`."""
    (folder / 'upstream_style_augment.py').write_text(textwrap.dedent(AUGMENT_SOURCE))
    sys.path.insert(0, str(folder))
    try:
        import upstream_style_augment
        return upstream_style_augment.AugmentPipe(rotate=0.3, blur=0.25)
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop('upstream_style_augment', None)

@pytest.fixture(scope='module')
def upstream_snapshot(tmp_path_factory):
    """An upstream-style snapshot dict pickle; returns (path, the G it holds)."""
    folder = tmp_path_factory.mktemp('upstream')
    augment_pipe = make_augment_pipe(folder)
    G, D = tiny_networks()
    path = folder / 'network-snapshot-000100.pkl'
    data = dict(G=G, D=D, G_ema=G, augment_pipe=augment_pipe,
                training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='ffhq.zip', resolution=16))
    with open(path, 'wb') as f:
        ForeignCheckoutPickler(f).dump(data)
    return str(path), G

def load(path):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

def png(path):
    return np.asarray(PIL.Image.open(path))

def expected_png(G, seed):
    """generate.py's image for `seed` at the default canvas: G(z, noise_mode='const') in uint8."""
    import generate
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return generate.to_uint8(G(z, torch.zeros([1, G.c_dim]), noise_mode='const'))[0]

#----------------------------------------------------------------------------
# An upstream snapshot.

def test_upstream_snapshot_loads_with_its_augment_pipe(upstream_snapshot):
    data = load(upstream_snapshot[0])
    for key in ['G', 'D', 'G_ema', 'augment_pipe']:
        assert type(data[key]).__module__.startswith('_imported_module_'), key     # its own source ran
    images = torch.rand(2, 3, 16, 16)
    out = data['augment_pipe'](images)
    assert out.shape == images.shape and torch.isfinite(out).all()
    # no_weight_gradients() keeps upstream's meaning: no gradient reaches the weight.
    from torch_utils.ops import conv2d_gradfix
    w = torch.randn(2, 3, 3, 3, requires_grad=True)
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    with conv2d_gradfix.no_weight_gradients():
        y = conv2d_gradfix.conv2d(x, w, padding=1)
    assert y.grad_fn is not None and torch.autograd.grad(y.sum(), x)[0].shape == x.shape
    assert torch.autograd.grad(y.sum(), w, allow_unused=True)[0] is None
    assert torch.equal(conv2d_gradfix.conv2d(x, w, padding=1), torch.nn.functional.conv2d(x, w, padding=1))

@pytest.mark.parametrize('flags, size', [
    ([], (16, 16)),
    (['--shift=0,4.5'], (16, 16)),
    (['--shift=2.25,-3'], (16, 16)),
    (['--zoom=2'], (32, 32)),
    (['--zoom=1.5', '--shift=1,1'], (24, 24)),
    (['--size=16x40'], (16, 40)),
    (['--extent=0:16,-8:24'], (16, 32)),
    (['--wrap', '--shift=0,5'], (16, 16)),
    (['--translate-strip=3,2.5'], (16, 16)),
])
def test_generate_renders_an_upstream_pickle_on_every_canvas(upstream_snapshot, tmp_path, flags, size):
    import generate
    path, G = upstream_snapshot
    result = CliRunner().invoke(generate.generate_images, [f'--network={path}', '--seeds=0-1', f'--outdir={tmp_path}', '--device=cpu'] + flags)
    assert result.exit_code == 0, result.output
    for seed in [0, 1]:
        image = png(tmp_path / f'seed{seed:04d}.png')
        assert image.shape == (*size, 3)
        if not flags:   # the default canvas: exactly the network's own output
            assert np.array_equal(image, expected_png(G, seed))
    if flags and flags[0].startswith('--translate-strip'):
        assert png(tmp_path / 'seed0000-strip.png').shape == (16, 48, 3)

def test_projector_and_sefa_work_on_an_upstream_pickle(upstream_snapshot, tmp_path):
    """Every projector mode (W, W+, a fixed canvas, --fit-canvas with --fit-zoom), then SeFa on
    the projection, whose saved canvas a plain generator renders too."""
    import projector
    import generate
    from scripts.tools import sefa
    path, G = upstream_snapshot
    PIL.Image.fromarray(expected_png(G, 3)).save(tmp_path / 'target.png')
    runs = {'w': [], 'wplus': ['--w-plus'], 'shift': ['--shift=0,2.5', '--size=16x24'],
            'fit': ['--fit-canvas', '--fit-zoom', '--w-plus']}
    for name, flags in runs.items():
        out = tmp_path / name
        result = CliRunner().invoke(projector.run_projection, [f'--network={path}', f'--target={tmp_path / "target.png"}',
            '--num-steps=2', '--save-video=False', '--loss=pixel', '--device=cpu', f'--outdir={out}'] + flags)
        assert result.exit_code == 0, result.output
        saved = np.load(out / 'projected_w.npz')
        assert saved['w'].shape == (1, G.num_ws, G.w_dim)
        assert png(out / 'proj.png').shape == ((16, 24, 3) if name == 'shift' else (16, 16, 3))
        assert ('canvas_origin' in saved) == (name in ('shift', 'fit'))
    # The projection renders again through generate.py, and SeFa edits it on its canvas.
    result = CliRunner().invoke(generate.generate_images, [f'--network={path}', f'--projected-w={tmp_path / "w" / "projected_w.npz"}',
                                                          f'--outdir={tmp_path / "again"}', '--device=cpu'])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(sefa.main, [f'--network={path}', '--k=2', f'--projected-w={tmp_path / "shift" / "projected_w.npz"}',
                                            f'--outdir={tmp_path / "sefa"}', '--strengths=-1,0,1'])
    assert result.exit_code == 0, result.output
    assert png(tmp_path / 'sefa' / 'sefa-projected.png').shape == (2 * 16, 3 * 24, 3)

def test_calc_metrics_evaluates_an_upstream_pickle(upstream_snapshot, tmp_path, monkeypatch):
    import calc_metrics
    path, _ = upstream_snapshot
    data = tmp_path / 'reals'
    data.mkdir()
    rnd = np.random.RandomState(0)
    for i in range(16):
        PIL.Image.fromarray(rnd.randint(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(data / f'{i:03d}.png')
    (tmp_path / 'pool_detector.py').write_text(textwrap.dedent('''
        import torch
        class Pool(torch.nn.Module):
            def forward(self, images, **kwargs):
                return torch.nn.functional.adaptive_avg_pool2d(images.float() / 255, 2).flatten(1)
        def detector(device=None):
            return Pool().to(device)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    result = CliRunner().invoke(calc_metrics.calc_metrics, [f'--network={path}', '--metrics=kid2k_full', f'--data={data}',
                                                            '--detector=pool_detector:detector', '--verbose=False'])
    assert result.exit_code == 0, result.output
    line = json.loads([l for l in result.output.splitlines() if l.startswith('{')][-1])
    assert np.isfinite(line['results']['kid2k_full'])

@pytest.mark.parametrize('pe', [None, 'mspe'])
def test_resuming_from_an_upstream_pickle_takes_every_tensor_of_matching_name(upstream_snapshot, pe):
    """What train.py --resume does (load, then copy by name): every tensor whose name the
    upstream G has is copied, none is dropped for its shape; MS-PE adds only its own tensors
    (the gammas and encoding tables) and leaves out the learned constant it replaces."""
    from mspe_plugin import networks as pe_networks
    src = load(upstream_snapshot[0])
    target_G, target_D = tiny_networks(seed=1)
    if pe is not None:
        kwargs = target_G.init_kwargs
        kwargs.synthesis_kwargs = dict(kwargs.synthesis_kwargs, pe=pe)
        target_G = pe_networks.Generator(**kwargs)
    for name, target in [('G_ema', target_G), ('D', target_D)]:
        misc.copy_params_and_buffers(src[name], target, require_all=False)
        theirs = dict(misc.named_params_and_buffers(src[name]))
        for key, tensor in misc.named_params_and_buffers(target):
            if key in theirs:
                assert tensor.shape == theirs[key].shape and torch.equal(tensor, theirs[key]), key
            else:
                assert pe is not None and name == 'G_ema' and key.startswith('synthesis.pe_'), key
        if pe is not None and name == 'G_ema':
            assert set(theirs) - set(dict(misc.named_params_and_buffers(target))) == {'synthesis.b4.const'}

def test_train_mspe_resumes_from_an_upstream_pickle(tmp_path):
    """train.py --cfg=mspe --resume=<upstream-style snapshot, with its augment pipe> trains a tick
    (the auto preset's shapes, made small with --cbase/--cmax)."""
    G, D = tiny_networks(z_dim=512, w_dim=512, channel_base=256, channel_max=16)
    pkl = tmp_path / 'upstream.pkl'
    with open(pkl, 'wb') as f:
        ForeignCheckoutPickler(f).dump(dict(G=G, D=D, G_ema=G, augment_pipe=make_augment_pipe(tmp_path), training_set_kwargs=None))
    data = tmp_path / 'reals'
    data.mkdir()
    rnd = np.random.RandomState(0)
    for i in range(8):
        PIL.Image.fromarray(rnd.randint(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(data / f'{i:03d}.png')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, os.path.join(HOST, 'train.py'), f'--outdir={tmp_path / "runs"}', f'--data={data}',
                             '--cfg=mspe', '--cbase=256', '--cmax=16', f'--resume={pkl}', '--kimg=0.004', '--tick=0.004',
                             '--batch=4', '--metrics=none', '--aug=noaug', '--workers=0'],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / 'runs' / os.listdir(tmp_path / 'runs')[0]
    log = (run_dir / 'log.txt').read_text()
    assert f'Resuming from "{pkl}"' in log and 'tick 0' in log
    snaps = sorted(run_dir.glob('network-snapshot-*.pkl'))
    G_mspe = load(snaps[-1])['G_ema']
    assert G_mspe.synthesis.pe == 'mspe'
    # The mapping (lr x0.01) barely moved in one step: it was resumed, not re-initialised.
    assert torch.allclose(G_mspe.mapping.fc1.weight, G.mapping.fc1.weight, atol=0.05)

#----------------------------------------------------------------------------
# Our own earlier pickles: 1-D filters (the layout before the host matched upstream).

def with_old_filters(net):
    """`net` as our earlier host stored it: every [4, 4] resampling filter as its 1-D [4] taps."""
    for module in net.modules():
        f = module._buffers.get('resample_filter')
        if f is not None and f.shape == (4, 4):
            module._buffers['resample_filter'] = f.sum(dim=0)   # the 1-D taps whose outer product f is
    return net

def test_earlier_pickle_with_1d_filters_loads_in_upstreams_layout(tmp_path):
    import copy
    G, D = tiny_networks()
    old_G, old_D = with_old_filters(copy.deepcopy(G)), with_old_filters(copy.deepcopy(D))
    assert old_G.synthesis.b8.resample_filter.shape == (4,)
    path = tmp_path / 'old.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=old_G, D=old_D, G_ema=old_G, augment_pipe=None, training_set_kwargs=None), f)
    data = load(path)
    for name, ref in [('G_ema', G), ('D', D)]:
        layout = {k: v.shape for k, v in data[name].state_dict().items()}
        assert layout == {k: v.shape for k, v in ref.state_dict().items()}
        for key, value in data[name].state_dict().items():
            assert torch.allclose(value, ref.state_dict()[key], atol=1e-7), key
    z = torch.randn(2, G.z_dim)
    assert torch.allclose(data['G_ema'](z, None, noise_mode='const'), G(z, None, noise_mode='const'), atol=1e-5)
    # A weights-only file written with 1-D filters loads into the current classes as well.
    weights = tmp_path / 'old.pt'
    legacy.save_network_weights(str(weights), dict(G_ema=G))
    payload = torch.load(weights, weights_only=True)
    state = payload['networks']['G_ema']['state_dict']
    for key in [k for k in state if k.endswith('resample_filter')]:
        state[key] = state[key].sum(dim=0)
    torch.save(payload, weights)
    assert torch.allclose(load(weights)['G_ema'](z, None, noise_mode='const'), G(z, None, noise_mode='const'), atol=1e-5)

@pytest.mark.parametrize('name', ['baseline', 'mspe'])
def test_older_snapshots_load_render_every_canvas_and_resume(name):
    """Snapshots written before the host stored filters as upstream does and before the plugin had
    margins (tests/data/legacy: tiny generators of the class pickled in the earlier committed models)."""
    from mspe_plugin import register
    from mspe_plugin.encoding import Canvas
    path = os.path.join(ROOT, 'tests', 'data', 'legacy', f'{name}-old-tiny.pkl')
    with open(path, 'rb') as f:
        raw = pickle.load(f)['G_ema'].eval()       # as stored: 1-D filters
    assert raw.synthesis.b8.resample_filter.ndim == 1
    G = load(path)['G_ema'].eval()
    assert G.synthesis.b8.resample_filter.shape == (4, 4)
    ws = G.mapping(torch.from_numpy(np.random.RandomState(0).randn(2, G.z_dim)).float(), torch.zeros([2, G.c_dim]))
    with torch.no_grad():
        assert torch.allclose(G.synthesis(ws, noise_mode='const'), raw.synthesis(ws, noise_mode='const'), atol=1e-4)
        canvas_G = register.with_canvas_support(G)
        for canvas in [Canvas(origin=(0, 4.5)), Canvas(zoom=1.5), Canvas(size=(32, 48)), Canvas(origin=(0, 5), wrap=True)]:
            img = canvas_G.synthesis(ws, noise_mode='const', canvas=canvas)
            ref = register.with_canvas_support(raw).synthesis(ws, noise_mode='const', canvas=canvas)
            assert img.shape[2:] == canvas.output_size(G.img_resolution) and torch.allclose(img, ref, atol=1e-4)
    # Resuming into a network built by the current code takes every tensor.
    fresh = type(G)(*G.init_args, **G.init_kwargs)
    misc.copy_params_and_buffers(G, fresh, require_all=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), G.state_dict().values()))
