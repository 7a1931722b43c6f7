"""Resuming and crash safety: a resume says what it copied, what was new and what did not fit
(a shape mismatch stops it unless asked); a run killed while writing a snapshot continues from
the previous one with bit-identical networks and optimiser state; two gloo processes train the
same weights as one process with the same total batch."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from conftest import HOST, ROOT
from test_train import ENV_ONE_THREAD, TINY, TRAIN, assert_one_sentence_error, load_snapshot, make_digits_zip, \
    only_run_dir, run_train, snapshots

from torch_utils import misc

torch.set_num_threads(1)

@pytest.fixture(scope='module')
def digits_zip(tmp_path_factory):
    return make_digits_zip(tmp_path_factory.mktemp('data') / 'digits16.zip')

def host_generator(channel_max=32, seed=0, res=16):
    from training.networks import Generator
    torch.manual_seed(seed)
    return Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=16 * res, channel_max=channel_max))

#----------------------------------------------------------------------------
# What a resume copies.

def test_copy_report_names_new_unused_and_copied_tensors():
    mspe_networks = pytest.importorskip('mspe_plugin.networks')
    host = host_generator()
    torch.manual_seed(1)
    G = mspe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                                synthesis_kwargs=dict(channel_base=256, channel_max=32, pe='mspe'))
    report = misc.copy_params_and_buffers(host, G, report=True)
    gammas = [n for n, _ in misc.named_params_and_buffers(G) if 'pe_gamma' in n]
    assert gammas and set(gammas) <= set(report.new) and all('.pe_' in n for n in report.new)    # gammas and PE tables
    assert report.unused == ['synthesis.b4.const'] and report.mismatched == []
    dst = dict(misc.named_params_and_buffers(G))
    src = dict(misc.named_params_and_buffers(host))
    assert all(torch.equal(dst[name], src[name]) for name in report.copied)
    text = misc.format_copy_report('Resumed G', report)
    assert f'copied {len(report.copied)} tensors, {len(report.new)} new, 0 skipped' in text
    assert 'synthesis.pe_gamma8' in text and 'unused from the source: synthesis.b4.const' in text

def test_shape_mismatch_is_an_error_unless_skipped_and_copies_nothing_when_refused():
    src, dst = host_generator(channel_max=32, seed=0), host_generator(channel_max=16, seed=1)
    before = {name: t.clone() for name, t in misc.named_params_and_buffers(dst)}
    with pytest.raises(misc.ShapeMismatchError, match=r'has shape \[.*\] in the source but \[.*\] here'):
        misc.copy_params_and_buffers(src, dst)
    assert all(torch.equal(before[name], t) for name, t in misc.named_params_and_buffers(dst))    # nothing half-copied
    report = misc.copy_params_and_buffers(src, dst, skip_mismatch=True, report=True)
    assert report.mismatched and report.copied    # the mapping network fits, the narrower synthesis does not
    after = dict(misc.named_params_and_buffers(dst))
    assert all(torch.equal(after[name], before[name]) for name, _, _ in report.mismatched)
    assert 'mapping.fc0.weight' in report.copied and torch.equal(after['mapping.fc0.weight'], dict(src.named_parameters())['mapping.fc0.weight'])

def _baseline_pickle(path, channel_max):
    """A snapshot of the cpu preset's 16 px networks, with a different channel count when asked."""
    from training.networks import Discriminator, Generator
    torch.manual_seed(123)
    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=2048, channel_max=channel_max))
    D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=2048, channel_max=channel_max)
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs={}), f)
    return str(path)

def test_resume_from_a_pickle_that_does_not_fit_stops_in_one_sentence_unless_skipped(digits_zip, tmp_path):
    baseline = _baseline_pickle(tmp_path / 'wide.pkl', channel_max=64)      # the cpu preset has 128
    result = run_train(tmp_path / 'a', f'--data={digits_zip}', *TINY, '--kimg=0.016', '--aug=noaug', f'--resume={baseline}')
    assert result.returncode != 0
    message = assert_one_sentence_error(result.stdout + result.stderr)
    assert f'Cannot resume G from {baseline}' in message and 'in the source but' in message and '--resume-skip-mismatch' in message
    assert not snapshots(only_run_dir(tmp_path / 'a'))
    # In two processes only rank 0 reads the pickle: its refusal must stop rank 1 too (no hang,
    # no traceback from a broken connection).
    result = run_train(tmp_path / 'c', f'--data={digits_zip}', *TINY, '--kimg=0.016', '--aug=noaug', f'--resume={baseline}',
                       '--gpus=2', timeout=180)
    assert result.returncode != 0 and 'Traceback' not in result.stdout + result.stderr, result.stderr[-3000:]
    assert f'Cannot resume G from {baseline}' in result.stdout + result.stderr
    result = run_train(tmp_path / 'b', f'--data={digits_zip}', *TINY, '--kimg=0.016', '--aug=noaug', f'--resume={baseline}',
                       '--resume-skip-mismatch')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Resumed G: copied ' in result.stdout and 'skipped (shape mismatch): ' in result.stdout
    assert 'Resumed D: copied ' in result.stdout

