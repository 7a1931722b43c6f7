"""The InfoGAN latent code (training/latent_code.py): the code is read from z, Q sees only shapes,
and the code term reaches G through the same backward pass as the adversarial loss."""
import copy

import numpy as np
import torch

from training import latent_code
from training import networks

R = 16

def make_nets(num_cat=10, num_cont=2, seed=0):
    torch.manual_seed(seed)
    G = networks.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=R, img_channels=3,
                           mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = latent_code.Discriminator(c_dim=0, img_resolution=R, img_channels=3, channel_base=128, channel_max=16,
                                  code_kwargs=dict(num_cat=num_cat, num_cont=num_cont))
    return G, D

def make_loss(G, D, weight=1.0):
    return latent_code.LatentCodeLoss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
                                      code_weight=weight, style_mixing_prob=0, pl_weight=0, r1_gamma=0)

def test_code_targets_are_the_argmax_category_and_the_next_factors():
    z = torch.tensor([[0.1, 2.0, -1.0, 0.5, -0.25, 9.0], [3.0, 0.0, 0.0, -0.5, 0.75, 9.0]])
    category, factors = latent_code.code_targets(z, 3, 2)
    assert category.tolist() == [1, 0]
    assert torch.equal(factors, z[:, 3:5])
    torch.manual_seed(0)
    counts = torch.bincount(latent_code.code_targets(torch.randn(20000, 32), 10, 0)[0], minlength=10)
    assert counts.min() > 1800 and counts.max() < 2200     # uniform over the categories for z ~ N(0, I)

def test_code_head_reads_shape_not_colour():
    """Q sees max over colour channels: the same shape in another colour gives the same prediction."""
    _, D = make_nets()
    shape = torch.zeros([1, 1, R, R])
    shape[..., 4:12, 6:9] = 1
    red = torch.cat([shape, -torch.ones_like(shape), -torch.ones_like(shape)], dim=1)
    blue = red.roll(2, dims=1)
    for a, b in zip(D.code_head(red), D.code_head(blue)):
        torch.testing.assert_close(a, b)

def test_discriminator_keeps_upstream_forward_and_state():
    """Same logits as upstream's D with the same weights; the head adds only code_head.* tensors."""
    _, D = make_nets()
    plain = networks.Discriminator(c_dim=0, img_resolution=R, img_channels=3, channel_base=128, channel_max=16)
    plain.load_state_dict({k: v for k, v in D.state_dict().items() if not k.startswith('code_head.')})
    img = torch.randn([4, 3, R, R])
    torch.testing.assert_close(D(img, None), plain(img, None))
    extra = set(D.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith('code_head.') for k in extra)

def test_generator_gradient_carries_the_code_term():
    """Gmain: G's gradient equals the adversarial gradient plus code_weight x the code gradient,
    from one backward pass; the head itself is not trained in G's phase."""
    G, D = make_nets()
    z = torch.randn([8, G.z_dim])
    c = torch.zeros([8, 0])
    grads = {}
    for weight in (0.0, 2.0):
        G_run, D_run = copy.deepcopy(G), copy.deepcopy(D).requires_grad_(False)
        loss = make_loss(G_run, D_run, weight)
        torch.manual_seed(5)    # the same noise inputs in every run
        loss.accumulate_gradients('Gmain', None, None, z, c, sync=True, gain=1)
        grads[weight] = torch.cat([p.grad.flatten() for p in G_run.parameters() if p.grad is not None])
        assert all(p.grad is None for p in D_run.parameters())
    # The code term alone, computed directly.
    G_ref, D_ref = copy.deepcopy(G), copy.deepcopy(D).requires_grad_(False)
    ref = make_loss(G_ref, D_ref, 1.0)
    torch.manual_seed(5)
    img = G_ref.synthesis(G_ref.mapping(z, c))
    (2.0 * ref.code_loss(img, z).mean()).backward()
    code_grad = torch.cat([p.grad.flatten() for p in G_ref.parameters() if p.grad is not None])
    torch.testing.assert_close(grads[2.0] - grads[0.0], code_grad, atol=1e-5, rtol=1e-4)

def test_head_learns_the_code_in_the_discriminator_phase():
    """Dmain trains Q (with D's optimizer) on fakes: its code loss falls on a fixed G."""
    G, D = make_nets(num_cat=4, num_cont=0)
    G.requires_grad_(False)
    loss = make_loss(G, D, 1.0)
    opt = torch.optim.Adam(D.code_head.parameters(), lr=3e-3)
    torch.manual_seed(1)
    z_eval = torch.randn([64, G.z_dim])
    before = float(loss.code_loss(G.synthesis(G.mapping(z_eval, None)), z_eval).mean().detach())
    for _ in range(60):
        opt.zero_grad(set_to_none=True)
        z = torch.randn([32, G.z_dim])
        loss.accumulate_gradients('Dmain', torch.zeros([32, 3, R, R]), torch.zeros([32, 0]), z, torch.zeros([32, 0]), sync=True, gain=1)
        opt.step()
    after = float(loss.code_loss(G.synthesis(G.mapping(z_eval, None)), z_eval).mean().detach())
    assert after < before - 0.1, (before, after)
    assert np.isfinite(after)
