"""Not upstream: the compiled path of the host (`--compile=auto|on|off` of train.py, generate.py
and projector.py).

Upstream runs hand-written CUDA kernels for bias_act, upfirdn2d and the modulated convolution
and PyTorch reference code everywhere else (all of it on CPU). This host keeps the reference code
as the definition of every op and lets `torch.compile` (TorchInductor: C++/OpenMP on CPU, Triton on
CUDA) fuse what surrounds the convolutions. Two things make it pay:

- Whole networks are compiled, never single blocks: one graph per network and call signature, so
  blocks of different resolutions do not recompile one code object until dynamo's limit.
- The compiled calls run the activations in channels-last memory order (oneDNN's native layout on
  CPU; upstream offers it for its FP16 layers only). The layout is switched on for the duration of
  a compiled call and restored afterwards, so eager calls and pickles see upstream's layout.

Training (`CompiledLoss`): the main phases (Gmain, Dmain) call compiled G.synthesis and D. The
regularisation phases (Greg: path length; Dreg: R1) differentiate gradients, which compiled
graphs do not support (double backward), so they run the eager modules; they are lazy (every 4th
and 16th minibatch) and share every parameter with the compiled calls. G renders a random canvas
per step with some plugin options (a duck-typed `random_canvas` attribute says so): its shapes
change every step, so it stays eager and D alone is compiled. Compilations per run: at most two
for G.synthesis and two for D (parameters trainable or frozen), `tests/test_compiled.py` counts them.

Inference (`compile_forward`): generate.py and projector.py compile G.synthesis's forward in place
for the process.

Reduced precision on CPU (`use_cpu_bf16`, train.py --cpu-bf16): upstream computes its "FP16" blocks
(`num_fp16_res`, the highest resolutions) in float16 on CUDA; on CPU the host computes them in
float32 unless a block's `cpu_bf16` attribute is set, when they run in bfloat16, whose
convolutions oneDNN runs natively on CPUs with AVX512-BF16 or AMX. Training sets it on G and D,
never on G_ema, so snapshots render and are evaluated in float32.
"""

import contextlib
import os
import shutil
import sys
import time

import torch

MODES = ('auto', 'on', 'off')
MAIN_PHASES = ('Gmain', 'Dmain')    # phases without double backward
AUTO_MIN_STEPS = 2000               # 'auto' compiles a training run of at least this many minibatches
AUTO_MIN_CALLS = 200                # ... and inference that calls G.synthesis at least this often

#----------------------------------------------------------------------------

def available(device):
    """Why torch.compile cannot run on `device` (a sentence), or None when it can: inductor needs a
    C++ compiler on CPU and Triton on CUDA."""
    if not hasattr(torch, 'compile'):
        return f'torch {torch.__version__} has no torch.compile'
    if sys.platform == 'win32':
        return 'torch.compile is not supported on Windows'
    if device.type == 'cpu' and not (shutil.which(os.environ.get('CXX', 'g++')) or shutil.which('c++') or shutil.which('clang++')):
        return 'no C++ compiler (g++, c++ or clang++) on PATH'
    if device.type == 'cuda':
        try:
            import triton  # noqa: F401
        except ImportError:
            return 'Triton is not installed'
    if device.type not in ('cpu', 'cuda'):
        return f'torch.compile is not set up for {device.type}'
    return None

def resolve(mode, device, calls, min_calls):
    """Decide whether to compile.

    :param mode: 'auto', 'on' or 'off'.
    :param device: torch.device the networks run on.
    :param calls: how many compiled calls the job will make (training minibatches, projector
        steps, generated batches).
    :param min_calls: 'auto' compiles from this many calls on (enough to repay the compile).
    :return: (bool, one-line reason).
    :raises ValueError: for an unknown mode, or 'on' where compiling is impossible.
    """
    if mode not in MODES:
        raise ValueError(f'--compile must be one of {", ".join(MODES)}; got {mode!r}.')
    if mode == 'off':
        return False, 'off (--compile=off)'
    why_not = available(device)
    if why_not is not None:
        if mode == 'on':
            raise ValueError(f'--compile=on cannot compile here: {why_not}; use --compile=off.')
        return False, f'off ({why_not})'
    if mode == 'on':
        return True, 'on (--compile=on)'
    if calls < min_calls:
        return False, f'off (auto: {calls} calls are fewer than the {min_calls} that repay compiling)'
    return True, f'on (auto: {calls} calls)'

#----------------------------------------------------------------------------

def _layout_modules(module):
    """The blocks of `module` whose activation layout is switchable (upstream's `channels_last`
    attribute), except those that start from a learned 3-D constant."""
    return [m for m in module.modules() if isinstance(getattr(m, 'channels_last', None), bool) and getattr(m, 'in_channels', 1) != 0]

