"""A plain world beyond the training grid, for data on a plain background (`train.py --pe-outside=W`).

The border recipe's digit models draw copies of their digit about 25 px outside the training grid,
where the discriminator never looks (results/NOTES.md). For data whose content sits on a plain
background (digits, sprites, product shots), the right drawing there is that background; for photos
that fill the frame there is no such answer, so leave the flag off there. `PlainOutsideLoss` wraps
the host's loss and, in the generator's main phase, renders the same latents on a window of the canvas at a random offset (up to `outside_reach` training pixels each
way), and adds `outside_weight` times the mean squared distance, over the window's pixels whose
coordinates lie outside the training grid, between the rendering and the reals' background (the
mean of the minibatch's outermost pixel ring, per channel).
"""

import contextlib

import numpy as np
import torch

import dnnlib
from mspe_plugin.translate import LossWrapper, border_ring

#----------------------------------------------------------------------------

def ring_mean(images):
    """The mean of the outermost pixel ring of images [N, C, H, W], per channel: [1, C, 1, 1]."""
    return border_ring(images).mean(dim=(0, 2))[None, :, None, None]

def outside_mask(origin, size, R, device=None):
    """[1, 1, H, W] float mask of a canvas window at integer `origin` (y, x), `size` (H, W): 1 where
    the pixel's training coordinate lies outside [0, R)^2."""
    ys = torch.arange(size[0], device=device) + origin[0]
    xs = torch.arange(size[1], device=device) + origin[1]
    inside = ((ys >= 0) & (ys < R))[:, None] & ((xs >= 0) & (xs < R))[None, :]
    return (~inside).float()[None, None]

def _no_sync(module):
    """DDP's no_sync() context for a DistributedDataParallel module, else a null context."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()

class PlainOutsideLoss(LossWrapper):
    """Any host loss (`wrapped_class_name` with its kwargs; a name of its own, so that it can wrap
    TranslatedRealsLoss, whose `inner_class_name` passes through), plus in 'Gmain' / 'Gboth' the penalty of
    the module docstring. The extra backward runs without DDP's gradient sync, before the inner
    loss's own (synced) backward, so multi-GPU runs all-reduce the sum once."""
    def __init__(self, outside_weight=1.0, outside_reach=None, wrapped_class_name='training.loss.StyleGAN2Loss', **kwargs):
        self.outside_weight = float(outside_weight)
        self.outside_reach = outside_reach
        self.G_mapping_ = kwargs.get('G_mapping')
        self.G_synthesis_ = kwargs.get('G_synthesis')
        self.inner = dnnlib.util.construct_class_by_name(class_name=wrapped_class_name, **kwargs)

    def outside_penalty(self, real_img, gen_z, gen_c):
        """The penalty's value (a scalar tensor) for one minibatch, and the window's origin."""
        synthesis = self.G_synthesis_.module if hasattr(self.G_synthesis_, 'module') else self.G_synthesis_
        from mspe_plugin.encoding import Canvas
        R = synthesis.img_resolution
        reach = int(self.outside_reach if self.outside_reach is not None else R)
        while True:
            oy, ox = (int(v) for v in np.random.randint(-reach, reach + 1, size=2))
            if (oy, ox) != (0, 0):
                break
        margin = int(np.random.randint(0, int(getattr(synthesis, 'pe_margin', 0) or 0) + 1))
        ws = self.G_mapping_(gen_z, gen_c)
        img = self.G_synthesis_(ws, canvas=Canvas(origin=(oy, ox), size=(R, R), margin=margin))
        mask = outside_mask((oy, ox), (R, R), R, device=img.device)
        err = (img.to(torch.float32) - ring_mean(real_img.to(torch.float32))).square().mean(dim=1, keepdim=True)
        return (err * mask).sum() / (mask.sum() * img.shape[0]), (oy, ox)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        if phase in ('Gmain', 'Gboth') and self.outside_weight > 0:
            from torch_utils import training_stats
            with _no_sync(self.G_mapping_), _no_sync(self.G_synthesis_):
                penalty, _origin = self.outside_penalty(real_img, gen_z, gen_c)
                training_stats.report('Loss/G/outside', penalty)
                penalty.mul(self.outside_weight * gain).backward()
        return self.inner.accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)

#----------------------------------------------------------------------------