#----------------------------------------------------------------------------
# Killed while writing a snapshot.

# Runs train.py in this process with pickle.dump of the training loop replaced: from the second
# network snapshot on, it writes half of the pickle, creates MARKER, and sleeps until killed.
HANG_IN_SECOND_SNAPSHOT = r'''
import os, pickle, runpy, sys, time
sys.path.insert(0, {host!r})
from training import training_loop
class _HangingPickle:
    snapshots = 0
    def __getattr__(self, name):
        return getattr(pickle, name)
    def dump(self, obj, f):
        data = pickle.dumps(obj)
        if isinstance(obj, dict) and 'G_ema' in obj:
            _HangingPickle.snapshots += 1
            if _HangingPickle.snapshots == 2:
                f.write(data[:len(data) // 2])
                f.flush()
                open({marker!r}, 'w').close()
                time.sleep(600)
        f.write(data)
training_loop.pickle = _HangingPickle()
sys.argv = ['train.py'] + {args!r}
runpy.run_path({train!r}, run_name='__main__')
'''

# Runs train.py --resume-run and, right before the first training step, saves the networks and
# optimiser states the loop resumed with (read from the loop's frame through progress_fn, which
# the loop calls once before training), then exits.
CAPTURE_RESUMED_STATE = r'''
import os, runpy, sys, torch
sys.path.insert(0, {host!r})
from training import training_loop
_loop = training_loop.training_loop
def _capture(cur_kimg, total_kimg):
    local = sys._getframe(1).f_locals
    torch.save(dict(G=local['G'].state_dict(), D=local['D'].state_dict(), G_ema=local['G_ema'].state_dict(),
                    optimizers={{name: opt.state_dict() for name, opt in local['optimizers'].items()}},
                    pl_mean=float(local['loss'].pl_mean)), {out!r})
    os._exit(0)
def _wrapped(**kwargs):
    return _loop(**dict(kwargs, progress_fn=_capture))
training_loop.training_loop = _wrapped
sys.argv = ['train.py'] + {args!r}
runpy.run_path({train!r}, run_name='__main__')
'''

def _assert_same(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{where}[{i}]')
    else:
        assert a == b, where

def test_run_killed_while_writing_a_snapshot_resumes_bit_identical_from_the_previous_one(digits_zip, tmp_path):
    runs, marker = tmp_path / 'runs', tmp_path / 'writing'
    script = HANG_IN_SECOND_SNAPSHOT.format(host=HOST, marker=str(marker), train=TRAIN,
        args=[f'--outdir={runs}', f'--data={digits_zip}', *TINY, '--kimg=1', '--aug=noaug'])
    with open(tmp_path / 'first.log', 'w') as log:
        proc = subprocess.Popen([sys.executable, '-c', script], stdout=log, stderr=subprocess.STDOUT, env=ENV_ONE_THREAD)
        try:
            deadline = time.time() + 240
            while not marker.exists() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.1)
            assert marker.exists(), open(tmp_path / 'first.log').read()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)       # in the middle of the second snapshot's write
        finally:
            proc.kill()
            proc.wait()
    run_dir = only_run_dir(runs)
    names = os.listdir(run_dir)
    assert any('.pkl.tmp' in name for name in names), names        # the half-written file is there ...
    snaps = snapshots(run_dir)
    assert len(snaps) == 1, names                                   # ... but never under a snapshot's name
    previous = load_snapshot(snaps[0])
    state_name = os.path.basename(snaps[0]).replace('network-snapshot-', 'training-state-')
    with open(os.path.join(run_dir, state_name), 'rb') as f:
        state = pickle.load(f)

    out = tmp_path / 'resumed.pt'
    script = CAPTURE_RESUMED_STATE.format(host=HOST, out=str(out), train=TRAIN, args=[f'--resume-run={run_dir}', f'--outdir={runs}'])
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=ENV_ONE_THREAD, timeout=240)
    assert result.returncode == 0 and out.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    assert f'from {os.path.basename(snaps[0])} at kimg {previous["progress"]["cur_nimg"] / 1000:g}' in result.stdout
    assert not any('.tmp' in name for name in os.listdir(run_dir))    # the partial write was cleaned up
    resumed = torch.load(str(out))
    for name in ['G', 'D', 'G_ema']:
        _assert_same(resumed[name], previous[name].state_dict(), name)
    assert set(resumed['optimizers']) == {'G', 'D'}
    _assert_same(resumed['optimizers'], state['optimizers'], 'optimizers')
    assert any(len(opt['state']) for opt in resumed['optimizers'].values())    # Adam moments, not a fresh optimiser
    assert resumed['pl_mean'] == state['pl_mean']

#----------------------------------------------------------------------------
# Two processes against one.