@contextlib.contextmanager
def channels_last(*modules):
    """Run the blocks of `modules` with channels-last activations inside the context; restore after."""
    saved = [(m, m.channels_last) for module in modules for m in _layout_modules(module)]
    for m, _ in saved:
        m.channels_last = True
    try:
        yield
    finally:
        for m, value in saved:
            m.channels_last = value

class _Compiled(torch.nn.Module):
    """A compiled call of `module` with channels-last activations; reports its compile time."""

    def __init__(self, module, name, fn=None, backend='inductor', log=print):
        super().__init__()
        self.name = name
        self.log = log
        self.compiled = torch.compile(module if fn is None else fn, backend=backend)
        self.target = module
        self.signatures = set()

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('target'), name)    # the loss may read the network's attributes

    def forward(self, *args, **kwargs):
        key = tuple(p.requires_grad for p in list(self.target.parameters())[:1])
        first = key not in self.signatures
        t0 = time.perf_counter()
        args = [x.contiguous() if isinstance(x, torch.Tensor) else x for x in args]    # crops of varying size: one stride per shape
        with channels_last(self.target):
            out = self.compiled(*args, **kwargs)
        if first:
            self.signatures.add(key)
            if self.log is not None:
                self.log(f'Compiled {self.name} ({"trainable" if key and key[0] else "frozen"} parameters) in {time.perf_counter() - t0:.1f} s')
        return out

#----------------------------------------------------------------------------

def cpu_bf16_supported():
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN with AVX512-BF16 or AMX)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False

def use_cpu_bf16(*modules):
    """Compute the FP16 blocks of `modules` in bfloat16 on CPU (see the module docstring).
    :return: how many blocks were switched (0 when the networks have no FP16 blocks)."""
    blocks = [m for module in modules for m in module.modules() if getattr(m, 'use_fp16', False)]
    for m in blocks:
        m.cpu_bf16 = True
    return len(blocks)

#----------------------------------------------------------------------------

def _owner(loss, name):
    """The object in a chain of wrapping losses (each keeping the next as `.inner`) whose own
    attribute `name` the loss reads."""
    obj = loss
    while name not in vars(obj) and hasattr(obj, 'inner'):
        obj = vars(obj)['inner'] if 'inner' in vars(obj) else obj.inner
    if name not in vars(obj):
        raise ValueError(f'the loss {type(loss).__name__} has no attribute {name}; --compile needs the host loss interface.')
    return obj

class CompiledLoss:
    """Any host loss, with its main phases calling compiled G.synthesis and D (see the module
    docstring). Every other attribute is the wrapped loss's."""

    def __init__(self, loss, backend='inductor', log=print):
        self.inner = loss
        self.swaps = []
        for name in ('G_synthesis', 'D'):
            owner = _owner(loss, name)
            eager = getattr(owner, name)
            if name == 'G_synthesis' and getattr(eager, 'random_canvas', False):
                if log is not None:
                    log('Compile: G renders a random canvas every step (its shapes change), so G.synthesis runs eager; D is compiled.')
                continue
            self.swaps.append((owner, name, eager, _Compiled(eager, name, backend=backend, log=log)))

    def __getattr__(self, name):
        if name == 'inner':
            raise AttributeError(name)
        return getattr(self.inner, name)

    def accumulate_gradients(self, phase, **kwargs):
        use = phase in MAIN_PHASES
        for owner, name, eager, compiled in self.swaps:
            setattr(owner, name, compiled if use else eager)
        try:
            return self.inner.accumulate_gradients(phase=phase, **kwargs)
        finally:
            for owner, name, eager, _compiled in self.swaps:
                setattr(owner, name, eager)

def wrap_loss(loss, mode, device, steps, log=print, backend='inductor'):
    """train.py's --compile for the training loop: the loss itself, or a CompiledLoss.

    :param steps: minibatches the run will train (for 'auto').
    """
    use, why = resolve(mode, device, steps, AUTO_MIN_STEPS)
    if log is not None:
        log(f'Compile: {why}')
    return CompiledLoss(loss, backend=backend, log=log) if use else loss

#----------------------------------------------------------------------------

def compile_forward(module, mode, device, calls, log=print, backend='inductor'):
    """generate.py's and projector.py's --compile: compile `module`'s forward in place (for this
    process; the module's state and pickles are unchanged) when `mode` resolves to on.

    :return: True when compiled.
    """
    use, why = resolve(mode, device, calls, AUTO_MIN_CALLS)
    if log is not None:
        log(f'Compile: {why}')
    if not use:
        return False
    compiled = _Compiled(module, type(module).__name__, fn=module.forward, backend=backend, log=log)
    object.__setattr__(module, 'forward', lambda *args, **kwargs: compiled(*args, **kwargs))
    return True

#----------------------------------------------------------------------------
