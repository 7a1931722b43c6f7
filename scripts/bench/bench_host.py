"""Throughput of the vendored host's networks on this machine (CPU unless a GPU is present).

    python -m scripts.bench.bench_host [--resolutions 32,64] [--batch 16] [--threads 2] [--out results/bench/bench_host.json]

Prints img/s for G forward (inference, both modulated-conv paths) and for G+D forward+backward
(one training-style step) at each resolution, using the `cpu` training preset's widths.
"""
import json
import os
import sys
import time

import click
import torch

from scripts import ROOT
from scripts.experiments.digits import pick_device
from training import networks  # noqa: E402  (the vendored host, on sys.path through `scripts`)

def cpu_preset_networks(res, device):
    """The widths of train.py's `cpu` preset (channel_base 16 * res ... see bench_train.py)."""
    G = networks.Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=res, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=4096, channel_max=128)).to(device)
    D = networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=4096, channel_max=128).to(device)
    return G, D

def timed(fn, repeats, warmup=2):
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]

@click.command()
@click.option('--resolutions', default='32,64', help='Comma-separated resolutions')
@click.option('--batch', default=16, type=int, help='Images per step')
@click.option('--repeats', default=7, type=int, help='Timed repeats (median)')
@click.option('--threads', default=None, type=int, help='torch CPU threads (default: torch\'s choice)')
@click.option('--out', default=None, help='Write the results as JSON here')
def main(resolutions, batch, repeats, threads, out):
    if threads:
        torch.set_num_threads(threads)
    device = pick_device()
    rows = []
    print(f'device={device.type} threads={torch.get_num_threads()} batch={batch}')
    print(f'{"res":>5} {"G fwd fused":>12} {"G fwd plain":>12} {"G+D fwd+bwd":>12}   (img/s)')
    for res in [int(r) for r in resolutions.split(',')]:
        torch.manual_seed(0)
        G, D = cpu_preset_networks(res, device)
        z = torch.randn([batch, G.z_dim], device=device)
        with torch.no_grad():
            ws = G.mapping(z, None)
            t_fused = timed(lambda: G.synthesis(ws, fused_modconv=True), repeats)
            t_plain = timed(lambda: G.synthesis(ws, fused_modconv=False), repeats)
        def train_step():
            img = G(z, None)
            loss = torch.nn.functional.softplus(D(img, None)).mean()
            loss.backward()
        t_step = timed(train_step, repeats)
        row = dict(res=res, batch=batch, g_fwd_fused_img_s=batch / t_fused, g_fwd_nonfused_img_s=batch / t_plain,
                   gd_fwd_bwd_img_s=batch / t_step)
        rows.append(row)
        print(f'{res:>5} {row["g_fwd_fused_img_s"]:>12.1f} {row["g_fwd_nonfused_img_s"]:>12.1f} {row["gd_fwd_bwd_img_s"]:>12.1f}')
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(dict(device=device.type, threads=torch.get_num_threads(), rows=rows), f, indent=2)

if __name__ == '__main__':
    main()
