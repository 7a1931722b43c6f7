"""The StyleGAN2-ADA training loop: one process of a (possibly multi-process) training run.

Everything it builds comes from kwargs with a `class_name` (dnnlib.util.construct_class_by_name),
so the loop never imports a concrete network. It writes, in `run_dir` (rank 0 only):
  reals.png, fakes_init.png, fakes<KIMG>.png   image grids,
  network-snapshot-<KIMG>.pkl                  dict(G, D, G_ema, augment_pipe, training_set_kwargs,
                                               progress=dict(cur_nimg, cur_tick, batch_idx, augment_p)),
  training-state-<KIMG>.pkl                    optimizer state of the newest snapshot (older ones removed),
  stats.jsonl                                  one line of training_stats per tick.
<KIMG> is the kimg count (%06d) like upstream; with ticks shorter than 1 kimg it carries three
decimals (000000.064) so that every tick's snapshot has its own file.

Runs are resumable: `resume_progress=True` continues counters, optimizer state and augment p
from `resume_pkl` (train.py --resume-run); snapshots are written to a temporary file and
renamed, so a killed run never leaves a corrupt snapshot. A non-finite loss (checked once per
tick) or a non-finite network (checked before every snapshot) stops the run with TrainingStopped;
no snapshot of a diverged network is ever written.
"""

import copy
import json
import math
import os
import pickle
import time

import numpy as np
import PIL.Image
import torch

import dnnlib
import legacy
from torch_utils import misc
from torch_utils import plugins
from torch_utils import training_stats

#----------------------------------------------------------------------------

class TrainingStopped(Exception):
    """The run cannot go on (diverged, or an unusable resume point); the message says why."""

def snapshot_label(cur_nimg, kimg_per_tick, total_kimg=None):
    """File-name label for a tick ending at `cur_nimg` images: '000004' (upstream's whole kimg),
    or '000000.064' when ticks or the run's length are fractions of a kimg (whole kimg would give
    two snapshots one name)."""
    whole = kimg_per_tick >= 1 and (total_kimg is None or float(total_kimg).is_integer())
    if whole:
        return f'{cur_nimg // 1000:06d}'
    return f'{cur_nimg / 1000:010.3f}'

#----------------------------------------------------------------------------
# Image grids.

