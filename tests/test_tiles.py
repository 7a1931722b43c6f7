"""Tiled rendering (mspe_plugin.tiles): tiles rendered independently are the pieces of one render
of the whole canvas (tolerance 1e-5 on the float output), and peak memory follows the tile size,
not the canvas size."""
import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import legacy
from mspe_plugin import networks as pe_networks
from mspe_plugin import tiles
from mspe_plugin.encoding import Canvas
from mspe_plugin.progress import Progress

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')
R = 32
ATOL = 1e-5

def make_G(pe='mspe', padding='zero', c_dim=0, seed=0):
    torch.manual_seed(seed)
    return pe_networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=R, img_channels=3,
        synthesis_kwargs=dict(pe=pe, pe_padding=padding, channel_base=256, channel_max=16)).eval().requires_grad_(False)

def latents(G, n=1, seed=1):
    torch.manual_seed(seed)
    return G.mapping(torch.randn([n, G.z_dim]), None).detach()

def whole(G, ws, canvas, margin):
    """One render of the whole canvas with `margin`, as float [N, H, W, C]."""
    canvas = Canvas(origin=canvas.origin, size=canvas.size, zoom=canvas.zoom, wrap=canvas.wrap, margin=margin)
    with torch.no_grad():
        return G.synthesis(ws, canvas=canvas, noise_mode='const').permute(0, 2, 3, 1).numpy()

#----------------------------------------------------------------------------

@pytest.mark.parametrize('zoom', [1.0, 0.5, 2.0])
def test_tiles_equal_one_render_of_the_whole_canvas(zoom):
    """Zero padded: tiles with a margin of the receptive radius equal one render of the whole canvas
    (a fractional origin, a size that is not a multiple of the tile, zoom in and out)."""
    G = make_G()
    ws = latents(G, n=2)
    canvas = Canvas(origin=(-3.5, 5.25), size=(40, 136), zoom=zoom)
    tiled = tiles.render_tiled(G, ws, canvas, tile=16, dtype=np.float32)
    assert tiled.shape == (2, 40, 136, 3)
    reference = whole(G, ws, canvas, tiles.tile_margin(G))
    np.testing.assert_allclose(tiled, reference, atol=ATOL, rtol=0)
    # The uint8 output is the same image, rounded as generate.py rounds it.
    as_uint8 = tiles.render_tiled(G, ws, canvas, tile=16)
    assert as_uint8.dtype == np.uint8
    assert np.abs(as_uint8.astype(int) - tiles.to_uint8(torch.from_numpy(reference).permute(0, 3, 1, 2)).astype(int)).max() <= 1

def test_margin_scaled_by_the_zoom_is_too_small_below_zoom_1():
    """The margin is in output pixels at every zoom: receptive_radius() * 0.5 leaves seams at zoom 0.5."""
    G = make_G()
    ws = latents(G)
    canvas = Canvas(origin=(0.0, 0.0), size=(32, 96), zoom=0.5)
    radius = G.synthesis.receptive_radius()
    small = tiles.render_tiled(G, ws, canvas, tile=32, dtype=np.float32, margin=radius // 2)
    assert np.abs(small - whole(G, ws, canvas, radius // 2)).max() > 1e-2
    assert tiles.tile_margin(G) == radius

def test_padding_free_tiles_need_no_margin():
    G = make_G(padding='none')
    assert tiles.tile_margin(G) == 0
    ws = latents(G)
    canvas = Canvas(origin=(8.0, -12.0), size=(48, 80), wrap=True)
    tiled = tiles.render_tiled(G, ws, canvas, tile=24, dtype=np.float32)
    np.testing.assert_allclose(tiled, whole(G, ws, canvas, 0), atol=ATOL, rtol=0)

def test_a_plain_host_generator_is_converted_and_tiles():
    """An upstream-style generator (learned constant, no canvas) gets the baseline walk with the same
    weights: its training grid is unchanged and its tiles agree like any other."""
    from training.networks import Generator
    torch.manual_seed(0)
    host = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=R, img_channels=3,
                     synthesis_kwargs=dict(channel_base=256, channel_max=16)).eval()
    G = tiles.canvas_generator(host)
    assert G is not host and G.synthesis.pe == 'none'
    assert tiles.canvas_generator(G) is G
    ws = latents(host)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws, noise_mode='const'), host.synthesis(ws, noise_mode='const'), atol=ATOL, rtol=0)
    canvas = Canvas(origin=(4.0, -20.0), size=(32, 64))
    np.testing.assert_allclose(tiles.render_tiled(G, ws, canvas, tile=32, dtype=np.float32),
                               whole(G, ws, canvas, tiles.tile_margin(G)), atol=ATOL, rtol=0)

