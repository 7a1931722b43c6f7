"""Training on CPU: tiny runs of train.py that write loadable snapshots, survive SIGKILL, train in
two gloo processes, stop cleanly on NaN, adapt ADA's p; the loss terms (upstream's and the label
cross-entropy recipe); train.py's bad flags."""

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import pytest
import torch
from click.testing import CliRunner

from conftest import HOST
from training.loss import StyleGAN2Loss

TRAIN = os.path.join(HOST, 'train.py')
TINY = ['--cfg=cpu', '--metrics=none', '--batch=16', '--tick=0.032', '--snap=1', '--workers=0']

#----------------------------------------------------------------------------
# Helpers.

def make_digits_zip(path, count=32, resolution=16, with_labels=False):
    """A dataset zip of `count` coloured digits (PNG, RGB) with optional dataset.json labels."""
    rnd = np.random.RandomState(0)
    font = PIL.ImageFont.load_default()
    labels = []
    with zipfile.ZipFile(path, 'w') as zf:
        for idx in range(count):
            img = PIL.Image.new('RGB', (resolution, resolution), (0, 0, 0))
            color = tuple(int(v) for v in rnd.randint(96, 256, size=3))
            PIL.ImageDraw.Draw(img).text((int(rnd.randint(0, 6)), int(rnd.randint(-2, 3))), str(idx % 10), fill=color, font=font)
            buf = io.BytesIO()
            img.save(buf, format='png')
            name = f'00000/img{idx:08d}.png'
            zf.writestr(name, buf.getvalue())
            labels.append([name, idx % 10])
        if with_labels:
            zf.writestr('dataset.json', json.dumps({'labels': labels}))
    return str(path)

@pytest.fixture(scope='module')
def digits_zip(tmp_path_factory):
    return make_digits_zip(tmp_path_factory.mktemp('data') / 'digits16.zip')

# One thread per process: on a shared 2-core machine, OpenMP threads of a busy torch spin and
# wait for each other, which made these tiny runs up to 10x slower.
ENV_ONE_THREAD = dict(os.environ, OMP_NUM_THREADS='1')

def train_cmd(outdir, *flags):
    return [sys.executable, TRAIN, f'--outdir={outdir}', *flags]

def run_train(outdir, *flags, env=None, timeout=240):
    """Run train.py to completion; returns the CompletedProcess (text output)."""
    full_env = dict(ENV_ONE_THREAD, **(env or {}))
    return subprocess.run(train_cmd(outdir, *flags), capture_output=True, text=True, env=full_env, timeout=timeout)

def only_run_dir(outdir):
    runs = sorted(name for name in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, name)))
    assert len(runs) == 1, runs
    return os.path.join(outdir, runs[0])

def snapshots(run_dir):
    """Snapshot paths, oldest first."""
    names = [name for name in os.listdir(run_dir) if name.startswith('network-snapshot-') and name.endswith('.pkl')]
    return [os.path.join(run_dir, name) for name in sorted(names, key=lambda n: float(n[len('network-snapshot-'):-4]))]

def read_stats(run_dir):
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]

def load_snapshot(path):
    import legacy
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

def assert_generates(G, resolution=16):
    z = torch.randn([2, G.z_dim])
    c = torch.zeros([2, G.c_dim])
    img = G(z, c, noise_mode='const')
    assert img.shape == (2, 3, resolution, resolution)
    assert torch.isfinite(img).all()

def assert_one_sentence_error(output):
    assert 'Traceback' not in output, output
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1, output
    return errors[0]

#----------------------------------------------------------------------------
# Tiny runs.

