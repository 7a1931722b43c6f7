"""Not upstream: StyleGAN2's objective plus a label cross-entropy through the projection
discriminator, the recipe that trained the committed class-conditional digit models.

A conditional StyleGAN2 D scores an image under a label by projecting its features onto the
mapped label. Evaluated under every one-hot label, those scores are the logits of a classifier,
and this loss adds their cross-entropy: on reals for D (rank a real image's own label first), on
fakes for G (draw what D takes for the label asked). Without it, our narrow digit models drew one
shape per label whatever the label was (results/NOTES.md). train.py selects this class with
`--label-ce=WEIGHT` (needs `--cond=1`); the regularisation phases are upstream's.
"""

import torch.nn.functional as F

from torch_utils import misc
from torch_utils import training_stats
from training.loss import StyleGAN2Loss

#----------------------------------------------------------------------------

class LabelCELoss(StyleGAN2Loss):
    """StyleGAN2Loss + label_ce_weight * cross-entropy of D's logits under every label."""
    def __init__(self, *args,
        label_ce_weight = 1,        # Weight of the label cross-entropy (D on reals, G on its fakes).
        **kwargs,                   # Arguments for StyleGAN2Loss.
    ):
        super().__init__(*args, **kwargs)
        self.label_ce_weight = label_ce_weight

    def run_D_labelled(self, img, c, sync):
        """Augment (when enabled) and discriminate under every label at once.
        Returns (logits [N, 1] under c, cross-entropy [N, 1] of the logits under every label
        against c's class)."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with misc.ddp_sync(self.D, sync):
            every = self.D(img, c, all_labels=True)        # [N, c_dim]: column k is D(img, e_k)
        target = c.argmax(dim=1)
        logits = every.gather(1, target[:, None])
        return logits, F.cross_entropy(every, target, reduction='none')[:, None]

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        reg_phase = {'Greg': 'Greg', 'Gboth': 'Greg', 'Dreg': 'Dreg', 'Dboth': 'Dreg'}.get(phase)
        if phase in ('Gmain', 'Gboth'):
            self._G_main(gen_z, gen_c, sync=(sync and reg_phase is None), gain=gain)
        if phase in ('Dmain', 'Dboth'):
            self._D_main(real_img, real_c, gen_z, gen_c, sync=(sync and reg_phase is None), gain=gain)
        if reg_phase is not None:
            super().accumulate_gradients(reg_phase, real_img, real_c, gen_z, gen_c, sync, gain)

    def _G_main(self, gen_z, gen_c, sync, gain):
        """Non-saturating G loss plus the cross-entropy of D's label logits on G's fakes."""
        gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=sync)
        gen_logits, gen_ce = self.run_D_labelled(gen_img, gen_c, sync=False)
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_Gmain = F.softplus(-gen_logits)
        training_stats.report('Loss/G/loss', loss_Gmain)
        training_stats.report('Loss/G/label_ce', gen_ce)
        (loss_Gmain + gen_ce * self.label_ce_weight).mean().mul(gain).backward()

    def _D_main(self, real_img, real_c, gen_z, gen_c, sync, gain):
        """Logistic D loss on fakes and reals plus the cross-entropy of D's label logits on reals."""
        gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=False)
        gen_logits = self.run_D(gen_img.detach(), gen_c, sync=False)
        training_stats.report('Loss/scores/fake', gen_logits)
        training_stats.report('Loss/signs/fake', gen_logits.sign())
        loss_Dgen = F.softplus(gen_logits)
        loss_Dgen.mean().mul(gain).backward()

        real_logits, real_ce = self.run_D_labelled(real_img.detach(), real_c, sync=sync)
        training_stats.report('Loss/scores/real', real_logits)
        training_stats.report('Loss/signs/real', real_logits.sign())
        loss_Dreal = F.softplus(-real_logits)
        training_stats.report('Loss/D/loss', loss_Dgen + loss_Dreal)
        training_stats.report('Loss/D/label_ce', real_ce)
        (loss_Dreal + real_ce * self.label_ce_weight).mean().mul(gain).backward()

#----------------------------------------------------------------------------
