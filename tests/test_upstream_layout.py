"""The host's networks hold upstream's tensors: every parameter and buffer of G and D has the
name, shape and dtype (and state_dict order) that NVlabs' stylegan2-ada-pytorch gives it, so
upstream's pickles copy into our classes and ours into theirs, tensor for tensor.

The expected lists are written out here from what upstream's training/networks.py builds (and
upfirdn2d.setup_filter stores), as facts:
- A resampling filter `[1,3,3,1]` is stored as its normalised 4x4 outer product (upstream keeps
  the separable 1-D form only for filters of 8 taps or more). Every SynthesisBlock,
  SynthesisLayer, Conv2dLayer and DiscriminatorBlock holds one, used or not.
- Channels at resolution r are min(channel_base // r, channel_max).
- A module's state lists its own parameters, then its own buffers, then its children in the
  order they were created.
"""
import pytest
import torch

import dnnlib

FILTER = [4, 4]     # setup_filter([1,3,3,1])

def fc(prefix, in_features, out_features, bias=True):
    """FullyConnectedLayer: weight [out, in], bias [out]."""
    return [(f'{prefix}.weight', [out_features, in_features])] + ([(f'{prefix}.bias', [out_features])] if bias else [])

def conv(prefix, in_channels, out_channels, kernel, bias=True, trainable=True):
    """Conv2dLayer: weight [out, in, k, k], optional bias, and a filter buffer. A frozen layer
    (Freeze-D) keeps weight and bias as buffers, registered after the filter."""
    params = [(f'{prefix}.weight', [out_channels, in_channels, kernel, kernel])] + ([(f'{prefix}.bias', [out_channels])] if bias else [])
    filt = [(f'{prefix}.resample_filter', FILTER)]
    return params + filt if trainable else filt + params

def mapping(prefix, z_dim, c_dim, w_dim, num_layers, track_w_avg):
    """MappingNetwork: w_avg buffer (G only), label embedding (conditional), fc0..fc{n-1}."""
    embed = w_dim if c_dim > 0 else 0
    features = [z_dim + embed] + [w_dim] * num_layers
    out = [(f'{prefix}.w_avg', [w_dim])] if track_w_avg else []
    if c_dim > 0:
        out += fc(f'{prefix}.embed', c_dim, embed)
    for i in range(num_layers):
        out += fc(f'{prefix}.fc{i}', features[i], features[i + 1])
    return out

def synthesis_layer(prefix, in_channels, out_channels, w_dim, res):
    """SynthesisLayer: 3x3 weight, noise strength (scalar), bias; filter and [res, res] constant
    noise buffers; the style affine (w -> one scale per input channel)."""
    return [(f'{prefix}.weight', [out_channels, in_channels, 3, 3]), (f'{prefix}.noise_strength', []),
            (f'{prefix}.bias', [out_channels]), (f'{prefix}.resample_filter', FILTER),
            (f'{prefix}.noise_const', [res, res])] + fc(f'{prefix}.affine', w_dim, in_channels)