def test_tiny_run_writes_snapshot_that_loads_and_generates(digits_zip, tmp_path):
    result = run_train(tmp_path, f'--data={digits_zip}', *TINY, '--kimg=0.06', '--aug=noaug')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    for name in ['training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'fakes_init.png']:
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert 'tick 1' in open(os.path.join(run_dir, 'log.txt')).read()
    data = load_snapshot(snapshots(run_dir)[-1])
    assert {'G', 'D', 'G_ema', 'training_set_kwargs'} <= set(data)
    assert data['progress']['cur_nimg'] >= 60
    assert_generates(data['G_ema'])
    stats = read_stats(run_dir)
    assert all(math.isfinite(s['Loss/G/loss']['mean']) and math.isfinite(s['Loss/D/loss']['mean']) for s in stats)

def test_killed_run_resumes_from_last_snapshot_with_kimg_continuing(digits_zip, tmp_path):
    log_path = tmp_path / 'first.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(train_cmd(tmp_path / 'runs', f'--data={digits_zip}', *TINY, '--kimg=20', '--aug=noaug'),
                                stdout=log, stderr=subprocess.STDOUT, env=ENV_ONE_THREAD)
        try:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None:
                runs = os.listdir(tmp_path / 'runs') if os.path.isdir(tmp_path / 'runs') else []
                # Kill after the second snapshot and its stats line (a kill between the two would
                # lose that tick's line, a gap the tick check below would report).
                stats_path = os.path.join(tmp_path / 'runs', runs[0], 'stats.jsonl') if runs else None
                if runs and len(snapshots(os.path.join(tmp_path / 'runs', runs[0]))) >= 2 and \
                        os.path.isfile(stats_path) and len(open(stats_path).read().splitlines()) >= 2:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, open(log_path).read()[-3000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    run_dir = only_run_dir(tmp_path / 'runs')
    progress = load_snapshot(snapshots(run_dir)[-1])['progress']
    resumed_kimg = progress['cur_nimg'] / 1000

    target_kimg = resumed_kimg + 0.08
    result = run_train(tmp_path / 'runs', f'--resume-run={run_dir}', f'--kimg={target_kimg}')
    assert result.returncode == 0, result.stderr[-3000:]
    assert only_run_dir(tmp_path / 'runs') == run_dir    # continued in place, no new run folder
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert f'at kimg {resumed_kimg:g}' in log
    assert 'Adam moments start from zero' not in log    # optimizer state came back too

    stats = read_stats(run_dir)
    kimgs = [s['Progress/kimg']['mean'] for s in stats]
    ticks = [s['Progress/tick']['mean'] for s in stats]
    assert all(b > a for a, b in zip(kimgs, kimgs[1:])), kimgs
    assert all(b == a + 1 for a, b in zip(ticks, ticks[1:])), ticks
    after = [s for s in stats if s['Progress/kimg']['mean'] > resumed_kimg + 1e-6]
    assert after[0]['Progress/tick']['mean'] == progress['cur_tick'] + 1
    assert after[0]['Progress/kimg']['mean'] <= resumed_kimg + 0.032 + 0.016 + 1e-6
    final = load_snapshot(snapshots(run_dir)[-1])
    assert final['progress']['cur_nimg'] >= target_kimg * 1000
    assert_generates(final['G_ema'])

def test_two_gloo_processes_train_and_write_one_consistent_snapshot(digits_zip, tmp_path):
    result = run_train(tmp_path, f'--data={digits_zip}', *TINY, '--gpus=2', '--kimg=0.1', '--aug=noaug')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'Distributed training: 2 processes on cpu, backend gloo' in log
    assert len(read_stats(run_dir)) >= 3
    data = load_snapshot(snapshots(run_dir)[-1])    # written after misc.check_ddp_consistency passed on both ranks
    assert data['progress']['cur_nimg'] >= 100
    assert_generates(data['G_ema'])

class NaNAfterLoss(StyleGAN2Loss):
    """StyleGAN2Loss that fills one weight of G's mapping with NaN once `nan_kimg` thousand real
    images have passed through Dmain: a run that diverges mid-training (chosen by class_name)."""
    def __init__(self, nan_kimg, **kwargs):
        super().__init__(**kwargs)
        self.nan_nimg = nan_kimg * 1000
        self.seen = 0

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)
        if phase in ('Dmain', 'Dboth'):
            self.seen += real_img.shape[0]
            if self.seen >= self.nan_nimg:
                with torch.no_grad():
                    next(self.G_mapping.parameters()).fill_(float('nan'))

def test_nan_loss_stops_run_with_clear_message_and_keeps_last_good_snapshot(train_module, digits_zip, tmp_path, one_thread, monkeypatch):
    from torch_utils import training_stats
    from training import training_loop
    # The run's NaN statistics go to running sums of their own: in this process they would
    # otherwise stay in training_stats' sums and poison every later in-process run's statistics.
    monkeypatch.setattr(training_stats, '_counters', dict())
    args, _desc, _cfg = train_module.setup_training_loop_kwargs(gpus=1, snap=1, metrics=[], seed=0, data=digits_zip,
        cond=False, subset=None, mirror=False, cfg='cpu', gamma=None, kimg=1, batch=16, aug='noaug', p=None, target=None,
        augpipe=None, resume=None, freezed=None, fp32=False, nhwc=False, allow_tf32=False, nobench=False, workers=0, tick=0.032)
    args.loss_kwargs.class_name = 'test_train.NaNAfterLoss'
    args.loss_kwargs.nan_kimg = 0.05
    args.run_dir = str(tmp_path)
    with pytest.raises(training_loop.TrainingStopped) as stopped:
        training_loop.training_loop(rank=0, device=torch.device('cpu'), **args)
    message = str(stopped.value)
    assert 'diverged' in message and 'Loss/G/loss' in message and '\n' not in message.strip(), message
    snaps = snapshots(str(tmp_path))
    data = load_snapshot(snaps[-1])
    assert data['progress']['cur_nimg'] <= 50    # nothing written after the NaN appeared
    for name in ['G', 'D', 'G_ema']:
        assert all(torch.isfinite(t).all() for t in data[name].state_dict().values() if t.is_floating_point())
    assert_generates(data['G_ema'])

