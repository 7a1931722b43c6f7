"""Shared machinery of the metrics: options, feature statistics, and feature extraction from a
dataset (with a disk cache) or from a generator."""
import copy
import hashlib
import json
import os
import pickle
import time
import uuid

import numpy as np
import torch

import dnnlib
from metrics import feature_detectors
from torch_utils import plugins

#----------------------------------------------------------------------------

class MetricOptions:
    """Everything a metric needs: the generator, the dataset, the process group and the detector."""

    def __init__(self,
        G               = None,     # Generator with the upstream interface (z_dim, c_dim, G(z, c, **G_kwargs)).
        G_kwargs        = {},       # Extra keyword arguments of G's forward (e.g. noise_mode, truncation_psi).
        dataset_kwargs  = {},       # Kwargs of the real dataset, with class_name.
        num_gpus        = 1,        # Number of processes taking part (GPUs, or CPU processes).
        rank            = 0,        # Rank of this process.
        device          = None,     # Torch device; None = cuda:<rank> if CUDA is available, else cpu.
        progress        = None,     # ProgressMonitor of the caller, or None.
        cache           = True,     # Reuse dataset statistics cached on disk?
        detector_url    = None,     # Feature detector spec (see metrics.feature_detectors); None = Inception.
        gen_stats_memo  = None,     # Dict shared by the metrics of one G in one process: reuses its generated features; None = off.
    ):
        assert 0 <= rank < num_gpus
        self.G              = G
        self.G_kwargs       = dnnlib.EasyDict(G_kwargs)
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus       = num_gpus
        self.rank           = rank
        if device is None:
            device = plugins.default_device(rank)
        self.device         = torch.device(device)
        self.progress       = progress.sub() if progress is not None and rank == 0 else ProgressMonitor()
        self.cache          = cache
        self.detector_url   = detector_url if detector_url is not None else feature_detectors.DEFAULT_DETECTOR
        self.gen_stats_memo = gen_stats_memo

#----------------------------------------------------------------------------

_feature_detector_cache = dict()

def get_feature_detector_name(url):
    """Short name of a detector spec, used in cache file names."""
    return feature_detectors.detector_name(url)

def _distributed(num_gpus):
    return num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()

THREAD_ENV_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')

def available_cpus():
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, 'sched_getaffinity'):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)

def set_cpu_threads(num_processes=1):
    """Gives torch an equal share of the available cores per process, unless the user chose a
    thread count (OMP_NUM_THREADS or MKL_NUM_THREADS set). :return: torch's thread count."""
    if not any(os.environ.get(name) for name in THREAD_ENV_VARS):
        torch.set_num_threads(max(1, available_cpus() // num_processes))
    return torch.get_num_threads()

def default_batch_size(device):
    """Detector batch size: 64 on a GPU, 32 on CPU (on our two shared cores the Inception took
    longer per image in batches of 8 or 16; a batch of 32 adds about 0.9 GB of activations)."""
    return 64 if torch.device(device).type == 'cuda' else 32

def get_feature_detector(url, device=torch.device('cpu'), num_gpus=1, rank=0, verbose=False):
    """Loads a feature detector once per process and device (rank 0 first, so that only one
    process downloads). :return: module mapping uint8 [N, C, H, W] to float32 [N, D]."""
    key = (url, str(torch.device(device)))
    if key not in _feature_detector_cache:
        is_leader = (rank == 0)
        if not is_leader and _distributed(num_gpus):
            torch.distributed.barrier()  # Leader goes first.
        _feature_detector_cache[key] = feature_detectors.load_feature_detector(url, device, verbose=(verbose and is_leader))
        if is_leader and _distributed(num_gpus):
            torch.distributed.barrier()  # Others follow.
    return _feature_detector_cache[key]

#----------------------------------------------------------------------------

class FeatureStats:
    """Accumulates detector features: all of them, and/or running sums for the mean and covariance."""

    def __init__(self,
        capture_all      = False,   # Keep every feature vector (for KID, precision/recall)?
        capture_mean_cov = False,   # Keep float64 sums for the mean and covariance (for FID)?
        max_items        = None,    # Stop accepting items after this many; None = no limit.
    ):
        self.capture_all = capture_all
        self.capture_mean_cov = capture_mean_cov
        self.max_items = max_items
        self.num_items = 0
        self.num_features = None
        self.all_features = None
        self.raw_mean = None
        self.raw_cov = None

    def set_num_features(self, num_features):
        """Fixes the feature dimension D on first use; later batches must match it."""
        if self.num_features is not None:
            assert num_features == self.num_features, f'feature dimension changed from {self.num_features} to {num_features}'
        else:
            self.num_features = num_features
            self.all_features = []
            self.raw_mean = np.zeros([num_features], dtype=np.float64)
            self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self):
        """True once max_items items have been accepted."""
        return (self.max_items is not None) and (self.num_items >= self.max_items)

    def append(self, x):
        """Adds a batch of features, dropping what exceeds max_items. :param x: array [N, D]."""
        x = np.asarray(x, dtype=np.float32)
        assert x.ndim == 2
        if (self.max_items is not None) and (self.num_items + x.shape[0] > self.max_items):
            if self.num_items >= self.max_items:
                return
            x = x[:self.max_items - self.num_items]
        self.set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x, num_gpus=1, rank=0):
        """Adds a batch of features from every process: with torch.distributed initialised and
        num_gpus > 1, the batches of all ranks are gathered and interleaved (item i of rank r
        becomes item i * num_gpus + r), so every rank holds the same statistics.
        :param x: tensor [N, D] (N equal on all ranks)."""
        assert isinstance(x, torch.Tensor) and x.ndim == 2
        assert 0 <= rank < num_gpus
        if _distributed(num_gpus):
            ys = [torch.empty_like(x) for _ in range(num_gpus)]
            torch.distributed.all_gather(ys, x.contiguous())
            x = torch.stack(ys, dim=1).flatten(0, 1)
        self.append(x.detach().cpu().numpy())

    def get_all(self):
        """:return: float32 array [num_items, D] of every feature (needs capture_all)."""
        assert self.capture_all
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], dtype=np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_all_torch(self):
        """:return: float32 tensor [num_items, D] of every feature (needs capture_all)."""
        return torch.from_numpy(self.get_all())

    def get_mean_cov(self):
        """:return: (mean [D], covariance [D, D]) in float64, covariance normalised by N (needs capture_mean_cov)."""
        assert self.capture_mean_cov and self.num_items > 0
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items - np.outer(mean, mean)
        return mean, cov

    def save(self, pkl_file):
        """Writes the statistics to a pickle file."""
        with open(pkl_file, 'wb') as f:
            pickle.dump(self.__dict__, f)

    @staticmethod
    def load(pkl_file):
        """Reads statistics written by `save`. :return: FeatureStats."""
        with open(pkl_file, 'rb') as f:
            state = pickle.load(f)
        stats = FeatureStats.__new__(FeatureStats)
        stats.__dict__.update(state)
        return stats

