"""SeFa (scripts/tools/sefa.py): closed-form directions of the style-modulation weights, and edits."""
import os
import subprocess
import sys

import numpy as np
import pickle
import pytest
import torch

from mspe_plugin import networks as pe_networks
from training import networks as host_networks

from conftest import ROOT
from scripts.tools import sefa

SEFA = [sys.executable, '-m', 'scripts.tools.sefa']    # run from the repository root

torch.set_num_threads(1)
W_DIM = 16

def make_G(pe='mspe', planted=None, seed=0):
    """A tiny random generator; `planted` (unit [w_dim]) adds a shared rank-1 component v_l u^T to
    every conv layer's style weights, the structure trained generators show (one direction of w
    that moves many style channels at once), so the strongest direction is known."""
    torch.manual_seed(seed)
    kwargs = dict(z_dim=W_DIM, c_dim=0, w_dim=W_DIM, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2))
    synthesis = dict(channel_base=256, channel_max=16)
    if pe is None:
        G = host_networks.Generator(**kwargs, synthesis_kwargs=synthesis)
    else:
        G = pe_networks.Generator(**kwargs, synthesis_kwargs=dict(synthesis, pe=pe))
    G = G.eval().requires_grad_(False)
    if planted is not None:
        for _, kind, affine in sefa.style_layers(G):
            if kind == 'conv':
                v = torch.randn(affine.weight.shape[0], 1)
                affine.weight.add_(3 * v * planted[None, :])
    return G

def unit(seed, dim=W_DIM):
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()

@pytest.mark.parametrize('pe', ['mspe', 'none', None])
@pytest.mark.parametrize('layers', ['all', '0-2', [1, 4]])
def test_sefa_directions_are_orthonormal(pe, layers):
    G = make_G(pe)
    directions, eigenvalues = sefa.sefa_directions(G, layers, k=5)
    assert directions.shape == (5, W_DIM) and eigenvalues.shape == (5,)
    assert torch.allclose(directions @ directions.T, torch.eye(5), atol=1e-5)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all() and (eigenvalues > 0).all()

def test_sefa_finds_planted_direction():
    u = unit(7)
    directions, eigenvalues = sefa.sefa_directions(make_G(planted=u), 'all', k=3)
    assert abs(float(directions[0] @ u)) > 0.95
    assert eigenvalues[0] > 2 * eigenvalues[1]

@pytest.mark.parametrize('pe', ['mspe', None])
def test_top_direction_changes_images_more_than_random_directions(pe):
    """Mean absolute pixel change over 8 latents for the same edit strength: the top SeFa direction
    changes images at least 15% more than a random unit direction does (mean over 10 of them)."""
    G = make_G(pe, planted=unit(7))
    top = sefa.sefa_directions(G, 'all', k=1)[0][0]
    ws = G.mapping(torch.randn([8, W_DIM], generator=torch.Generator().manual_seed(1)), None)
    base = G.synthesis(ws, noise_mode='const')
    def change(direction):
        return float((G.synthesis(sefa.edit_ws(ws, direction, 2.0), noise_mode='const') - base).abs().mean())
    random_changes = [change(unit(100 + i)) for i in range(10)]
    assert change(top) > 1.15 * np.mean(random_changes)

def test_edit_ws_moves_only_chosen_layers():
    ws = torch.randn([2, 6, W_DIM])
    direction = unit(3)
    edited = sefa.edit_ws(ws, direction, 1.5, layers='1-2,5')
    assert torch.equal(edited[:, [0, 3, 4]], ws[:, [0, 3, 4]])
    assert torch.allclose(edited[:, [1, 2, 5]] - ws[:, [1, 2, 5]], 1.5 * direction.expand(2, 3, -1), atol=1e-6)
    assert torch.equal(sefa.edit_ws(ws, direction, 0.0), ws)

def test_bad_layers_say_what_is_allowed():
    with pytest.raises(ValueError, match='0..5'):
        sefa.parse_layers('3-9', 6)
    with pytest.raises(ValueError, match='indices and ranges'):
        sefa.parse_layers('upper', 6)

def test_sefa_cli_writes_strips_for_seeds_and_projected_latent(tmp_path):
    G = make_G(planted=unit(7))
    pkl = tmp_path / 'G.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G_ema=G), f)
    np.savez(tmp_path / 'projected_w.npz', w=G.mapping(torch.randn([1, W_DIM]), None).numpy(),
             canvas_origin=np.array([1.5, -2.0]), canvas_size=np.array([16, 24]), canvas_zoom=np.float64(1.0), canvas_wrap=np.bool_(False))
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(SEFA + ['--network', str(pkl), '--seeds', '0-1', '--k', '3',
                             '--strengths', '-2,0,2', '--outdir', str(tmp_path / 'seeds')], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    import PIL.Image
    strip = PIL.Image.open(tmp_path / 'seeds' / 'sefa-seed0000.png')
    assert strip.size == (3 * 16, 3 * 16)
    assert np.load(tmp_path / 'seeds' / 'directions.npz')['directions'].shape == (3, W_DIM)
    result = subprocess.run(SEFA + ['--network', str(pkl), '--projected-w', str(tmp_path / 'projected_w.npz'),
                             '--k', '2', '--strengths', '-1,1', '--outdir', str(tmp_path / 'proj')], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert PIL.Image.open(tmp_path / 'proj' / 'sefa-projected.png').size == (2 * 24, 2 * 16)   # on the saved canvas

def test_sefa_cli_refuses_bad_layers_and_missing_network(tmp_path):
    pkl = tmp_path / 'G.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G_ema=make_G()), f)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    for args, words in [(['--network', str(tmp_path / 'missing.pkl')], 'does not exist'),
                        (['--network', str(pkl), '--layers', '2-99'], 'Layer indices must lie in')]:
        result = subprocess.run(SEFA + [*args, '--outdir', str(tmp_path / 'out')], capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode != 0 and 'Traceback' not in result.stderr
        assert words in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / 'out').exists()

def test_sefa_cli_edits_the_asked_class_of_a_conditional_network(tmp_path):
    """A class-conditional network needs --class (one sentence otherwise); different classes give
    different strips of the same seed."""
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=W_DIM, c_dim=3, w_dim=W_DIM, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=256, channel_max=16, pe='mspe')).eval().requires_grad_(False)
    pkl = tmp_path / 'G.pkl'
    with open(pkl, 'wb') as f:
        pickle.dump(dict(G_ema=G), f)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    common = SEFA + ['--network', str(pkl), '--seeds', '0', '--k', '2', '--strengths', '-1,1']
    missing = subprocess.run(common + ['--outdir', str(tmp_path / 'none')], capture_output=True, text=True, env=env, cwd=ROOT)
    assert missing.returncode != 0 and 'Traceback' not in missing.stderr
    assert 'pass --class=N' in missing.stderr.strip().splitlines()[-1]
    import PIL.Image
    strips = []
    for cls in (0, 2):
        result = subprocess.run(common + ['--class', str(cls), '--outdir', str(tmp_path / f'c{cls}')], capture_output=True, text=True, env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        strips.append(np.asarray(PIL.Image.open(tmp_path / f'c{cls}' / 'sefa-seed0000.png')))
    assert strips[0].shape == strips[1].shape and not np.array_equal(strips[0], strips[1])
