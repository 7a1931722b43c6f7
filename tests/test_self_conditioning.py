"""training/self_conditioning.py and self_condition.py: a G trained on cluster labels, used as an unconditional one."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import HOST
from test_train import make_digits_zip

import legacy  # noqa: E402  (host on sys.path through conftest)

def tiny_conditional(c_dim=10, seed=0):
    from training.networks import Generator
    from torch_utils import persistence
    torch.manual_seed(seed)
    G = persistence.persistent_class(Generator)(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=8, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    return G.eval().requires_grad_(False)

def test_every_latent_draws_a_label_at_its_prior_frequency_and_renders_as_the_conditional_g():
    from training.self_conditioning import self_conditioned
    G = tiny_conditional(c_dim=4)
    prior = [0.5, 0.0, 0.3, 0.2]
    U = self_conditioned(G, prior)
    assert (U.z_dim, U.c_dim, U.label_dim, U.num_ws) == (G.z_dim + 1, 0, 4, G.num_ws)
    z = torch.from_numpy(np.random.RandomState(0).randn(20000, U.z_dim)).float()
    share = np.bincount(U.mapping.labels(z).numpy(), minlength=4) / len(z)
    assert np.allclose(share, prior, atol=0.015), share
    assert share[1] == 0                                    # a label the data never has is never drawn
    z = z[:6]
    c = torch.nn.functional.one_hot(U.mapping.labels(z), 4).float()
    expected = G(z[:, :-1], c, noise_mode='const')
    assert torch.equal(U(z, None, noise_mode='const'), expected)
    assert torch.equal(U(z, torch.zeros([6, 0]), noise_mode='const'), expected)
    # An explicit label of the inner width picks the cluster; w_avg is the trained G's.
    c2 = torch.nn.functional.one_hot(torch.full([6], 2), 4).float()
    assert torch.equal(U(z, c2, noise_mode='const'), G(z[:, :-1], c2, noise_mode='const'))
    assert torch.equal(U.mapping.w_avg, G.mapping.w_avg)

def test_unconditional_view_survives_pickles_and_weights_files(tmp_path):
    from training.self_conditioning import self_conditioned
    U = self_conditioned(tiny_conditional(), np.full(10, 0.1))
    z = torch.randn([3, U.z_dim])
    want = U(z, None, noise_mode='const')
    V = pickle.loads(pickle.dumps(U))
    assert torch.equal(V(z, None, noise_mode='const'), want)
    legacy.save_network_weights(str(tmp_path / 'u.pt'), dict(G_ema=U))
    W = legacy.load_network_weights(str(tmp_path / 'u.pt'))['G_ema']
    assert W.c_dim == 0 and torch.equal(W(z, None, noise_mode='const'), want)

def test_hostile_weights_file_cannot_make_the_wrapper_build_an_arbitrary_class(tmp_path, monkeypatch):
    from training.self_conditioning import self_conditioned
    U = self_conditioned(tiny_conditional(), np.full(10, 0.1))
    legacy.save_network_weights(str(tmp_path / 'u.pt'), dict(G_ema=U))
    payload = torch.load(str(tmp_path / 'u.pt'), weights_only=True)
    kwargs = json.loads(payload['networks']['G_ema']['init_kwargs'])
    kwargs['generator_class'] = 'os.system'
    payload['networks']['G_ema']['init_kwargs'] = json.dumps(kwargs)
    torch.save(payload, str(tmp_path / 'hostile.pt'))
    called = []
    monkeypatch.setattr(os, 'system', lambda *a, **k: called.append(a))
    with pytest.raises(legacy.NetworkLoadError, match='os.system'):
        legacy.load_network_weights(str(tmp_path / 'hostile.pt'))
    assert called == []

def test_self_condition_cli_writes_an_unconditional_pickle_that_generate_renders(tmp_path):
    data = make_digits_zip(tmp_path / 'digits8.zip', count=40, resolution=8, with_labels=True)
    G = tiny_conditional(c_dim=10)
    snap = tmp_path / 'network-snapshot-000004.pkl'
    with open(snap, 'wb') as f:
        pickle.dump(dict(G_ema=G, training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=data,
                                                             use_labels=True, max_size=40, xflip=False, resolution=8)), f)
    dest = tmp_path / 'uncond.pkl'
    result = subprocess.run([sys.executable, os.path.join(HOST, 'self_condition.py'), f'--network={snap}', f'--dest={dest}'],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with open(dest, 'rb') as f:
        out = legacy.load_network_pkl(f)
    assert out['G_ema'].c_dim == 0 and out['label_prior'] == pytest.approx([0.1] * 10)
    result = subprocess.run([sys.executable, os.path.join(HOST, 'generate.py'), f'--outdir={tmp_path / "out"}', '--seeds=0-1',
                             f'--network={dest}', '--device=cpu'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / 'out')) == ['seed0000.png', 'seed0001.png']
    # An unconditional snapshot is refused with one sentence.
    plain = tmp_path / 'plain.pkl'
    with open(plain, 'wb') as f:
        pickle.dump(dict(G_ema=tiny_conditional(c_dim=0)), f)
    result = subprocess.run([sys.executable, os.path.join(HOST, 'self_condition.py'), f'--network={plain}', f'--dest={tmp_path / "x.pkl"}'],
                            capture_output=True, text=True)
    assert result.returncode != 0 and 'holds no conditional G_ema' in result.stderr
    assert not os.path.exists(tmp_path / 'x.pkl')

def test_collect_digit_models_keeps_a_cluster_run_as_an_unconditional_model(tmp_path, monkeypatch):
    """train_digits.sh SELF_COND=1: the collected G_ema takes no label; models.json gives the line that trains it."""
    from scripts.experiments import collect_digit_models as cdm
    data = make_digits_zip(tmp_path / 'digits8.zip', count=40, resolution=8, with_labels=True)
    set_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True, max_size=40, xflip=False, resolution=8)
    run_dir = tmp_path / 'runs' / 'mspe' / '00000-digits8-cond-auto-kimg4-mspe'    # train.py's name: <id>-<data>-cond-<cfg>-...
    run_dir.mkdir(parents=True)
    (run_dir / 'training_options.json').write_text(json.dumps(dict(G_kwargs={}, batch_size=4, loss_kwargs={}, label_groups=True,
                                                                   label_groups_kimg=3, training_set_kwargs=set_kwargs)))
    G = tiny_conditional(c_dim=10)
    with open(run_dir / 'network-snapshot-000004.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=G, training_set_kwargs=set_kwargs, progress=dict(cur_nimg=4000)), f)
    cdm.main(['mspe'], runs_dir=str(tmp_path / 'runs'), out=str(tmp_path / 'models'), self_cond=True)
    with open(tmp_path / 'models' / 'mspe.pkl', 'rb') as f:
        out = legacy.load_network_pkl(f)
    assert out['G_ema'].c_dim == 0 and out['G_ema'].label_dim == 10 and len(out['label_prior']) == 10
    record = json.load(open(tmp_path / 'models' / 'models.json'))
    assert record['models']['mspe']['self_conditioned'] is True
    assert 'SELF_COND=1' in record['command'] and '--label-groups=1 --label-groups-kimg=3' in record['command']
    assert record['models']['mspe']['cfg'] == 'auto' and 'CFG=auto' in record['command']
    assert record['settings'].startswith('--cfg=auto ') and 'batch 4' in record['settings']
    assert 'unconditional' in record['settings'] and 'class-conditional on the MNIST labels' not in record['settings']