#----------------------------------------------------------------------------

class ProgressMonitor:
    """Tells how far a feature extraction has got: prints a line with items done / total, items per
    second, time elapsed and the estimated time left (when verbose and tagged) every `report_every`
    items or `report_seconds` seconds, whichever comes first, and at the end; and passes the
    overall fraction done to an optional `callback(fraction)`. A monitor covers the part
    `span` = (lo, hi) of the whole job; `sub` hands out a slice of it."""

    def __init__(self,
        tag             = None,     # Name printed at the start of each line; None = print nothing.
        num_items       = None,     # Items this monitor expects; None = unknown (no ETA).
        report_every    = 1000,     # Print at least once per this many items.
        report_seconds  = 15,       # ... and at least once per this many seconds (slow CPU runs).
        verbose         = False,    # Print progress lines at all?
        callback        = None,     # Called with the overall fraction done (0..1), or None.
        span            = (0, 1),   # Part of the overall job this monitor covers.
        clock           = time.time,    # Seconds now; replaceable in tests.
    ):
        self.tag = tag
        self.num_items = num_items
        self.report_every = report_every
        self.report_seconds = report_seconds
        self.verbose = verbose
        self.callback = callback
        self.span = span
        self.clock = clock
        self.start_time = clock()
        self.last_time = self.start_time
        self.last_items = 0
        if callback is not None:
            callback(span[0])

    def progress_line(self, cur_items, now):
        """'tag: 640/2000 items (32%), 11.2 items/s, 57s elapsed, ETA 2m 01s' (no total, no ETA when unknown)."""
        elapsed = max(now - self.start_time, 1e-9)
        rate = cur_items / elapsed
        line = f'{self.tag}: {cur_items}'
        if self.num_items:
            line += f'/{self.num_items} items ({100 * min(cur_items / self.num_items, 1):.0f}%)'
        else:
            line += ' items'
        line += f', {rate:.1f} items/s, {dnnlib.util.format_time(elapsed)} elapsed'
        if self.num_items and cur_items < self.num_items and rate > 0:
            line += f', ETA {dnnlib.util.format_time((self.num_items - cur_items) / rate)}'
        return line

    def update(self, cur_items):
        """Reports that `cur_items` items are done so far."""
        now = self.clock()
        done = self.num_items is not None and cur_items >= self.num_items
        due = cur_items - self.last_items >= self.report_every or now - self.last_time >= self.report_seconds
        if not (due or done) or cur_items == self.last_items:
            return
        if self.verbose and self.tag is not None:
            print(self.progress_line(cur_items, now), flush=True)
        self.last_time, self.last_items = now, cur_items
        if self.callback is not None and self.num_items:
            lo, hi = self.span
            self.callback(lo + (hi - lo) * min(cur_items / self.num_items, 1.0))

    def note(self, message):
        """Prints `tag: message` when verbose and tagged (e.g. that statistics came from the cache)."""
        if self.verbose and self.tag is not None:
            print(f'{self.tag}: {message}', flush=True)

    def sub(self, tag=None, num_items=None, report_every=1000, rel_lo=0, rel_hi=1):
        """A monitor for the part [rel_lo, rel_hi] of this one's span."""
        lo, hi = self.span
        return ProgressMonitor(tag=tag, num_items=num_items, report_every=report_every, report_seconds=self.report_seconds,
            verbose=self.verbose, callback=self.callback, span=(lo + (hi - lo) * rel_lo, lo + (hi - lo) * rel_hi), clock=self.clock)

