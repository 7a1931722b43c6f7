"""Fused multiply-add `a * b + c` with broadcasting; gradients reduce over broadcast dims."""

import torch

def fma(a, b, c):
    """Return `a * b + c` (broadcast), differentiable with respect to all three."""
    return torch.addcmul(c, a, b)
