"""The mirror hook: multi-scale positional encoding for diffusion UNets (Choi et al., ICCV 2021).

`attach(unet, image_size=...)` adds `gamma_l * PE_l` to the features of a UNet at every
resolution level, through forward hooks: after the first convolution (level 0, the input
resolution) and after every down- and upsampling module. Supported without configuration:

  - guided-diffusion / improved-diffusion `UNetModel` (`input_blocks` / `middle_block` /
    `output_blocks`): the hook sits on the input block after `input_blocks.0` and on every input /
    output block that holds a `Downsample` / `Upsample` (also a resampling `ResBlock` with
    `resblock_updown`). It hooks the whole block, never a module inside a `ResBlock` or an
    `AttentionBlock`: their custom gradient checkpoint passes gradients only to the block's own
    parameters, so a gamma used inside one would silently never train;
  - diffusers `UNet2DModel` / `UNet2DConditionModel`: `conv_in` and every module in
    `down_blocks[i].downsamplers` / `up_blocks[i].upsamplers` (`Downsample2D`, `Upsample2D`, ...);
  - any other UNet: name the modules, `attach(unet, modules=['down.0.pool', ...])`.

The gammas (one learnable scalar per hooked module) live in one module registered on the UNet as
`unet.mspe`, so `state_dict`, `.to()`, optimizers, EMA copies (`copy.deepcopy`) and checkpoints
include them. The hook keeps the seam between sampler and network: it touches only the UNet.

Why level 0 too. The paper injects the encoding at every scale of the network, the coarsest
(input) one included, so that no scale has to infer position from zero padding. In a UNet the
input resolution is processed by the first convolution and the first blocks before any
resampling; without an encoding there, the encoder's full-resolution features see position only
through padding, the very cue the method replaces. The code is added after the first convolution
(the image itself has 3 channels, too few for the encoding). `input_level=False` turns it off.

The canvas (mspe_plugin.encoding.Canvas) moves, zooms or rolls the coordinates per call:
`with handle.canvas(Canvas(origin=(0, 8))): eps = unet(x, t)`. A level's coordinates come from
its feature size: stride = (UNet input size) / (feature size) training pixels per feature pixel.
"""

import contextlib
import math

import torch

from mspe_plugin.encoding import Canvas, CanvasError, sinusoidal_encoding

ATTR = 'mspe'   # Name of the gamma module on the UNet.

#----------------------------------------------------------------------------

