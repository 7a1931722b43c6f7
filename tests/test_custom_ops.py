"""custom_ops.get_plugin: one warning and None when a build is impossible, never a retry;
a real tiny build is cached in the process and on disk."""

import os
import shutil
import uuid
import warnings

import pytest
import torch
from torch.utils import cpp_extension

import dnnlib
from torch_utils import custom_ops

@pytest.fixture
def build_env(tmp_path, monkeypatch):
    """Builds go to tmp_path's cache; cpp_extension.load calls are counted."""
    monkeypatch.setattr(dnnlib.util, '_cache_dir', str(tmp_path / 'cache'))
    monkeypatch.setattr(custom_ops, '_plugins', dict())
    monkeypatch.setattr(custom_ops, 'verbosity', 'none')
    calls = []
    real_load = cpp_extension.load
    def counting_load(*args, **kwargs):
        calls.append(kwargs.get('name'))
        return real_load(*args, **kwargs)
    monkeypatch.setattr(cpp_extension, 'load', counting_load)
    return tmp_path, calls

def _plugin_warnings(record):
    return [w for w in record if issubclass(w.category, custom_ops.PluginBuildWarning)]

def test_broken_source_warns_once_and_is_never_rebuilt(build_env):
    tmp_path, calls = build_env
    src = tmp_path / 'broken.cpp'
    src.write_text('#include "no_such_header_anywhere.h"\nint main() { return 0; }\n')
    name = f'broken_{uuid.uuid4().hex[:8]}'
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin(name, sources=['broken.cpp'], source_dir=str(tmp_path)) is None
        assert custom_ops.get_plugin(name, sources=['broken.cpp'], source_dir=str(tmp_path)) is None
    found = _plugin_warnings(record)
    assert len(found) == 1 and calls == [name]
    message = str(found[0].message)
    assert f'Could not build plugin "{name}"' in message and 'no_such_header_anywhere.h' in message
    assert message.endswith('using the reference PyTorch implementation instead.') and '\n' not in message
    log = message.split('build log: ')[1].split(')')[0]
    assert 'no_such_header_anywhere.h' in open(log).read()

def test_missing_compiler_warns_without_trying(build_env, monkeypatch):
    tmp_path, calls = build_env
    (tmp_path / 'op.cpp').write_text('int x;\n')
    monkeypatch.setenv('CXX', str(tmp_path / 'no-such-compiler'))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('needs_compiler', sources=[str(tmp_path / 'op.cpp')]) is None
        assert custom_ops.get_plugin('needs_compiler', sources=[str(tmp_path / 'op.cpp')]) is None
    found = _plugin_warnings(record)
    assert len(found) == 1 and 'no C++ compiler' in str(found[0].message) and calls == []

def test_missing_source_file_warns(build_env):
    tmp_path, calls = build_env
    with pytest.warns(custom_ops.PluginBuildWarning, match='does not exist'):
        assert custom_ops.get_plugin('no_source', sources=['gone.cpp'], source_dir=str(tmp_path)) is None
    assert calls == []

def test_cuda_sources_need_the_cuda_toolkit(build_env, monkeypatch):
    tmp_path, calls = build_env
    (tmp_path / 'op.cu').write_text('__global__ void k() {}\n')
    monkeypatch.setattr(torch.version, 'cuda', None)
    with pytest.warns(custom_ops.PluginBuildWarning, match='CUDA sources need'):
        assert custom_ops.get_plugin('cuda_op', sources=['op.cu'], source_dir=str(tmp_path)) is None
    assert calls == []

# A TORCH_LIBRARY op with light headers: compiles in about 10 s of CPU time here.
TINY_OP = '''
#include <Python.h>
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include "scale.h"
static at::Tensor add_scaled(const at::Tensor& x, double a) { return x.add(a * SCALE); }
TORCH_LIBRARY(NAMESPACE, m) { m.def("add_scaled(Tensor x, float a) -> Tensor", &add_scaled); }
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, MODNAME, NULL, -1, NULL};
PyMODINIT_FUNC PYINIT(void) { return PyModule_Create(&def); }
'''

@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'c++')) is None or not cpp_extension.is_ninja_available(),
                    reason='needs a C++ compiler and ninja')
def test_tiny_op_builds_once_and_is_reused_from_disk(build_env):
    tmp_path, calls = build_env
    name = f'tiny_{uuid.uuid4().hex[:8]}'
    source = TINY_OP.replace('NAMESPACE', name).replace('MODNAME', f'"{name}"').replace('PYINIT', f'PyInit_{name}')
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'tiny.cpp').write_text(source)
    (tmp_path / 'src' / 'scale.h').write_text('#define SCALE 3\n')
    kwargs = dict(sources=['tiny.cpp'], headers=['scale.h'], source_dir=str(tmp_path / 'src'))
    module = custom_ops.get_plugin(name, **kwargs)
    assert module is not None and module.__name__ == name
    op = getattr(torch.ops, name).add_scaled
    assert torch.equal(op(torch.zeros(3), 0.5), torch.full([3], 1.5))
    assert custom_ops.get_plugin(name, **kwargs) is module and calls == [name]     # once per process

    # The build sits in the dnnlib cache under a hash of the sources; a new process (simulated
    # by forgetting the in-process cache) loads it without compiling again.
    build_dirs = os.listdir(dnnlib.make_cache_dir_path('torch_extensions'))
    assert len(build_dirs) == 1 and build_dirs[0].startswith(name + '-')
    library = os.path.join(dnnlib.make_cache_dir_path('torch_extensions'), build_dirs[0], f'{name}.so')
    built_at = os.path.getmtime(library)
    custom_ops._plugins.clear()
    assert custom_ops.get_plugin(name, **kwargs) is not None
    assert os.path.getmtime(library) == built_at and len(calls) == 2

    # Editing a header gives a new hash, hence a separate build folder.
    digest = custom_ops._build_digest([('tiny.cpp', str(tmp_path / 'src' / 'tiny.cpp')), ('scale.h', str(tmp_path / 'src' / 'scale.h'))], {})
    (tmp_path / 'src' / 'scale.h').write_text('#define SCALE 4\n')
    assert custom_ops._build_digest([('tiny.cpp', str(tmp_path / 'src' / 'tiny.cpp')), ('scale.h', str(tmp_path / 'src' / 'scale.h'))], {}) != digest
