"""2-D convolution and transposed convolution with upstream's `conv2d_gradfix` interface.

Upstream routes these through a custom autograd function on old CUDA PyTorch versions so that
gradients of any order work and weight gradients can be switched off during regularisation.
Current PyTorch differentiates convolutions to any order itself, so here both functions are
torch.nn.functional's; `no_weight_gradients()` keeps its meaning (no gradient reaches the
weight inside the block). The module exists so that code written for upstream, including the
source stored in upstream's pickles (its AugmentPipe), runs against this host unchanged.
"""

import contextlib

import torch.nn.functional as F

#----------------------------------------------------------------------------

enabled = False                     # Upstream's switch for its custom op; kept for callers that set it.
weight_gradients_disabled = False   # True inside no_weight_gradients(): weights get no gradient.

@contextlib.contextmanager
def no_weight_gradients():
    """Inside the block, convolutions treat their weight as a constant (no gradient to it)."""
    global weight_gradients_disabled
    previous = weight_gradients_disabled
    weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = previous

def _weight(weight):
    return weight.detach() if weight_gradients_disabled else weight

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d (same arguments), honouring no_weight_gradients()."""
    return F.conv2d(input=input, weight=_weight(weight), bias=bias, stride=stride, padding=padding,
                    dilation=dilation, groups=groups)

def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """torch.nn.functional.conv_transpose2d (same arguments), honouring no_weight_gradients()."""
    return F.conv_transpose2d(input=input, weight=_weight(weight), bias=bias, stride=stride, padding=padding,
                              output_padding=output_padding, groups=groups, dilation=dilation)