def test_ada_p_rises_when_discriminator_overfits(digits_zip, tmp_path):
    result = run_train(tmp_path, f'--data={digits_zip}', *TINY, '--kimg=0.2', '--aug=ada', '--target=0.01', '--subset=8')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    stats = read_stats(run_dir)
    assert stats[-1]['Progress/augment']['mean'] > 0
    assert np.mean([s['Loss/signs/real']['mean'] for s in stats]) > 0.01    # D calls the 8 reals real: it overfits
    data = load_snapshot(snapshots(run_dir)[-1])
    assert float(data['augment_pipe'].p) > 0
    assert data['progress']['augment_p'] == pytest.approx(float(data['augment_pipe'].p))

def test_mspe_config_trains_through_the_plugin_hook_resuming_a_baseline(digits_zip, tmp_path):
    pytest.importorskip('mspe_plugin.register')
    import pickle
    from training.networks import Discriminator, Generator
    # A baseline snapshot of the cpu preset's shapes (16 px): --resume copies every matching tensor.
    torch.manual_seed(123)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=2048, channel_max=128))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=2048, channel_max=128)
    baseline = tmp_path / 'baseline.pkl'
    with open(baseline, 'wb') as f:
        pickle.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs={}), f)

    result = run_train(tmp_path / 'runs', f'--data={digits_zip}', *TINY, '--kimg=0.04', '--aug=noaug', '--pe=mspe',
                       '--pe-resize=0.5,2', f'--resume={baseline}')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / 'runs')
    assert run_dir.endswith('-resumecustom-mspe-rs0.5-2')
    # The resume says what it could not take from the baseline: MS-PE's gammas are new.
    new_line = next(line for line in result.stdout.splitlines() if line.strip().startswith('new (kept as initialised):'))
    assert 'synthesis.pe_gamma8' in new_line and 'unused from the source: synthesis.b4.const' in result.stdout
    G_mspe = load_snapshot(snapshots(run_dir)[-1])['G_ema']
    assert getattr(G_mspe.synthesis, 'pe', None) == 'mspe'    # the plugin's generator, not the host's
    start = G.mapping.fc0.weight.detach().flatten()
    after = G_mspe.mapping.fc0.weight.detach().flatten()    # mapping lr is 1/100: it barely moves in 3 steps
    assert torch.corrcoef(torch.stack([start, after]))[0, 1] > 0.99
    assert_generates(G_mspe)

BLOCK_PLUGIN_AND_GENERATE = r"""
import sys
sys.modules['mspe_plugin'] = None          # `import mspe_plugin` now fails, as in a checkout without it
sys.path.insert(0, sys.argv[1])
import numpy as np, torch, legacy
with open(sys.argv[2], 'rb') as f:
    G = legacy.load_network_pkl(f)['G_ema']
z = torch.from_numpy(np.random.RandomState(5).randn(2, G.z_dim)).float()
np.save(sys.argv[3], G(z, torch.zeros([2, G.c_dim]), noise_mode='const').detach().numpy())
print(type(G.synthesis).__module__, G.synthesis.pe)
"""

def test_cfg_mspe_snapshot_generates_where_mspe_plugin_cannot_be_imported(digits_zip, tmp_path):
    pytest.importorskip('mspe_plugin.register')
    result = run_train(tmp_path / 'runs', f'--data={digits_zip}', '--cfg=mspe', '--cmax=32', '--metrics=none', '--batch=16',
                       '--tick=0.032', '--snap=1', '--kimg=0.032', '--aug=noaug')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / 'runs')
    assert '-auto-' in run_dir and run_dir.endswith('-mspe-rs0.75-1.5-m8')     # --cfg=mspe: auto plus the border recipe
    snapshot = snapshots(run_dir)[-1]
    out = tmp_path / 'images.npy'
    child = subprocess.run([sys.executable, '-c', BLOCK_PLUGIN_AND_GENERATE, HOST, snapshot, str(out)],
                           capture_output=True, text=True, env=ENV_ONE_THREAD, timeout=120, cwd=str(tmp_path))
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split()[-1] == 'mspe'
    G = load_snapshot(snapshot)['G_ema']
    z = torch.from_numpy(np.random.RandomState(5).randn(2, G.z_dim)).float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # as the child: a reduction split over other thread counts rounds differently
    try:
        expected = G(z, torch.zeros([2, G.c_dim]), noise_mode='const').detach().numpy()
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(np.load(out), expected), np.abs(np.load(out) - expected).max()

#----------------------------------------------------------------------------
# The loss.

