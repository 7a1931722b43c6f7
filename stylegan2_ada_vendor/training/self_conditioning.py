"""Not upstream: a self-conditioned generator seen as an unconditional one.

A self-conditioned GAN (Liu et al., CVPR 2020) trains a conditional G on cluster ids of the data
(scripts/experiments/cluster_labels.py writes them as dataset labels) rather than class labels.
To its users the result should be what an unconditional model is: G(z) with no label. This module
wraps such a trained G: the latent gets one more entry, z[:, -1] ~ N(0, 1), whose normal CDF picks
the cluster by inverting the clusters' frequencies in the training data (the label prior), so
every seed draws a cluster as often as the data holds it and the other 512 entries go to the
mapping network as before. Everything else (synthesis, w_avg, canvases, ws) is the trained G's:

    G_uncond = self_conditioned(G_ema, label_prior)    # c_dim 0, z_dim one more than G_ema's
    img = G_uncond(z, None)

`python stylegan2_ada_vendor/self_condition.py` does this for a snapshot, with the prior read
from the training data's labels. Weights-only files can hold the wrapper (legacy.NETWORK_CLASSES);
its constructor builds only the generator classes listed in GENERATOR_CLASSES.
"""

import math

import numpy as np
import torch

import dnnlib
from torch_utils import persistence

# The generators a wrapper may build: a weights file names one by a string, so only these are allowed.
GENERATOR_CLASSES = ('training.networks.Generator', 'mspe_plugin.networks.Generator')

#----------------------------------------------------------------------------

def _cdf(label_prior):
    prior = np.asarray(label_prior, dtype=np.float64)
    if prior.ndim != 1 or prior.size < 2 or not np.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError('label_prior must list one non-negative frequency per label (at least two labels, not all zero).')
    return torch.from_numpy(np.cumsum(prior / prior.sum())).to(torch.float64)

@persistence.persistent_class
class LabelSampler(torch.nn.Module):
    """The mapping network of a self-conditioned G behind an unconditional interface: z [N, z_dim + 1]
    -> (label from z[:, -1], mapping(z[:, :-1], label)). A c of the inner label width picks the
    labels explicitly; otherwise c is ignored (None or [N, 0])."""
    def __init__(self, label_prior, z_dim, c_dim, w_dim, num_ws, **mapping_kwargs):
        super().__init__()
        from training.networks import MappingNetwork
        self.inner = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, **mapping_kwargs)
        cdf = _cdf(label_prior)
        if cdf.numel() != c_dim:
            raise ValueError(f'label_prior lists {cdf.numel()} labels; the generator has {c_dim}.')
        self.register_buffer('label_cdf', cdf)
        self.z_dim = z_dim + 1
        self.c_dim = 0
        self.label_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws

    @property
    def w_avg(self):
        return self.inner.w_avg

    def labels(self, z):
        """Label index [N] that each latent draws: the inverse label CDF at Phi(z[:, -1])."""
        u = 0.5 * (1 + torch.erf(z[:, -1].to(torch.float64) / math.sqrt(2)))
        return torch.searchsorted(self.label_cdf.to(z.device), u, right=True).clamp(max=self.label_dim - 1)

    def forward(self, z, c=None, **kwargs):
        if c is None or c.shape[1] != self.label_dim:
            c = torch.nn.functional.one_hot(self.labels(z), self.label_dim).to(z.dtype)
        return self.inner(z[:, :-1], c, **kwargs)

@persistence.persistent_class
class SelfConditionedGenerator(torch.nn.Module):
    """An unconditional G (c_dim 0) built from a generator class of GENERATOR_CLASSES trained on
    `len(label_prior)` cluster labels; same attributes and call as the host's Generator."""
    def __init__(self, label_prior, generator_class, z_dim, c_dim, w_dim, img_resolution, img_channels,
                 mapping_kwargs={}, synthesis_kwargs={}):
        super().__init__()
        if generator_class not in GENERATOR_CLASSES:
            raise ValueError(f'A self-conditioned generator wraps one of {", ".join(GENERATOR_CLASSES)}; got {generator_class!r}.')
        G = dnnlib.util.construct_class_by_name(class_name=generator_class, z_dim=z_dim, c_dim=c_dim, w_dim=w_dim,
            img_resolution=img_resolution, img_channels=img_channels, mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs)
        self.synthesis = G.synthesis
        self.num_ws = G.num_ws
        self.mapping = LabelSampler(label_prior, z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)
        self.z_dim = z_dim + 1
        self.c_dim = 0
        self.label_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels

    @property
    def pe(self):
        return getattr(self.synthesis, 'pe', 'none')

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

#----------------------------------------------------------------------------

def self_conditioned(G, label_prior):
    """The unconditional view of a conditional G (a persistent generator of GENERATOR_CLASSES) trained
    on labels drawn with frequencies `label_prior`: a new module with G's weights copied (same device)."""
    import legacy    # the host's module (weights files): the class name of G as a weights file records it
    class_name = legacy._class_name_for_weights('G', G)
    if G.c_dim < 2:
        raise ValueError(f'A self-conditioned generator needs a conditional G of at least two labels; this one has c_dim {G.c_dim}.')
    kwargs = dict(G.init_kwargs)
    wrapper = SelfConditionedGenerator(label_prior=list(map(float, label_prior)), generator_class=class_name, **kwargs)
    wrapper.synthesis.load_state_dict(G.synthesis.state_dict())
    wrapper.mapping.inner.load_state_dict(G.mapping.state_dict())
    device = next(G.parameters()).device
    return wrapper.train(G.training).requires_grad_(False).to(device)    # for inference, as a snapshot's G_ema

def label_prior(dataset):
    """Frequency of each label among the items of a labelled dataset (training.dataset.Dataset)."""
    from training.label_groups import dataset_labels
    counts = np.bincount(dataset_labels(dataset), minlength=dataset.label_dim).astype(np.float64)
    return (counts / counts.sum()).tolist()

#----------------------------------------------------------------------------