#----------------------------------------------------------------------------

def _default_loader_kwargs(device):
    # Worker processes pay off when a GPU runs the detector; on CPU they compete with it for cores.
    if device.type == 'cuda':
        return dict(pin_memory=True, num_workers=3, prefetch_factor=2)
    return dict(num_workers=0)

def _dataset_fingerprint(dataset_kwargs):
    """Dataset kwargs plus the absolute path, size and modification time of the data on disk, so a
    rebuilt dataset at the same path does not reuse stale statistics."""
    kwargs = dict(dataset_kwargs)
    path = kwargs.get('path')
    if isinstance(path, str) and os.path.exists(path):
        st = os.stat(path)
        kwargs['path'] = os.path.abspath(path)
        kwargs['_data_stat'] = (st.st_size, st.st_mtime_ns)
    return kwargs

# Feature sets up to this many items keep every vector *and* the mean/covariance sums (10k x 2048
# float32 = 80 MB), so that FID, KID and precision/recall share one extraction and one cache file.
SHARED_STATS_MAX_ITEMS = 10000

def _shared_stats_kwargs(stats_kwargs, num_items):
    """The FeatureStats options to compute: small sets capture everything, big ones what was asked."""
    kwargs = dict(stats_kwargs)
    if num_items is not None and num_items <= SHARED_STATS_MAX_ITEMS:
        kwargs.update(capture_all=True, capture_mean_cov=True)
    return kwargs

def _broadcast_flag(flag, opts):
    """Rank 0's boolean, seen by every rank."""
    if not _distributed(opts.num_gpus):
        return flag
    t = torch.as_tensor(float(flag), dtype=torch.float32, device=opts.device)
    torch.distributed.broadcast(tensor=t, src=0)
    return float(t.cpu()) != 0

