"""Fused bias + activation + gain + clamp: `clamp(act(x + b) * gain)`."""

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib

#----------------------------------------------------------------------------
# Activation table: function, default alpha, default gain (He-style gain keeps unit variance).

activation_funcs = {
    'linear':   dnnlib.EasyDict(func=lambda x, **_: x,                                           def_alpha=0,   def_gain=1),
    'relu':     dnnlib.EasyDict(func=lambda x, **_: F.relu(x),                                   def_alpha=0,   def_gain=np.sqrt(2)),
    'lrelu':    dnnlib.EasyDict(func=lambda x, alpha, **_: F.leaky_relu(x, alpha),              def_alpha=0.2, def_gain=np.sqrt(2)),
    'tanh':     dnnlib.EasyDict(func=lambda x, **_: torch.tanh(x),                               def_alpha=0,   def_gain=1),
    'sigmoid':  dnnlib.EasyDict(func=lambda x, **_: torch.sigmoid(x),                            def_alpha=0,   def_gain=1),
    'elu':      dnnlib.EasyDict(func=lambda x, **_: F.elu(x),                                    def_alpha=0,   def_gain=1),
    'selu':     dnnlib.EasyDict(func=lambda x, **_: F.selu(x),                                   def_alpha=0,   def_gain=1),
    'softplus': dnnlib.EasyDict(func=lambda x, **_: F.softplus(x),                               def_alpha=0,   def_gain=1),
    'swish':    dnnlib.EasyDict(func=lambda x, **_: torch.sigmoid(x) * x,                        def_alpha=0,   def_gain=np.sqrt(2)),
}

#----------------------------------------------------------------------------

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='ref'):
    """Add a bias along one dimension, apply an activation, scale, and clamp.

    :param x: input tensor of any shape.
    :param b: bias vector of length `x.shape[dim]`, or None.
    :param dim: the dimension of `x` that `b` runs along.
    :param act: a key of `activation_funcs`.
    :param alpha: the activation's shape parameter (lrelu slope); None = its default.
    :param gain: multiplier after the activation; None = the activation's default gain.
    :param clamp: clamp the result to [-clamp, clamp]; None = no clamping.
    :param impl: 'ref' (the only path; kept for upstream call compatibility).
    :return: a tensor of the shape and dtype of `x`. Differentiable to any order.
    """
    if act not in activation_funcs:
        raise ValueError(f'Unknown activation {act!r}; choose one of {sorted(activation_funcs)}')
    if impl not in ('ref', 'cuda'):
        raise ValueError(f'Unknown bias_act impl {impl!r}')
    assert clamp is None or clamp >= 0
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)

    if b is not None:
        assert isinstance(b, torch.Tensor) and b.ndim == 1
        assert 0 <= dim < x.ndim
        assert b.shape[0] == x.shape[dim]
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
