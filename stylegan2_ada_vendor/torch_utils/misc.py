"""Small tensor and module utilities shared by the host: shape checks, constant cache,
parameter copying, DDP helpers, the infinite sampler and a module summary."""

import contextlib
import re
import warnings

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------
# Cached constants: a tensor built once per (value, shape, dtype, device, layout).

_constant_cache = dict()

def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """Return a cached, read-only-by-convention tensor holding `value`.

    :param value: anything `np.asarray` accepts.
    :param shape: optional shape to broadcast to.
    :param dtype, device, memory_format: as for `torch.as_tensor`; defaults are torch's.
    """
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

#----------------------------------------------------------------------------
# Shape checks at module boundaries.

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence `torch.jit.TracerWarning` inside the block (shape checks compare traced sizes)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        yield

def assert_shape(tensor, ref_shape):
    """Raise AssertionError unless `tensor.shape` matches `ref_shape`; None entries match anything."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), ref_size), f'Wrong size for dimension {idx}')
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(size, torch.as_tensor(ref_size)), f'Wrong size for dimension {idx}: expected {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref_size}')

def profiled_function(fn):
    """Decorator: run `fn` inside a `torch.autograd.profiler.record_function` scope named after it."""
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    return decorator

#----------------------------------------------------------------------------
# Sampler that loops over the dataset forever, shuffling within a sliding window.

class InfiniteSampler(torch.utils.data.Sampler):
    """Yield dataset indices forever; each rank sees every `num_replicas`-th item.

    With `shuffle`, items are drawn from a window of `window_size * len(dataset)` positions,
    so consecutive epochs blend instead of restarting.
    """
    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5):
        assert len(dataset) > 0
        assert num_replicas > 0
        assert 0 <= rank < num_replicas
        assert 0 <= window_size <= 1
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                yield order[i]
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1

#----------------------------------------------------------------------------
# Parameters and buffers.

def params_and_buffers(module):
    """List of every parameter and buffer of `module`."""
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())

def named_params_and_buffers(module):
    """List of (name, tensor) for every parameter and buffer of `module`."""
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())

class ShapeMismatchError(ValueError):
    """Tensors of the same name have different shapes in the source and the destination."""

def compare_params_and_buffers(src_module, dst_module):
    """What copying `src_module` into `dst_module` would do, tensor by tensor.

    :return: EasyDict with lists of names: `copied` (in both, same shape), `new` (only in the
        destination: they keep their initial values, e.g. MS-PE's pe_gamma* when resuming MS-PE
        from a baseline), `mismatched` (in both with different shapes; entries are
        (name, source shape, destination shape)) and `unused` (only in the source).
    """
    assert isinstance(src_module, torch.nn.Module)
    assert isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    dst_tensors = dict(named_params_and_buffers(dst_module))
    report = dnnlib.EasyDict(copied=[], new=[], mismatched=[], unused=[n for n in src_tensors if n not in dst_tensors])
    for name, tensor in dst_tensors.items():
        if name not in src_tensors:
            report.new.append(name)
        elif src_tensors[name].shape != tensor.shape:
            report.mismatched.append((name, tuple(src_tensors[name].shape), tuple(tensor.shape)))
        else:
            report.copied.append(name)
    return report

def copy_params_and_buffers(src_module, dst_module, require_all=False, skip_mismatch=False, report=False):
    """Copy every same-named tensor of `src_module` into `dst_module`.

    Tensors whose name is missing in the source keep their values (KeyError with `require_all`).
    A name present in both with different shapes raises ShapeMismatchError before anything is
    copied, unless `skip_mismatch` (then that tensor keeps its value too): a wrong source must
    not leave a half-initialised network that nobody was told about.
    :return: the list of copied names; with `report`, compare_params_and_buffers' report.
    """
    result = compare_params_and_buffers(src_module, dst_module)
    if require_all and result.new:
        raise KeyError(f'Source module has no tensor named {result.new[0]!r}')
    if result.mismatched and not (skip_mismatch and not require_all):
        name, src_shape, dst_shape = result.mismatched[0]
        others = f' (and {len(result.mismatched) - 1} more)' if len(result.mismatched) > 1 else ''
        raise ShapeMismatchError(f'{name} has shape {list(src_shape)} in the source but {list(dst_shape)} here{others}')
    src_tensors = dict(named_params_and_buffers(src_module))
    dst_tensors = dict(named_params_and_buffers(dst_module))
    with torch.no_grad():
        for name in result.copied:
            dst_tensors[name].copy_(src_tensors[name].detach())
    return result if report else result.copied

def format_copy_report(what, report, max_names=8):
    """One line per kind of tensor of a compare_params_and_buffers report, for a log."""
    def names(items):
        items = [item[0] if isinstance(item, tuple) else item for item in items]
        more = f', ... ({len(items) - max_names} more)' if len(items) > max_names else ''
        return ', '.join(items[:max_names]) + more
    lines = [f'{what}: copied {len(report.copied)} tensors, {len(report.new)} new, {len(report.mismatched)} skipped '
             f'(shape mismatch), {len(report.unused)} unused from the source.']
    if report.new:
        lines.append(f'  new (kept as initialised): {names(report.new)}')
    if report.mismatched:
        lines.append('  skipped (shape mismatch): ' + names([f'{n} {list(a)} -> {list(b)}' for n, a, b in report.mismatched]))
    if report.unused:
        lines.append(f'  unused from the source: {names(report.unused)}')
    return '\n'.join(lines)

#----------------------------------------------------------------------------
# DDP helpers.

@contextlib.contextmanager
def ddp_sync(module, sync):
    """Inside the block, skip DistributedDataParallel's gradient sync unless `sync`."""
    assert isinstance(module, torch.nn.Module)
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield

