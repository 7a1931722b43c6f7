"""torch_utils.plugins: the host's optional mspe_plugin import tells "not installed" from
"installed but broken", and every script chooses its device the same way."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from torch_utils import plugins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')

def _package(root, name, register_src, init_src=''):
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text(init_src)
    (pkg / 'register.py').write_text(register_src)
    return root

@pytest.fixture
def on_path(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.startswith('fakeplug')]:
        del sys.modules[name]

def test_absent_plugin_is_none():
    assert plugins.load_plugin('fakeplug_absent', 'fakeplug_absent.register') is None

def test_working_plugin_is_its_module(on_path):
    _package(on_path, 'fakeplug_ok', 'API = 42\n')
    assert plugins.load_plugin('fakeplug_ok', 'fakeplug_ok.register').API == 42

@pytest.mark.parametrize('register_src, init_src, detail', [
    ('import fakeplug_dependency_xyz\n', '', "No module named 'fakeplug_dependency_xyz'"),
    ('def broken(:\n', '', 'SyntaxError'),
    ('', 'raise RuntimeError("half-installed")\n', 'RuntimeError: half-installed'),
])
def test_broken_plugin_is_one_sentence_with_the_cause(on_path, register_src, init_src, detail):
    _package(on_path, 'fakeplug_broken', register_src, init_src)
    with pytest.raises(plugins.PluginError) as info:
        plugins.load_plugin('fakeplug_broken', 'fakeplug_broken.register')
    message = str(info.value)
    assert message.startswith('fakeplug_broken is installed but') and detail in message
    assert '\n' not in message and message.endswith('.')

def test_plugin_without_its_api_module_is_broken_not_absent(on_path):
    (on_path / 'fakeplug_noapi').mkdir()
    (on_path / 'fakeplug_noapi' / '__init__.py').write_text('')
    with pytest.raises(plugins.PluginError, match='fakeplug_noapi.register cannot be imported'):
        plugins.load_plugin('fakeplug_noapi', 'fakeplug_noapi.register')

@pytest.mark.parametrize('script, args', [
    ('generate.py', ['--help']),
    ('projector.py', ['--help']),
    ('train.py', ['--outdir=out', '--data=missing.zip', '--dry-run']),
])
def test_scripts_report_a_broken_mspe_plugin_and_exit(tmp_path, script, args):
    """A fake mspe_plugin whose register module fails to import (a missing dependency) shadows the
    real one: each script ends in one sentence naming the cause, with status 1 and no traceback."""
    fake = _package(tmp_path / 'fake', 'mspe_plugin', 'import fakeplug_missing_dependency\n')
    runner = textwrap.dedent(f'''
        import runpy, sys
        sys.path.insert(0, {str(fake)!r})
        sys.argv = [{script!r}] + {args!r}
        runpy.run_path({os.path.join(HOST, script)!r}, run_name='__main__')
    ''')
    env = dict(os.environ, PYTHONPATH=HOST, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-c', runner], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert 'mspe_plugin is installed but mspe_plugin.register cannot be imported' in lines[0]
    assert "No module named 'fakeplug_missing_dependency'" in lines[0]

def test_default_device_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert plugins.default_device(3) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert plugins.default_device(3) == torch.device('cuda', 1)

def test_parse_device_refuses_in_one_sentence(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert plugins.parse_device('auto') == torch.device('cpu')
    with pytest.raises(ValueError, match='is not a device'):
        plugins.parse_device('gpu-please')
    with pytest.raises(ValueError, match='CUDA is not available'):
        plugins.parse_device('cuda:0')