class MultiScalePE(torch.nn.Module):
    """Per-level gammas and the current canvas of an attached UNet (registered as `unet.mspe`)."""
    def __init__(self,
        points,                 # Names of the hooked modules, in the order of `gamma`.
        image_size,             # (H, W) training image size: the canvas's training extent.
        channels,               # Per point: number of encoded channels (None = all, rounded down to a multiple of 4).
        base        = 10000.0,  # Frequency base of the encoding (authors' code: 10000; the paper's text: 100).
        gamma_init  = 0.1,      # Initial value of every gamma.
    ):
        super().__init__()
        self.points = tuple(points)
        self.image_size = tuple(int(v) for v in image_size)
        self.channels = tuple(channels)
        self.base = float(base)
        # Eq. 3 per level: h <- h + gamma_l * PE_l; one scalar per hooked module.
        self.gamma = torch.nn.Parameter(torch.full([len(self.points)], float(gamma_init)))
        self._canvas = None         # None = the training grid.
        self._input_size = None     # (H, W) of the UNet input in the current forward.

    def extra_repr(self):
        return f'points={list(self.points)}, image_size={self.image_size}, base={self.base:g}'

    @property
    def current_canvas(self):
        """The canvas of the next forwards (None = the training grid)."""
        return self._canvas

    def set_canvas(self, canvas):
        """Use `canvas` (a Canvas, or None for the training grid) for every following forward."""
        if canvas is not None and not isinstance(canvas, Canvas):
            raise CanvasError(f'Expected a mspe_plugin.encoding.Canvas or None, got {type(canvas).__name__}.')
        self._canvas = canvas

    @contextlib.contextmanager
    def canvas(self, canvas):
        """Context manager: forwards inside the `with` use `canvas`; the previous one is restored."""
        previous = self._canvas
        self.set_canvas(canvas)
        try:
            yield self
        finally:
            self._canvas = previous

    def _record_input(self, sample):
        """Remember the UNet input size (the zoom-independent stride of every level derives from it)."""
        height, width = int(sample.shape[-2]), int(sample.shape[-1])
        canvas = self._canvas
        if canvas is not None and canvas.size is not None and canvas.size != (height, width):
            raise CanvasError(f'The canvas size {canvas.size} differs from the UNet input size {(height, width)}: '
                              f'pass an input of the canvas size or a canvas without size.')
        self._input_size = (height, width)

    def encoding(self, index, channels, height, width, device):
        """PE [C, h, w] (float32) added at point `index` to a feature of `channels` x h x w."""
        count = self.channels[index]
        if count is None:
            count = channels // 4 * 4
        if count <= 0 or count % 4 != 0 or count > channels:
            raise ValueError(f'Cannot encode {count} channels at {self.points[index]!r}, which has {channels}: '
                             f'the count must be a positive multiple of 4 and at most the channel count.')
        in_h, in_w = self._input_size if self._input_size is not None else self.image_size
        # Training pixels per feature pixel at zoom 1: a power of two for any UNet input size.
        stride_y = 2.0 ** round(math.log2(in_h / height))
        stride_x = 2.0 ** round(math.log2(in_w / width))
        canvas = self._canvas if self._canvas is not None else Canvas()
        ys = canvas.coords(height, 0, stride_y, self.image_size[0])
        xs = canvas.coords(width, 1, stride_x, self.image_size[1])
        pe = sinusoidal_encoding(ys, xs, count, base=self.base, device=device)
        if count < channels:
            pe = torch.cat([pe, pe.new_zeros([channels - count, height, width])], dim=0)
        return pe

    def add_encoding(self, index, x):
        """x [N, C, h, w] + gamma_index * PE [C, h, w] (Eq. 3 at one level)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f'MS-PE expects {self.points[index]!r} to return a [N, C, H, W] tensor, '
                             f'got {type(x).__name__}{"" if not isinstance(x, torch.Tensor) else list(x.shape)}.')
        pe = self.encoding(index, x.shape[1], x.shape[2], x.shape[3], x.device)
        return x + self.gamma[index].to(x.dtype) * pe.to(x.dtype)

#----------------------------------------------------------------------------
# Hooks are small objects that refer to their gamma module, so copy.deepcopy(unet) (EMA) gives
# a copy whose hooks use the copy's gammas, and detach finds them by owner.

class _LevelHook:
    def __init__(self, owner, index):
        self.owner = owner
        self.index = index

    def __call__(self, module, args, output):
        return self.owner.add_encoding(self.index, output)

class _InputHook:
    def __init__(self, owner):
        self.owner = owner

    def __call__(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get('sample', kwargs.get('x'))
        if not isinstance(sample, torch.Tensor):
            sample = next((v for v in list(args) + list(kwargs.values()) if isinstance(v, torch.Tensor) and v.ndim == 4), None)
        if sample is not None:
            self.owner._record_input(sample)

#----------------------------------------------------------------------------

def _contains_class(module, names):
    return any(type(m).__name__ in names for m in module.modules())

def find_resolution_points(unet, input_level=True):
    """Names of the modules whose outputs start a new resolution level (see module docstring)."""
    points = []
    if hasattr(unet, 'input_blocks') and hasattr(unet, 'output_blocks'):        # guided / improved diffusion
        if input_level:
            points.append('input_blocks.0')
        for i, block in enumerate(unet.input_blocks):
            if _contains_class(block, ('Downsample',)):
                points.append(f'input_blocks.{i}')
        for i, block in enumerate(unet.output_blocks):
            if _contains_class(block, ('Upsample',)):
                points.append(f'output_blocks.{i}')
    elif hasattr(unet, 'down_blocks') and hasattr(unet, 'up_blocks'):           # diffusers
        if input_level and hasattr(unet, 'conv_in'):
            points.append('conv_in')
        for kind, blocks in (('downsamplers', unet.down_blocks), ('upsamplers', unet.up_blocks)):
            for i, block in enumerate(blocks):
                for j, _ in enumerate(getattr(block, kind, None) or []):
                    points.append(f'{"down" if kind == "downsamplers" else "up"}_blocks.{i}.{kind}.{j}')
    if len(points) <= int(input_level):
        raise ValueError(f'Found no down/upsampling modules in {type(unet).__name__}: '
                         f'name them with attach(unet, modules=[...]).')
    return points

def _check_outside_checkpoint(unet, name):
    """Refuse a module inside a block with guided-diffusion's custom checkpoint (gammas would not train)."""
    parts = name.split('.')
    for depth in range(1, len(parts)):
        ancestor = unet.get_submodule('.'.join(parts[:depth]))
        if getattr(ancestor, 'use_checkpoint', False) is True:
            raise ValueError(f'{name!r} lies inside the checkpointed block {".".join(parts[:depth])!r}, whose checkpoint '
                             f'passes gradients only to its own parameters: hook the enclosing block instead.')

def _default_image_size(unet):
    config = getattr(unet, 'config', None)
    size = getattr(config, 'sample_size', None) if config is not None else None
    return size if size is not None else getattr(unet, 'image_size', None)

def _channel_spec(channels_per_level, count):
    if channels_per_level is None or isinstance(channels_per_level, int):
        return [channels_per_level] * count
    spec = list(channels_per_level)
    if len(spec) != count:
        raise ValueError(f'channels_per_level has {len(spec)} entries but {count} modules are hooked: '
                         f'give one entry per hooked module, one int, or None.')
    return spec

#----------------------------------------------------------------------------