def check_ddp_consistency(module, ignore_regex=None):
    """Assert that every parameter and buffer equals rank 0's copy (call on every rank)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        assert (tensor == other).all(), f'{fullname} differs between processes'

#----------------------------------------------------------------------------
# Module summary: one row per submodule with parameter/buffer counts and output shapes.

def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    """Run `module(*inputs)`, print a table of submodules, and return the outputs."""
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]
    def pre_hook(_mod, _inputs):
        nesting[0] += 1
    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append(dnnlib.EasyDict(mod=mod, outputs=outputs))
    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]

    outputs = module(*inputs)
    for hook in hooks:
        hook.remove()

    # Count each tensor once, at the innermost module that owns it.
    tensors_seen = set()
    for e in entries:
        e.unique_params = [t for t in e.mod.parameters() if id(t) not in tensors_seen]
        e.unique_buffers = [t for t in e.mod.buffers() if id(t) not in tensors_seen]
        e.unique_outputs = [t for t in e.outputs if id(t) not in tensors_seen]
        tensors_seen |= {id(t) for t in e.unique_params + e.unique_buffers + e.unique_outputs}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.unique_outputs)]

    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype']]
    rows += [['---'] * len(rows[0])]
    param_total = 0
    buffer_total = 0
    submodule_names = {mod: name for name, mod in module.named_modules()}
    for e in entries:
        name = '<top-level>' if e.mod is module else submodule_names[e.mod]
        param_size = sum(t.numel() for t in e.unique_params)
        buffer_size = sum(t.numel() for t in e.unique_buffers)
        output_shapes = [str(list(t.shape)) for t in e.outputs]
        output_dtypes = [str(t.dtype).split('.')[-1] for t in e.outputs]
        rows += [[
            name + (':0' if len(e.outputs) >= 2 else ''),
            str(param_size) if param_size else '-',
            str(buffer_size) if buffer_size else '-',
            (output_shapes + ['-'])[0],
            (output_dtypes + ['-'])[0],
        ]]
        for idx in range(1, len(e.outputs)):
            rows += [[name + f':{idx}', '-', '-', output_shapes[idx], output_dtypes[idx]]]
        param_total += param_size
        buffer_total += buffer_size
    rows += [['---'] * len(rows[0])]
    rows += [['Total', str(param_total), str(buffer_total), '-', '-']]

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell + ' ' * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs
