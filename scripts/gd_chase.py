"""How far apart are G and D? Steps for G to fool a frozen D, then for D to catch G again.

run_stats.py shows D rejecting nearly every fake at every tick of the digit runs. That alone
does not say whether G is stuck (it cannot find images that D calls real) or whether the two
chase each other faster than a tick can show. This probe tells the two apart. From a full
training snapshot (G and D) it alternates, for --cycles rounds:

  G phase  a copy of G trains against the frozen D (non-saturating loss) until D calls most
           fakes of fixed probe latents real;
  D phase  a copy of D trains against that frozen G (logistic loss plus R1 with the run's gamma,
           applied every step instead of lazily) until D calls most of them fake again.

Both use the run's own optimisers: Adam with the learning rate and betas of training_options.json
scaled for lazy regularisation as training scales them, and the Adam moments saved with the
snapshot (training-state-<kimg>.pkl beside it; train.py keeps only the newest one, so copy it
away to probe an older snapshot). Without that file the moments start from zero, which makes the
first steps as large as Adam's steps get (said in the output).

The probe latents are 4 batches, rendered with const noise and without MS-PE's random resizing;
the training steps draw fresh latents and reals every step. Each phase reports its steps (one
step = one minibatch of the run's batch size, so steps x batch / 1000 = kimg), D's mean logit
sign on the probe fakes before and after, and for G phases how much those fakes changed (mean
|difference| in [-1, 1] pixels). A G that fools D in a few dozen
steps while a tick holds 4000 / batch steps is not stuck: the two chase each other and a tick's
statistics see only D's side. Augmentation, path-length regularisation and style mixing are left
out: the probe asks whether G can move D's verdict, not how training would proceed.

    OMP_NUM_THREADS=1 python scripts/gd_chase.py runs/digits/baseline/00000-.../network-snapshot-000080.pkl --json out.json

The step counts sit on a knife's edge, so another thread count (other floating-point sums) can
move them by a step or two: results/gd_chase.json was made with OMP_NUM_THREADS=1.
"""

import argparse
import copy
import json
import os
import pickle
import shlex
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import digit_models  # noqa: E402  (puts the host on sys.path)
import legacy  # noqa: E402
from training.dataset import ImageFolderDataset  # noqa: E402

REG_INTERVALS = dict(G=4, D=16)     # training_loop's defaults: lazy regularisation every 4 / 16 steps

def run_settings(snapshot_path):
    """Batch size, optimiser settings (as training_loop builds them) and R1 gamma of the run the
    snapshot belongs to (the host's presets when its training_options.json is not beside it)."""
    opts = {}
    path = os.path.join(os.path.dirname(os.path.abspath(snapshot_path)), 'training_options.json')
    if os.path.isfile(path):
        with open(path) as f:
            opts = json.load(f)
    def adam(name):
        kw = opts.get(f'{name}_opt_kwargs', {})
        interval = opts.get(f'{name}_reg_interval', REG_INTERVALS[name])
        ratio = interval / (interval + 1) if interval else 1
        return dict(lr=float(kw.get('lr', 0.0025)) * ratio, betas=tuple(float(b) ** ratio for b in kw.get('betas', (0, 0.99))),
                    eps=float(kw.get('eps', 1e-8)))
    return dict(batch=int(opts.get('batch_size', 32)), G_opt=adam('G'), D_opt=adam('D'),
                r1_gamma=float(opts.get('loss_kwargs', {}).get('r1_gamma', 0.0)), options_file=path if opts else None)

def saved_moments(snapshot_path):
    """The optimisers' state_dicts saved with this snapshot, or None."""
    name = os.path.basename(snapshot_path).replace('network-snapshot-', 'training-state-', 1)
    path = os.path.join(os.path.dirname(os.path.abspath(snapshot_path)), name)
    if not name.startswith('training-state-') or not os.path.isfile(path):
        return None
    with open(path, 'rb') as f:
        return pickle.load(f)['optimizers']

