"""Pickles that carry their own source code.

Decorate a class with `@persistent_class` and every pickle of its instances stores, besides the
instance's state, the full source text of the module that defines the class, the class name,
and the module's importable name. Unpickling executes that stored source into a fresh module
(one per distinct source text, cached for the process) and rebuilds the instance from it. So a
network pickle keeps loading after the code that wrote it was edited, moved or deleted, and in
a checkout that never had that code (e.g. an MS-PE snapshot in a plain StyleGAN2-ADA host).

SECURITY: loading such a pickle RUNS THE PYTHON CODE STORED INSIDE IT (as loading any pickle
can). Only load pickles from sources you trust; for untrusted files use the weights-only format
of legacy.save_network_weights / legacy.load_network_weights, which executes nothing.

Every instance also remembers the arguments it was constructed with (`obj.init_args`,
`obj.init_kwargs`), so it can be rebuilt with different options (see legacy.py).

The pickle layout (`_reconstruct_persistent_obj(meta)` with meta keys type, version,
module_src, class_name, state) is the one StyleGAN2-ADA checkouts read, so pickles move between
this host and upstream's in both directions. `module_name` is an extra key that others ignore.

`import_hook(fn)` registers a function that may rewrite the meta dict of every object being
loaded (e.g. to patch a stored source for an API change) before its source runs.
"""

import copy
import hashlib
import inspect
import linecache
import os
import sys
import types

import dnnlib

#----------------------------------------------------------------------------

_version = 6                    # Pickle format version, shared with upstream checkouts.
_decorators = set()             # Every class made by persistent_class.
_import_hooks = []              # Functions meta -> meta run on every loaded object.
_module_to_src_dict = dict()    # Module -> source text it was made from.
_src_to_module_dict = dict()    # Source text -> module (the imported one, or one built from a pickle).
_module_name_dict = dict()      # Module -> importable name of the module its source came from.

#----------------------------------------------------------------------------

def persistent_class(orig_class):
    """Class decorator: pickles of instances embed the defining module's source (see the module
    docstring), and instances record their constructor arguments as `init_args` (tuple) and
    `init_kwargs` (EasyDict). A subclass of a persistent class may be decorated again; its
    pickles then carry the subclass's module. Decorating an already persistent class returns it.

    :param orig_class: a class defined at the top level of a module whose source is available.
    :return: the persistent subclass, with the same name, qualname and module.
    """
    if not isinstance(orig_class, type):
        raise TypeError(f'persistent_class decorates classes, not {type(orig_class).__name__} objects.')
    if is_persistent(orig_class):
        return orig_class
    orig_module = sys.modules[orig_class.__module__]
    orig_module_src = _module_to_src(orig_module)
    orig_module_name = _importable_module_name(orig_module)

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_module_name = orig_module_name
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Set after the parent's __init__: with nested persistent classes the outermost wins.
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            """Positional constructor arguments (a copy)."""
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            """Keyword constructor arguments (a copy, as an EasyDict)."""
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            reduced = super().__reduce__()
            if reduced[0] is _reconstruct_persistent_obj:   # a persistent base class already did it
                return reduced
            if type(self) not in _decorators:   # undecorated subclass: ordinary pickle by reference
                return reduced
            meta = dict(
                type        = 'class',
                version     = _version,
                module_src  = self._orig_module_src,
                module_name = self._orig_module_name,
                class_name  = self._orig_class_name,
                state       = reduced[2] if len(reduced) > 2 else None,
            )
            return (_reconstruct_persistent_obj, (meta,), None) + tuple(reduced[3:])

    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    _decorators.add(Decorator)
    return Decorator

#----------------------------------------------------------------------------

def is_persistent(obj):
    """Whether `obj` is a persistent class or an instance of one (exactly, not a subclass that
    was left undecorated)."""
    try:
        if obj in _decorators:
            return True
    except TypeError:   # unhashable objects
        pass
    return type(obj) in _decorators

def import_hook(hook):
    """Register `hook(meta) -> meta`, called on every persistent object being unpickled before
    its source runs. meta is an EasyDict with type, version, module_src, module_name,
    class_name and state (an EasyDict of the instance's attributes)."""
    if not callable(hook):
        raise TypeError('import_hook needs a callable.')
    _import_hooks.append(hook)

def importable_class_name(obj):
    """'module.Class' under which the class of `obj` (an instance or a class) can be imported:
    for a class rebuilt from a pickle, the name of the module its source was taken from."""
    cls = obj if isinstance(obj, type) else type(obj)
    if cls in _decorators:
        return f'{cls._orig_module_name}.{cls._orig_class_name}'
    module = sys.modules.get(cls.__module__)
    module_name = _importable_module_name(module) if module is not None else cls.__module__
    return f'{module_name}.{cls.__qualname__}'

#----------------------------------------------------------------------------

def _reconstruct_persistent_obj(meta):
    """Rebuild a pickled persistent object: run its module source (once per source text), look
    up the class, create the instance without calling __init__ and restore its state."""
    meta = dnnlib.EasyDict(meta)
    if meta.get('state') is not None:
        meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        if meta is None:
            raise ValueError(f'persistence import hook {hook!r} returned None instead of the meta dict.')
    if meta.get('version') != _version:
        raise ValueError(f'This pickle holds a persistent object of format version {meta.get("version")}; '
                         f'this host reads version {_version}.')
    if meta.get('type') != 'class':
        raise ValueError(f'This pickle holds a persistent object of unknown type {meta.get("type")!r}.')
    module = _src_to_module(meta.module_src, meta.get('module_name'))
    if meta.class_name not in module.__dict__:
        raise ValueError(f'The source stored in this pickle defines no class {meta.class_name!r}.')
    decorator_class = persistent_class(module.__dict__[meta.class_name])
    obj = decorator_class.__new__(decorator_class)
    if meta.state is not None:
        setstate = getattr(obj, '__setstate__', None)
        if callable(setstate):
            setstate(meta.state)
        else:
            obj.__dict__.update(meta.state)
    return obj

def _importable_module_name(module):
    """The name under which `module`'s source can be imported: its own name, the recorded
    original name for modules built from pickles, the script's file name for __main__."""
    if module in _module_name_dict:
        return _module_name_dict[module]
    if module.__name__ == '__main__':
        main_file = getattr(module, '__file__', None)
        if main_file is not None:
            return os.path.splitext(os.path.basename(main_file))[0]
    return module.__name__

def _module_to_src(module):
    """Source text of `module` (read once, when its first persistent class is decorated)."""
    src = _module_to_src_dict.get(module)
    if src is None:
        try:
            src = inspect.getsource(module)
        except (OSError, TypeError) as err:
            raise RuntimeError(f'persistent_class needs the source code of module {module.__name__!r}, '
                               f'which is not available ({err}).') from err
        _module_to_src_dict[module] = src
        _src_to_module_dict.setdefault(src, module)     # same source later: reuse the imported module
    return src

def _src_to_module(src, module_name=None):
    """The module made from source text `src`: an already known one (the original import or an
    earlier load), else a fresh module in which `src` is executed. Among known modules with
    this source, the one imported under `module_name` is preferred."""
    named = sys.modules.get(module_name) if module_name is not None else None
    if named is not None and _module_to_src_dict.get(named) == src:
        return named
    module = _src_to_module_dict.get(src)
    if module is not None:
        return module
    digest = hashlib.sha256(src.encode('utf-8')).hexdigest()[:32]
    name = f'_imported_module_{digest}'
    module = types.ModuleType(name)
    filename = f'<persistent source of {module_name or "unknown module"} {digest[:8]}>'
    module.__file__ = filename
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)   # tracebacks show the lines
    sys.modules[name] = module
    _module_to_src_dict[module] = src
    _src_to_module_dict[src] = module
    if module_name is not None:
        _module_name_dict[module] = module_name
    try:
        exec(compile(src, filename, 'exec'), module.__dict__)  # pylint: disable=exec-used
    except BaseException:
        del sys.modules[name]
        del _module_to_src_dict[module]
        del _src_to_module_dict[src]
        _module_name_dict.pop(module, None)
        raise
    return module
