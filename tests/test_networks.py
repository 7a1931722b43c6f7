"""The host's StyleGAN2 networks: shapes, gradients, architectures, labels, fused vs non-fused
modulated convolution, any H x W through the synthesis blocks, truncation and noise modes."""
import pytest
import torch

from training import networks

torch.set_num_threads(1)

def tiny_G(res=16, c_dim=0, arch='skip', **synthesis):
    return networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=3,
                              mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=16 * res, channel_max=16, architecture=arch, **synthesis))

def tiny_D(res=16, c_dim=0, arch='resnet'):
    return networks.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3, architecture=arch,
                                  channel_base=16 * res, channel_max=16)

def labels(n, c_dim):
    return torch.eye(c_dim)[torch.arange(n) % c_dim] if c_dim else torch.zeros([n, 0])

@pytest.mark.parametrize('res', [16, 32])
@pytest.mark.parametrize('arch', ['skip', 'resnet', 'orig'])
@pytest.mark.parametrize('c_dim', [0, 4])
def test_generator_and_discriminator_forward_backward(res, arch, c_dim):
    torch.manual_seed(0)
    G, D = tiny_G(res, c_dim, arch), tiny_D(res, c_dim, arch)
    z, c = torch.randn([4, 8]), labels(4, c_dim)
    img = G(z, c)
    assert img.shape == (4, 3, res, res) and torch.isfinite(img).all()
    logits = D(img, c)
    assert logits.shape == (4, 1)
    logits.sum().backward()
    for name, p in list(G.named_parameters()) + list(D.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Mapping layers and the first block got a signal.
    assert G.mapping.fc0.weight.grad.abs().sum() > 0 and G.synthesis.b4.const.grad.abs().sum() > 0

def test_num_ws_and_upstream_parameter_names():
    G = tiny_G(32)
    names = dict(G.named_parameters())
    for key in ['synthesis.b4.const', 'synthesis.b4.conv1.weight', 'synthesis.b4.conv1.affine.weight',
                'synthesis.b4.conv1.noise_strength', 'synthesis.b8.conv0.weight', 'synthesis.b32.torgb.weight',
                'mapping.fc0.weight', 'mapping.fc1.bias']:
        assert key in names, key
    assert 'synthesis.b16.conv0.noise_const' in dict(G.named_buffers()) and 'mapping.w_avg' in dict(G.named_buffers())
    assert G.num_ws == 2 * 4 + 0 and G.num_ws == G.synthesis.num_ws   # 1 + 2*3 convs + 1 torgb
    Dn = dict(tiny_D(32, c_dim=2).named_parameters())
    for key in ['b32.fromrgb.weight', 'b32.conv0.weight', 'b32.skip.weight', 'b4.conv.weight', 'b4.fc.weight', 'b4.out.weight', 'mapping.embed.weight']:
        assert key in Dn, key

@pytest.mark.parametrize('arch', ['skip', 'resnet'])
def test_fused_and_non_fused_modulated_conv_agree(arch):
    torch.manual_seed(1)
    G = tiny_G(32, arch=arch)
    ws = G.mapping(torch.randn([3, 8]), None)
    a = G.synthesis(ws, noise_mode='const', fused_modconv=True)
    b = G.synthesis(ws, noise_mode='const', fused_modconv=False)
    assert (a - b).abs().max() < 1e-5
    x = torch.randn([2, 6, 5, 7])
    w = torch.randn([4, 6, 3, 3])
    s = torch.randn([2, 6])
    for up in [1, 2]:
        f = networks.upfirdn2d.setup_filter([1, 3, 3, 1])
        fused = networks.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, fused_modconv=True)
        plain = networks.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, fused_modconv=False)
        # Demodulated per sample: explicit weight normalisation.
        ww = w[None] * s[:, None, :, None, None]
        ww = ww / ww.square().sum(dim=[2, 3, 4], keepdim=True).add(1e-8).sqrt()
        if up == 1:
            ref = torch.stack([torch.nn.functional.conv2d(x[i:i + 1], ww[i], padding=1)[0] for i in range(2)])
            assert torch.allclose(fused, ref, atol=1e-5)
        assert torch.allclose(fused, plain, atol=1e-5)

