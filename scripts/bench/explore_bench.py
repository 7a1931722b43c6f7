"""Seconds and peak memory of a large canvas rendered in tiles (mspe_plugin.tiles).

    python scripts/bench/explore_bench.py [--network results/models/mspe.pkl] [--size 1024x4096] [--tile 256]
                                          [--out results/bench/tiles.json]

Renders one latent of the committed digit model on a 1024 x 4096 canvas (32 x 128 training
images) tile by tile, with the generator's margin, and writes JSON: seconds (all, and per tile),
peak resident memory of the process (VmHWM) and the peak's growth during the render (peak reset
before it through /proc/self/clear_refs), next to the output array's own size. Linux only (the
memory figures come from /proc); on another system they are null. On a shared machine
the wall time includes waiting for a core: cpu_seconds and the load average are recorded with it.
`one_tile` repeats the measurement for a canvas of a single tile in a fresh process: the peak
of the whole canvas should exceed it by little more than the output array.
glibc's dynamic mmap threshold keeps freed tile buffers in a fragmented heap, so the peak may
exceed one tile's by some tens of MB; with MALLOC_MMAP_THRESHOLD_=131072 (large buffers always
returned to the system) it is one tile's plus the output array (measured here: 71 MB for one tile,
96 MB for 1024 x 8192 in 128 tiles with its 24 MB output array).
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import click
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'stylegan2_ada_vendor'))
sys.path.insert(0, ROOT)
import dnnlib  # noqa: E402
import legacy  # noqa: E402
from mspe_plugin import tiles  # noqa: E402
from mspe_plugin.encoding import Canvas  # noqa: E402

def proc_kb(key):
    """A memory figure of this process in kB from /proc/self/status (None where there is none)."""
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ':'))
    except (OSError, StopIteration):
        return None

def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False

def mb(kb):
    return None if kb is None else round(kb / 1024, 1)

def one_tile_reference(network, tile, seed, class_idx, psi):
    """Seconds and peak growth of a canvas of a single tile, measured by this script in a fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'one_tile.json')
        subprocess.run([sys.executable, os.path.abspath(__file__), f'--network={network}', f'--size={tile}x{tile}', f'--tile={tile}',
                        f'--seed={seed}', f'--class={class_idx}', f'--trunc={psi}', f'--out={path}', '--no-reference'],
                       check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            one = json.load(f)
    return {key: one[key] for key in ('canvas', 'seconds', 'cpu_seconds', 'peak_rss_mb', 'peak_growth_during_render_mb')}

@click.command()
@click.option('--network', default=os.path.join(ROOT, 'results', 'models', 'mspe.pkl'), show_default=True, help='Network pickle')
@click.option('--size', default='1024x4096', show_default=True, help='Canvas HxW in output pixels')
@click.option('--tile', type=click.IntRange(min=1), default=256, show_default=True, help='Tile side in output pixels')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--class', 'class_idx', type=int, default=3, show_default=True, help='Class (conditional networks)')
@click.option('--trunc', 'psi', type=float, default=0.7, show_default=True)
@click.option('--out', default=os.path.join(ROOT, 'results', 'bench', 'tiles.json'), show_default=True, help='JSON to write')
@click.option('--reference/--no-reference', default=True, show_default=True,
              help='Also measure a canvas of one tile in a fresh process (what the peak would be without the rest)')
def main(network, size, tile, seed, class_idx, psi, out, reference):
    """Time a tiled render of a large canvas and measure its peak memory."""
    try:
        height, width = (int(v) for v in size.lower().split('x'))
    except ValueError:
        raise click.BadParameter(f'--size takes HxW such as 1024x4096, got {size!r}.')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    rss_start = proc_kb('VmRSS')
    with dnnlib.util.open_url(network) as f:
        G = tiles.canvas_generator(legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False)).to(device)
    tile = tiles.aligned_tile_size(tile, G)
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(device)
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim:
        if not 0 <= class_idx < G.c_dim:
            raise click.BadParameter(f'--class must be between 0 and {G.c_dim - 1}, got {class_idx}.')
        c[0, class_idx] = 1
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=psi)
    canvas = Canvas(origin=(0.0, 0.0), size=(height, width))
    n_tiles = -(-height // tile) * -(-width // tile)
    rss_loaded = proc_kb('VmRSS')
    peak_reset = reset_peak()
    start, cpu_start = time.perf_counter(), time.process_time()
    image = tiles.render_tiled(G, ws, canvas, tile=tile, noise_mode='const', progress=True)
    if device.type == 'cuda':
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = proc_kb('VmHWM')
    result = dict(
        network=os.path.relpath(network, ROOT) if os.path.abspath(network).startswith(ROOT) else network,
        canvas=[height, width], tile=tile, tiles=n_tiles, margin=tiles.tile_margin(G), zoom=1.0, seed=seed,
        class_idx=class_idx if G.c_dim else None, psi=psi,
        seconds=round(seconds, 2), seconds_per_tile=round(seconds / n_tiles, 3),
        megapixels_per_second=round(height * width / seconds / 1e6, 4),
        cpu_seconds=round(cpu_seconds, 2),         # this process's CPU time: wall time on a busy machine is larger
        load_average_1min=round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') else None,
        peak_rss_mb=mb(peak),
        peak_growth_during_render_mb=mb(peak - rss_loaded) if peak_reset and peak is not None else None,
        rss_before_load_mb=mb(rss_start), rss_after_load_mb=mb(rss_loaded),
        output_array_mb=round(image.nbytes / 2 ** 20, 1),
        device=str(device), torch_threads=torch.get_num_threads(), torch=torch.__version__,
        cpu=platform.processor() or platform.machine(),
        command=' '.join(['python scripts/bench/explore_bench.py'] + sys.argv[1:]),
    )
    if reference:
        result['one_tile'] = one_tile_reference(network, tile, seed, class_idx, psi)
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(result, f, indent=1)
        f.write('\n')
    print(f'Wrote {out}.')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