class _LinearD(torch.nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so R1 = |w|^2 exactly."""
    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(shape))
    def forward(self, img, c):
        return (img * self.w).flatten(1).sum(1, keepdim=True)

def test_r1_penalty_is_squared_norm_of_input_gradient():
    from torch_utils import training_stats
    from training.loss import StyleGAN2Loss
    D = _LinearD([3, 8, 8])
    loss = StyleGAN2Loss(device=torch.device('cpu'), G_mapping=None, G_synthesis=None, D=D, r1_gamma=4)
    collector = training_stats.Collector(regex='Loss/r1_penalty')
    loss.accumulate_gradients('Dreg', real_img=torch.randn([4, 3, 8, 8]), real_c=torch.zeros([4, 0]),
                              gen_z=None, gen_c=None, sync=True, gain=1)
    collector.update()
    expected = float(D.w.detach().square().sum())
    assert collector.mean('Loss/r1_penalty') == pytest.approx(expected, rel=1e-4)
    # d/dw of gamma/2 * |w|^2 = gamma * w (the logits' own term has weight 0 in Dreg).
    assert torch.allclose(D.w.grad, 4 * D.w.detach(), rtol=1e-4)

def test_style_mixing_takes_later_layers_from_a_second_latent():
    from training.loss import StyleGAN2Loss
    from training.networks import Generator
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    loss = StyleGAN2Loss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=None, style_mixing_prob=1)
    z = torch.randn([4, 8])
    ws = G.mapping(z, None)
    mixed = loss._mix_styles(ws, z, None)
    same = (mixed == ws).all(dim=2).all(dim=0)    # [num_ws]
    cutoff = int(same.long().sum())
    assert 1 <= cutoff < G.num_ws
    assert same[:cutoff].all() and not same[cutoff:].any()

def test_label_ce_trains_d_to_rank_the_true_label_first_and_g_to_draw_the_label_asked():
    from torch_utils import training_stats
    from training.loss import StyleGAN2Loss
    from training.loss_labelce import LabelCELoss
    from training.networks import Discriminator, Generator
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=4, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=128, channel_max=8))
    D = Discriminator(c_dim=4, img_resolution=16, img_channels=3, channel_base=128, channel_max=8,
                      mapping_kwargs=dict(num_layers=1, lr_multiplier=1))
    c = torch.nn.functional.one_hot(torch.arange(8) % 4, 4).float()
    real = torch.randn([8, 3, 16, 16])
    def step(phase, weight, seed=1):
        G.zero_grad(set_to_none=True); D.zero_grad(set_to_none=True)
        kwargs = dict(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, style_mixing_prob=0, r1_gamma=0)
        loss = StyleGAN2Loss(**kwargs) if weight == 0 else LabelCELoss(**kwargs, label_ce_weight=weight)
        collector = training_stats.Collector(regex='Loss/.*')
        module = G if phase == 'Gmain' else D
        module.requires_grad_(True)
        torch.manual_seed(seed)
        loss.accumulate_gradients(phase, real_img=real, real_c=c, gen_z=torch.randn([8, 8]), gen_c=c, sync=True, gain=1)
        module.requires_grad_(False)
        collector.update()
        return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}, collector
    # D: the extra gradient is that of the mean cross-entropy of D's logits under every label on the reals.
    plain, stats = step('Dmain', 0)
    assert stats.num('Loss/D/label_ce') == 0
    with_ce, stats = step('Dmain', 3)
    assert stats.num('Loss/D/label_ce') == 8
    D.requires_grad_(True)
    target = c.argmax(1)
    ce = 3 * torch.nn.functional.cross_entropy(D(real, None, all_labels=True), target)
    expected = dict(zip([n for n, _ in D.named_parameters()], torch.autograd.grad(ce, list(D.parameters()), allow_unused=True)))
    D.requires_grad_(False)
    for name, g in with_ce.items():
        want = expected[name] if expected[name] is not None else torch.zeros_like(g)
        assert torch.allclose(g - plain.get(name, torch.zeros_like(g)), want, atol=1e-5), name
    # G: with the term, G's gradient changes; its logged cross-entropy is that of its fakes for the asked labels.
    plain, _ = step('Gmain', 0)
    with_ce, stats = step('Gmain', 3)
    assert stats.num('Loss/G/label_ce') == 8
    assert any(not torch.allclose(plain[n], with_ce[n]) for n in plain)

#----------------------------------------------------------------------------
# train.py flags.

@pytest.fixture(scope='module')
def train_module():
    import train
    return train

def invoke(train_module, args):
    return CliRunner().invoke(train_module.main, args)

BAD_FLAGS = {
    'missing_data':       ([], '--data is missing'),
    'gpus_not_power_2':   (['--gpus=3'], '--gpus must be a power of two'),
    'batch_not_divisible': (['--gpus=2', '--batch=15'], '--batch must be a positive multiple of --gpus=2'),
    'unknown_aug':        (['--aug=magic'], '--aug must be ada, noaug or fixed'),
    'unknown_augpipe':    (['--augpipe=nope'], '--augpipe must be one of'),
    'p_without_fixed':    (['--p=0.5'], '--p can only be given with --aug=fixed'),
    'unknown_cfg':        (['--cfg=huge'], '--cfg must be one of'),
    'cond_without_labels': (['--cond=1'], 'label'),
    'missing_dataset':    (['--data=/nonexistent/data.zip'], '--data'),
    'tiny_cmax':          (['--cmax=2'], '--cmax must be at least 4'),
    'zero_glr':           (['--glr=0'], '--glr must be positive'),
    'no_mapping':         (['--map=0'], '--map must be at least 1'),
    'dmap_without_cond':  (['--dmap=2'], '--dmap sets the label mapping of a conditional discriminator'),
    'label_ce_without_cond': (['--label-ce=1'], '--label-ce classifies images by their label, so it needs --cond=1'),
    'dmap_lr_without_cond': (['--dmap-lr=1'], "--dmap-lr sets the label mapping's learning rate of a conditional discriminator"),
}

@pytest.mark.parametrize('case', sorted(BAD_FLAGS))
def test_bad_flag_ends_in_one_sentence_and_creates_nothing(train_module, digits_zip, tmp_path, case):
    flags, expected = BAD_FLAGS[case]
    outdir = tmp_path / 'runs'
    if case != 'missing_data' and not any(f.startswith('--data') for f in flags):
        flags = [f'--data={digits_zip}'] + flags
    result = invoke(train_module, [f'--outdir={outdir}', '--metrics=none'] + flags)
    assert result.exit_code != 0
    message = assert_one_sentence_error(result.output)
    assert expected in message, message
    assert not outdir.exists()

def test_plugin_flags_without_plugin_say_how_to_install(train_module, digits_zip, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, 'load_plugin', lambda: None)
    result = invoke(train_module, [f'--outdir={tmp_path}', f'--data={digits_zip}', '--cfg=mspe'])
    assert result.exit_code != 0
    assert 'needs the mspe plugin: pip install -e' in assert_one_sentence_error(result.output)

def test_dry_run_prints_options_and_writes_nothing(train_module, digits_zip, tmp_path):
    outdir = tmp_path / 'runs'
    result = invoke(train_module, [f'--outdir={outdir}', f'--data={digits_zip}', '--cfg=cpu', '--metrics=none', '--dry-run'])
    assert result.exit_code == 0, result.output
    assert 'Dry run; exiting.' in result.output and '"r1_gamma"' in result.output
    assert not outdir.exists()

def _dry_run_options(train_module, digits_zip, tmp_path, *flags):
    result = invoke(train_module, [f'--outdir={tmp_path}', f'--data={digits_zip}', '--metrics=none', '--dry-run', *flags])
    assert result.exit_code == 0, result.output
    text = result.output.split('Training options:', 1)[1]
    return json.loads(text[:text.index('\nOutput directory:')])

def test_batch_overrides_the_minibatch_and_keeps_the_presets_ema(train_module, digits_zip, tmp_path):
    """As upstream: --batch sets the minibatch (and the per-process batch); G_ema's half-life stays
    the preset's (auto at 32 px: minibatch 32, ema 10 kimg)."""
    preset = _dry_run_options(train_module, digits_zip, tmp_path, '--cfg=auto')
    small = _dry_run_options(train_module, digits_zip, tmp_path, '--cfg=auto', '--batch=8')
    assert (preset['batch_size'], small['batch_size'], small['batch_gpu']) == (32, 8, 8)
    assert small['ema_kimg'] == preset['ema_kimg'] == 10

def test_random_canvases_switch_cudnn_benchmarking_off(train_module, digits_zip, tmp_path):
    # cuDNN benchmarks each new convolution shape; a canvas of another size every step would make it
    # benchmark all the time (on CUDA; the flag does nothing on CPU).
    for flags in (['--cfg=mspe'], ['--cfg=auto', '--pe=mspe', '--pe-resize=0.75,1.5'], ['--cfg=auto', '--pe=mspe', '--pe-margin=4']):
        assert _dry_run_options(train_module, digits_zip, tmp_path, *flags)['cudnn_benchmark'] is False, flags
    for flags in (['--cfg=auto'], ['--cfg=auto', '--pe=mspe'], ['--cfg=mspe', '--pe-resize=off', '--pe-margin=0']):
        assert _dry_run_options(train_module, digits_zip, tmp_path, *flags).get('cudnn_benchmark', True) is True, flags

def test_cbase_and_cmax_set_the_channel_counts_of_g_and_d(train_module, digits_zip):
    args, desc, _cfg = train_module.setup_training_loop_kwargs(gpus=1, snap=1, metrics=[], seed=0, data=digits_zip,
        cond=False, subset=None, mirror=False, cfg='cpu', gamma=None, kimg=None, batch=None, aug='noaug', p=None,
        target=None, augpipe=None, resume=None, freezed=None, fp32=False, nhwc=False, allow_tf32=False, nobench=False,
        workers=0, tick=None, cbase=1024, cmax=32)
    assert '-cbase1024-cmax32' in desc
    for kwargs in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
        assert (kwargs.channel_base, kwargs.channel_max) == (1024, 32)
    G = train_module.dnnlib.util.construct_class_by_name(**args.G_kwargs, c_dim=0, img_resolution=16, img_channels=3)
    assert {getattr(G.synthesis, f'b{res}').conv1.weight.shape[0] for res in (4, 8, 16)} == {32}

def test_glr_dlr_and_map_reach_the_optimizers_and_the_mapping_network(train_module, digits_zip):
    args, desc, _cfg = train_module.setup_training_loop_kwargs(gpus=1, snap=1, metrics=[], seed=0, data=digits_zip,
        cond=False, subset=None, mirror=False, cfg='cpu', gamma=None, kimg=None, batch=None, aug='noaug', p=None,
        target=None, augpipe=None, resume=None, freezed=None, fp32=False, nhwc=False, allow_tf32=False, nobench=False,
        workers=0, tick=None, glr=0.001, dlr=0.0005, map=8)
    assert '-glr0.001-dlr0.0005-map8' in desc
    assert (args.G_opt_kwargs.lr, args.D_opt_kwargs.lr) == (0.001, 0.0005)
    G = train_module.dnnlib.util.construct_class_by_name(**args.G_kwargs, c_dim=0, img_resolution=16, img_channels=3)
    assert G.mapping.num_layers == 8 and hasattr(G.mapping, 'fc7')

def conditional_flags(tmp_path):
    """setup_training_loop_kwargs arguments of a conditional cpu run on a labelled digits zip."""
    labelled = make_digits_zip(tmp_path / 'labelled.zip', with_labels=True)
    return dict(gpus=1, snap=1, metrics=[], seed=0, data=labelled, cond=True, subset=None, mirror=False, cfg='cpu',
                gamma=None, kimg=None, batch=None, aug='noaug', p=None, target=None, augpipe=None, resume=None,
                freezed=None, fp32=False, nhwc=False, allow_tf32=False, nobench=False, workers=0, tick=None)

def test_label_ce_selects_its_own_loss_class_and_upstreams_stays_the_default(train_module, tmp_path):
    common = conditional_flags(tmp_path)
    args, desc, _cfg = train_module.setup_training_loop_kwargs(**common, label_ce=2)
    assert '-labelce2' in desc and args.loss_kwargs.label_ce_weight == 2
    assert args.loss_kwargs.class_name == 'training.loss_labelce.LabelCELoss'
    args, desc, _cfg = train_module.setup_training_loop_kwargs(**common)
    assert 'labelce' not in desc and 'label_ce_weight' not in args.loss_kwargs
    assert args.loss_kwargs.class_name == 'training.loss.StyleGAN2Loss'

def test_resume_run_moves_an_old_label_ce_run_to_its_loss_class_and_refuses_removed_terms(train_module, tmp_path):
    """training_options.json of runs from before loss_labelce.py named label_ce_weight as a
    StyleGAN2Loss argument; --resume-run continues them with LabelCELoss, and refuses in one
    sentence a run that used a removed term."""
    options = dict(loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss', r1_gamma=0.01, label_ce_weight=10,
                                    div_weight=0, mismatch_weight=0), D_kwargs=dict(mapping_kwargs=dict(num_layers=1)), total_kimg=8)
    (tmp_path / 'training_options.json').write_text(json.dumps(options))
    args, snapshot, _kimg = train_module.setup_resume_run(str(tmp_path), None)
    assert snapshot is None and args.loss_kwargs == dict(class_name='training.loss_labelce.LabelCELoss', r1_gamma=0.01, label_ce_weight=10)
    options['D_kwargs']['pack'] = 2
    options['loss_kwargs']['div_weight'] = 1
    (tmp_path / 'training_options.json').write_text(json.dumps(options))
    with pytest.raises(train_module.click.ClickException, match='trained with --div, --pack, which this version no longer has'):
        train_module.setup_resume_run(str(tmp_path), None)

