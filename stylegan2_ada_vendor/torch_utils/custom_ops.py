"""Just-in-time builds of C++/CUDA plugins, with a clean fallback.

    plugin = custom_ops.get_plugin('bias_act_plugin', sources=['bias_act.cpp', 'bias_act.cu'],
                                   headers=['bias_act.h'], source_dir=os.path.dirname(__file__))
    if plugin is None:
        ...     # the op's reference PyTorch path

`get_plugin` builds with ninja through torch.utils.cpp_extension.load. Builds live in the dnnlib
cache folder (make_cache_dir_path('torch_extensions', '<name>-<hash of sources and options>')),
so a plugin is compiled once per source version and machine, and later processes only load it.
When a build cannot happen (no C++ compiler, no ninja, CUDA sources without the CUDA toolkit,
a compile error), the first call warns once, returns None, and every later call in the process
returns None at once: callers use their reference path instead of retrying a build per call.
"""

import hashlib
import os
import shlex
import shutil
import sys
import warnings

import torch

import dnnlib

#----------------------------------------------------------------------------

verbosity = 'brief'     # 'none': silent, 'brief': one line per plugin, 'full': the compiler's output.

class PluginBuildWarning(UserWarning):
    """A plugin could not be built; the caller falls back to its reference implementation."""

_plugins = dict()       # module name -> loaded module, or None when its build failed

#----------------------------------------------------------------------------

def _missing_tool(sources):
    """Why no build can be attempted on this machine, or None when the tools are there."""
    from torch.utils import cpp_extension
    compiler = os.environ.get('CXX', 'cl' if os.name == 'nt' else 'c++')
    compiler_exe = shlex.split(compiler)[0] if compiler.strip() else ''
    if not compiler_exe or shutil.which(compiler_exe) is None:
        return f'no C++ compiler: {compiler!r} is not on PATH'
    if not cpp_extension.is_ninja_available():
        return 'ninja is not installed (pip install ninja)'
    if any(src.endswith('.cu') for src in sources):
        if torch.version.cuda is None or cpp_extension.CUDA_HOME is None:
            return 'CUDA sources need a CUDA build of PyTorch and the CUDA toolkit'
    return None

def _build_digest(files, build_kwargs):
    """Hash of the source texts, their names, the build options and the toolchain versions."""
    h = hashlib.md5()
    for rel, path in files:
        h.update(rel.encode('utf-8') + b'\0')
        with open(path, 'rb') as f:
            h.update(f.read())
        h.update(b'\0')
    h.update(repr(sorted((k, repr(v)) for k, v in build_kwargs.items())).encode('utf-8'))
    h.update(f'{torch.__version__} {torch.version.cuda} {sys.version_info[:2]} {os.environ.get("CXX", "")}'.encode('utf-8'))
    return h.hexdigest()

def _copy_if_changed(src, dst):
    """Copy src to dst unless dst already holds the same bytes (keeps ninja's timestamps)."""
    with open(src, 'rb') as f:
        data = f.read()
    if os.path.isfile(dst):
        with open(dst, 'rb') as f:
            if f.read() == data:
                return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f'{dst}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, dst)

def _reason(err):
    """The most telling line of a build failure (the compiler's first error, if any)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if 'error' in line.lower() and not line.lower().startswith('error building extension'):
            return line[:300]
    return (lines[0][:300] if lines else type(err).__name__)

def _fail(module_name, reason, log_path=None):
    where = f'; build log: {log_path}' if log_path is not None else ''
    warnings.warn(f'Could not build plugin "{module_name}" ({reason}{where}); '
                  f'using the reference PyTorch implementation instead.', PluginBuildWarning, stacklevel=3)
    _plugins[module_name] = None
    return None

def get_plugin(module_name, sources, headers=None, source_dir=None, **build_kwargs):
    """Build (or load the earlier build of) a C++/CUDA extension module.

    :param module_name: Python name of the extension (also its cache key within the process).
    :param sources: .cpp/.cu files, relative to source_dir when it is given.
    :param headers: extra files the sources include (they are part of the build hash).
    :param source_dir: folder of sources and headers.
    :param build_kwargs: passed to torch.utils.cpp_extension.load (extra_cflags, ...).
    :return: the extension module, or None when it cannot be built here (warned once).
    """
    if module_name in _plugins:
        return _plugins[module_name]
    headers = list(headers or [])
    def locate(name):
        path = os.path.join(source_dir, name) if source_dir is not None else name
        rel = os.path.relpath(path, source_dir) if source_dir is not None else os.path.basename(path)
        return rel, os.path.abspath(path)
    try:
        sources = [locate(name) for name in sources]
        headers = [locate(name) for name in headers]
        missing = [path for _rel, path in sources + headers if not os.path.isfile(path)]
        if missing:
            return _fail(module_name, f'source file {missing[0]} does not exist')
        reason = _missing_tool([path for _rel, path in sources])
        if reason is not None:
            return _fail(module_name, reason)
        digest = _build_digest(sources + headers, build_kwargs)
        build_dir = dnnlib.make_cache_dir_path('torch_extensions', f'{module_name}-{digest[:16]}')
        os.makedirs(build_dir, exist_ok=True)
        for rel, path in sources + headers:
            _copy_if_changed(path, os.path.join(build_dir, rel))
    except OSError as err:
        return _fail(module_name, f'{type(err).__name__}: {err}')

    from torch.utils import cpp_extension
    if verbosity in ('brief', 'full'):
        print(f'Setting up PyTorch plugin "{module_name}"...', end='' if verbosity == 'brief' else '\n', flush=True)
    try:
        module = cpp_extension.load(name=module_name, build_directory=build_dir, verbose=(verbosity == 'full'),
                                    sources=[os.path.join(build_dir, rel) for rel, _path in sources], **build_kwargs)
    except Exception as err:  # pylint: disable=broad-except
        if verbosity in ('brief', 'full'):
            print(' Failed!', flush=True)
        log_path = os.path.join(build_dir, 'build.log')
        try:
            with open(log_path, 'w') as f:
                f.write(str(err))
        except OSError:
            log_path = None
        return _fail(module_name, _reason(err), log_path)
    if verbosity == 'brief':
        print(' Done.', flush=True)
    if not build_kwargs.get('is_python_module', True):  # only a library was loaded: its ops live in torch.ops
        module = torch.ops
    _plugins[module_name] = module
    return module