class MSPEHandle:
    """What attach returns: the gamma module, the canvas controls and `remove()`."""
    def __init__(self, unet):
        self.unet = unet

    @property
    def module(self):
        """The MultiScalePE module on the UNet (its `gamma` parameter holds one scalar per point)."""
        module = getattr(self.unet, ATTR, None)
        if not isinstance(module, MultiScalePE):
            raise ValueError('This MS-PE handle was removed: attach again to use it.')
        return module

    @property
    def points(self):
        return self.module.points

    @property
    def gamma(self):
        return self.module.gamma

    def canvas(self, canvas):
        """`with handle.canvas(Canvas(...)):` renders the forwards inside on that canvas."""
        return self.module.canvas(canvas)

    def set_canvas(self, canvas):
        """Use `canvas` for all following forwards (None = the training grid)."""
        self.module.set_canvas(canvas)

    def remove(self):
        """Remove the hooks and the gamma module: the UNet behaves exactly as before attach."""
        detach(self.unet)

def attach(unet,
    channels_per_level  = None,     # Encoded channels: None = all (rounded down to a multiple of 4), an int, or one per hooked module.
    modules             = None,     # Names of the modules to hook (any UNet); None = found from the UNet's layout.
    base                = 10000.0,  # Frequency base of the encoding (authors' code: 10000; the paper's text: 100).
    gamma_init          = 0.1,      # Initial gamma: a small, trainable perturbation of a pretrained UNet; use 1 from scratch.
    image_size          = None,     # Training image size, int or (H, W); None = unet.config.sample_size or unet.image_size.
    input_level         = True,     # Also encode the input resolution (after the first convolution); ignored with `modules`.
):
    """Add `gamma_l * PE_l` at every resolution level of `unet` (see module docstring).

    :return: an MSPEHandle (`.canvas(c)`, `.set_canvas(c)`, `.gamma`, `.points`, `.remove()`).
    """
    if not isinstance(unet, torch.nn.Module):
        raise ValueError(f'attach expects a torch.nn.Module UNet, got {type(unet).__name__}.')
    existing = getattr(unet, ATTR, None)
    if isinstance(existing, MultiScalePE):
        raise ValueError('MS-PE is already attached to this UNet: detach it first.')
    if existing is not None:
        raise ValueError(f'The UNet already has an attribute {ATTR!r}: MS-PE cannot register its gammas there.')

    if image_size is None:
        image_size = _default_image_size(unet)
    if image_size is None:
        raise ValueError('Cannot tell the UNet training image size: pass attach(unet, image_size=...).')
    image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(image_size) != 2 or not all(isinstance(v, int) and v > 0 for v in image_size):
        raise ValueError(f'image_size must be a positive int or (H, W) pair of them, got {image_size!r}.')

    if modules is None:
        points = find_resolution_points(unet, input_level=input_level)
    else:
        points = [str(name) for name in modules]
        if not points:
            raise ValueError('modules is empty: name at least one module to hook, or pass None.')
    targets = []
    for name in points:
        try:
            targets.append(unet.get_submodule(name))
        except AttributeError:
            raise ValueError(f'The UNet has no module named {name!r}: check the names in modules=[...].') from None
        _check_outside_checkpoint(unet, name)
    if len(set(points)) != len(points):
        raise ValueError('modules names a module twice: each module gets one gamma.')

    channels = _channel_spec(channels_per_level, len(points))
    for name, target, count in zip(points, targets, channels):
        known = getattr(target, 'out_channels', None)
        if count is not None and (count <= 0 or count % 4 != 0 or (isinstance(known, int) and count > known)):
            raise ValueError(f'Cannot encode {count} channels at {name!r}: the count must be a positive multiple of 4 '
                             f'and at most the channel count{f" ({known})" if isinstance(known, int) else ""}.')

    module = MultiScalePE(points, image_size, channels, base=base, gamma_init=gamma_init)
    param = next(unet.parameters(), None)
    if param is not None:
        module.to(device=param.device)
    unet.add_module(ATTR, module)
    for index, target in enumerate(targets):
        target.register_forward_hook(_LevelHook(module, index))
    unet.register_forward_pre_hook(_InputHook(module), with_kwargs=True)
    return MSPEHandle(unet)

def attached(unet):
    """The MSPEHandle of `unet` (also of a deepcopy of an attached UNet), or None."""
    return MSPEHandle(unet) if isinstance(getattr(unet, ATTR, None), MultiScalePE) else None

def detach(unet):
    """Remove MS-PE from `unet`: its hooks and the `unet.mspe` gamma module."""
    module = getattr(unet, ATTR, None)
    if not isinstance(module, MultiScalePE):
        raise ValueError('This UNet has no MS-PE attached: nothing to detach.')
    for m in unet.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                if isinstance(hook, (_LevelHook, _InputHook)) and hook.owner is module:
                    del hooks[key]
                    for extra in ('_forward_hooks_with_kwargs', '_forward_hooks_always_called',
                                  '_forward_pre_hooks_with_kwargs'):
                        getattr(m, extra, {}).pop(key, None)
    delattr(unet, ATTR)