def upstream_G_layout(z_dim, c_dim, w_dim, res, img_channels, map_layers, channel_base, channel_max, architecture):
    ch = lambda r: min(channel_base // r, channel_max)
    out = []
    resolutions = [2 ** i for i in range(2, res.bit_length())]
    for r in resolutions:
        b = f'synthesis.b{r}'
        if r == 4:
            out += [(f'{b}.const', [ch(4), 4, 4]), (f'{b}.resample_filter', FILTER)]
            out += synthesis_layer(f'{b}.conv1', ch(4), ch(4), w_dim, 4)
        else:
            out += [(f'{b}.resample_filter', FILTER)]
            out += synthesis_layer(f'{b}.conv0', ch(r // 2), ch(r), w_dim, r)
            out += synthesis_layer(f'{b}.conv1', ch(r), ch(r), w_dim, r)
        if r == res or architecture == 'skip':
            out += [(f'{b}.torgb.weight', [img_channels, ch(r), 1, 1]), (f'{b}.torgb.bias', [img_channels])]
            out += fc(f'{b}.torgb.affine', w_dim, ch(r))
        if r > 4 and architecture == 'resnet':
            out += conv(f'{b}.skip', ch(r // 2), ch(r), 1, bias=False)
    return out + mapping('mapping', z_dim, c_dim, w_dim, map_layers, track_w_avg=True)

def upstream_D_layout(c_dim, res, img_channels, channel_base, channel_max, architecture, map_layers, mbstd_channels, freeze_layers):
    ch = lambda r: min(channel_base // r, channel_max)
    out = []
    layer_idx = 0
    def next_trainable():
        nonlocal layer_idx
        layer_idx += 1
        return layer_idx - 1 >= freeze_layers
    for r in [2 ** i for i in range(res.bit_length() - 1, 2, -1)]:
        b = f'b{r}'
        out += [(f'{b}.resample_filter', FILTER)]
        if r == res or architecture == 'skip':
            out += conv(f'{b}.fromrgb', img_channels, ch(r), 1, trainable=next_trainable())
        out += conv(f'{b}.conv0', ch(r), ch(r), 3, trainable=next_trainable())
        out += conv(f'{b}.conv1', ch(r), ch(r // 2), 3, trainable=next_trainable())
        if architecture == 'resnet':
            out += conv(f'{b}.skip', ch(r), ch(r // 2), 1, bias=False, trainable=next_trainable())
    cmap_dim = ch(4) if c_dim > 0 else 0
    if c_dim > 0:
        out += mapping('mapping', 0, c_dim, cmap_dim, map_layers, track_w_avg=False)
    if architecture == 'skip':
        out += conv('b4.fromrgb', img_channels, ch(4), 1)
    out += conv('b4.conv', ch(4) + mbstd_channels, ch(4), 3)
    out += fc('b4.fc', ch(4) * 16, ch(4)) + fc('b4.out', ch(4), cmap_dim if c_dim > 0 else 1)
    return out

def layout(net):
    return [(name, list(t.shape), t.dtype) for name, t in net.state_dict().items()]

CONFIGS = [(res, arch, c_dim) for res in [16, 32] for arch in ['orig', 'skip', 'resnet'] for c_dim in [0, 5]]

@pytest.mark.parametrize('res,architecture,c_dim', CONFIGS)
def test_generator_state_dict_is_upstreams(res, architecture, c_dim):
    G = dnnlib.util.construct_class_by_name(class_name='training.networks.Generator', z_dim=16, c_dim=c_dim, w_dim=24,
        img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=3),
        synthesis_kwargs=dict(channel_base=128, channel_max=16, architecture=architecture))
    expected = upstream_G_layout(16, c_dim, 24, res, 3, 3, 128, 16, architecture)
    assert layout(G) == [(name, shape, torch.float32) for name, shape in expected]
    # The filters hold upstream's values too: the normalised outer product of [1,3,3,1].
    taps = torch.tensor([1., 3., 3., 1.])
    assert torch.equal(G.synthesis.b8.conv0.resample_filter, torch.outer(taps, taps) / 64)

@pytest.mark.parametrize('res,architecture,c_dim', CONFIGS)
def test_discriminator_state_dict_is_upstreams(res, architecture, c_dim):
    D = dnnlib.util.construct_class_by_name(class_name='training.networks.Discriminator', c_dim=c_dim,
        img_resolution=res, img_channels=3, channel_base=128, channel_max=16, architecture=architecture,
        mapping_kwargs=dict(num_layers=2), block_kwargs=dict(freeze_layers=2), epilogue_kwargs=dict(mbstd_num_channels=2))
    expected = upstream_D_layout(c_dim, res, 3, 128, 16, architecture, 2, 2, freeze_layers=2)
    assert layout(D) == [(name, shape, torch.float32) for name, shape in expected]
