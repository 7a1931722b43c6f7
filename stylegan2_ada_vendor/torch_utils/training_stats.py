"""Training statistics: scalars and tensors reported anywhere during training, summarised per
interval (a tick) as count, mean and standard deviation, across all processes.

    training_stats.report('Loss/G/loss', loss)       # any code, any time, any device
    collector = training_stats.Collector(regex='Loss/.*')
    ...
    collector.update()                               # every process, same moment
    collector.mean('Loss/G/loss'), collector.as_dict()

`report` only accumulates three running sums per name and device (count, sum, sum of squares,
in float64) on the value's own device: it never waits for the device. `Collector.update()`
is where processes meet: the moments reported since the collector's previous update are summed
over every process with one all-reduce (and one gather of the statistic names, so processes
that never reported a name still agree). Call it at the same point in every process.
"""

import re

import numpy as np
import torch

import dnnlib

#----------------------------------------------------------------------------

_num_moments = 3                # count, sum, sum of squares
_reduce_dtype = torch.float32   # dtype of the reported elements while summing
_counter_dtype = torch.float64  # dtype of the running sums
_rank = 0                       # This process's rank (see init_multiprocessing).
_sync_device = None             # Device for the cross-process reduction, None = single process.
_counters = dict()              # name -> {device: running moments [3] on that device}

#----------------------------------------------------------------------------

def init_multiprocessing(rank, sync_device):
    """Tell the module about multi-process training.

    :param rank: rank of this process (report0 records only on rank 0).
    :param sync_device: device of the all-reduce tensors (the process's CUDA device for NCCL,
        the CPU for gloo); None means one process and no communication.
    """
    global _rank, _sync_device
    _rank = int(rank)
    _sync_device = torch.device(sync_device) if sync_device is not None else None

def report(name, value):
    """Record the elements of `value` (tensor, number, numpy array or list; any shape, empty
    allowed) under `name`. Non-finite elements are kept, so a diverging loss shows as NaN.

    :return: `value`, unchanged, so calls can wrap expressions.
    """
    if name not in _counters:
        _counters[name] = dict()
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value    # registers the name only
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([
        torch.ones_like(elems).sum(),
        elems.sum(),
        elems.square().sum(),
    ]).to(_counter_dtype)
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value

def report0(name, value):
    """Like report(), but only rank 0 records `value` (other ranks register the name only):
    for numbers that are the same in every process, e.g. the tick number."""
    report(name, value if _rank == 0 else [])
    return value

#----------------------------------------------------------------------------

def _local_totals(names):
    """Running moments of `names` in this process, summed over devices: float64 [len(names), 3]."""
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    totals = torch.zeros([len(names), _num_moments], dtype=_counter_dtype, device=device)
    for i, name in enumerate(names):
        for moments in _counters.get(name, {}).values():
            totals[i].add_(moments.to(device))
    return totals

def _distributed():
    return _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1

def _all_names(names):
    """Sorted union of `names` over all processes."""
    if not _distributed():
        return sorted(names)
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, sorted(names))
    return sorted(set(name for part in gathered for name in part))

class Collector:
    """Summaries of the statistics whose names fully match `regex`, over the interval between
    two update() calls, pooled over all processes.

    With keep_previous, a statistic that received nothing in the last interval keeps its
    previous summary; otherwise it reads as num 0, mean and std NaN.
    """

    def __init__(self,
        regex           = '.*',     # Statistics to collect: names that fully match this regex.
        keep_previous   = True,     # Keep a statistic's last summary through empty intervals.
    ):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._baseline = dict()     # name -> this process's running moments at the last update
        self._moments = dict()      # name -> pooled moments of the last interval [3] (cpu)
        for name in self._local_names():    # values reported before construction are not ours
            self._baseline[name] = _local_totals([name])[0].cpu()

    def _local_names(self):
        return [name for name in _counters if self._regex.fullmatch(name)]

    def names(self):
        """Names of the matching statistics this process knows, in reporting order."""
        return self._local_names()

    def update(self):
        """Close the interval: pool the moments reported since the previous update over all
        processes. A collective call in multi-process training."""
        if not self._keep_previous:
            self._moments.clear()
        names = _all_names(self._local_names())
        totals = _local_totals(names).cpu()
        deltas = totals.clone()
        for i, name in enumerate(names):
            if name in self._baseline:
                deltas[i] -= self._baseline[name]
            self._baseline[name] = totals[i]
        if _distributed():
            deltas = deltas.to(_sync_device)
            torch.distributed.all_reduce(deltas)
            deltas = deltas.cpu()
        for i, name in enumerate(names):
            if deltas[i, 0] > 0:
                self._moments[name] = deltas[i]

    def num(self, name):
        """Number of elements reported under `name` in the last interval (all processes)."""
        moments = self._moments.get(name)
        return 0 if moments is None else int(moments[0])

    def mean(self, name):
        """Mean of those elements (NaN when there were none)."""
        moments = self._moments.get(name)
        if moments is None or moments[0] == 0:
            return float('nan')
        return float(moments[1] / moments[0])

    def std(self, name):
        """Standard deviation (population) of those elements (NaN when there were none)."""
        moments = self._moments.get(name)
        if moments is None or moments[0] == 0:
            return float('nan')
        mean = float(moments[1] / moments[0])
        if not np.isfinite(mean):
            return mean
        return float(np.sqrt(max(float(moments[2] / moments[0]) - mean ** 2, 0)))

    def as_dict(self):
        """EasyDict name -> EasyDict(num, mean, std) of every matching statistic (the line that
        goes into stats.jsonl)."""
        stats = dnnlib.EasyDict()
        for name in sorted(set(self.names()) | set(self._moments)):
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name):
        """Same as mean(name)."""
        return self.mean(name)

#----------------------------------------------------------------------------

default_collector = Collector()     # Every statistic, for code that has no collector of its own.
