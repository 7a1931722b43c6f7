"""legacy: snapshot pickles and weights-only files load to the same networks; bad files fail in
one sentence; a pickle loads where training/networks.py is gone."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import legacy
from torch_utils import persistence

torch.set_num_threads(1)

HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'stylegan2_ada_vendor')

def tiny_generator(seed=0, c_dim=0):
    from training.networks import Generator
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))

def tiny_discriminator(seed=1):
    from training.networks import Discriminator
    torch.manual_seed(seed)
    return Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)

def tiny_snapshot():
    G = tiny_generator()
    with torch.no_grad():       # G_ema != G, so a mix-up would show
        G_ema = tiny_generator(seed=5).eval().requires_grad_(False)
    return dict(G=G, D=tiny_discriminator(), G_ema=G_ema, augment_pipe=None,
                training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='data.zip', resolution=16),
                progress=dict(cur_nimg=4000, cur_tick=1))

def render(G, seed=0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(2, G.z_dim)).float()
    with torch.no_grad():
        return G(z, torch.zeros([2, G.c_dim]), truncation_psi=0.7, noise_mode='const')

def write_pickle(obj, path):
    with open(path, 'wb') as f:
        pickle.dump(obj, f)
    return str(path)

def load(path, **kwargs):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f, **kwargs)

def assert_one_sentence(err, path):
    message = str(err)
    assert message.startswith(str(path)) and '\n' not in message and message.endswith('.'), message
    return message

#----------------------------------------------------------------------------

def test_snapshot_pickle_loads_as_dict(tmp_path):
    snapshot = tiny_snapshot()
    data = load(write_pickle(snapshot, tmp_path / 'snap.pkl'))
    assert set(data) >= {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'progress'}
    assert torch.equal(render(data['G_ema']), render(snapshot['G_ema']))
    assert data['progress'] == dict(cur_nimg=4000, cur_tick=1)

def test_weights_file_round_trip_gives_outputs_identical_to_the_pickle(tmp_path):
    pkl = write_pickle(tiny_snapshot(), tmp_path / 'snap.pkl')
    weights = str(tmp_path / 'snap-weights.pt')
    assert legacy.convert_pkl_to_weights(pkl, weights) == ['D', 'G', 'G_ema']
    from_pkl, from_weights = load(pkl), load(weights)
    for key in ('G', 'G_ema'):
        assert torch.equal(render(from_weights[key]), render(from_pkl[key]))
        assert type(from_weights[key]).__name__ == 'Generator'
        assert from_weights[key].init_kwargs == from_pkl[key].init_kwargs
    img = torch.randn(2, 3, 16, 16)
    assert torch.equal(from_weights['D'](img, None), from_pkl['D'](img, None))
    assert from_weights['training_set_kwargs'] == from_pkl['training_set_kwargs']
    assert from_weights['progress'] == dict(cur_nimg=4000, cur_tick=1) and from_weights['augment_pipe'] is None
    # Training mode and frozen parameters come back as they were.
    assert not from_weights['G_ema'].training and not any(p.requires_grad for p in from_weights['G_ema'].parameters())
    assert from_weights['G'].training and all(p.requires_grad for p in from_weights['G'].parameters())

def test_weights_file_holds_only_tensors_and_text(tmp_path):
    path = str(tmp_path / 'w.pt')
    legacy.save_network_weights(path, dict(G_ema=tiny_generator()), extra=dict(note=(1, 2)))
    payload = torch.load(path, weights_only=True)
    record = payload['networks']['G_ema']
    assert record['class_name'] == 'training.networks.Generator'
    assert all(isinstance(v, torch.Tensor) for v in record['state_dict'].values())
    assert legacy.load_network_weights(path)['note'] == [1, 2]     # tuples come back as lists

def test_weights_loader_runs_no_code_from_the_file(tmp_path):
    marker = tmp_path / 'pwned'
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))
    path = tmp_path / 'evil.pt'
    torch.save(dict(format=legacy.WEIGHTS_FORMAT, version=1, networks=Payload(), extra='{}'), str(path))
    with pytest.raises(legacy.NetworkLoadError) as info:
        load(path)
    assert_one_sentence(info.value, path)
    assert not marker.exists()

def test_pickle_of_a_rebuilt_class_records_its_importable_name(tmp_path):
    src = textwrap.dedent('''
        import torch
        from torch_utils import persistence
        @persistence.persistent_class
        class Gen(torch.nn.Module):
            def __init__(self, width):
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(width))
    ''')
    # A class rebuilt from a pickle lives in an `_imported_module_*`; the weights file must
    # still name the module it can be imported from.
    from torch_utils.persistence import _src_to_module
    module = _src_to_module(src, module_name='mymodels.nets')
    net = module.Gen(3)
    assert type(net).__module__.startswith('_imported_module_')
    path = str(tmp_path / 'w.pt')
    legacy.save_network_weights(path, dict(G=net))
    assert torch.load(path, weights_only=True)['networks']['G']['class_name'] == 'mymodels.nets.Gen'
    # Not declared: refused by name. Declared: the loader tries it and says it cannot be imported.
    with pytest.raises(legacy.NetworkLoadError) as info:
        legacy.load_network_weights(path)
    assert "'mymodels.nets.Gen'" in str(info.value) and 'does not declare to be a network' in str(info.value)
    legacy.register_network_class('mymodels.nets.Gen')
    try:
        with pytest.raises(legacy.NetworkLoadError) as info:
            legacy.load_network_weights(path)
    finally:
        legacy.NETWORK_CLASSES.discard('mymodels.nets.Gen')
    message = str(info.value)
    assert 'needs mymodels.nets.Gen' in message and 'cannot be imported' in message and '\n' not in message

#----------------------------------------------------------------------------
# Hostile weights files: they name callables that are not networks, or smuggle one in as an argument.

def _hostile_file(path, class_name, init_args=(), init_kwargs=None, state_dict=None, extra=None):
    record = dict(class_name=class_name, init_args=json.dumps(list(init_args)), init_kwargs=json.dumps(init_kwargs or {}),
                  state_dict=state_dict or {}, training=False, frozen='[]')
    torch.save(dict(format=legacy.WEIGHTS_FORMAT, version=legacy.WEIGHTS_VERSION, networks=dict(G_ema=record),
                    extra=json.dumps(extra or {})), str(path))
    torch.load(str(path), weights_only=True)      # a valid weights-only file as far as torch can tell
    return path

def _generator_record_parts():
    G = tiny_generator()
    return json.loads(json.dumps(G.init_kwargs)), G.state_dict()

@pytest.mark.parametrize('case', ['os.system', 'builtins.exec', 'subprocess.Popen', 'argument', 'extra'])
def test_hostile_weights_file_is_refused_before_anything_runs(tmp_path, case):
    marker = tmp_path / 'pwned'
    path = tmp_path / f'{case}.pt'
    kwargs, state = _generator_record_parts()
    if case == 'os.system':
        _hostile_file(path, 'os.system', [f'touch {marker}'])
    elif case == 'builtins.exec':
        _hostile_file(path, 'builtins.exec', [f'open({str(marker)!r}, "w").close()'])
    elif case == 'subprocess.Popen':
        _hostile_file(path, 'subprocess.Popen', [['touch', str(marker)]])
    elif case == 'argument':    # a legitimate class, with a callable smuggled into its arguments
        kwargs['mapping_kwargs'] = dict(kwargs['mapping_kwargs'], class_name='subprocess.Popen', args=['touch', str(marker)])
        _hostile_file(path, 'training.networks.Generator', init_kwargs=kwargs, state_dict=state)
    else:                       # ... or into the dataset config that calc_metrics would build
        _hostile_file(path, 'training.networks.Generator', init_kwargs=kwargs, state_dict=state,
                      extra=dict(training_set_kwargs=dict(class_name='os.system', command=f'touch {marker}')))
    with pytest.raises(legacy.NetworkLoadError) as info:
        load(path)
    message = assert_one_sentence(info.value, path)
    if case in ('argument', 'extra'):
        bad = 'subprocess.Popen' if case == 'argument' else 'os.system'
        assert f"refers to '{bad}'" in message and 'not a class this installation declares' in message
    else:
        assert f"names the class '{case}'" in message and 'does not declare to be a network' in message
    assert not marker.exists()

def test_hostile_class_name_is_refused_before_its_module_is_imported(tmp_path):
    """The name is compared, not the object: the module a hostile file names is never imported
    (importing a module can run code)."""
    module_dir = tmp_path / 'mods'
    module_dir.mkdir()
    marker = tmp_path / 'imported'
    (module_dir / 'evil_side_effect.py').write_text(f'open({str(marker)!r}, "w").close()\nclass Net: pass\n')
    path = _hostile_file(tmp_path / 'w.pt', 'evil_side_effect.Net')
    sys.path.insert(0, str(module_dir))
    try:
        with pytest.raises(legacy.NetworkLoadError):
            load(path)
    finally:
        sys.path.remove(str(module_dir))
    assert not marker.exists() and 'evil_side_effect' not in sys.modules

def test_registered_class_loads_from_weights(tmp_path):
    module_dir = tmp_path / 'mods'
    module_dir.mkdir()
    (module_dir / 'fork_nets.py').write_text(textwrap.dedent('''
        import torch
        from torch_utils import persistence
        @persistence.persistent_class
        class Gen(torch.nn.Module):
            def __init__(self, width):
                super().__init__()
                self.w = torch.nn.Parameter(torch.arange(width, dtype=torch.float32))
    '''))
    sys.path.insert(0, str(module_dir))
    try:
        import fork_nets
        path = str(tmp_path / 'w.pt')
        legacy.save_network_weights(path, dict(G=fork_nets.Gen(3)))
        with pytest.raises(legacy.NetworkLoadError, match='does not declare to be a network'):
            legacy.load_network_weights(path)
        assert legacy.register_network_class(fork_nets.Gen) == 'fork_nets.Gen'
        assert torch.equal(legacy.load_network_weights(path)['G'].w, torch.arange(3.0))
    finally:
        legacy.NETWORK_CLASSES.discard('fork_nets.Gen')
        sys.path.remove(str(module_dir))
        sys.modules.pop('fork_nets', None)
    with pytest.raises(ValueError, match='not a dotted class name'):
        legacy.register_network_class('os.system; rm')

def test_weights_need_a_persistent_class(tmp_path):
    with pytest.raises(ValueError, match='not built by a persistent class'):
        legacy.save_network_weights(str(tmp_path / 'w.pt'), dict(G=torch.nn.Linear(2, 2)))
    assert not os.listdir(tmp_path)     # nothing half-written

def test_bare_generator_pickle_becomes_G_and_G_ema(tmp_path):
    G = tiny_generator()
    data = load(write_pickle(G, tmp_path / 'g.pkl'))
    assert data['D'] is None and data['G'] is data['G_ema']
    assert torch.equal(render(data['G_ema']), render(G))

def _synthesis_blocks(G):
    return [getattr(G.synthesis, f'b{res}') for res in G.synthesis.block_resolutions]

def test_force_fp16_marks_the_four_highest_resolutions_with_clamp_and_same_weights(tmp_path):
    """--force-fp16 as upstream: the blocks of the 4 highest resolutions (here, of a 16 px G with
    blocks 4, 8, 16: those of 8 and 16, upstream's floor being 8) switch to FP16 and every conv
    clamps at 256; the weights are the same tensors."""
    pkl = write_pickle(tiny_snapshot(), tmp_path / 'snap.pkl')
    plain, fp16 = load(pkl), load(pkl, force_fp16=True)
    kwargs = fp16['G_ema'].init_kwargs
    assert kwargs.synthesis_kwargs.num_fp16_res == 4 and kwargs.synthesis_kwargs.conv_clamp == 256
    assert fp16['D'].init_kwargs.conv_clamp == 256
    assert [b.use_fp16 for b in _synthesis_blocks(plain['G_ema'])] == [False, False, False]
    assert [b.use_fp16 for b in _synthesis_blocks(fp16['G_ema'])] == [False, True, True]
    assert all(b.conv1.conv_clamp == 256 for b in _synthesis_blocks(fp16['G_ema']))
    for a, b in zip(plain['G_ema'].state_dict().values(), fp16['G_ema'].state_dict().values()):
        assert torch.equal(a, b)
    # On the CPU the host runs FP16 blocks in float32 (half precision only on CUDA): the clamp
    # at 256 is the only difference, and this model's activations stay far below it.
    assert torch.allclose(render(fp16['G_ema']), render(plain['G_ema']), atol=1e-4)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='the host computes FP16 blocks in float16 only on CUDA '
                    '(on the CPU they run in float32, covered by the test above); no CUDA device here')
def test_force_fp16_renders_in_half_precision_on_cuda(tmp_path):
    pkl = write_pickle(tiny_snapshot(), tmp_path / 'snap.pkl')
    plain = load(pkl)['G_ema'].cuda()
    fp16 = load(pkl, force_fp16=True)['G_ema'].cuda()
    dtypes = []
    fp16.synthesis.b16.conv1.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    z = torch.from_numpy(np.random.RandomState(0).randn(2, 8)).float().cuda()
    c = torch.zeros([2, 0], device='cuda')
    with torch.no_grad():
        a, b = plain(z, c, noise_mode='const'), fp16(z, c, noise_mode='const')
    assert dtypes == [torch.float16]
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.05 * a.abs().max()

def test_half_precision_weights_file_renders_within_fp16_rounding(tmp_path):
    """A weights file written from a network converted to float16 (half the size) loads into the
    float32 classes and renders what the float32 network renders, up to float16 rounding."""
    import copy
    G = tiny_generator().eval()
    path = str(tmp_path / 'half.pt')
    legacy.save_network_weights(path, dict(G_ema=copy.deepcopy(G).half()))
    stored = torch.load(path, weights_only=True)['networks']['G_ema']['state_dict']
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    loaded = load(path)['G_ema']
    assert all(t.dtype == torch.float32 for t in loaded.state_dict().values() if t.is_floating_point())
    expected, got = render(G), render(loaded)
    assert not torch.equal(expected, got)                                        # the weights were rounded ...
    assert (expected - got).abs().max() < 1e-2 * expected.abs().max()            # ... to float16 precision only

#----------------------------------------------------------------------------
# Bad files.

def _bad_file_message(path):
    with pytest.raises(legacy.NetworkLoadError) as info:
        load(path)
    return assert_one_sentence(info.value, path)

def test_truncated_pickle_is_one_sentence(tmp_path):
    full = pickle.dumps(tiny_snapshot())
    path = tmp_path / 'truncated.pkl'
    path.write_bytes(full[:len(full) // 2])
    message = _bad_file_message(path)
    assert message.startswith(f'{path} is not a network pickle or weights file: ')

def test_truncated_weights_file_is_one_sentence(tmp_path):
    full = tmp_path / 'full.pt'
    legacy.save_network_weights(str(full), dict(G_ema=tiny_generator()))
    path = tmp_path / 'truncated.pt'
    path.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    assert _bad_file_message(path).startswith(f'{path} is not a network pickle or weights file: ')

@pytest.mark.parametrize('content', [b'', b'hello, I am a text file\n', np.random.RandomState(0).bytes(5000),
                                     b'\x80\x04' + np.random.RandomState(1).bytes(300)])
def test_garbage_is_one_sentence(tmp_path, content):
    path = tmp_path / 'garbage.pkl'
    path.write_bytes(content)
    assert _bad_file_message(path).startswith(f'{path} is not a network pickle or weights file: ')

def test_pickle_without_networks_is_one_sentence(tmp_path):
    path = write_pickle(dict(a=1, b=[2]), tmp_path / 'other.pkl')
    assert 'but no G, D or G_ema network' in _bad_file_message(path)

def test_foreign_torch_file_is_one_sentence(tmp_path):
    path = tmp_path / 'state.pt'
    torch.save(tiny_generator().state_dict(), str(path))
    assert 'not written by legacy.save_network_weights' in _bad_file_message(path)

def test_tensorflow_pickle_says_how_to_convert(tmp_path):
    path = tmp_path / 'tf.pkl'
    path.write_bytes(b'\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.')
    assert 'TensorFlow-era StyleGAN pickle' in _bad_file_message(path)

def test_convert_cli_writes_weights_and_refuses_garbage(tmp_path):
    pkl = write_pickle(tiny_snapshot(), tmp_path / 'snap.pkl')
    dest = tmp_path / 'w.pt'
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', pkl, '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    assert torch.equal(render(load(dest)['G_ema']), render(load(pkl)['G_ema']))
    (tmp_path / 'bad.pkl').write_bytes(b'junk')
    result = CliRunner().invoke(legacy.convert_network_pickle, ['--source', str(tmp_path / 'bad.pkl'), '--dest', str(tmp_path / 'x.pt')])
    assert result.exit_code != 0 and 'is not a network pickle or weights file' in result.output
    assert not (tmp_path / 'x.pt').exists()

#----------------------------------------------------------------------------

def test_pickled_generator_loads_where_training_networks_is_gone(tmp_path):
    host = tmp_path / 'host'
    shutil.copytree(HOST, host, ignore=shutil.ignore_patterns('__pycache__'))
    env = dict(os.environ, PYTHONPATH=str(host), OMP_NUM_THREADS='1')
    def run(script):
        result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=str(tmp_path), env=env,
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout
    run('''
        import pickle, numpy as np, torch, legacy
        from training.networks import Generator
        torch.manual_seed(0)
        G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                      mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32))
        z = torch.from_numpy(np.random.RandomState(0).randn(2, 8)).float()
        torch.save(dict(z=z, img=G(z, None, noise_mode='const').detach()), 'expected.pt')
        with open('snap.pkl', 'wb') as f:
            pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
        legacy.save_network_weights('weights.pt', dict(G_ema=G))
        ''')
    networks_py = host / 'training' / 'networks.py'
    networks_py.write_text('raise ImportError("this checkout has no usable training.networks")\n')
    out = run('''
        import importlib, torch, legacy
        try:
            importlib.import_module('training.networks')
            raise SystemExit('training.networks should not import here')
        except ImportError:
            pass
        with open('snap.pkl', 'rb') as f:
            G = legacy.load_network_pkl(f)['G_ema']
        expected = torch.load('expected.pt')
        assert torch.equal(G(expected['z'], None, noise_mode='const'), expected['img']), 'outputs differ'
        try:    # the weights-only format needs the code, and says so
            legacy.load_network_pkl(open('weights.pt', 'rb'))
        except legacy.NetworkLoadError as err:
            print(err)
        ''')
    assert 'weights.pt needs training.networks.Generator' in out and 'cannot be imported' in out
    networks_py.unlink()
    out = run('''
        import torch, legacy
        G = legacy.load_network_pkl(open('snap.pkl', 'rb'))['G_ema']
        expected = torch.load('expected.pt')
        assert torch.equal(G(expected['z'], None, noise_mode='const'), expected['img']), 'outputs differ'
        print('ok')
        ''')
    assert out.strip() == 'ok'

def test_upstream_pickle_converts_to_weights_of_the_host_class(tmp_path):
    """Pickles from upstream checkouts record no module name: their classes are matched by name
    in training.networks, and the strict state_dict load proves the match."""
    import training.networks
    G = tiny_generator().eval()
    class UpstreamStyle:
        def __reduce__(self):
            src = open(training.networks.__file__).read() + '\n# written by another checkout\n'
            meta = dict(type='class', version=6, module_src=src, class_name='Generator', state=dict(G.__dict__))
            return (persistence._reconstruct_persistent_obj, (meta,))
    pkl = write_pickle(dict(G_ema=UpstreamStyle()), tmp_path / 'upstream.pkl')
    loaded = load(pkl)['G_ema']
    assert type(loaded).__module__.startswith('_imported_module_')
    weights = str(tmp_path / 'w.pt')
    legacy.convert_pkl_to_weights(pkl, weights)
    assert torch.load(weights, weights_only=True)['networks']['G_ema']['class_name'] == 'training.networks.Generator'
    assert torch.equal(render(load(weights)['G_ema']), render(G))