# Upstream's loop draws each process's latents, noise and style-mixing cut-offs from a per-rank
# seed (random_seed * num_gpus + rank), so one process and two never draw the same fakes. This
# loss (a test-only subclass, given to the loop by class_name) takes those draws out: each fake's
# latent is a fixed projection of the real image it is trained beside, noise is 'const', and
# there is no style mixing or path-length term (pl_weight=0 in the kwargs). What is left is what
# the two layouts must share: the same reals (the sampler hands rank r every 2nd image of one
# order), gradients averaged over the same 16 images (two rounds of 8 in one process, one round
# of 8 in each of two), the same Adam steps and the same G_ema.
PAIRED_LATENT_LOSS = r'''
import torch
from training.loss import StyleGAN2Loss

class PairedLatentLoss(StyleGAN2Loss):
    def run_G(self, z, c, sync):
        ws = self.G_mapping(z, c)
        return self.G_synthesis(ws, noise_mode='const'), ws

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        gen = torch.Generator().manual_seed(0)
        proj = torch.randn([real_img[0].numel(), gen_z.shape[1]], generator=gen).to(real_img.device)
        gen_z = real_img.flatten(1) @ proj / real_img[0].numel() ** 0.5
        return super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)
'''

RUN_ARGS = r'''
import sys, dnnlib, train
E = dnnlib.EasyDict
args = E(run_dir=sys.argv[1], num_gpus=int(sys.argv[2]), batch_size=16, batch_gpu=8, random_seed=0,
    training_set_kwargs=E(class_name='training.dataset.ImageFolderDataset', path=sys.argv[3], use_labels=False, xflip=False),
    data_loader_kwargs=E(num_workers=0),
    G_kwargs=E(class_name='training.networks.Generator', z_dim=16, w_dim=16, mapping_kwargs=E(num_layers=1),
               synthesis_kwargs=E(channel_base=128, channel_max=16)),
    D_kwargs=E(class_name='training.networks.Discriminator', channel_base=128, channel_max=16,
               epilogue_kwargs=E(mbstd_num_channels=0)),    # minibatch std couples images of a batch
    G_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
    D_opt_kwargs=E(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8),
    loss_kwargs=E(class_name='paired_loss.PairedLatentLoss', r1_gamma=0.01, style_mixing_prob=0, pl_weight=0),
    metrics=[], total_kimg=0.048, kimg_per_tick=0.048, image_snapshot_ticks=None, network_snapshot_ticks=1)
train.launch(args)
'''

def test_two_gloo_processes_train_the_same_weights_as_one_process(digits_zip, tmp_path):
    (tmp_path / 'paired_loss.py').write_text(PAIRED_LATENT_LOSS)
    env = dict(ENV_ONE_THREAD, PYTHONPATH=os.pathsep.join([str(tmp_path), HOST, ROOT]))
    finals = {}
    for num_gpus in (1, 2):
        run_dir = tmp_path / f'gpus{num_gpus}'
        run_dir.mkdir()
        result = subprocess.run([sys.executable, '-c', RUN_ARGS, str(run_dir), str(num_gpus), digits_zip],
                                capture_output=True, text=True, env=env, timeout=400)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        if num_gpus == 2:
            assert 'Distributed training: 2 processes on cpu, backend gloo' in open(run_dir / 'log.txt').read()
        final = snapshots(str(run_dir))[-1]
        finals[num_gpus] = load_snapshot(final)
        assert finals[num_gpus]['progress']['cur_nimg'] == 48    # three steps of 16 images
        with open(final.replace('network-snapshot-', 'training-state-'), 'rb') as f:
            finals[num_gpus]['state'] = pickle.load(f)
    # Float sums in another order (two rounds vs an all-reduce) differ in the last bits; after
    # three Adam steps of lr 0.002 the weights agree to 1e-5. The mapping's w_avg is a per-process
    # running mean that upstream never synchronises (each rank averages its own latents), so it
    # is left out. Training moved every network by far more than the tolerance.
    tol = 1e-5
    worst = 0
    for name in ['G', 'D', 'G_ema']:
        one, two = finals[1][name].state_dict(), finals[2][name].state_dict()
        assert set(one) == set(two)
        for key in one:
            if key.endswith('w_avg'):
                continue
            diff = (one[key].double() - two[key].double()).abs().max().item() if one[key].numel() else 0
            worst = max(worst, diff)
            assert diff <= tol, f"{name}.{key} differs by {diff}"
    for name in ['G', 'D']:
        for i, (a, b) in enumerate(zip(finals[1]['state']['optimizers'][name]['state'].values(),
                                       finals[2]['state']['optimizers'][name]['state'].values())):
            assert torch.allclose(a['exp_avg'], b['exp_avg'], rtol=1e-4, atol=1e-7), f'{name} Adam state {i}'
    moved = (finals[1]['G'].synthesis.b16.conv1.weight - host_generator_like(finals[1]['G']).synthesis.b16.conv1.weight).abs().max()
    print(f"largest difference {worst:.3g}, largest change of a conv weight {moved:.3g}")
    assert moved > 100 * tol

def host_generator_like(G):
    """A freshly initialised generator with G's constructor arguments and the loop's seed."""
    torch.manual_seed(0)
    return type(G)(*G.init_args, **G.init_kwargs)
