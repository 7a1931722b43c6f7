"""Compute quality metrics of a generator snapshot:
`python calc_metrics.py --network=run/network-snapshot-000100.pkl --metrics=fid50k_full,kid50k_full`.

Flags follow upstream StyleGAN2-ADA (--network, --metrics, --data, --mirror, --gpus, --verbose);
results are printed as JSON lines and, when the pickle sits in a run folder, appended to
`metric-<name>.jsonl` there. Additions:
  --gpus=N         without CUDA, N CPU processes share the work (torch.distributed, gloo);
  --detector=SPEC  feature detector: 'inception' (default), a TorchScript/pickle path or URL,
                   or 'module:function' (see metrics/feature_detectors.py).
On CPU each process uses its share of the available cores (unless OMP_NUM_THREADS is set), and
progress lines tell items done, items/s and the time left. `fid2k`, `kid2k`, `pr2k3` compare
2000 fakes with a fixed subset of 2000 reals (see metrics/metric_main.py) and finish in minutes.
"""

import copy
import os
import sys
import tempfile

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click
import torch

import dnnlib
import legacy
from torch_utils import plugins
from metrics import feature_detectors
from metrics import metric_main
from metrics import metric_utils

#----------------------------------------------------------------------------

def subprocess_fn(rank, args, temp_dir):
    """Compute args.metrics as process `rank` of args.num_gpus; rank 0 reports."""
    device = plugins.default_device(rank)
    if device.type == 'cpu':
        threads = metric_utils.set_cpu_threads(args.num_gpus)
        if rank == 0 and args.verbose:
            print(f'{threads} CPU thread(s) per process.')
    if args.num_gpus > 1:
        if device.type != 'cpu':
            torch.cuda.set_device(device)
        backend = 'nccl' if device.type == 'cuda' and os.name != 'nt' else 'gloo'
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        init_method = f'file:///{init_file.replace(os.sep, "/")}' if os.name == 'nt' else f'file://{init_file}'
        torch.distributed.init_process_group(backend=backend, init_method=init_method, rank=rank, world_size=args.num_gpus)
    try:
        G = copy.deepcopy(args.G).eval().requires_grad_(False).to(device)
        gen_stats_memo = dict()     # e.g. fid2k and kid2k look at the same 2000 generated images
        for metric in args.metrics:
            if rank == 0 and args.verbose:
                print(f'Calculating {metric}...')
            progress = metric_utils.ProgressMonitor(verbose=args.verbose)
            result_dict = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=args.dataset_kwargs,
                num_gpus=args.num_gpus, rank=rank, device=device, progress=progress, detector_url=args.detector,
                gen_stats_memo=gen_stats_memo)
            if rank == 0:
                metric_main.report_metric(result_dict, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)
                if args.verbose:
                    values = ', '.join(f'{name} = {value:.4g}' for name, value in result_dict.results.items())
                    print(f'{metric}: {values} (total time {result_dict.total_time_str})', flush=True)
    except feature_detectors.DetectorError as err:
        if args.num_gpus == 1:
            raise
        if rank == 0:    # the parent reports it once all processes have ended
            with open(os.path.join(temp_dir, 'error.txt'), 'w') as f:
                f.write(str(err))
        raise SystemExit(1)
    finally:
        if args.num_gpus > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

def launch(args):
    """Run the metrics in this process (one) or in args.num_gpus spawned processes."""
    with tempfile.TemporaryDirectory() as temp_dir:
        try:
            if args.num_gpus == 1:
                subprocess_fn(rank=0, args=args, temp_dir=temp_dir)
            else:
                torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)
        except feature_detectors.DetectorError as err:
            raise click.ClickException(str(err))
        except Exception:
            error_file = os.path.join(temp_dir, 'error.txt')
            if os.path.isfile(error_file):
                with open(error_file) as f:
                    raise click.ClickException(f.read())
            raise

#----------------------------------------------------------------------------

def parse_metrics(text):
    """'a,b' -> ['a', 'b'] (each a registered metric); 'none' -> []."""
    if text.strip().lower() in ('none', ''):
        return []
    metrics = [item.strip() for item in text.split(',') if item.strip()]
    for metric in metrics:
        if not metric_main.is_valid_metric(metric):
            raise click.BadParameter(f'unknown metric {metric!r}; choose from {", ".join(metric_main.list_valid_metrics())} or none.',
                param_hint='--metrics')
    return metrics

def load_network(network_pkl, verbose):
    """Reads a snapshot pickle. :return: dict with G_ema and training_set_kwargs."""
    if '://' not in network_pkl and not os.path.isfile(network_pkl):
        raise click.BadParameter(f'{network_pkl!r} does not exist; pass a network-snapshot-*.pkl file or URL.', param_hint='--network')
    try:
        with dnnlib.util.open_url(network_pkl, verbose=verbose) as f:
            network_dict = legacy.load_network_pkl(f)
    except legacy.NetworkLoadError as err:
        raise click.ClickException(str(err))
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise click.ClickException(f'Could not load network pickle {network_pkl!r}: {detail}')
    if not isinstance(network_dict, dict) or network_dict.get('G_ema') is None:
        raise click.ClickException(f'Network pickle {network_pkl!r} has no G_ema: pass a snapshot written by train.py.')
    return network_dict