def test_resume_run_keeps_a_translated_label_ce_loss(train_module, tmp_path):
    """--pe-translate wraps LabelCELoss in TranslatedRealsLoss, which passes label_ce_weight on:
    --resume-run must keep that wrapper as it is (it once rewrote it into a LabelCELoss that then
    refused the `translate` argument)."""
    loss_kwargs = dict(class_name='mspe_plugin.translate.TranslatedRealsLoss', translate=16,
                       inner_class_name='training.loss_labelce.LabelCELoss', r1_gamma=0.01, label_ce_weight=10.0)
    options = dict(loss_kwargs=loss_kwargs, D_kwargs=dict(mapping_kwargs=dict(num_layers=1)), total_kimg=8)
    (tmp_path / 'training_options.json').write_text(json.dumps(options))
    args, _snapshot, _kimg = train_module.setup_resume_run(str(tmp_path), None)
    assert args.loss_kwargs == loss_kwargs
    G = train_module.dnnlib.util.construct_class_by_name(class_name='training.networks.Generator', z_dim=8, w_dim=8,
        c_dim=10, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    D = train_module.dnnlib.util.construct_class_by_name(class_name='training.networks.Discriminator', c_dim=10,
        img_resolution=8, img_channels=3, channel_base=64, channel_max=8, mapping_kwargs=dict(num_layers=1))
    loss = train_module.dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G_mapping=G.mapping,
        G_synthesis=G.synthesis, D=D, **args.loss_kwargs)
    assert loss.translate == 16 and type(loss.inner).__name__ == 'LabelCELoss' and loss.inner.label_ce_weight == 10.0

