"""The host-facing registration API: cfg names, generator kwargs, canvas flags."""
import click
import pytest
import torch

import dnnlib
from mspe_plugin import register
from mspe_plugin.encoding import Canvas
from training import networks as host_networks

def host_G_kwargs():
    return dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=8, w_dim=8,
                           mapping_kwargs=dnnlib.EasyDict(num_layers=2),
                           synthesis_kwargs=dnnlib.EasyDict(channel_base=256, channel_max=16))

def test_cfg_names_map_to_auto_with_a_positional_encoding():
    assert register.split_cfg('mspe') == ('auto', 'mspe')
    assert register.split_cfg('sspe') == ('auto', 'sspe')
    assert register.split_cfg('paper256') == ('paper256', None)

def test_cfg_mspe_is_the_border_recipe_and_explicit_flags_win():
    assert register.resolve_cfg('mspe') == ('auto', 'mspe', (0.75, 1.5), 8)
    assert register.resolve_cfg('sspe') == ('auto', 'sspe', None, None)
    # The paper's plain MS-PE: --pe=mspe on any preset, or the recipe's parts switched off.
    assert register.resolve_cfg('auto', 'mspe') == ('auto', 'mspe', None, None)
    assert register.resolve_cfg('mspe', None, 'off', 0) == ('auto', 'mspe', None, 0)
    assert register.resolve_cfg('mspe', None, '0.5,2', None) == ('auto', 'mspe', (0.5, 2.0), 8)
    assert register.resolve_cfg('paper256', None, None, 4) == ('paper256', None, None, 4)
    kwargs = register.configure_generator(host_G_kwargs(), *register.resolve_cfg('mspe')[1:3], pe_margin=8)
    G = dnnlib.util.construct_class_by_name(**kwargs, c_dim=0, img_resolution=16, img_channels=3)
    assert G.synthesis.pe == 'mspe' and G.synthesis.pe_resize == (0.75, 1.5) and G.synthesis.pe_margin == 8

def test_configure_training_switches_cudnn_benchmarking_off_for_random_canvases():
    for flags in (dict(pe_resize=(0.75, 1.5)), dict(pe_margin=8), dict(pe_translate=4)):
        assert register.configure_training(dnnlib.EasyDict(cudnn_benchmark=True), **flags).cudnn_benchmark is False
    for flags in (dict(), dict(pe_margin=0, pe_padding='none')):
        assert register.configure_training(dnnlib.EasyDict(cudnn_benchmark=True), **flags).cudnn_benchmark is True

def test_configure_generator_builds_the_plugin_generator():
    kwargs = register.configure_generator(host_G_kwargs(), 'mspe', register.parse_pe_resize('0.5,2'))
    assert kwargs.class_name == 'mspe_plugin.networks.Generator'
    assert kwargs.synthesis_kwargs.pe == 'mspe' and kwargs.synthesis_kwargs.pe_resize == (0.5, 2.0)
    G = dnnlib.util.construct_class_by_name(**kwargs, c_dim=0, img_resolution=16, img_channels=3)
    assert G.synthesis.pe == 'mspe' and G.synthesis.pe_resize == (0.5, 2.0)
    untouched = host_G_kwargs()
    assert register.configure_generator(untouched, None) == host_G_kwargs()
    assert register.run_desc_suffix('mspe', (0.5, 2.0)) == '-mspe-rs0.5-2' and register.run_desc_suffix(None) == ''

@pytest.mark.parametrize('text', ['2', 'a,b', '2,1', '0,1', '-1,2'])
def test_bad_pe_resize_is_one_sentence(text):
    with pytest.raises(click.BadParameter, match='--pe-resize'):
        register.parse_pe_resize(text)

def test_pe_resize_without_encoding_and_unknown_pe_are_refused():
    with pytest.raises(click.BadParameter, match='needs a positional encoding'):
        register.configure_generator(host_G_kwargs(), None, (0.5, 2.0))
    with pytest.raises(click.BadParameter, match='--pe must be one of'):
        register.configure_generator(host_G_kwargs(), 'fourier')

def test_canvas_flags_build_canvases():
    assert register.canvas_from_options() is None
    c = register.canvas_from_options(shift='1.5,-2', zoom=1.5, size='24x40', wrap=True)
    assert c == Canvas(origin=(1.5, -2.0), size=(24, 40), zoom=1.5, wrap=True)
    e = register.canvas_from_options(extent='0:32,-16:48')
    assert e.origin == (0.0, -16.0) and e.size == (32, 64)
    assert register.synthesis_kwargs(None) == {} and register.synthesis_kwargs(c) == {'canvas': c}
    for bad in [dict(size='0x5'), dict(zoom=-1.0), dict(shift='nan,0'), dict(shift='1'), dict(size='ax3'),
                dict(extent='0:32'), dict(extent='0:32,-16:48', shift='1,1')]:
        with pytest.raises(click.BadParameter):
            register.canvas_from_options(**bad)

def test_plain_host_generator_gains_canvas_support_with_identical_output():
    torch.manual_seed(0)
    G = host_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16)).eval()
    canvas_G = register.with_canvas_support(G)
    assert canvas_G is not G and canvas_G.synthesis.pe == 'none'
    z = torch.randn([2, 8])
    assert torch.allclose(G(z, None, noise_mode='const'), canvas_G(z, None, noise_mode='const'), atol=1e-6)
    assert canvas_G(z, None, canvas=Canvas(size=(16, 32))).shape == (2, 3, 16, 32)
    assert register.with_canvas_support(canvas_G) is canvas_G
    with pytest.raises(click.ClickException, match='no canvas support'):
        register.check_canvas_support(G, Canvas(zoom=2))

def test_min_period_flags_reach_the_generator_and_the_run_name():
    kwargs = register.configure_generator(host_G_kwargs(), 'mspe', None, pe_min_period=16, pe_min_period_res=8)
    assert kwargs.synthesis_kwargs.pe_min_period == 16.0 and kwargs.synthesis_kwargs.pe_min_period_res == 8
    G = dnnlib.util.construct_class_by_name(**kwargs, c_dim=0, img_resolution=16, img_channels=3)
    keeps = sorted(int(name[len('pe_keep'):]) for name, _ in G.synthesis.named_buffers() if name.startswith('pe_keep'))
    assert keeps == [8, 16]
    assert register.run_desc_suffix('mspe', None, pe_min_period=32.0, pe_min_period_res=16) == '-mspe-minp32r16'
    with pytest.raises(click.BadParameter, match='give --pe-min-period'):
        register.configure_generator(host_G_kwargs(), 'mspe', None, pe_min_period_res=16)
    with pytest.raises(click.BadParameter, match='needs a positional encoding'):
        register.configure_generator(host_G_kwargs(), None, None, pe_min_period=16)