def dataset_options(network_dict, data, mirror, G):
    """Dataset kwargs: --data, else those recorded in the pickle; resolution and labels follow G."""
    if data is not None:
        if not os.path.exists(data):
            raise click.BadParameter(f'dataset {data!r} does not exist; pass a dataset folder or zip made by dataset_tool.py.', param_hint='--data')
        kwargs = dnnlib.EasyDict(class_name='training.dataset.ImageFolderDataset', path=data)
    elif network_dict.get('training_set_kwargs') is not None:
        kwargs = dnnlib.EasyDict(network_dict['training_set_kwargs'])
        path = kwargs.get('path')
        if isinstance(path, str) and not os.path.exists(path):
            raise click.ClickException(f'The training dataset {path!r} recorded in the pickle does not exist here: pass --data with its location.')
    else:
        raise click.ClickException('The network pickle does not record its training dataset: pass --data with the dataset to compare against.')
    kwargs.resolution = G.img_resolution
    kwargs.use_labels = (G.c_dim != 0)
    if mirror is not None:
        kwargs.xflip = mirror
    try:
        dataset = dnnlib.util.construct_class_by_name(**kwargs)
    except Exception as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise click.ClickException(f'Could not open dataset {kwargs.get("path")!r}: {detail}')
    if len(dataset) == 0:
        raise click.ClickException(f'Dataset {kwargs.get("path")!r} holds no images: pass a non-empty dataset with --data.')
    return kwargs

#----------------------------------------------------------------------------

@click.command()
@click.option('network_pkl', '--network', help='Snapshot pickle to evaluate (path or URL)', metavar='PATH', required=True)
@click.option('--metrics', help='Metrics to compute, comma-separated, or "none"', default='fid50k_full', show_default=True)
@click.option('--data', help='Real images to compare with (dataset folder or zip) [default: the training set recorded in the pickle]', metavar='PATH')
@click.option('--mirror', help='Count x-flipped copies of the real images [default: as recorded in the pickle]', type=bool, metavar='BOOL')
@click.option('--gpus', help='Processes to split the work over: GPUs, or CPU processes without CUDA', type=click.IntRange(min=1), default=1, metavar='INT', show_default=True)
@click.option('--verbose', help='Print options and progress', type=bool, default=True, metavar='BOOL', show_default=True)
@click.option('--detector', help='Feature detector: inception, a TorchScript/pickle path or URL, or module:function', default=None, metavar='SPEC')
def calc_metrics(network_pkl, metrics, data, mirror, gpus, verbose, detector):
    """Evaluate a generator snapshot with FID, KID or precision/recall.

    \b
    A snapshot inside a training run folder is compared with the dataset it was trained on, and
    each result is also appended to metric-<name>.jsonl in that folder:
      python calc_metrics.py --metrics=fid50k_full,kid50k_full \\
          --network=runs/00003-digits-mspe/network-snapshot-000200.pkl
    \b
    Any pickle against a dataset of your choice, with CPU-sized metrics (2000 fakes against a
    fixed subset of 2000 reals, whose statistics are cached):
      python calc_metrics.py --metrics=fid2k,kid2k --data=datasets/digits.zip \\
          --network=network-snapshot-000200.pkl
    \b
    The same against every real image, on two CPU processes:
      python calc_metrics.py --metrics=fid2k_full,pr2k3_full --data=datasets/digits.zip \\
          --network=network-snapshot-000200.pkl --gpus=2
    """
    args = dnnlib.EasyDict(metrics=parse_metrics(metrics), num_gpus=gpus, verbose=verbose, network_pkl=network_pkl)
    if torch.cuda.is_available() and gpus > torch.cuda.device_count():
        raise click.BadParameter(f'{gpus} GPUs requested but only {torch.cuda.device_count()} are visible; lower --gpus.', param_hint='--gpus')

    network_dict = load_network(network_pkl, verbose)
    args.G = network_dict['G_ema']
    args.dataset_kwargs = dataset_options(network_dict, data, mirror, args.G)
    args.detector = detector
    if len(args.metrics) > 0:
        try:    # fail now, in one sentence, rather than inside every process
            metric_utils.get_feature_detector(detector or feature_detectors.DEFAULT_DETECTOR, device=torch.device('cpu'), verbose=verbose)
        except feature_detectors.DetectorError as err:
            raise click.ClickException(str(err))

    # Results go to the run folder when the pickle is a snapshot inside one.
    args.run_dir = None
    if os.path.isfile(network_pkl):
        pkl_dir = os.path.dirname(os.path.abspath(network_pkl))
        if os.path.isfile(os.path.join(pkl_dir, 'training_options.json')):
            args.run_dir = pkl_dir

    if args.verbose:
        print('Dataset options:')
        print(dict(args.dataset_kwargs))
        print(f'Launching {args.num_gpus} process(es) on {plugins.default_device(0).type}...')
    if len(args.metrics) > 0:
        launch(args)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    calc_metrics()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
