"""Copy the newest snapshot of each digit run (train_digits.sh) into results/models/.

For every run folder runs/digits/<name>/<NNNNN-...>/ it writes results/models/<name>.pkl, a
snapshot pickle that keeps only G_ema (and the training-set kwargs): about half the size of the
full snapshot, and all that the experiment scripts, generate.py and projector.py need. Beside
them: <name>-fakes.png (the run's newest image grid) and models.json (kimg, snapshot, speed, the
exact training options).

    python -m scripts.experiments.collect_digit_models                 # every model that has a run
    python -m scripts.experiments.collect_digit_models mspe baseline
    python -m scripts.experiments.collect_digit_models --kimg=120      # the snapshot at 120 kimg of every run
                                                                       # (one common length for all models)
    python -m scripts.experiments.collect_digit_models --runs=runs/digits-cond   # runs of COND=1 train_digits.sh
    python -m scripts.experiments.collect_digit_models --runs=runs/cond --out=results/models/wide   # another model set
    python -m scripts.experiments.collect_digit_models --self-cond ...   # runs on cluster labels: G_ema unconditional
"""

import json
import os
import pickle
import re
import shutil

import click

from scripts import ROOT
import legacy  # noqa: E402  (the vendored host, on sys.path through `scripts`)

RUNS = os.path.join(ROOT, 'runs', 'digits')
OUT = os.path.join(ROOT, 'results', 'models')
SNAPSHOT_RE = re.compile(r'^network-snapshot-(\d+(?:\.\d+)?)\.pkl$')
FAKES_RE = re.compile(r'^fakes(\d+(?:\.\d+)?)\.png$')

def newest(run_dir, pattern):
    found = [(float(m.group(1)), name) for name in os.listdir(run_dir) for m in [pattern.match(name)] if m]
    return os.path.join(run_dir, max(found)[1]) if found else None

def last_tick_speed(run_dir):
    """sec/kimg of the run's last tick (from stats.jsonl), or None."""
    path = os.path.join(run_dir, 'stats.jsonl')
    if not os.path.isfile(path):
        return None
    lines = [json.loads(line) for line in open(path) if line.strip()]
    if not lines:
        return None
    return round(lines[-1].get('Timing/sec_per_kimg', {}).get('mean', float('nan')), 1)

def at_kimg(run_dir, kimg):
    """The run's snapshot whose label is `kimg` (fractional labels too), or None."""
    for name in os.listdir(run_dir):
        m = SNAPSHOT_RE.match(name)
        if m and abs(float(m.group(1)) - kimg) < 1e-6:
            return os.path.join(run_dir, name)
    return None