def compute_feature_stats_for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=None,
        data_loader_kwargs=None, max_items=None, **stats_kwargs):
    """Runs the detector over the real dataset `opts.dataset_kwargs` (the first `max_items` items,
    or all; a dataset `max_size` picks a fixed random subset first), split over the ranks, in
    batches of `batch_size` (None = `default_batch_size`). The result is cached under dnnlib's
    cache dir ('gan-metrics'), keyed by the dataset (path, size, modification time, max_size,
    random_seed), the detector (spec and file), its kwargs and `max_items`; a cached result is
    loaded without loading the detector. Sets of up to SHARED_STATS_MAX_ITEMS items keep both
    every feature and the mean/covariance, so FID, KID and precision/recall share one cache file.
    :return: FeatureStats (identical on every rank)."""
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    if data_loader_kwargs is None:
        data_loader_kwargs = _default_loader_kwargs(opts.device)
    if batch_size is None:
        batch_size = default_batch_size(opts.device)
    num_items = len(dataset)
    if max_items is not None:
        num_items = min(num_items, max_items)
    stats_kwargs = _shared_stats_kwargs(stats_kwargs, num_items)
    progress = opts.progress.sub(tag='dataset features', num_items=num_items, rel_lo=rel_lo, rel_hi=rel_hi)

    # Look for a cached result.
    cache_file = None
    if opts.cache:
        key = json.dumps(dict(dataset=_dataset_fingerprint(opts.dataset_kwargs),
            detector=feature_detectors.detector_fingerprint(detector_url), detector_kwargs=detector_kwargs,
            max_items=max_items, stats=stats_kwargs), sort_keys=True, default=repr)
        digest = hashlib.sha1(key.encode('utf-8')).hexdigest()[:20]
        cache_file = dnnlib.make_cache_dir_path('gan-metrics', f'{dataset.name}-{get_feature_detector_name(detector_url)}-{digest}.pkl')
        if _broadcast_flag(opts.rank == 0 and os.path.isfile(cache_file), opts):
            progress.note(f'{num_items} items from the cache ({cache_file})')
            progress.update(num_items)
            return FeatureStats.load(cache_file)

    # Extract features. Rank r reads items r, r + num_gpus, ...; the last round wraps around to the
    # start so every rank runs the same number of batches (the extra items are dropped by max_items).
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    detector = get_feature_detector(url=detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    rounds = -(-num_items // opts.num_gpus)
    my_items = [(opts.rank + k * opts.num_gpus) % num_items for k in range(rounds)]
    loader = torch.utils.data.DataLoader(dataset=dataset, sampler=my_items, batch_size=batch_size, **data_loader_kwargs)
    with torch.no_grad():
        for images, _labels in loader:
            features = detector(images.to(opts.device), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)

    # Save to the cache atomically (write a temporary file, then rename).
    if cache_file is not None and opts.rank == 0:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        temp_file = cache_file + '.' + uuid.uuid4().hex
        stats.save(temp_file)
        os.replace(temp_file, cache_file)
    return stats

#----------------------------------------------------------------------------

def compute_feature_stats_for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=None,
        batch_gen=None, seed=0, **stats_kwargs):
    """Runs the detector over images of `opts.G`, drawing z ~ N(0, I) and conditioning labels of
    random dataset items, until `stats_kwargs['max_items']` images have been seen, in detector
    batches of `batch_size` (None = `default_batch_size`). Each rank draws from its own generator
    seeded by (seed, rank), so a metric is reproducible for a given G. G's output [N, C, H, W] in
    [-1, 1] is quantised to uint8 like a saved image. With `opts.gen_stats_memo` (a dict kept by a
    caller that evaluates several metrics of one G), metrics asking for the same images reuse
    their features instead of generating them again.
    :return: FeatureStats (identical on every rank)."""
    if batch_size is None:
        batch_size = default_batch_size(opts.device)
    if batch_gen is None:
        # Small generator batches bound GPU memory; on CPU, whole batches amortise per-call overhead.
        batch_gen = min(batch_size, 4) if opts.device.type == 'cuda' else batch_size
    assert batch_size % batch_gen == 0
    stats_kwargs = _shared_stats_kwargs(stats_kwargs, stats_kwargs.get('max_items'))
    progress = opts.progress.sub(tag='generator features', num_items=stats_kwargs.get('max_items'), rel_lo=rel_lo, rel_hi=rel_hi)

    memo_key = None
    if opts.gen_stats_memo is not None:
        memo_key = json.dumps(dict(dataset=_dataset_fingerprint(opts.dataset_kwargs), G_kwargs=opts.G_kwargs,
            detector=feature_detectors.detector_fingerprint(detector_url), detector_kwargs=detector_kwargs,
            batch_size=batch_size, batch_gen=batch_gen, seed=seed, stats=stats_kwargs,
            device=str(opts.device), num_gpus=opts.num_gpus), sort_keys=True, default=repr)
        if memo_key in opts.gen_stats_memo:
            stats = opts.gen_stats_memo[memo_key]
            progress.note(f'{stats.num_items} items reused from an earlier metric of this run')
            progress.update(stats.num_items)
            return stats

    G = copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    rnd = np.random.RandomState([seed, opts.rank])
    z_gen = torch.Generator().manual_seed(int(rnd.randint(2**31)))

    stats = FeatureStats(**stats_kwargs)
    assert stats.max_items is not None
    detector = get_feature_detector(url=detector_url, device=opts.device, num_gpus=opts.num_gpus, rank=opts.rank, verbose=progress.verbose)
    with torch.no_grad():
        while not stats.is_full():
            images = []
            for _i in range(batch_size // batch_gen):
                z = torch.randn([batch_gen, G.z_dim], generator=z_gen).to(opts.device)
                c = np.stack([dataset.get_label(rnd.randint(len(dataset))) for _ in range(batch_gen)])
                c = torch.from_numpy(c).to(torch.float32).to(opts.device)  # [batch_gen, label_dim]
                img = G(z, c, **opts.G_kwargs)
                images.append((img * 127.5 + 128).clamp(0, 255).to(torch.uint8))
            features = detector(torch.cat(images), **detector_kwargs)
            stats.append_torch(features, num_gpus=opts.num_gpus, rank=opts.rank)
            progress.update(stats.num_items)
    if memo_key is not None:
        opts.gen_stats_memo[memo_key] = stats
    return stats

#----------------------------------------------------------------------------