def setup_snapshot_image_grid(training_set, random_seed=0, max_size=(32, 32)):
    """Pick the reals shown in the image grids: about a 1920x1080 screen, at most `max_size`
    (width, height) images; with labels, every row holds one label.

    :return: ((grid_w, grid_h), images uint8 [N, C, H, W], labels [N, label_dim]).
    """
    rnd = np.random.RandomState(random_seed)
    grid_w = int(np.clip(1920 // training_set.image_shape[2], 7, max_size[0]))
    grid_h = int(np.clip(1080 // training_set.image_shape[1], 4, max_size[1]))
    indices = list(range(len(training_set)))
    rnd.shuffle(indices)
    if not training_set.has_labels:
        grid_indices = [indices[i % len(indices)] for i in range(grid_w * grid_h)]
    else:
        groups = dict()
        for idx in indices:
            key = tuple(np.asarray(training_set.get_label(idx)).flatten().tolist())
            groups.setdefault(key, []).append(idx)
        keys = sorted(groups)
        grid_indices = []
        for row in range(grid_h):
            group = groups[keys[row % len(keys)]]
            grid_indices += [group[col % len(group)] for col in range(grid_w)]
    images, labels = zip(*[training_set[i] for i in grid_indices])
    return (grid_w, grid_h), np.stack(images), np.stack(labels)

def save_image_grid(img, fname, drange, grid_size):
    """Tile images [N, C, H, W] (values in `drange`) into a grid_w x grid_h PNG (or JPG)."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = np.rint((img - lo) * (255 / (hi - lo))).clip(0, 255).astype(np.uint8)
    grid_w, grid_h = grid_size
    _N, C, H, W = img.shape
    img = img.reshape(grid_h, grid_w, C, H, W).transpose(0, 3, 1, 4, 2).reshape(grid_h * H, grid_w * W, C)
    if C == 1:
        PIL.Image.fromarray(img[:, :, 0], 'L').save(fname)
    else:
        PIL.Image.fromarray(img, 'RGB').save(fname)

#----------------------------------------------------------------------------
# Files that must never be half-written.

def write_pickle_atomic(obj, path):
    """Pickle `obj` to `path` through a temporary file, fsync and a rename (a kill at any moment
    leaves the previous file or the complete new one; see dnnlib.util.atomic_write)."""
    with dnnlib.util.atomic_write(path) as f:
        pickle.dump(obj, f)

def _rss_gb():
    """Resident memory of this process in GiB (peak when /proc is unavailable)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**30
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

def _non_finite_losses(stats_dict):
    """Names of the Loss/* statistics of this tick whose mean is NaN or infinite, the two
    adversarial losses first."""
    bad = [name for name, value in stats_dict.items()
           if name.startswith('Loss/') and value.num > 0 and not math.isfinite(value.mean)]
    first = ['Loss/G/loss', 'Loss/D/loss']
    return [name for name in first if name in bad] + sorted(name for name in bad if name not in first)

def _non_finite_tensors(modules):
    """'module.param' names of non-finite parameters or buffers in {name: module}."""
    bad = []
    for module_name, module in modules.items():
        for name, tensor in misc.named_params_and_buffers(module):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                bad.append(f'{module_name}.{name}')
    return bad

def _average_gradients(module, num_gpus, num_rounds):
    """Average `.grad` over processes and minibatch rounds in one flat all-reduce; NaN/inf in a
    single gradient (rare fp16 overflow) becomes a finite value instead of poisoning Adam."""
    params = [param for param in module.parameters() if param.grad is not None]
    if len(params) == 0:
        return
    flat = torch.cat([param.grad.flatten() for param in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
    flat /= num_gpus * num_rounds
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    for param, grad in zip(params, flat.split([param.numel() for param in params])):
        param.grad = grad.reshape(param.shape)

#----------------------------------------------------------------------------

def training_loop(
    run_dir                 = '.',      # Output directory.
    training_set_kwargs     = {},       # Options for the training set.
    data_loader_kwargs      = {},       # Options for torch.utils.data.DataLoader.
    G_kwargs                = {},       # Options for the generator network.
    D_kwargs                = {},       # Options for the discriminator network.
    G_opt_kwargs            = {},       # Options for the generator optimizer.
    D_opt_kwargs            = {},       # Options for the discriminator optimizer.
    augment_kwargs          = None,     # Options for the augmentation pipeline, None = disable.
    loss_kwargs             = {},       # Options for the loss function.
    metrics                 = [],       # Metrics to evaluate after each network snapshot.
    random_seed             = 0,        # Global random seed.
    num_gpus                = 1,        # Number of processes taking part in training.
    rank                    = 0,        # Rank of this process, in [0, num_gpus).
    batch_size              = 4,        # Total batch size over all processes, one step.
    batch_gpu               = 4,        # Images per process per round (rounds accumulate gradients).
    ema_kimg                = 10,       # Half-life of the generator's exponential moving average.
    ema_rampup              = None,     # EMA ramp-up coefficient (half-life at most cur_nimg * ema_rampup), None = none.
    G_reg_interval          = 4,        # Run the G regularisation every this many steps, None = with every step.
    D_reg_interval          = 16,       # Run the D regularisation every this many steps, None = with every step.
    augment_p               = 0,        # Initial augmentation probability.
    ada_target              = None,     # ADA target value of E[sign(D(real))], None = fixed p.
    ada_interval            = 4,        # Update p every this many steps.
    ada_kimg                = 500,      # kimg over which p may sweep from 0 to 1.
    total_kimg              = 25000,    # Length of training, in thousands of real images.
    kimg_per_tick           = 4,        # Progress line, stats and snapshot granularity.
    image_snapshot_ticks    = 50,       # Image grid every this many ticks, None = never.
    network_snapshot_ticks  = 50,       # Network pickle every this many ticks, None = never.
    resume_pkl              = None,     # Network pickle (path or URL) to take the weights from.
    resume_progress         = False,    # Also continue counters, optimizer state and p from resume_pkl.
    resume_skip_mismatch    = False,    # Resuming: keep tensors whose shape differs in resume_pkl as initialised (else an error).
    cudnn_benchmark         = True,     # torch.backends.cudnn.benchmark (CUDA only).
    allow_tf32              = False,    # TF32 matmuls and convolutions (CUDA only).
    abort_fn                = None,     # Callable: True stops training after the current tick.
    progress_fn             = None,     # Callable(cur_kimg, total_kimg) after every tick.
    compile_mode            = 'off',    # Not upstream: 'auto', 'on' or 'off' (training/compiled.py).
    cpu_bf16                = False,    # Not upstream: FP16 blocks of G and D in bfloat16 on CPU (training/compiled.py).
    label_groups            = False,    # Not upstream: minibatch-std groups share a label (training/label_groups.py).
    label_groups_kimg       = None,     # Not upstream: label groups only until this kimg, upstream's random batches after it (None = whole run).
    device                  = None,     # torch.device, None = cuda:rank when available, else cpu.
):
    start_time = time.time()
    device = torch.device(device) if device is not None else plugins.default_device(rank)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
        torch.backends.cudnn.allow_tf32 = allow_tf32
    assert batch_size % (batch_gpu * num_gpus) == 0, 'batch_size must be a multiple of batch_gpu * num_gpus'
    num_rounds = batch_size // (batch_gpu * num_gpus)

    # Training data.
    if rank == 0:
        print('Loading training set...')
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)

    # Networks.
    if rank == 0:
        print('Constructing networks...')
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    if cpu_bf16 and device.type == 'cpu':    # Not upstream: after the G_ema copy, which stays float32
        from training import compiled
        blocks = compiled.use_cpu_bf16(G, D)
        if rank == 0:
            print(f'CPU bfloat16: {blocks} FP16 blocks of G and D compute in bfloat16' + ('' if blocks else ' (none: the preset has no FP16 blocks, or --fp32)'))

    # Resume: weights from any pickle; counters and optimizer state only when continuing a run.
    resume_data = None
    if resume_pkl is not None and (rank == 0 or resume_progress):
        if rank == 0:
            print(f'Resuming from "{resume_pkl}"')
        with dnnlib.util.open_url(resume_pkl) as f:
            resume_data = legacy.load_network_pkl(f)
        try:
            for name, module in [('G', G), ('D', D), ('G_ema', G_ema)]:
                _resume_module(name, resume_data[name], module, resume_pkl, resume_skip_mismatch, rank)
        except TrainingStopped:
            _all_ranks_agree(False, num_gpus, device)
            raise
    if resume_pkl is not None and not _all_ranks_agree(True, num_gpus, device):
        raise TrainingStopped('Another process could not resume.')    # its own message is reported by rank 0
    progress = dict(cur_nimg=0, cur_tick=-1, batch_idx=0, augment_p=augment_p)
    if resume_progress and resume_data is not None:
        if not isinstance(resume_data.get('progress'), dict):
            raise TrainingStopped(f'{resume_pkl} records no training progress (it was not written by this host); '
                                  f'start a new run with --resume={resume_pkl} instead.')
        progress.update(resume_data['progress'])
        np.random.seed((random_seed * num_gpus + rank + progress['cur_nimg']) % 2**31)
        torch.manual_seed((random_seed * num_gpus + rank + progress['cur_nimg']) % 2**31)
    cur_nimg = int(progress['cur_nimg'])
    cur_tick = int(progress['cur_tick']) + 1
    batch_idx = int(progress['batch_idx'])

    # Data loader (each process sees every num_gpus-th image; reshuffled when a run resumes).
    grouped = label_groups and (label_groups_kimg is None or cur_nimg < label_groups_kimg * 1000)
    if label_groups:
        from training import label_groups as lg
        mbstd_group = lg.group_size(D_kwargs, batch_gpu)
    loader_kwargs = dict(data_loader_kwargs)
    if device.type != 'cuda':
        loader_kwargs['pin_memory'] = False
    if loader_kwargs.get('num_workers', 0) == 0:
        loader_kwargs.pop('prefetch_factor', None)

    def data_iterator(grouped):
        seed = (random_seed + cur_nimg) % 2**31
        if grouped:
            sampler = lg.LabelGroupSampler(training_set, round_size=batch_gpu, group_size=mbstd_group, rank=rank, num_replicas=num_gpus, seed=seed)
        else:
            sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=seed)
        return iter(torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=batch_size // num_gpus, **loader_kwargs))
    training_set_iterator = data_iterator(grouped)
    if rank == 0 and label_groups and not grouped:
        print(f'Label groups ended at kimg {label_groups_kimg:g}; random batches.')
    if rank == 0:
        print()
        print('Num images: ', len(training_set))
        print('Image shape:', training_set.image_shape)
        print('Label shape:', training_set.label_shape)
        print()

    # Print network summaries (G in eval mode: the dummy batch must not move w_avg).
    if rank == 0:
        z = torch.randn([batch_gpu, G.z_dim], device=device)
        c = torch.zeros([batch_gpu, G.c_dim], device=device)
        G.eval()
        img = misc.print_module_summary(G, [z, c])
        G.train()
        misc.print_module_summary(D, [img, c])

    # Augmentation and ADA.
    augment_pipe = None
    ada_stats = None
    ada = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(float(progress['augment_p'])))
        if ada_target is not None:
            from training.augment import AdaptiveP
            ada = AdaptiveP(target=ada_target, interval=ada_interval, kimg=ada_kimg, batch_size=batch_size, p=float(progress['augment_p']))
            ada_stats = training_stats.Collector(regex='Loss/signs/real')

    # Every process starts from rank 0's weights.
    if num_gpus > 1:
        for module in [G, D, G_ema, augment_pipe]:
            if module is not None:
                for tensor in misc.params_and_buffers(module):
                    torch.distributed.broadcast(tensor, src=0)

    # Loss and training phases; lazy regularisation rescales Adam so that the effective
    # hyper-parameters match running the regulariser every step.
    if rank == 0:
        print('Setting up training phases...')
    loss = dnnlib.util.construct_class_by_name(device=device, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D,
        augment_pipe=augment_pipe, **loss_kwargs)
    phases = []
    optimizers = dict()
    for name, module, opt_kwargs, reg_interval in [('G', G, G_opt_kwargs, G_reg_interval), ('D', D, D_opt_kwargs, D_reg_interval)]:
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'both', module=module, opt=opt, interval=1)]
        else:
            mb_ratio = reg_interval / (reg_interval + 1)
            opt_kwargs = dnnlib.EasyDict(opt_kwargs)
            opt_kwargs.lr = opt_kwargs.lr * mb_ratio
            opt_kwargs.betas = [beta ** mb_ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=module.parameters(), **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'main', module=module, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + 'reg', module=module, opt=opt, interval=reg_interval)]
        optimizers[name] = opt
    if resume_progress and resume_data is not None:
        # The state file carries its snapshot's label (which a changed --kimg must not rename).
        state_name = os.path.basename(str(resume_pkl)).replace('network-snapshot-', 'training-state-', 1)
        if not state_name.startswith('training-state-'):
            state_name = f'training-state-{snapshot_label(cur_nimg, kimg_per_tick, total_kimg)}.pkl'
        state_path = os.path.join(run_dir, state_name)
        _restore_training_state(state_path, cur_nimg, optimizers, loss, rank)

    # Not upstream: the main phases through compiled networks (training/compiled.py).
    if compile_mode != 'off':
        from training import compiled
        steps = max(int(total_kimg * 1000) - cur_nimg, 0) // batch_size
        loss = compiled.wrap_loss(loss, compile_mode, device, steps, log=print if rank == 0 else None)

    # Image grids: reals, and fakes of fixed latents (the same latents after a resume).
    grid_size = grid_z = grid_c = None
    if rank == 0:
        print('Exporting sample images...')
        max_grid = (32, 32) if device.type == 'cuda' else (8, 8)    # a CPU renders 1024 fakes slowly
        grid_size, images, labels = setup_snapshot_image_grid(training_set, random_seed=random_seed, max_size=max_grid)
        if not os.path.exists(os.path.join(run_dir, 'reals.png')):
            save_image_grid(images, os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid_size)
        grid_z = torch.from_numpy(np.random.RandomState(random_seed).randn(labels.shape[0], G.z_dim)).float().to(device).split(batch_gpu)
        grid_c = torch.from_numpy(labels).to(device).split(batch_gpu)
        if not os.path.exists(os.path.join(run_dir, 'fakes_init.png')):
            images = _render_grid(G_ema, grid_z, grid_c)
            save_image_grid(images, os.path.join(run_dir, 'fakes_init.png'), drange=[-1, 1], grid_size=grid_size)

    # Statistics.
    if rank == 0:
        print('Initializing logs...')
    stats_collector = training_stats.Collector(regex='.*')
    stats_metrics = dict()
    stats_jsonl = None
    stats_tfevents = None
    if rank == 0:
        stats_jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at')
        try:
            import torch.utils.tensorboard as tensorboard
            stats_tfevents = tensorboard.SummaryWriter(run_dir)
        except ImportError:
            pass

    # Train.
    if rank == 0:
        print(f'Training for {total_kimg} kimg...')
        print()
    tick_start_nimg = cur_nimg
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    if progress_fn is not None:
        progress_fn(cur_nimg // 1000, total_kimg)
    try:
        while True:
            # Fetch training data: reals once per step, fresh latents and labels per phase.
            if grouped and label_groups_kimg is not None and cur_nimg >= label_groups_kimg * 1000:
                grouped = False    # the finishing phase: upstream's random reals and fake labels
                training_set_iterator = data_iterator(grouped)
                if rank == 0:
                    print(f'Label groups end at kimg {cur_nimg / 1000:g}; random batches from here on.')
            with torch.autograd.profiler.record_function('data_fetch'):
                phase_real_img, phase_real_c = next(training_set_iterator)
                phase_real_img = (phase_real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
                phase_real_c = phase_real_c.to(device).split(batch_gpu)
                gen_per_phase = batch_size // num_gpus
                all_gen_z = torch.randn([len(phases) * gen_per_phase, G.z_dim], device=device)
                all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(gen_per_phase)]
                if grouped:
                    all_gen_c = lg.grouped_labels(training_set, len(phases) * gen_per_phase, batch_gpu, mbstd_group)
                else:
                    all_gen_c = np.stack([training_set.get_label(np.random.randint(len(training_set))) for _ in range(len(phases) * gen_per_phase)])
                all_gen_c = torch.from_numpy(all_gen_c).to(device)
                all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(gen_per_phase)]

            # Run the phases due at this step.
            for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
                if batch_idx % phase.interval != 0:
                    continue
                phase_start = time.perf_counter()
                phase.opt.zero_grad(set_to_none=True)
                phase.module.requires_grad_(True)
                for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c)):
                    loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                        sync=(round_idx == num_rounds - 1), gain=phase.interval)
                phase.module.requires_grad_(False)
                with torch.autograd.profiler.record_function(phase.name + '_opt'):
                    _average_gradients(phase.module, num_gpus, num_rounds)
                    phase.opt.step()
                if device.type != 'cuda':    # on CUDA this would force a sync every phase
                    training_stats.report('Timing/' + phase.name, time.perf_counter() - phase_start)

            # G_ema: exponential moving average of G's weights, half-life ramped up early in training.
            with torch.autograd.profiler.record_function('Gema'):
                ema_nimg = ema_kimg * 1000
                if ema_rampup is not None:
                    ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
                ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
                for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                    p_ema.copy_(p.lerp(p_ema, ema_beta))
                for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                    b_ema.copy_(b)
            cur_nimg += batch_size
            batch_idx += 1

            # ADA: move p towards the overfitting target.
            if ada is not None and batch_idx % ada_interval == 0:
                ada_stats.update()
                augment_pipe.p.copy_(torch.as_tensor(ada.update(ada_stats.mean('Loss/signs/real'))))

            # End of tick?
            done = (cur_nimg >= total_kimg * 1000)
            if (not done) and (cur_tick != 0) and (cur_nimg < tick_start_nimg + kimg_per_tick * 1000):
                continue
            tick_end_time = time.time()
            _print_progress(cur_tick, cur_nimg, kimg_per_tick, start_time, tick_start_time, tick_end_time,
                tick_start_nimg, maintenance_time, device, augment_pipe, rank)
            if (not done) and (abort_fn is not None) and abort_fn():
                done = True
                if rank == 0:
                    print()
                    print('Aborting...')

            # Collect this tick's statistics; stop before any snapshot when a loss diverged.
            stats_collector.update()
            stats_dict = stats_collector.as_dict()
            label = snapshot_label(cur_nimg, kimg_per_tick, total_kimg)
            bad_losses = _non_finite_losses(stats_dict)
            bad_tensors = [] if bad_losses else _non_finite_tensors(dict(G=G, D=D, G_ema=G_ema))
            if bad_losses or bad_tensors:
                _write_stats(stats_jsonl, stats_tfevents, stats_dict, stats_metrics, cur_nimg)
                if bad_losses:
                    others = f' (and {len(bad_losses) - 1} other Loss/* statistics)' if len(bad_losses) > 1 else ''
                    what = f'{bad_losses[0]} became {stats_dict[bad_losses[0]].mean}{others}'
                else:
                    what = f'{bad_tensors[0]} became non-finite'
                raise TrainingStopped(f'Training diverged at kimg {cur_nimg / 1000:g}: {what}; stopped without writing a '
                                      f'snapshot of the diverged network (the newest network-snapshot-*.pkl in {run_dir} is the last good one: '
                                      f'lower the learning rate or raise --gamma, then start again or continue with --resume-run).')

            # Image snapshot.
            if rank == 0 and image_snapshot_ticks is not None and (done or cur_tick % image_snapshot_ticks == 0):
                images = _render_grid(G_ema, grid_z, grid_c)
                save_image_grid(images, os.path.join(run_dir, f'fakes{label}.png'), drange=[-1, 1], grid_size=grid_size)

            # Network snapshot (every process takes part in the consistency check).
            snapshot_pkl = None
            snapshot_data = None
            if network_snapshot_ticks is not None and (done or cur_tick % network_snapshot_ticks == 0):
                snapshot_data = dict(training_set_kwargs=dict(training_set_kwargs))
                for name, module in [('G', G), ('D', D), ('G_ema', G_ema), ('augment_pipe', augment_pipe)]:
                    if module is not None:
                        if num_gpus > 1:
                            misc.check_ddp_consistency(module, ignore_regex=r'.*\.[^.]+_(avg|ema)')
                        module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
                    snapshot_data[name] = module
                augment_now = float(augment_pipe.p) if augment_pipe is not None else float(augment_p)
                snapshot_data['progress'] = dict(cur_nimg=cur_nimg, cur_tick=cur_tick, batch_idx=batch_idx, augment_p=augment_now)
                snapshot_pkl = os.path.join(run_dir, f'network-snapshot-{label}.pkl')
                if rank == 0:
                    # The state file goes first and the previous one last: the newest snapshot always has its state.
                    state_name = f'training-state-{label}.pkl'
                    write_pickle_atomic(dict(cur_nimg=cur_nimg, pl_mean=float(getattr(loss, 'pl_mean', 0.0)),
                        optimizers={name: _to_cpu(opt.state_dict()) for name, opt in optimizers.items()}), os.path.join(run_dir, state_name))
                    write_pickle_atomic(snapshot_data, snapshot_pkl)
                    for name in os.listdir(run_dir):
                        if name.startswith('training-state-') and name.endswith('.pkl') and name != state_name:
                            os.remove(os.path.join(run_dir, name))

            # Metrics.
            if snapshot_data is not None and len(metrics) > 0:
                from metrics import metric_main
                if rank == 0:
                    print('Evaluating metrics...')
                for metric in metrics:
                    result_dict = metric_main.calc_metric(metric=metric, G=snapshot_data['G_ema'],
                        dataset_kwargs=training_set_kwargs, num_gpus=num_gpus, rank=rank, device=device)
                    if rank == 0:
                        metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
                    stats_metrics.update(result_dict.results)
            del snapshot_data

            _write_stats(stats_jsonl, stats_tfevents, stats_dict, stats_metrics, cur_nimg)
            if progress_fn is not None:
                progress_fn(cur_nimg // 1000, total_kimg)

            # Next tick.
            cur_tick += 1
            tick_start_nimg = cur_nimg
            tick_start_time = time.time()
            maintenance_time = tick_start_time - tick_end_time
            if done:
                break
    finally:
        if stats_jsonl is not None:
            stats_jsonl.close()
        if stats_tfevents is not None:
            stats_tfevents.close()

    if rank == 0:
        print()
        print('Exiting...')

#----------------------------------------------------------------------------
# Pieces of the loop.

def _render_grid(G_ema, grid_z, grid_c):
    """G_ema's images of the grid latents, float numpy [N, C, H, W] in about [-1, 1]."""
    with torch.no_grad():
        return torch.cat([G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(grid_z, grid_c)]).numpy()

def _all_ranks_agree(ok, num_gpus, device):
    """True when every process passes ok=True (one all-reduce); lets one process's failure stop
    the others instead of leaving them waiting in the next collective."""
    if num_gpus == 1:
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(flag)
    return int(flag.item()) == 0

def _resume_module(name, src, dst, resume_pkl, skip_mismatch, rank):
    """Copy the resumed network `src` into `dst` and print what was copied, new and skipped."""
    if src is None:
        if rank == 0:
            print(f'Resumed {name}: {resume_pkl} has no {name}; it starts from its initial weights.')
        return
    try:
        report = misc.copy_params_and_buffers(src, dst, skip_mismatch=skip_mismatch, report=True)
    except misc.ShapeMismatchError as err:
        raise TrainingStopped(f'Cannot resume {name} from {resume_pkl}: {err}; resume from a pickle of the same '
                              f'architecture, or pass --resume-skip-mismatch to keep those tensors as initialised.') from None
    if rank == 0:
        print(misc.format_copy_report(f'Resumed {name}', report))

def _to_cpu(obj):
    """`obj` with every tensor in its dicts and lists moved to the CPU: a run trained on a GPU resumes anywhere
    (Optimizer.load_state_dict moves the moments to each parameter's device)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return obj

def _restore_training_state(state_path, cur_nimg, optimizers, loss, rank):
    """Load optimizer moments (and the path-length mean) saved with the snapshot at `cur_nimg`."""
    state = None
    if os.path.isfile(state_path):
        with open(state_path, 'rb') as f:
            state = pickle.load(f)
    if state is None or state.get('cur_nimg') != cur_nimg:
        if rank == 0:
            print('No optimizer state saved with this snapshot: Adam moments start from zero.')
        return
    for name, opt in optimizers.items():
        opt.load_state_dict(state['optimizers'][name])
    if hasattr(loss, 'pl_mean'):
        loss.pl_mean.fill_(state['pl_mean'])

def _print_progress(cur_tick, cur_nimg, kimg_per_tick, start_time, tick_start_time, tick_end_time,
                    tick_start_nimg, maintenance_time, device, augment_pipe, rank):
    """Report this tick's progress statistics and print the progress line (rank 0)."""
    report0 = training_stats.report0
    kimg_format = '<8.1f' if kimg_per_tick >= 1 else '<8.3f'
    fields = []
    fields += [f"tick {report0('Progress/tick', cur_tick):<5d}"]
    fields += [f"kimg {report0('Progress/kimg', cur_nimg / 1e3):{kimg_format}}"]
    fields += [f"time {dnnlib.util.format_time(report0('Timing/total_sec', tick_end_time - start_time)):<12s}"]
    fields += [f"sec/tick {report0('Timing/sec_per_tick', tick_end_time - tick_start_time):<7.1f}"]
    fields += [f"sec/kimg {report0('Timing/sec_per_kimg', (tick_end_time - tick_start_time) / (cur_nimg - tick_start_nimg) * 1e3):<7.2f}"]
    fields += [f"maintenance {report0('Timing/maintenance_sec', maintenance_time):<6.1f}"]
    fields += [f"cpumem {report0('Resources/cpu_mem_gb', _rss_gb()):<6.2f}"]
    if device.type == 'cuda':
        fields += [f"gpumem {report0('Resources/peak_gpu_mem_gb', torch.cuda.max_memory_allocated(device) / 2**30):<6.2f}"]
        torch.cuda.reset_peak_memory_stats(device)
    fields += [f"augment {report0('Progress/augment', float(augment_pipe.p) if augment_pipe is not None else 0):.3f}"]
    report0('Timing/total_hours', (tick_end_time - start_time) / 3600)
    report0('Timing/total_days', (tick_end_time - start_time) / 86400)
    if rank == 0:
        print(' '.join(fields), flush=True)

def _write_stats(stats_jsonl, stats_tfevents, stats_dict, stats_metrics, cur_nimg):
    """Append the tick's statistics to stats.jsonl (and TensorBoard when installed)."""
    timestamp = time.time()
    if stats_jsonl is not None:
        stats_jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + '\n')
        stats_jsonl.flush()
    if stats_tfevents is not None:
        global_step = int(cur_nimg / 1e3)
        walltime = timestamp
        for name, value in stats_dict.items():
            stats_tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=walltime)
        for name, value in stats_metrics.items():
            stats_tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=walltime)
        stats_tfevents.flush()

#----------------------------------------------------------------------------