def collect(name, kimg=None, runs_dir=None, out=None, self_cond=False):
    out_dir = out or OUT
    outdir = os.path.join(runs_dir or RUNS, name)
    runs = sorted(d for d in os.listdir(outdir) if os.path.isfile(os.path.join(outdir, d, 'training_options.json'))) if os.path.isdir(outdir) else []
    if not runs:
        print(f'{name}: no run in {outdir}; train it with scripts/experiments/train_digits.sh {name}')
        return None
    run_dir = os.path.join(outdir, runs[-1])
    snapshot = newest(run_dir, SNAPSHOT_RE) if kimg is None else at_kimg(run_dir, kimg)
    if snapshot is None:
        print(f'{name}: {run_dir} has no snapshot ' + ('yet' if kimg is None else f'at {kimg:g} kimg'))
        return None
    with open(snapshot, 'rb') as f:
        data = legacy.load_network_pkl(f)
    os.makedirs(out_dir, exist_ok=True)
    dest = os.path.join(out_dir, f'{name}.pkl')
    tmp = dest + '.tmp'
    entries = dict(G_ema=data['G_ema'], training_set_kwargs=data['training_set_kwargs'], progress=data.get('progress'))
    if self_cond:    # a G trained on cluster labels, kept as the unconditional model it stands for
        import dnnlib
        from training.self_conditioning import label_prior, self_conditioned
        set_kwargs = dict(data['training_set_kwargs'], use_labels=True, xflip=False, max_size=None)
        entries['label_prior'] = label_prior(dnnlib.util.construct_class_by_name(**set_kwargs))
        entries['G_ema'] = self_conditioned(data['G_ema'], entries['label_prior'])
    with open(tmp, 'wb') as f:
        pickle.dump(entries, f)
    os.replace(tmp, dest)
    label = SNAPSHOT_RE.match(os.path.basename(snapshot)).group(1)
    fakes = os.path.join(run_dir, f'fakes{label}.png')
    fakes = fakes if os.path.isfile(fakes) else newest(run_dir, FAKES_RE)
    if fakes is not None:
        shutil.copyfile(fakes, os.path.join(out_dir, f'{name}-fakes.png'))
    options = json.load(open(os.path.join(run_dir, 'training_options.json')))
    kimg = (data.get('progress') or {}).get('cur_nimg', 0) / 1000
    print(f'{name}: {os.path.relpath(snapshot, ROOT)} ({kimg:g} kimg) -> {os.path.relpath(dest, ROOT)}')
    return dict(kimg=round(kimg, 3), snapshot=os.path.relpath(snapshot, ROOT), run=os.path.basename(run_dir),
                seconds_per_kimg=last_tick_speed(run_dir), G_kwargs=options.get('G_kwargs'),
                conditional=bool(options.get('training_set_kwargs', {}).get('use_labels')),
                batch_size=options.get('batch_size'), loss_kwargs=options.get('loss_kwargs'),
                glr=options.get('G_opt_kwargs', {}).get('lr'), dlr=options.get('D_opt_kwargs', {}).get('lr'),
                extra_flags=extra_flags(options), data=data_path(options),
                snap_ticks=options.get('network_snapshot_ticks'), self_conditioned=bool(self_cond),
                cfg=preset(os.path.basename(run_dir), options))

def preset(run_name, options):
    """train.py's --cfg of a run, read from its folder name (<id>-<data>[-cond]-<cfg>-...); None when
    the name does not have that form."""
    data = data_path(options)
    if not data:
        return None
    head = run_name.split('-', 1)[-1]
    stem = os.path.splitext(os.path.basename(data))[0]
    if not head.startswith(stem + '-'):
        return None
    rest = head[len(stem) + 1:]
    if rest.startswith('cond-'):
        rest = rest[len('cond-'):]
    return rest.split('-', 1)[0] or None

def data_path(options):
    """The run's training data, relative to the repository where it lies inside it."""
    path = (options.get('training_set_kwargs') or {}).get('path')
    if not path:
        return None
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return path if rel.startswith('..') else rel

def extra_flags(options):
    """The train.py flags beyond train_digits.sh's own (its EXTRA) that a run's
    training_options.json shows: the label cross-entropy recipe (train.py's "training recipe"
    group: --label-ce, --dmap, --dmap-lr, --label-groups, --label-groups-kimg)."""
    loss = options.get('loss_kwargs') or {}
    mapping = (options.get('D_kwargs') or {}).get('mapping_kwargs') or {}
    flags = []
    if loss.get('label_ce_weight'):
        flags.append(f'--label-ce={loss["label_ce_weight"]:g}')
    if 'num_layers' in mapping:
        flags.append(f'--dmap={mapping["num_layers"]}')
    if 'lr_multiplier' in mapping:
        flags.append(f'--dmap-lr={mapping["lr_multiplier"]:g}')
    if options.get('label_groups'):
        flags.append('--label-groups=1')
    if options.get('label_groups_kimg') is not None:
        flags.append(f'--label-groups-kimg={options["label_groups_kimg"]:g}')
    if options.get('compile_mode') not in (None, 'auto'):
        flags.append(f'--compile={options["compile_mode"]}')
    if options.get('cpu_bf16'):
        flags.append('--cpu-bf16=1')
    return ' '.join(flags)

