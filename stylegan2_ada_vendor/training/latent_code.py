"""Not upstream: an InfoGAN latent code (Chen et al., NeurIPS 2016) against mode collapse.

A generator that draws one shape for every z ignores its latent; nothing in the GAN objective
stops that when the discriminator can be satisfied otherwise (on colour digits: one shape in many
colours). Here part of z is a code the image must reveal: its first `num_cat` entries name a
category (their argmax, uniform over num_cat for z ~ N(0, I)) and the next `num_cont` entries are
continuous factors. A small head Q reads the image's colour-blind shape (max over channels) and
predicts the code; G and Q both minimise
    code_weight * (CE(Q_cat(x), argmax z[:num_cat]) + MSE(Q_cont(x), z[num_cat:num_cat + num_cont])),
which lower-bounds the mutual information between code and shape. z keeps its N(0, I)
distribution and G its call, so the trained generator is an ordinary unconditional StyleGAN2.

Selected the way upstream selects classes (train.py --info): D_kwargs.class_name =
'training.latent_code.Discriminator' (upstream's D plus the head Q, so Q trains with D's
optimizer and is saved with D) and loss_kwargs.class_name = 'training.latent_code.LatentCodeLoss'.
"""

import torch
import torch.nn.functional as F

from torch_utils import persistence
from torch_utils import training_stats
from training import loss
from training import networks

#----------------------------------------------------------------------------

def code_targets(z, num_cat, num_cont):
    """The code carried by latents z [N, z_dim]: (category [N] int64 or None, factors [N, num_cont])."""
    category = z[:, :num_cat].argmax(dim=1) if num_cat > 0 else None
    return category, z[:, num_cat:num_cat + num_cont]

@persistence.persistent_class
class CodeHead(torch.nn.Module):
    """Q: image [N, C, H, W] -> (category logits [N, num_cat], factors [N, num_cont]), reading
    only the colour-blind shape (max over colour channels), through stride-2 convolutions down
    to 4x4 and a linear layer."""
    def __init__(self,
        img_resolution,             # Input resolution (a power of 2 >= 4).
        num_cat         = 10,       # Categories of the discrete code, 0 = none.
        num_cont        = 2,        # Continuous factors of the code.
        channels        = 32,       # Channels of the first convolution (doubling per halving, at most 128).
    ):
        super().__init__()
        self.num_cat = num_cat
        self.num_cont = num_cont
        layers, in_channels, res = [], 1, img_resolution
        while res > 4:
            out_channels = min(channels * img_resolution // res, 128)
            layers += [torch.nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), torch.nn.LeakyReLU(0.2)]
            in_channels, res = out_channels, res // 2
        self.convs = torch.nn.Sequential(*layers)
        self.out = torch.nn.Linear(in_channels * 16, num_cat + num_cont)

    def forward(self, img):
        x = self.convs(img.amax(dim=1, keepdim=True))
        y = self.out(x.flatten(1))
        return y[:, :self.num_cat], y[:, self.num_cat:]

@persistence.persistent_class
class Discriminator(networks.Discriminator):
    """Upstream's Discriminator (same forward) with the code head Q as `code_head`."""
    def __init__(self, c_dim, img_resolution, img_channels, code_kwargs={}, **kwargs):
        super().__init__(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)
        self.code_head = CodeHead(img_resolution=img_resolution, **code_kwargs)

#----------------------------------------------------------------------------

class _AddGradient(torch.autograd.Function):
    """Identity on `img` whose backward adds a precomputed gradient (the code term's), so G's one
    backward pass carries both the adversarial and the code gradient."""
    @staticmethod
    def forward(ctx, img, extra):
        ctx.save_for_backward(extra)
        return img.view_as(img)

    @staticmethod
    def backward(ctx, grad):
        extra, = ctx.saved_tensors
        return grad + extra, None

class LatentCodeLoss(loss.StyleGAN2Loss):
    """StyleGAN2Loss plus the code term: Q learns it on fakes in D's phases, G in its own."""
    def __init__(self, code_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.code_weight = float(code_weight)
        self._phase = None
        self._gain = 1

    def code_loss(self, img, z):
        """Per-image code loss [N] of images `img` drawn from latents `z`."""
        head = self.D.code_head
        category, factors = code_targets(z, head.num_cat, head.num_cont)
        cat_logits, cont = head(img)
        value = (cont - factors).square().mean(dim=1) if head.num_cont > 0 else img.new_zeros([img.shape[0]])
        if category is not None:
            value = value + F.cross_entropy(cat_logits, category, reduction='none')
            training_stats.report('Loss/code/accuracy', (cat_logits.argmax(dim=1) == category).float())
        training_stats.report('Loss/code/loss', value)
        return value

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        self._phase, self._gain = phase, gain
        try:
            super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)
        finally:
            self._phase = None

    def run_G(self, z, c, sync):
        img, ws = super().run_G(z, c, sync)
        if self.code_weight == 0:
            return img, ws
        scale = self.code_weight * self._gain
        if self._phase in ('Gmain', 'Gboth'):
            # G: the gradient of the code term through the (frozen) head, added in G's backward.
            probe = img.detach().requires_grad_(True)
            extra, = torch.autograd.grad(self.code_loss(probe, z).mean() * scale, [probe])
            img = _AddGradient.apply(img, extra)
        elif self._phase in ('Dmain', 'Dboth'):
            # Q: learn to read the code from the fakes (trained with D's optimizer).
            (self.code_loss(img.detach(), z).mean() * scale).backward()
        return img, ws

#----------------------------------------------------------------------------
