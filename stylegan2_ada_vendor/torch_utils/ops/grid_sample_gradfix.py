"""Bilinear grid sampling with upstream's `grid_sample_gradfix` interface.

Upstream wraps torch's grid_sample in a custom op on old CUDA PyTorch versions for
double-backward support; current PyTorch differentiates it to any order itself. The module
exists so that code written for upstream (the AugmentPipe source stored in its pickles) runs
against this host unchanged.
"""

import torch.nn.functional as F

#----------------------------------------------------------------------------

enabled = False     # Upstream's switch for its custom op; kept for callers that set it.

def grid_sample(input, grid):
    """Sample `input` [N, C, H, W] at `grid` [N, H', W', 2] (x, y in [-1, 1], pixel centres
    not on the corners), bilinearly, with zeros outside: [N, C, H', W']."""
    return F.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode='zeros', align_corners=False)
