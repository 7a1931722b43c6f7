"""StyleGAN2's training objective: non-saturating logistic GAN loss with lazy R1 on reals and
lazy path-length regularisation, with style mixing.

The training loop calls `accumulate_gradients(phase, ...)` once per phase and minibatch round;
the loss runs the networks, reports its statistics through `training_stats` and calls
`backward()`. It never steps an optimizer. Phases:
  Gmain / Dmain   the adversarial terms (every step),
  Greg / Dreg     path-length / R1 regularisation (every G_reg_interval / D_reg_interval steps),
  Gboth / Dboth   both at once (when the regularisation is not lazy).
Other objectives subclass StyleGAN2Loss in a module of their own and are chosen through
`loss_kwargs.class_name` (e.g. training/loss_labelce.py).
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import training_stats

#----------------------------------------------------------------------------

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')

class Loss:
    """Interface between the training loop and a GAN objective."""
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        """Add the gradients of `phase`'s loss, times `gain`, to the networks' `.grad`.

        :param phase: one of PHASES.
        :param real_img: [N, C, H, W] float real images in [-1, 1].
        :param real_c: [N, c_dim] labels of the real images.
        :param gen_z: [N, z_dim] latents for the generated images.
        :param gen_c: [N, c_dim] labels for the generated images.
        :param sync: whether DistributedDataParallel-wrapped networks should sync gradients now.
        :param gain: multiplier for the loss (the phase's interval, for lazy regularisation).
        """
        raise NotImplementedError(f'{type(self).__name__} must implement accumulate_gradients')

#----------------------------------------------------------------------------

class StyleGAN2Loss(Loss):
    """The StyleGAN2 / StyleGAN2-ADA objective."""
    def __init__(self,
        device,                     # torch.device the networks live on.
        G_mapping,                  # z, c -> ws [N, num_ws, w_dim].
        G_synthesis,                # ws -> images [N, C, H, W]; plugins do their own training-time tricks inside.
        D,                          # images, c -> logits [N, 1].
        augment_pipe        = None, # Augmentation applied to every image D sees, None = disable.
        style_mixing_prob   = 0.9,  # Probability of mixing two latents at a random layer cutoff, 0 = disable.
        r1_gamma            = 10,   # R1 regularisation weight, 0 = disable.
        pl_batch_shrink     = 2,    # Divide the batch by this for the path-length term.
        pl_decay            = 0.01, # Decay of the running mean of path lengths.
        pl_weight           = 2,    # Path-length regularisation weight, 0 = disable.
    ):
        super().__init__()
        self.device = device
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.augment_pipe = augment_pipe
        self.style_mixing_prob = style_mixing_prob
        self.r1_gamma = r1_gamma
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_weight = pl_weight
        self.pl_mean = torch.zeros([], device=device)

    def run_G(self, z, c, sync):
        """Generate images. Returns (img [N, C, H, W], ws [N, num_ws, w_dim])."""
        with misc.ddp_sync(self.G_mapping, sync):
            ws = self.G_mapping(z, c)
            if self.style_mixing_prob > 0:
                ws = self._mix_styles(ws, z, c)
        with misc.ddp_sync(self.G_synthesis, sync):
            img = self.G_synthesis(ws)
        return img, ws

    def _mix_styles(self, ws, z, c):
        """Replace the layers from a random cutoff onward by the ws of fresh latents, for a random
        `style_mixing_prob` fraction of the batch (the cutoff is shared by the batch)."""
        num_ws = ws.shape[1]
        with torch.autograd.profiler.record_function('style_mixing'):
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            mixed = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, num_ws))
            ws_mix = self.G_mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            take_mix = torch.arange(num_ws, device=ws.device)[None, :, None] >= cutoff
            return torch.where(take_mix, ws_mix, ws)

    def run_D(self, img, c, sync):
        """Augment (when enabled) and discriminate. Returns logits [N, 1]."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with misc.ddp_sync(self.D, sync):
            logits = self.D(img, c)
        return logits

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in PHASES, f'Unknown phase {phase!r}'
        do_Gmain = phase in ('Gmain', 'Gboth')
        do_Dmain = phase in ('Dmain', 'Dboth')
        do_Gpl = phase in ('Greg', 'Gboth') and self.pl_weight != 0
        do_Dr1 = phase in ('Dreg', 'Dboth') and self.r1_gamma != 0

        # Gmain: make D call fakes real (non-saturating: softplus(-D(G(z)))).
        if do_Gmain:
            with torch.autograd.profiler.record_function('Gmain_forward'):
                gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=(sync and not do_Gpl))    # Gpl syncs when it runs too.
                gen_logits = self.run_D(gen_img, gen_c, sync=False)
                training_stats.report('Loss/scores/fake', gen_logits)
                training_stats.report('Loss/signs/fake', gen_logits.sign())
                loss_Gmain = F.softplus(-gen_logits)
                training_stats.report('Loss/G/loss', loss_Gmain)
            with torch.autograd.profiler.record_function('Gmain_backward'):
                loss_Gmain.mean().mul(gain).backward()

        # Gpl: keep |J_w^T y| (image change per unit w change, random direction y) near its running mean.
        if do_Gpl:
            with torch.autograd.profiler.record_function('Gpl_forward'):
                batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
                gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size], sync=sync)
                pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
                pl_grads, = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                    create_graph=True, only_inputs=True)
                pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
                pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
                self.pl_mean.copy_(pl_mean.detach())
                pl_penalty = (pl_lengths - pl_mean).square()
                training_stats.report('Loss/pl_penalty', pl_penalty)
                loss_Gpl = pl_penalty * self.pl_weight
                training_stats.report('Loss/G/reg', loss_Gpl)
            with torch.autograd.profiler.record_function('Gpl_backward'):
                # The zero-weighted image term keeps every synthesis output in the graph (DDP needs it).
                (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

        # Dmain, fakes: push D(G(z)) down (softplus(D(G(z)))).
        loss_Dgen = 0
        if do_Dmain:
            with torch.autograd.profiler.record_function('Dgen_forward'):
                gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=False)
                gen_logits = self.run_D(gen_img.detach(), gen_c, sync=False)    # Synced by the reals' pass.
                training_stats.report('Loss/scores/fake', gen_logits)
                training_stats.report('Loss/signs/fake', gen_logits.sign())
                loss_Dgen = F.softplus(gen_logits)
            with torch.autograd.profiler.record_function('Dgen_backward'):
                loss_Dgen.mean().mul(gain).backward()

        # Dmain, reals: push D(x) up; Dr1: penalise |grad_x D(x)|^2 on reals.
        if do_Dmain or do_Dr1:
            name = 'Dreal_Dr1' if do_Dmain and do_Dr1 else 'Dreal' if do_Dmain else 'Dr1'
            with torch.autograd.profiler.record_function(name + '_forward'):
                real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
                real_logits = self.run_D(real_img_tmp, real_c, sync=sync)
                training_stats.report('Loss/scores/real', real_logits)
                training_stats.report('Loss/signs/real', real_logits.sign())

                loss_Dreal = 0
                if do_Dmain:
                    loss_Dreal = F.softplus(-real_logits)
                    training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)

                loss_Dr1 = 0
                if do_Dr1:
                    r1_grads, = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                        create_graph=True, only_inputs=True)
                    r1_penalty = r1_grads.square().sum([1, 2, 3])
                    loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                    training_stats.report('Loss/r1_penalty', r1_penalty)
                    training_stats.report('Loss/D/reg', loss_Dr1)
            with torch.autograd.profiler.record_function(name + '_backward'):
                (real_logits * 0 + loss_Dreal + loss_Dr1).mean().mul(gain).backward()

#----------------------------------------------------------------------------