def pe_flags(model):
    """The plugin's train.py flags that a collected model was trained with, read from its
    G_kwargs and loss_kwargs (--pe, --pe-resize, --pe-margin, --pe-outside)."""
    synthesis = (model.get('G_kwargs') or {}).get('synthesis_kwargs') or {}
    flags = [f'--pe={synthesis.get("pe") or "none"}']
    if synthesis.get('pe_resize'):
        flags.append('--pe-resize=' + ','.join(f'{v:g}' for v in synthesis['pe_resize']))
    if synthesis.get('pe_margin'):
        flags.append(f'--pe-margin={synthesis["pe_margin"]:g}')
    weight = (model.get('loss_kwargs') or {}).get('outside_weight')
    if weight:
        flags.append(f'--pe-outside={weight:g}')
    return ' '.join(flags)

def width(models):
    """(channel_base, channel_max) common to `models`' generators; None for a value that differs
    or is unknown."""
    def common(key):
        values = {((m.get('G_kwargs') or {}).get('synthesis_kwargs') or {}).get(key) for m in models}
        return values.pop() if len(values) == 1 else None
    return common('channel_base'), common('channel_max')

PRESET_LR = 0.0025    # the cpu preset's learning rate of G and D
DEFAULT_KIMG = 192    # train_digits.sh's KIMG when it is not given

def train_command(models, cond, runs_dir, lr, extra='', out=None):
    """The train_digits.sh line that trains `models` (the variables it was given); `lr` is their
    common learning rate, None where they differ; `extra` their common extra train.py flags."""
    models = list(models)
    words = []
    runs = os.path.relpath(os.path.abspath(runs_dir), ROOT)
    models_dir = os.path.relpath(os.path.abspath(out or OUT), ROOT)
    cbase, cmax = width(models)
    default_runs = os.path.join('runs', 'digits-cond') if cond else os.path.relpath(RUNS, ROOT)    # train_digits.sh's
    if runs != default_runs:
        words.append(f'RUNS={runs}')
    if models_dir != os.path.join('results', 'models'):
        words.append(f'MODELS={models_dir}')
    if cmax not in (None, 32):
        words.append(f'CMAX={cmax}')
    if cmax not in (None, 32) and cbase is not None:
        words.append(f'CBASE={cbase}')
    datas = {m.get('data') for m in models}
    if len(datas) == 1 and None not in datas and datas != {os.path.join('datasets', 'mnist-ul32.zip')}:
        words.append(f'DATA={datas.pop()}')
    snaps = {m.get('snap_ticks') for m in models}
    if len(snaps) == 1 and None not in snaps and snaps != {2}:
        words.append(f'SNAP_TICKS={snaps.pop()}')
    if cond:
        words.append('COND=1')
    cfgs = {m.get('cfg') for m in models}
    if len(cfgs) == 1 and None not in cfgs and cfgs != {'cpu'}:
        words.append(f'CFG={cfgs.pop()}')
    if models and all(m.get('self_conditioned') for m in models):
        words.append('SELF_COND=1')
    if lr is not None and lr != PRESET_LR:
        words.append(f'LR={lr:g}')
    kimgs = {round(m['kimg']) for m in models}
    if len(kimgs) == 1 and kimgs != {DEFAULT_KIMG}:
        words.append(f'KIMG={kimgs.pop()}')
    if extra:
        words.append(f'EXTRA="{extra}"')
    return ' '.join(words + ['bash scripts/experiments/train_digits.sh'])

