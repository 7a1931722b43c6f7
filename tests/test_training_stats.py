"""training_stats: per-interval count/mean/std of reported values, one process and two (gloo)."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from torch_utils import training_stats

HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'stylegan2_ada_vendor')

@pytest.fixture(autouse=True)
def fresh_stats(monkeypatch):
    """Each test starts with no statistics and as a single process."""
    monkeypatch.setattr(training_stats, '_counters', dict())
    monkeypatch.setattr(training_stats, '_rank', 0)
    monkeypatch.setattr(training_stats, '_sync_device', None)

def test_collector_summarises_values_reported_since_its_last_update():
    collector = training_stats.Collector(regex='Loss/.*')
    values = [torch.tensor([1.0, 2.0]), 3.0, np.array([[4.0], [10.0]])]
    for value in values:
        assert training_stats.report('Loss/G/loss', value) is value     # report passes the value through
    collector.update()
    flat = np.array([1, 2, 3, 4, 10], dtype=np.float64)
    assert collector.num('Loss/G/loss') == 5
    assert collector.mean('Loss/G/loss') == pytest.approx(flat.mean())
    assert collector.std('Loss/G/loss') == pytest.approx(flat.std())
    assert collector['Loss/G/loss'] == collector.mean('Loss/G/loss')

    training_stats.report('Loss/G/loss', [7.0, 9.0])   # next interval: only the new values
    collector.update()
    assert collector.num('Loss/G/loss') == 2 and collector.mean('Loss/G/loss') == pytest.approx(8.0)
    assert collector.std('Loss/G/loss') == pytest.approx(1.0)

def test_regex_selects_statistics_by_full_name():
    training_stats.report('Loss/D/loss', 1.0)
    training_stats.report('Loss/D/loss_extra', 5.0)
    training_stats.report('Timing/tick', 2.0)
    collector = training_stats.Collector(regex='Loss/D/loss')
    training_stats.report('Loss/D/loss', 3.0)
    training_stats.report('Loss/D/loss_extra', 5.0)
    collector.update()
    assert collector.names() == ['Loss/D/loss']
    assert list(collector.as_dict()) == ['Loss/D/loss']
    # Values reported before the collector existed are not in its first interval.
    assert collector.num('Loss/D/loss') == 1 and collector.mean('Loss/D/loss') == 3.0
    assert collector.num('Timing/tick') == 0 and math.isnan(collector.mean('Timing/tick'))

def test_empty_interval_keeps_previous_or_reads_nan():
    keep = training_stats.Collector(regex='x', keep_previous=True)
    drop = training_stats.Collector(regex='x', keep_previous=False)
    training_stats.report('x', [2.0, 4.0])
    keep.update()
    drop.update()
    keep.update()
    drop.update()
    assert keep.num('x') == 2 and keep.mean('x') == 3.0
    assert drop.num('x') == 0 and math.isnan(drop.mean('x')) and math.isnan(drop.std('x'))
    assert drop.as_dict()['x'].num == 0

def test_as_dict_holds_num_mean_std():
    collector = training_stats.Collector()
    training_stats.report('a', [1.0, 3.0])
    training_stats.report('b', [])          # registered, no values
    collector.update()
    stats = collector.as_dict()
    assert stats.a == dict(num=2, mean=2.0, std=1.0)
    assert stats.b.num == 0 and math.isnan(stats.b.mean)
    json.dumps(stats)   # what goes into stats.jsonl

def test_nan_values_show_up_in_the_mean():
    collector = training_stats.Collector(regex='Loss/.*')
    training_stats.report('Loss/G/loss', torch.tensor([1.0, float('nan')]))
    collector.update()
    assert collector.num('Loss/G/loss') == 2 and math.isnan(collector.mean('Loss/G/loss'))

def test_report0_records_only_on_rank_0(monkeypatch):
    collector = training_stats.Collector()
    monkeypatch.setattr(training_stats, '_rank', 1)
    assert training_stats.report0('Progress/tick', 5) == 5
    collector.update()
    assert 'Progress/tick' in collector.names() and collector.num('Progress/tick') == 0
    monkeypatch.setattr(training_stats, '_rank', 0)
    training_stats.report0('Progress/tick', 6)
    collector.update()
    assert collector.num('Progress/tick') == 1 and collector.mean('Progress/tick') == 6

def test_default_collector_sees_every_statistic():
    training_stats.default_collector.update()
    training_stats.report('anything/at/all', 4.0)
    training_stats.default_collector.update()
    assert training_stats.default_collector.mean('anything/at/all') == 4.0

TWO_PROCESS_SCRIPT = '''
import json, os, sys
import torch
from torch_utils import training_stats

def run(rank, folder):
    torch.distributed.init_process_group('gloo', init_method='file://' + os.path.join(folder, 'init'),
                                         rank=rank, world_size=2)
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    collector = training_stats.Collector(regex='.*')
    training_stats.report('A', [1.0, 2.0] if rank == 0 else [3.0, 4.0, 5.0])
    if rank == 1:
        training_stats.report('OnlyRank1', 8.0)     # rank 0 never heard of this name
    training_stats.report0('Tick', 10.0 + rank)
    collector.update()
    first = collector.as_dict()
    training_stats.report('A', [100.0] if rank == 0 else [])
    collector.update()
    second = collector.as_dict()
    with open(os.path.join(folder, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(first=first, second=second), f)
    torch.distributed.destroy_process_group()

if __name__ == '__main__':
    run(int(sys.argv[1]), sys.argv[2])
'''

def test_collector_pools_statistics_over_two_gloo_processes(tmp_path):
    script = tmp_path / 'two_ranks.py'
    script.write_text(TWO_PROCESS_SCRIPT)
    env = dict(os.environ, PYTHONPATH=HOST, OMP_NUM_THREADS='1')
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    try:
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]     # every process sees the same pooled summary
    first, second = ranks[0]['first'], ranks[0]['second']
    assert first['A']['num'] == 5 and first['A']['mean'] == pytest.approx(3.0)
    assert first['A']['std'] == pytest.approx(np.std([1, 2, 3, 4, 5]))
    assert first['OnlyRank1'] == dict(num=1, mean=8.0, std=0.0)
    assert first['Tick']['num'] == 1 and first['Tick']['mean'] == 10.0
    assert second['A']['num'] == 1 and second['A']['mean'] == 100.0     # only the second interval
