"""Training throughput (kimg/hour) of the host's `--cfg=cpu` preset on this machine's CPU, eager
(`--compile=off`) and compiled (`--compile=on`, training/compiled.py; its compile time falls in tick 0).

For each resolution it writes a small synthetic dataset, runs `stylegan2_ada_vendor/train.py`
for a few ticks and reads the per-tick timings from the run's stats.jsonl. Tick 0 (a single
step that includes warm-up) is left out; snapshot time is not part of a tick's time.

    python -m scripts.bench.bench_train                 # 32 and 64 px, ada and noaug, + results/bench/bench_train.json
    python -m scripts.bench.bench_train --res=32 --ticks=5
"""

import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile

import click
import numpy as np
import PIL.Image
import torch

from scripts import HOST, ROOT

TRAIN = os.path.join(HOST, 'train.py')

def make_blobs_zip(path, resolution, count=64, seed=0):
    """A dataset zip of `count` RGB images: soft coloured blobs at random places."""
    rnd = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    with zipfile.ZipFile(path, 'w') as zf:
        for idx in range(count):
            img = np.zeros([resolution, resolution, 3])
            for _ in range(3):
                cy, cx, r = rnd.uniform(0.2, 0.8), rnd.uniform(0.2, 0.8), rnd.uniform(0.05, 0.2)
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
                img += blob[:, :, None] * rnd.uniform(0, 1, size=3)
            buf = io.BytesIO()
            PIL.Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8), 'RGB').save(buf, format='png')
            zf.writestr(f'img{idx:08d}.png', buf.getvalue())

def bench_resolution(resolution, ticks, tick_kimg, batch, aug, workdir, compile_mode='off', bf16=False):
    """Train `ticks` ticks after tick 0 at `resolution`; returns a dict of timings."""
    os.makedirs(workdir, exist_ok=True)
    data = os.path.join(workdir, f'blobs{resolution}.zip')
    make_blobs_zip(data, resolution)
    outdir = os.path.join(workdir, f'runs{resolution}')
    total_kimg = batch / 1000 + ticks * tick_kimg
    cmd = [sys.executable, TRAIN, f'--outdir={outdir}', f'--data={data}', '--cfg=cpu', f'--kimg={total_kimg:g}',
           f'--tick={tick_kimg:g}', '--snap=1000', '--metrics=none', f'--aug={aug}', f'--batch={batch}', f'--compile={compile_mode}'] + (['--cpu-bf16=1'] if bf16 else [])
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f'train.py failed at {resolution} px: {result.stderr.strip().splitlines()[-1]}')
    run_dir = os.path.join(outdir, sorted(os.listdir(outdir))[0])
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f if line.strip()]
    timed = [s for s in stats if s['Progress/tick']['mean'] >= 1]
    kimgs = [s['Progress/kimg']['mean'] for s in stats]
    seconds = sum(s['Timing/sec_per_tick']['mean'] for s in timed)
    kimg = kimgs[-1] - kimgs[0]
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        options = json.load(f)
    return dict(resolution=resolution, batch=batch, aug=aug, compile=compile_mode, cpu_bf16=bf16, ticks=len(timed), kimg=round(kimg, 4),
                seconds=round(seconds, 2), sec_per_kimg=round(seconds / kimg, 2), kimg_per_hour=round(3600 * kimg / seconds, 1),
                wall_seconds=round(time.time() - start, 1), G_kwargs=options['G_kwargs'])

@click.command()
@click.option('--res', 'resolutions', help='Resolutions to measure', type=int, multiple=True, default=[32, 64], show_default=True)
@click.option('--ticks', help='Timed ticks per resolution (after tick 0)', type=int, default=3, show_default=True)
@click.option('--tick-kimg', help='kimg per tick', type=float, default=0.128, show_default=True)
@click.option('--batch', help='Minibatch size', type=int, default=32, show_default=True)
@click.option('--aug', 'augs', help='Augmentation modes to measure', type=click.Choice(['ada', 'noaug']), multiple=True, default=['ada', 'noaug'], show_default=True)
@click.option('--compile', 'compiles', help='train.py --compile modes to measure', type=click.Choice(['off', 'on']), multiple=True, default=['off', 'on'], show_default=True)
@click.option('--bf16/--no-bf16', default=True, show_default=True, help='Also measure --compile=on --cpu-bf16=1 (CPUs with native bfloat16)')
@click.option('--out', help='JSON output', default=os.path.join(ROOT, 'results', 'bench', 'bench_train.json'), show_default=True)
def main(resolutions, ticks, tick_kimg, batch, augs, compiles, bf16, out):
    """Measure CPU training throughput of the cpu preset."""
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as workdir:
        for resolution in resolutions:
            for aug in augs:
                for mode in compiles:
                    rows.append(bench_resolution(resolution, ticks, tick_kimg, batch, aug, os.path.join(workdir, f'{aug}-{mode}'), mode))
                if bf16 and not torch.cuda.is_available():
                    rows.append(bench_resolution(resolution, ticks, tick_kimg, batch, aug, os.path.join(workdir, f'{aug}-bf16'), 'on', bf16=True))
    print(f'{"res":>5} {"batch":>6} {"aug":>6} {"compile":>8} {"bf16":>5} {"kimg":>7} {"sec/kimg":>9} {"kimg/hour":>10} {"wall s":>7}')
    for row in rows:
        print(f'{row["resolution"]:>5} {row["batch"]:>6} {row["aug"]:>6} {row["compile"]:>8} {str(row["cpu_bf16"]):>5} {row["kimg"]:>7.3f} {row["sec_per_kimg"]:>9.1f} {row["kimg_per_hour"]:>10.1f} {row["wall_seconds"]:>7.1f}')
    machine = dict(cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                   python=platform.python_version(), processor=platform.processor() or platform.machine(),
                   load_average_before=[round(x, 2) for x in load_before], load_average_after=[round(x, 2) for x in os.getloadavg()])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(command=' '.join(['python -m scripts.bench.bench_train'] + sys.argv[1:]), machine=machine, results=rows), f, indent=2)
    print(f'Wrote {out}')

if __name__ == '__main__':
    main()    # pylint: disable=no-value-for-parameter