def load_snapshot(path, device):
    if not os.path.isfile(path):
        raise SystemExit(f'{path} does not exist: pass a network-snapshot-*.pkl of a training run.')
    with open(path, 'rb') as f:
        data = legacy.load_network_pkl(f)
    if data.get('G') is None or data.get('D') is None:
        raise SystemExit(f'{path} holds no G and D (a G_ema-only copy such as results/models/*.pkl?): '
                         'pass a network-snapshot-*.pkl from the run folder.')
    return data['G'].to(device), data['D'].to(device), data.get('training_set_kwargs') or {}

def open_dataset(data_path, training_set_kwargs):
    path = data_path or training_set_kwargs.get('path')
    if not path or not os.path.exists(path):
        raise SystemExit(f'training data {path!r} not found: pass the run\'s dataset with --data.')
    return ImageFolderDataset(path=path, use_labels=bool(training_set_kwargs.get('use_labels', False)))

class Batches:
    """Real images and labels, and latents, drawn from fixed seeds."""
    def __init__(self, dataset, batch, z_dim, c_dim, seed, device):
        self.dataset, self.batch, self.z_dim, self.c_dim, self.device = dataset, batch, z_dim, c_dim, device
        self.rnd = np.random.RandomState(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def reals(self):
        idx = self.rnd.randint(len(self.dataset), size=self.batch)
        img = torch.from_numpy(np.stack([self.dataset[int(i)][0] for i in idx])).float() / 127.5 - 1
        return img.to(self.device), self.labels(idx)

    def labels(self, idx=None):
        if self.c_dim == 0:
            return torch.zeros([self.batch, 0], device=self.device)
        if idx is None:
            idx = self.rnd.randint(len(self.dataset), size=self.batch)
        return torch.from_numpy(np.stack([self.dataset.get_label(int(i)) for i in idx])).float().to(self.device)

    def latents(self):
        return torch.randn([self.batch, self.z_dim], generator=self.gen).to(self.device), self.labels()

def make_opt(module, opt_kwargs, state):
    opt = torch.optim.Adam(module.parameters(), **opt_kwargs)
    if state is not None:
        opt.load_state_dict(state)
        for group in opt.param_groups:          # the saved state carries its own lr and betas
            group.update(opt_kwargs)
    return opt

def render(G, probe):
    mode = G.training
    G.eval()
    with torch.no_grad():
        img = torch.cat([G(z, c, noise_mode='const') for z, c in zip(*probe)])
    G.train(mode)
    return img

def verdict(D, img, probe):
    """D's mean logit sign on `img`, the render of the fixed probe latents: +1 = all called real,
    -1 = all called fake. One fixed set, so that a phase's end is not a batch's luck; G renders it
    in eval mode (MS-PE's random resizing off), the phases train G as training does."""
    with torch.no_grad():
        return float(D(img, torch.cat(probe[1])).sign().mean())

def g_phase(G, D, batches, opt_kwargs, max_steps, probe, state=None):
    """Train G against the frozen D until D calls most fakes of the probe latents real."""
    G.train().requires_grad_(True)
    D.eval().requires_grad_(False)
    opt = make_opt(G, opt_kwargs, state)
    before = after = render(G, probe)
    signs = [verdict(D, before, probe)]
    step = 0
    while signs[-1] <= 0 and step < max_steps:
        z, c = batches.latents()
        opt.zero_grad(set_to_none=True)
        F.softplus(-D(G(z, c), c)).mean().backward()
        opt.step()
        step += 1
        after = render(G, probe)
        signs.append(verdict(D, after, probe))
    return dict(who='G', steps=step, flipped=signs[-1] > 0, fake_sign_start=signs[0], fake_sign_end=signs[-1],
                image_change=float((after - before).abs().mean()), opt_state=opt.state_dict())

def d_phase(G, D, batches, opt_kwargs, r1_gamma, max_steps, probe, state=None):
    """Train D against the frozen G until D calls most fakes of the probe latents fake again."""
    G.train().requires_grad_(False)
    D.train().requires_grad_(True)
    opt = make_opt(D, opt_kwargs, state)
    probe_img = render(G, probe)        # G is frozen: its probe fakes stay the same
    signs = [verdict(D, probe_img, probe)]
    step = 0
    while signs[-1] >= 0 and step < max_steps:
        z, c = batches.latents()
        with torch.no_grad():
            fakes = G(z, c)
        real_img, real_c = batches.reals()
        real_img.requires_grad_(r1_gamma > 0)
        real_logits = D(real_img, real_c)
        loss = F.softplus(D(fakes, c)).mean() + F.softplus(-real_logits).mean()
        if r1_gamma > 0:
            grad, = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True)
            loss = loss + grad.square().sum(dim=[1, 2, 3]).mean() * (r1_gamma / 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        signs.append(verdict(D, probe_img, probe))
    return dict(who='D', steps=step, flipped=signs[-1] < 0, fake_sign_start=signs[0], fake_sign_end=signs[-1],
                opt_state=opt.state_dict())

def chase(snapshot, data=None, cycles=2, max_steps=300, seed=0, probe_batches=4, device=None):
    device = device or digit_models.pick_device()
    settings = run_settings(snapshot)
    G, D, training_set_kwargs = load_snapshot(snapshot, device)
    G, D = copy.deepcopy(G), copy.deepcopy(D)
    dataset = open_dataset(data, training_set_kwargs)
    torch.manual_seed(seed)
    np.random.seed(seed)        # MS-PE's random resizing draws its zoom from numpy
    batches = Batches(dataset, settings['batch'], G.z_dim, G.c_dim, seed, device)
    probe = [batches.latents() for _ in range(probe_batches)]
    probe = ([z for z, _ in probe], [c for _, c in probe])
    moments = saved_moments(snapshot)
    states = dict(G=None, D=None)
    if moments is not None:
        states = {name: copy.deepcopy(moments[name]) for name in ('G', 'D')}
    phases = []
    for _ in range(cycles):
        # Each phase continues from the optimiser state the previous phase of its network left.
        phases.append(g_phase(G, D, batches, settings['G_opt'], max_steps, probe, states['G']))
        states['G'] = phases[-1].pop('opt_state')
        phases.append(d_phase(G, D, batches, settings['D_opt'], settings['r1_gamma'], max_steps, probe, states['D']))
        states['D'] = phases[-1].pop('opt_state')
    for p in phases:
        p['kimg'] = p['steps'] * settings['batch'] / 1000
    return dict(snapshot=snapshot, batch=settings['batch'], glr=settings['G_opt']['lr'], dlr=settings['D_opt']['lr'],
                r1_gamma=settings['r1_gamma'], options_file=settings['options_file'], max_steps=max_steps,
                saved_moments=moments is not None, seed=seed, phases=phases)

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('snapshots', nargs='+', help='network-snapshot-*.pkl files of training runs (with G and D)')
    parser.add_argument('--data', help="the runs' dataset, when the path stored in the snapshot does not open from here")
    parser.add_argument('--cycles', type=int, default=2, help='rounds of G phase + D phase (default 2)')
    parser.add_argument('--max-steps', type=int, default=300, help='give up a phase after this many steps (default 300)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.max_steps < 1:
        raise SystemExit('--cycles and --max-steps must be at least 1.')
    results = []
    for snapshot in args.snapshots:
        result = chase(snapshot, data=args.data, cycles=args.cycles, max_steps=args.max_steps, seed=args.seed)
        results.append(result)
        moments = 'the Adam moments saved with it' if result['saved_moments'] else 'Adam moments from zero (no training-state file)'
        print(f'{snapshot}  (batch {result["batch"]}, G lr {result["glr"]:g}, D lr {result["dlr"]:g}, '
              f'R1 gamma {result["r1_gamma"]:g}, {moments})')
        print('  phase  steps   kimg  flipped  fake sign before -> after  image change')
        for p in result['phases']:
            change = f'{p["image_change"]:.3f}' if 'image_change' in p else '-'
            print(f'  {p["who"]:<5}  {p["steps"]:5d}  {p["kimg"]:5.2f}  {str(p["flipped"]):<7}  '
                  f'{p["fake_sign_start"]:+.3f} -> {p["fake_sign_end"]:+.3f}            {change}')
    if args.json:
        command = 'python scripts/gd_chase.py ' + ' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        with open(args.json, 'w') as f:
            json.dump(dict(command=command, runs=results), f, indent=1)
        print(f'wrote {args.json}')

if __name__ == '__main__':
    main()