def test_pe_outside_trains_in_two_processes_with_the_ranks_in_step(digits_zip, tmp_path):
    """--pe-outside adds a second generator backward per step; run without DDP's sync before the
    host loss's synced one, so the two CPU processes' networks stay equal (the training loop checks
    that at every snapshot) and the penalty reaches stats.jsonl."""
    result = run_train(tmp_path, f'--data={digits_zip}', *TINY, '--kimg=0.064', '--aug=noaug', '--cmax=16',
                       '--pe=mspe', '--pe-margin=4', '--pe-outside=30', '--gpus=2', timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert run_dir.endswith('-mspe-m4-out30') and len(snapshots(run_dir)) >= 2
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        rows = [json.loads(line) for line in f]
    assert all(row['Loss/G/outside']['num'] > 0 and math.isfinite(row['Loss/G/outside']['mean']) for row in rows)

def test_pe_outside_joins_a_continuing_run_from_its_snapshot(digits_zip, tmp_path):
    """--resume-run=DIR --pe-outside=W adds the penalty to a run from its newest snapshot on (how the
    committed digit default was made): training_options.json keeps it, log.txt says so, and only
    the ticks after the snapshot report it."""
    first = run_train(tmp_path, f'--data={digits_zip}', *TINY, '--kimg=0.032', '--aug=noaug', '--cmax=16', '--pe=mspe', '--pe-margin=4')
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    resumed = run_train(tmp_path, f'--resume-run={run_dir}', '--kimg=0.08', '--pe-outside=30')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    assert options['loss_kwargs']['class_name'] == 'mspe_plugin.outside.PlainOutsideLoss'
    assert options['loss_kwargs']['outside_weight'] == 30 and options['loss_kwargs']['wrapped_class_name'] == 'training.loss.StyleGAN2Loss'
    assert 'plain-outside penalty weight 0 -> 30 from here on' in open(os.path.join(run_dir, 'log.txt')).read()
    rows = read_stats(run_dir)
    before = [r for r in rows if r['Progress/kimg']['mean'] <= 0.032 + 1e-6]
    after = [r for r in rows if r['Progress/kimg']['mean'] > 0.032 + 1e-6]
    assert before and after
    assert all('Loss/G/outside' not in r for r in before)
    assert all(r['Loss/G/outside']['num'] > 0 and math.isfinite(r['Loss/G/outside']['mean']) for r in after)

def test_set_outside_penalty_wraps_reweights_and_unwraps_a_saved_loss():
    from mspe_plugin import register
    G_kwargs = dict(class_name=register.GENERATOR_CLASS)
    original = dict(class_name='training.loss_labelce.LabelCELoss', r1_gamma=0.01, label_ce_weight=10.0)
    loss_kwargs = dict(original)
    assert register.set_outside_penalty(G_kwargs, loss_kwargs, 30) == 0
    assert loss_kwargs == dict(original, class_name='mspe_plugin.outside.PlainOutsideLoss', outside_weight=30.0,
                               wrapped_class_name='training.loss_labelce.LabelCELoss')
    assert register.set_outside_penalty(G_kwargs, loss_kwargs, 5) == 30 and loss_kwargs['outside_weight'] == 5
    assert register.set_outside_penalty(G_kwargs, loss_kwargs, 0) == 5 and loss_kwargs == original
    with pytest.raises(ValueError, match='has no canvas for'):
        register.set_outside_penalty(dict(class_name='training.networks.Generator'), dict(original), 30)

def test_pe_outside_on_resume_refuses_a_generator_without_canvases(train_module, tmp_path):
    options = dict(num_gpus=1, total_kimg=1, training_set_kwargs=dict(path='data.zip', max_size=8, resolution=16, use_labels=False, xflip=False),
                   data_loader_kwargs=dict(num_workers=0), G_kwargs=dict(class_name='training.networks.Generator'),
                   loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss'))
    (tmp_path / '00000-host').mkdir()
    (tmp_path / '00000-host' / 'training_options.json').write_text(json.dumps(options))
    result = invoke(train_module, [f'--resume-run={tmp_path / "00000-host"}', '--pe-outside=30', '--dry-run'])
    assert result.exit_code != 0
    assert 'has no canvas for' in assert_one_sentence_error(result.output)

def test_dmap_sets_the_depth_of_the_conditional_discriminators_label_mapping(train_module, tmp_path):
    common = conditional_flags(tmp_path)
    args, desc, _cfg = train_module.setup_training_loop_kwargs(**common, dmap=1, dmap_lr=1)
    assert desc.endswith('-dmap1-dmaplr1') or '-dmap1-dmaplr1-' in desc
    D = train_module.dnnlib.util.construct_class_by_name(**args.D_kwargs, c_dim=10, img_resolution=16, img_channels=3)
    assert D.mapping.fc0.weight_gain == pytest.approx(1 / np.sqrt(D.mapping.fc0.in_features))    # lr multiplier 1
    args, desc, _cfg = train_module.setup_training_loop_kwargs(**common, dmap=1)
    assert desc.endswith('-dmap1') or '-dmap1-' in desc
    D = train_module.dnnlib.util.construct_class_by_name(**args.D_kwargs, c_dim=10, img_resolution=16, img_channels=3)
    assert D.mapping.num_layers == 1 and not hasattr(D.mapping, 'fc1')
    default, _, _ = train_module.setup_training_loop_kwargs(**common)
    D = train_module.dnnlib.util.construct_class_by_name(**default.D_kwargs, c_dim=10, img_resolution=16, img_channels=3)
    assert D.mapping.num_layers == 8     # upstream's depth when --dmap is not given
    with pytest.raises(train_module.click.ClickException, match='--dmap must be at least 1'):
        train_module.setup_training_loop_kwargs(**common, dmap=0)

def test_resume_run_refuses_flags_that_would_change_the_run(train_module, digits_zip, tmp_path):
    run_dir = tmp_path / '00000-fake'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text('{}')
    result = invoke(train_module, [f'--resume-run={run_dir}', '--gamma=5'])
    assert result.exit_code != 0
    assert 'drop --gamma' in assert_one_sentence_error(result.output)
    result = invoke(train_module, [f'--resume-run={tmp_path / "nothing"}'])
    assert 'is not a run folder' in assert_one_sentence_error(result.output)

def test_resume_run_latest_picks_the_highest_numbered_run(train_module, tmp_path):
    options = dict(num_gpus=1, total_kimg=1, training_set_kwargs=dict(path='data.zip', max_size=8, resolution=16, use_labels=False, xflip=False),
                   data_loader_kwargs=dict(num_workers=0))
    for name in ['00000-old', '00002-new', '00001-middle']:
        (tmp_path / name).mkdir()
        (tmp_path / name / 'training_options.json').write_text(json.dumps(options))
    result = invoke(train_module, [f'--outdir={tmp_path}', '--resume-run=latest', '--dry-run'])
    assert result.exit_code == 0, result.output
    assert f'Output directory:   {tmp_path / "00002-new"}' in result.output

#----------------------------------------------------------------------------
# Metrics after snapshots (in-process, with a tiny stand-in for the Inception detector).

class _ColourStatsDetector(torch.nn.Module):
    """uint8 [N, C, H, W] -> float32 [N, 6]: per-channel mean and std (a cheap FID feature)."""
    def forward(self, img, **_kwargs):
        img = img.to(torch.float32) / 255
        return torch.cat([img.mean(dim=[2, 3]), img.std(dim=[2, 3])], dim=1)

@pytest.fixture
def one_thread():
    """torch on one thread for an in-process run (see ENV_ONE_THREAD), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

def test_metrics_run_after_each_snapshot_and_are_logged(digits_zip, tmp_path, monkeypatch, one_thread):
    import dnnlib
    from metrics import feature_detectors, metric_utils
    from training import training_loop
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))    # keep the test's statistics out of the real cache
    monkeypatch.setattr(metric_utils, '_feature_detector_cache', {})
    monkeypatch.setattr(feature_detectors, '_load_default', lambda verbose: _ColourStatsDetector())
    from metrics import metric_main    # a 64-image FID: the same code path as fid2k_full, CPU-test sized
    monkeypatch.setitem(metric_main._metric_dict, 'fid64_full', lambda opts: dict(fid64_full=metric_main._fid_full(opts, 64)))
    E = dnnlib.EasyDict
    training_loop.training_loop(run_dir=str(tmp_path), metrics=['fid64_full'], device=torch.device('cpu'),
        training_set_kwargs=E(class_name='training.dataset.ImageFolderDataset', path=digits_zip),
        data_loader_kwargs=E(num_workers=0),
        G_kwargs=E(class_name='training.networks.Generator', z_dim=32, w_dim=32, mapping_kwargs=E(num_layers=1),
                   synthesis_kwargs=E(channel_base=256, channel_max=16)),
        D_kwargs=E(class_name='training.networks.Discriminator', channel_base=256, channel_max=16),
        G_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
        D_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
        loss_kwargs=E(class_name='training.loss.StyleGAN2Loss', r1_gamma=0.01),
        batch_size=8, batch_gpu=8, total_kimg=0.016, kimg_per_tick=0.008, image_snapshot_ticks=1, network_snapshot_ticks=1)
    with open(tmp_path / 'metric-fid64_full.jsonl') as f:
        lines = [json.loads(line) for line in f]
    assert [line['snapshot_pkl'] for line in lines] == [os.path.basename(p) for p in snapshots(str(tmp_path))]
    assert all(math.isfinite(line['results']['fid64_full']) and line['results']['fid64_full'] > 0 for line in lines)

def test_snapshot_labels_stay_distinct_for_runs_shorter_than_a_kimg():
    from training.training_loop import snapshot_label
    assert snapshot_label(8000, 4) == '000008' and snapshot_label(8000, 4, total_kimg=100) == '000008'
    assert snapshot_label(32, 2, total_kimg=0.5) != snapshot_label(512, 2, total_kimg=0.5)
    assert snapshot_label(512, 2, total_kimg=0.5) == '000000.512'
