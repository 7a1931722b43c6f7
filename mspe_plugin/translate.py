"""Random translation of the training window: the reals' half.

With `pe_translate=T` the generator renders, at every training step, the window [t, t + R) of its
canvas for a random offset t in -T..T training pixels (mspe_plugin.networks). For the
discriminator to judge those windows, the real images must show the same distribution of
windows: `TranslatedRealsLoss` wraps the host's loss and moves every minibatch of reals by its own
random t (the same t for the whole minibatch, as the generator's), filling what comes into view
with the image's own background (the mean of its outermost pixel ring, per channel). This is
exact for content on a plain background (digits, sprites, product shots); on photos that fill
the frame the filled band is made up, so there use pe_margin / pe_padding instead.

Content then stays at fixed coordinates while it appears anywhere in the frame, so neither the
image border nor zero padding can anchor it, and D sees what G draws outside [0, R) as well.
"""

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------

def border_ring(images):
    """The outermost pixel ring of images [N, C, H, W] as [N, C, 2H + 2W] (corners twice)."""
    return torch.cat([images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]], dim=2)

class LossWrapper:
    """Base of the plugin's losses that wrap a host loss (`self.inner`): every attribute they do not
    have themselves (pl_mean and the rest of the inner loss's state, for the training loop's
    snapshots) is the inner loss's."""
    def __getattr__(self, name):
        if name == 'inner':
            raise AttributeError(name)
        return getattr(self.inner, name)

def translate_images(images, dy, dx):
    """images [N, C, H, W] moved by (dy, dx) whole pixels (content moves down / right for
    positive values), the uncovered band filled with each image's border mean per channel."""
    if dy == 0 and dx == 0:
        return images
    N, C, H, W = images.shape
    fill = border_ring(images).mean(dim=2)[:, :, None, None].expand(N, C, H, W)
    out = fill.clone()
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    xs, xd = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    if abs(dy) < H and abs(dx) < W:
        out[:, :, yd, xd] = images[:, :, ys, xs]
    return out

class TranslatedRealsLoss(LossWrapper):
    """Any host loss (`inner_class_name` with its kwargs), with every minibatch of reals moved by
    a random offset in -translate..translate pixels before the inner loss sees it. The window
    the generator renders is drawn by the generator itself, independently (mspe_plugin.networks)."""
    def __init__(self, translate=0, inner_class_name='training.loss.StyleGAN2Loss', **kwargs):
        self.translate = int(translate)
        self.inner = dnnlib.util.construct_class_by_name(class_name=inner_class_name, **kwargs)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        if self.translate > 0 and real_img is not None:
            dy, dx = (int(t) for t in np.random.randint(-self.translate, self.translate + 1, size=2))
            # A canvas at origin t shows content at x in the image at x - t: move the reals by -t.
            real_img = translate_images(real_img, -dy, -dx)
        return self.inner.accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)

#----------------------------------------------------------------------------