def test_synthesis_blocks_take_any_height_and_width():
    torch.manual_seed(2)
    G = tiny_G(16)
    ws = G.mapping(torch.randn([2, 8]), None)
    block_ws = G.synthesis.split_ws(ws)
    x = torch.randn([2, 16, 3, 5])             # a 3 x 5 coarse feature instead of the 4 x 4 constant
    img = None
    for res, cur in zip(G.synthesis.block_resolutions[1:], block_ws[1:]):
        x, img = getattr(G.synthesis, f'b{res}')(x, img, cur, noise_mode='const')
    assert img.shape == (2, 3, 12, 20) and torch.isfinite(img).all()
    layer = G.synthesis.b16.conv1
    assert layer.make_noise(torch.zeros([1, 1, 20, 40]), 'const').shape == (20, 40)
    assert layer.make_noise(torch.zeros([2, 1, 7, 9]), 'random').shape == (2, 1, 7, 9)

def test_noise_modes_and_truncation():
    torch.manual_seed(3)
    G = tiny_G(16)
    for layer in [m for m in G.modules() if isinstance(m, networks.SynthesisLayer)]:
        layer.noise_strength.data.fill_(0.5)
    z = torch.randn([2, 8])
    c1, c2 = G(z, None, noise_mode='const'), G(z, None, noise_mode='const')
    r1, r2 = G(z, None, noise_mode='random'), G(z, None, noise_mode='random')
    n1 = G(z, None, noise_mode='none')
    assert torch.equal(c1, c2) and not torch.equal(r1, r2) and not torch.equal(c1, n1)
    with pytest.raises(AssertionError):
        G(z, None, noise_mode='sometimes')
    # psi = 0 gives w_avg for every z; the cutoff leaves later ws untouched.
    G.mapping.w_avg.normal_()
    ws0 = G.mapping(torch.randn([3, 8]), None, truncation_psi=0)
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    ws_full = G.mapping(z, None)
    ws_cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(ws_cut[:, 2:], ws_full[:, 2:]) and not torch.allclose(ws_cut[:, :2], ws_full[:, :2])

def test_w_avg_tracks_mapping_output_in_training_mode():
    G = tiny_G(16).train()
    before = G.mapping.w_avg.clone()
    G.mapping(torch.randn([8, 8]), None)
    assert not torch.equal(before, G.mapping.w_avg)
    G.eval()
    frozen = G.mapping.w_avg.clone()
    G.mapping(torch.randn([8, 8]), None)
    assert torch.equal(frozen, G.mapping.w_avg)

def test_fp16_layers_run_in_fp32_off_cuda():
    G = tiny_G(16, num_fp16_res=2)
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=16, num_fp16_res=2)
    img = G(torch.randn([2, 8]), None)
    assert img.dtype == torch.float32 and D(img, None).dtype == torch.float32

def test_minibatch_std_rejects_indivisible_batch_in_one_sentence():
    D = tiny_D(16)
    with pytest.raises(ValueError, match='not divisible by the group size'):
        D(torch.randn([6, 3, 16, 16]), None)

def test_conditional_discriminator_scores_every_label_at_once():
    torch.manual_seed(0)
    D = tiny_D(16, c_dim=5)
    img = torch.randn([4, 3, 16, 16])
    every = D(img, None, all_labels=True)
    assert every.shape == (4, 5)
    for k in range(5):
        one = D(img, torch.eye(5)[[k] * 4])
        assert torch.allclose(every[:, k:k + 1], one, atol=1e-6)
    with pytest.raises(ValueError, match='all_labels needs a conditional D'):
        tiny_D(16)(img, None, all_labels=True)
