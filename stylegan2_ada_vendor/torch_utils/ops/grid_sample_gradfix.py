"""Bilinear grid sampling with upstream's `grid_sample_gradfix` interface, differentiable twice.

R1 differentiates D(augment(x)) with respect to x and then differentiates that gradient again
with respect to D's weights. PyTorch's CPU grid_sample supports the second derivative, its CUDA
kernel does not ("derivative for aten::grid_sampler_2d_backward is not implemented", seen on an
H200 with torch 2.11). So the sampling here is a pair of autograd functions: the forward samples,
its backward calls aten's grid_sampler_2d_backward, and the backward of that (what R1 needs) is the
forward sampling of the incoming gradient, since the input gradient of a grid sample is linear in
the output gradient. The grid is never differentiated twice (augmentation grids are constants);
asking for that raises. The same code runs on CPU and CUDA, so the CPU tests cover it.

Upstream pickles call `grid_sample(input, grid)` (zeros outside); the augment pipeline passes
padding_mode='reflection'.
"""

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

enabled = True      # Upstream's switch for its custom op; False falls back to F.grid_sample.

_PADDING_MODES = {'zeros': 0, 'border': 1, 'reflection': 2}
_BILINEAR = 0

def grid_sample(input, grid, padding_mode='zeros'):
    """Sample `input` [N, C, H, W] at `grid` [N, H', W', 2] (x, y in [-1, 1], pixel centres
    not on the corners), bilinearly, outside the image as `padding_mode` says: [N, C, H', W']."""
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f'padding_mode must be one of {", ".join(_PADDING_MODES)}; got {padding_mode!r}.')
    if not enabled:
        return F.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode=padding_mode, align_corners=False)
    return _GridSample.apply(input, grid, padding_mode)

#----------------------------------------------------------------------------

class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, grid, padding_mode):
        ctx.save_for_backward(input, grid)
        ctx.padding_mode = padding_mode
        return F.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode=padding_mode, align_corners=False)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        want_input, want_grid = ctx.needs_input_grad[:2]
        grad_input, grad_grid = _GridSampleBackward.apply(grad_output, input, grid, ctx.padding_mode, want_input, want_grid)
        return (grad_input if want_input else None), (grad_grid if want_grid else None), None

class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, input, grid, padding_mode, want_input, want_grid):
        ctx.set_materialize_grads(False)    # an output nobody used arrives as None, not as zeros
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _BILINEAR, _PADDING_MODES[padding_mode], False, [bool(want_input), bool(want_grid)])
        ctx.save_for_backward(grid)
        ctx.padding_mode = padding_mode
        return grad_input, grad_grid

    @staticmethod
    def backward(ctx, grad2_input, grad2_grid):
        # The input gradient is linear in grad_output and independent of the image values: its
        # derivative is the forward sampling. Everything that goes through the grid gradient, or
        # differentiates the grid itself, is not implemented (R1 needs neither).
        grid, = ctx.saved_tensors
        if grad2_grid is not None or ctx.needs_input_grad[2]:
            raise NotImplementedError('grid_sample_gradfix differentiates twice with respect to the sampled image only; '
                                      'the sampling grid must be a constant.')
        grad2_grad_output = None
        if ctx.needs_input_grad[0] and grad2_input is not None:
            grad2_grad_output = _GridSample.apply(grad2_input, grid, ctx.padding_mode)
        return grad2_grad_output, None, None, None, None, None

#----------------------------------------------------------------------------