def test_an_older_pickled_mspe_class_is_rebuilt_in_the_current_one():
    """A snapshot pickled with an mspe_plugin that had no margins (tests/data/legacy) is rebuilt
    with the same weights (same training-grid image) and then tiles."""
    with open(os.path.join(ROOT, 'tests', 'data', 'legacy', 'mspe-old-tiny.pkl'), 'rb') as f:
        old = legacy.load_network_pkl(f)['G_ema'].eval()
    G = tiles.canvas_generator(old)
    assert G.synthesis.pe == old.synthesis.pe == 'mspe'
    assert tiles.tile_margin(G) == G.synthesis.receptive_radius() > 0
    c = torch.zeros([1, G.c_dim])
    c[0, 3] = 1
    ws = G.mapping(torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(0)), c).detach()
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws, noise_mode='const'), old.synthesis(ws, noise_mode='const'), atol=ATOL, rtol=0)

def test_bad_tile_sizes_and_random_noise_are_refused():
    G = make_G()
    ws = latents(G)
    with pytest.raises(tiles.TileError, match='multiple of 8'):
        tiles.render_tiled(G, ws, Canvas(size=(32, 32)), tile=12)
    with pytest.raises(tiles.TileError, match='noise_mode'):
        tiles.render_tiled(G, ws, Canvas(size=(32, 32)), tile=16, noise_mode='random')
    with pytest.raises(tiles.TileError, match='shape'):
        tiles.render_tiled(G, ws, Canvas(size=(32, 32)), tile=16, out=np.zeros([1, 16, 16, 3], np.uint8))
    assert tiles.aligned_tile_size(12, G) == 16 and tiles.aligned_tile_size(16, G) == 16
    with pytest.raises(tiles.TileError, match='persistent'):
        tiles.canvas_generator(torch.nn.Linear(2, 2))

def test_progress_prints_a_few_lines_into_a_file():
    stream = io.StringIO()
    bar = Progress(100, 'tiles', stream=stream)
    for _ in range(100):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert 2 <= len(lines) <= 11 and lines[-1].startswith('tiles [########################] 100/100')

#----------------------------------------------------------------------------
# Peak memory. Each measurement runs in a fresh process (an allocator that already grew hides later
# growth): peak RSS (VmHWM) at the end minus RSS after the network is built, in kB.

MEMORY_CHILD = r'''
import sys, numpy as np, torch
torch.set_num_threads(1)
from mspe_plugin import networks
from mspe_plugin.encoding import Canvas
from mspe_plugin.tiles import render_tiled
def status(key):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
width, tile = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=32, img_channels=3,
    synthesis_kwargs=dict(pe='mspe', channel_base=256, channel_max=16)).eval()
ws = G.mapping(torch.randn([1, 8]), None).detach()
before = status('VmRSS:')
img = render_tiled(G, ws, Canvas(size=(128, width)), tile=tile)
assert img.shape == (1, 128, width, 3)
print(status('VmHWM:') - before)
'''

def peak_growth_kb(width, tile):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join([ROOT, HOST]))
    result = subprocess.run([sys.executable, '-c', MEMORY_CHILD, str(width), str(tile)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.split()[-1])

@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='peak RSS is read from /proc (Linux only)')
def test_peak_memory_follows_the_tile_not_the_canvas():
    """A 16x wider canvas in tiles of 128 grows the peak by at most 1.5x (the output array adds
    0.8 MB); the same canvas in one piece grows it far more, so the measurement can tell."""
    narrow = peak_growth_kb(128, 128)
    wide = peak_growth_kb(16 * 128, 128)
    untiled = peak_growth_kb(16 * 128, 16 * 128)
    assert narrow > 1000, narrow       # a tile's working memory is visible (MB), not noise
    assert wide <= 1.5 * narrow, (narrow, wide)
    assert untiled > 1.5 * narrow, (narrow, untiled)