def main(names, kimg=None, runs_dir=None, out=None, self_cond=False):
    runs_dir = runs_dir or RUNS
    out_dir = out or OUT
    if not names:
        names = sorted(d for d in os.listdir(runs_dir) if os.path.isdir(os.path.join(runs_dir, d))) if os.path.isdir(runs_dir) else []
    if not names:
        raise SystemExit(f'No digit runs in {runs_dir}: train them with scripts/experiments/train_digits.sh first.')
    path = os.path.join(out_dir, 'models.json')
    record = json.load(open(path)) if os.path.isfile(path) else dict(models={})
    for name in names:
        info = collect(name, kimg, runs_dir, out_dir, self_cond)
        if info is not None:
            record['models'][name] = info
    conditional = [m.get('conditional', False) for m in record['models'].values()]
    if any(conditional) != all(conditional):
        print('Warning: results/models mixes conditional and unconditional models; collect them all from one runs folder.')
    cond = all(conditional) and bool(conditional)
    lrs = sorted({m.get('glr') or PRESET_LR for m in record['models'].values()})
    extras = sorted({m.get('extra_flags', '') for m in record['models'].values()})
    if len(extras) > 1:
        print('Warning: results/models mixes training flags (' + '; '.join(e or 'none' for e in extras) +
              '); collect them all from one runs folder.')
    record['command'] = train_command(record['models'].values(), cond, runs_dir, lrs[0] if len(lrs) == 1 else None,
                                      extras[0] if len(extras) == 1 else '', out_dir)
    if len(lrs) > 1:
        print('Warning: results/models mixes learning rates ' + ', '.join(f'{lr:g}' for lr in lrs) +
              '; collect them all from one runs folder.')
    lr_text = '' if lrs == [PRESET_LR] else ''.join(f' --glr={lr:g} --dlr={lr:g}' for lr in lrs[-1:])
    extra_text = f' {extras[0]}' if len(extras) == 1 and extras[0] else ''
    cbase, cmax = width(record['models'].values())
    wide = cmax not in (None, 32)
    width_text = f' --cmax={cmax}' + (f' --cbase={cbase}' if wide and cbase is not None else '')
    width_words = (f'channel base {cbase}, at most {cmax} channels per scale' if wide else f'{cmax} channels at every scale')
    batches = sorted({m.get('batch_size') or 32 for m in record['models'].values()})
    cfgs = {m.get('cfg') or 'cpu' for m in record['models'].values()}
    if len(cfgs) > 1:
        print('Warning: results/models mixes presets (' + ', '.join(sorted(cfgs)) + '); collect them all from one runs folder.')
    self_cond_all = bool(record['models']) and all(m.get('self_conditioned') for m in record['models'].values())
    cond_text = ('; conditional on shape clusters of the data in training (cluster_labels.py), kept as unconditional '
                 'generators that draw the cluster from the latent (self_condition.py)' if self_cond_all else
                 '; class-conditional on the MNIST labels' if cond else '')
    record['settings'] = (f'--cfg={sorted(cfgs)[0]}' + width_text + ' --aug=noaug --mirror=false --seed=0' + (' --cond=1' if cond else '') + lr_text + extra_text +
                          f' ({width_words}, batch {"/".join(str(b) for b in batches)}, no augmentation' +
                          cond_text + '); ' + ', '.join(f'{name} {pe_flags(m)}' for name, m in record['models'].items()))
    os.makedirs(out_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)

@click.command()
@click.argument('names', nargs=-1)
@click.option('--kimg', type=float, default=None, help='Take the snapshot at this kimg, not the newest')
@click.option('--runs', 'runs_dir', default=None, help='The folder of the runs [default: runs/digits]')
@click.option('--out', default=None, help='Where the pickles and models.json go [default: results/models]')
@click.option('--self-cond', is_flag=True, help='Runs trained on cluster labels: keep G_ema as an unconditional generator (training/self_conditioning.py)')
def cli(names, kimg, runs_dir, out, self_cond):
    """Copy the digit runs' snapshots into results/models/ (default: every run in --runs)."""
    main(list(names), kimg, runs_dir, out, self_cond)

if __name__ == '__main__':
    cli()  # pylint: disable=no-value-for-parameter
