"""PlainOutsideLoss: a plain background beyond the training grid, for data on a plain background."""
import numpy as np
import pytest
import torch

import dnnlib
from mspe_plugin import outside
from mspe_plugin.encoding import Canvas

R = 16

def make_G(seed=0):
    torch.manual_seed(seed)
    return dnnlib.util.construct_class_by_name(class_name='mspe_plugin.networks.Generator', z_dim=8, w_dim=8, c_dim=0,
        img_resolution=R, img_channels=3, mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(pe='mspe', pe_margin=4, channel_base=64, channel_max=8))

class Inner:
    """A host loss that records its calls and adds nothing."""
    def __init__(self, **kwargs):
        self.calls = []
        self.pl_mean = torch.zeros([])

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        self.calls.append((phase, sync))

def make_loss(G, weight=1.0, reach=R):
    return outside.PlainOutsideLoss(outside_weight=weight, outside_reach=reach, wrapped_class_name=f'{__name__}.Inner',
                                    G_mapping=G.mapping, G_synthesis=G.synthesis)

def test_outside_mask_marks_exactly_the_pixels_beyond_the_training_grid():
    mask = outside.outside_mask((-2, R - 3), (5, 6), R)[0, 0]
    ys, xs = np.meshgrid(np.arange(5) - 2, np.arange(6) + R - 3, indexing='ij')
    expected = ~((ys >= 0) & (ys < R) & (xs >= 0) & (xs < R))
    assert torch.equal(mask.bool(), torch.from_numpy(expected))
    assert outside.outside_mask((0, 0), (R, R), R).sum() == 0

def test_penalty_is_the_squared_distance_to_the_reals_border_colour_outside_the_grid():
    G = make_G()
    loss = make_loss(G)
    real = torch.full([2, 3, R, R], -1.0)
    real[:, 1] = 0.5                                    # a green background
    real[:, :, 4:8, 4:8] = 1.0                          # content inside: not the border colour
    z = torch.randn([2, 8])
    np.random.seed(3)
    penalty, origin = loss.outside_penalty(real, z, None)
    np.random.seed(3)
    np.random.randint(-R, R + 1, size=2)                # the origin's draw
    margin = int(np.random.randint(0, 5))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, None), canvas=Canvas(origin=origin, size=(R, R), margin=margin))
    mask = outside.outside_mask(origin, (R, R), R)[0, 0].bool()
    assert mask.any() and origin != (0, 0)
    background = torch.tensor([-1.0, 0.5, -1.0])[:, None]
    expected = (img[:, :, mask] - background).square().mean()
    assert float(penalty.detach()) == pytest.approx(float(expected), rel=1e-5)

def test_generator_phase_adds_the_penalty_and_other_phases_do_not():
    G = make_G()
    loss = make_loss(G)
    real, z = torch.full([2, 3, R, R], -1.0), torch.randn([2, 8])
    loss.accumulate_gradients('Dmain', real, None, z, None, True, 1.0)
    assert all(p.grad is None for p in G.parameters())
    loss.accumulate_gradients('Gmain', real, None, z, None, True, 1.0)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.synthesis.parameters())
    assert loss.inner.calls == [('Dmain', True), ('Gmain', True)]
    assert loss.pl_mean is loss.inner.pl_mean           # the inner loss's state, for snapshots
    for p in G.parameters():
        p.grad = None
    make_loss(G, weight=0).accumulate_gradients('Gmain', real, None, z, None, True, 1.0)
    assert all(p.grad is None for p in G.parameters())

def test_training_on_the_penalty_clears_what_the_generator_draws_outside_the_grid():
    """A few steps on the penalty alone bring the generator's drawing beyond the grid to the
    background: the property the copies of results/NOTES.md lack."""
    G = make_G()
    loss = make_loss(G)
    real, z = torch.full([4, 3, R, R], -1.0), torch.randn([4, 8])
    opt = torch.optim.Adam(G.synthesis.parameters(), lr=0.01)
    wide = Canvas(origin=(-R, -R), size=(3 * R, 3 * R))
    mask = outside.outside_mask((-R, -R), (3 * R, 3 * R), R)[0, 0].bool()

    def outside_error():
        with torch.no_grad():
            img = G.synthesis(G.mapping(z, None), canvas=wide, noise_mode='const')
        return float((img[:, :, mask] + 1).square().mean())

    before = outside_error()
    np.random.seed(0)
    for _ in range(40):
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients('Gmain', real, None, z, None, True, 1.0)
        opt.step()
    assert outside_error() < 0.2 * before

def test_pe_outside_flag_wraps_the_hosts_loss_also_around_training_windows():
    """train.py --pe-outside=W (mspe_plugin.register): the loss kwargs wrap the host's loss, around
    TranslatedRealsLoss when --pe-translate is given too, and the nest builds and trains."""
    from mspe_plugin import register
    kwargs = register.configure_loss(dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=0.01), 2, 30)
    assert kwargs.class_name == 'mspe_plugin.outside.PlainOutsideLoss' and kwargs.outside_weight == 30.0
    assert kwargs.wrapped_class_name == 'mspe_plugin.translate.TranslatedRealsLoss'
    assert kwargs.inner_class_name == 'training.loss.StyleGAN2Loss'
    assert register.configure_loss(dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss'), None, 0).class_name == 'training.loss.StyleGAN2Loss'
    assert register.run_desc_suffix('mspe', None, pe_margin=8, pe_outside=30) == '-mspe-m8-out30'
    with pytest.raises(Exception, match='--pe-outside needs a positional encoding'):
        register.configure_generator(dnnlib.EasyDict(class_name='training.networks.Generator'), None, None, pe_outside=30)
    G = make_G()
    D = dnnlib.util.construct_class_by_name(class_name='training.networks.Discriminator', c_dim=0, img_resolution=R,
                                           img_channels=3, channel_base=64, channel_max=8)
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, **kwargs)
    assert type(loss.inner).__name__ == 'TranslatedRealsLoss' and type(loss.inner.inner).__name__ == 'StyleGAN2Loss'
    real, z, c = torch.full([2, 3, R, R], -1.0), torch.randn([2, 8]), torch.zeros([2, 0])
    for phase in ('Gmain', 'Dmain'):
        loss.accumulate_gradients(phase, real, c, z, c, True, 1.0)
    assert all(torch.isfinite(p.grad).all() for p in G.synthesis.parameters() if p.grad is not None)
