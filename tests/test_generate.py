"""generate.py: images from a pickle or weights file, from the repo root or the host folder;
bad input ends in one sentence and a non-zero exit."""

import os
import pickle
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
import legacy

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')

def tiny_generator(c_dim=0, img_channels=3):
    from training.networks import Generator
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=16, img_channels=img_channels,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32)).eval()

def write_snapshot(G, path):
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    return str(path)

def expected_image(G, seed, label=None, psi=1.0):
    """What seed%04d.png must hold: G(z from RandomState(seed)) with noise_mode='const' (G in
    eval mode, as generate.py runs it: in training mode truncation would also move w_avg)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    label = torch.zeros([1, G.c_dim]) if label is None else label
    with torch.no_grad():
        return generate.to_uint8(G(z, label, truncation_psi=psi, noise_mode='const'))[0]

def read_png(path):
    return np.array(PIL.Image.open(path))

def run_cli(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    return subprocess.run([sys.executable] + args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=180)

def error_line(output):
    """The last line of a CLI's output, checked to be one sentence without a traceback."""
    assert 'Traceback' not in output, output
    line = [l for l in output.splitlines() if l.strip()][-1]
    assert line.startswith('Error: ') and line.endswith('.'), line
    return line

#----------------------------------------------------------------------------

def test_num_range_parses_lists_and_ranges():
    assert generate.num_range('0-7,12') == [0, 1, 2, 3, 4, 5, 6, 7, 12]
    assert generate.num_range('5') == [5]
    assert generate.num_range(' 3 - 4 , 9') == [3, 4, 9]
    with pytest.raises(ValueError, match='runs backwards'):
        generate.num_range('7-3')
    with pytest.raises(ValueError, match='not a list of numbers and ranges'):
        generate.num_range('1,x')

def test_image_grid_tiles_in_rows():
    images = np.arange(5).reshape(5, 1, 1, 1).repeat(2, 1).repeat(2, 2).astype(np.uint8)
    grid = generate.image_grid(images)
    assert grid.shape == (4, 6, 1)      # 3 columns, 2 rows
    assert grid[0, 0, 0] == 0 and grid[0, 4, 0] == 2 and grid[2, 2, 0] == 4 and grid[3, 5, 0] == 0

def test_generate_from_repo_root_writes_seed_pngs_and_grid(tmp_path):
    G = tiny_generator()
    pkl = write_snapshot(G, tmp_path / 'net.pkl')
    outdir = tmp_path / 'out'
    result = run_cli(['stylegan2_ada_vendor/generate.py', f'--network={pkl}', '--seeds=0-2,5', '--trunc=0.5',
                      f'--outdir={outdir}', '--grid', '--device=cpu'], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(outdir)) == ['grid.png', 'seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0005.png']
    for seed in (0, 1, 2, 5):
        img = read_png(outdir / f'seed{seed:04d}.png')
        assert img.shape == (16, 16, 3)
        assert np.array_equal(img, expected_image(G, seed, psi=0.5))
    grid = read_png(outdir / 'grid.png')
    assert grid.shape == (32, 32, 3)
    assert np.array_equal(grid[16:, :16], read_png(outdir / 'seed0002.png'))

def test_generate_inside_the_host_folder_reads_weights_files(tmp_path):
    G = tiny_generator()
    weights = str(tmp_path / 'net-weights.pt')
    legacy.save_network_weights(weights, dict(G_ema=G))
    outdir = tmp_path / 'out'
    result = run_cli(['generate.py', f'--network={weights}', '--seeds=3', f'--outdir={outdir}'], cwd=HOST)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(read_png(outdir / 'seed0003.png'), expected_image(G, 3))

def test_garbage_network_file_fails_in_one_sentence(tmp_path):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'not a pickle at all')
    outdir = tmp_path / 'out'
    result = run_cli(['stylegan2_ada_vendor/generate.py', f'--network={bad}', '--seeds=0', f'--outdir={outdir}'], cwd=ROOT)
    assert result.returncode != 0
    assert error_line(result.stderr).startswith(f'Error: {bad} is not a network pickle or weights file: ')
    assert not outdir.exists()

#----------------------------------------------------------------------------
# Bad input, in-process.

def invoke(args):
    result = CliRunner().invoke(generate.generate_images, args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    return error_line(result.stderr)

def test_missing_network_file(tmp_path):
    line = invoke([f'--network={tmp_path}/missing.pkl', '--seeds=0', f'--outdir={tmp_path}/out'])
    assert 'missing.pkl does not exist' in line
    assert not (tmp_path / 'out').exists()

@pytest.mark.parametrize('seeds, expected', [('0-x', 'not a list of numbers and ranges'), ('9-2', 'runs backwards'),
                                             ('4294967296', 'too large')])
def test_bad_seeds(tmp_path, seeds, expected):
    pkl = write_snapshot(tiny_generator(), tmp_path / 'net.pkl')
    line = invoke([f'--network={pkl}', f'--seeds={seeds}', f'--outdir={tmp_path}/out'])
    assert "Invalid value for '--seeds'" in line and expected in line

def test_no_seeds(tmp_path):
    pkl = write_snapshot(tiny_generator(), tmp_path / 'net.pkl')
    assert 'Pass --seeds' in invoke([f'--network={pkl}', f'--outdir={tmp_path}/out'])

def test_conditional_network_needs_a_class(tmp_path):
    G = tiny_generator(c_dim=3)
    pkl = write_snapshot(G, tmp_path / 'cond.pkl')
    line = invoke([f'--network={pkl}', '--seeds=0', f'--outdir={tmp_path}/out'])
    assert 'conditional (3 classes)' in line and '--class=N' in line
    assert 'classes 0 to 2' in invoke([f'--network={pkl}', '--seeds=0', '--class=3', f'--outdir={tmp_path}/out'])
    result = CliRunner().invoke(generate.generate_images, [f'--network={pkl}', '--seeds=1', '--class=2', f'--outdir={tmp_path}/ok'])
    assert result.exit_code == 0, result.output
    label = torch.tensor([[0.0, 0.0, 1.0]])
    assert np.array_equal(read_png(tmp_path / 'ok' / 'seed0001.png'), expected_image(G, 1, label=label))

def test_outdir_that_is_a_file_is_refused(tmp_path):
    pkl = write_snapshot(tiny_generator(), tmp_path / 'net.pkl')
    (tmp_path / 'taken').write_text('keep me')
    assert 'is a file' in invoke([f'--network={pkl}', '--seeds=0', f'--outdir={tmp_path}/taken'])
    assert (tmp_path / 'taken').read_text() == 'keep me'

def test_random_noise_is_reproducible_per_seed(tmp_path):
    pkl = write_snapshot(tiny_generator(), tmp_path / 'net.pkl')
    for out in ('a', 'b'):
        result = CliRunner().invoke(generate.generate_images, [f'--network={pkl}', '--seeds=4', '--noise-mode=random', f'--outdir={tmp_path}/{out}'])
        assert result.exit_code == 0, result.output
    assert np.array_equal(read_png(tmp_path / 'a' / 'seed0004.png'), read_png(tmp_path / 'b' / 'seed0004.png'))

def test_projected_w_renders_the_projection(tmp_path):
    G = tiny_generator()
    pkl = write_snapshot(G, tmp_path / 'net.pkl')
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), None)
        expected = generate.to_uint8(G.synthesis(ws, noise_mode='const'))[0]
    np.savez(tmp_path / 'projected_w.npz', w=ws.numpy())
    result = CliRunner().invoke(generate.generate_images, [f'--network={pkl}', f'--projected-w={tmp_path}/projected_w.npz', f'--outdir={tmp_path}/out'])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_png(tmp_path / 'out' / 'proj00.png'), expected)
    np.savez(tmp_path / 'wrong.npz', w=np.zeros([1, 3, 5], dtype=np.float32))
    assert 'holds w of shape [1, 3, 5]' in invoke([f'--network={pkl}', f'--projected-w={tmp_path}/wrong.npz', f'--outdir={tmp_path}/out'])

def test_grayscale_network_writes_grayscale_pngs(tmp_path):
    G = tiny_generator(img_channels=1)
    pkl = write_snapshot(G, tmp_path / 'gray.pkl')
    result = CliRunner().invoke(generate.generate_images, [f'--network={pkl}', '--seeds=0', f'--outdir={tmp_path}/out'])
    assert result.exit_code == 0, result.output
    img = PIL.Image.open(tmp_path / 'out' / 'seed0000.png')
    assert img.mode == 'L' and img.size == (16, 16)

#----------------------------------------------------------------------------
# The plugin's canvas flags (mspe_plugin is importable in the test environment).

def tiny_mspe_generator():
    from mspe_plugin import networks as pe_networks
    torch.manual_seed(0)
    return pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32, pe='mspe')).eval()

def invoke_generate(args):
    return CliRunner().invoke(generate.generate_images, args)

def test_canvas_flags_render_shifted_zoomed_and_wider_images(tmp_path):
    from mspe_plugin.encoding import Canvas
    G = tiny_mspe_generator()
    pkl = write_snapshot(G, tmp_path / 'mspe.pkl')
    z = torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float()
    for flags, canvas, shape in [(['--shift=0,4'], Canvas(origin=(0, 4)), (16, 16, 3)),
                                 (['--zoom=1.5'], Canvas(zoom=1.5), (24, 24, 3)),
                                 (['--extent=0:16,-8:24'], Canvas(origin=(0, -8), size=(16, 32)), (16, 32, 3))]:
        outdir = tmp_path / flags[0].split('=')[0].strip('-')
        result = invoke_generate([f'--network={pkl}', '--seeds=1', f'--outdir={outdir}', '--device=cpu'] + flags)
        assert result.exit_code == 0, result.output
        with torch.no_grad():
            expected = generate.to_uint8(G(z, torch.zeros([1, 0]), noise_mode='const', canvas=canvas))[0]
        img = read_png(outdir / 'seed0001.png')
        assert img.shape == shape
        assert np.array_equal(img, expected)

def test_translate_strip_moves_an_mspe_image_by_whole_coarse_pixels(tmp_path):
    # Steps of R/4 = 4 px (one pixel of the coarsest 4x4 scale) are exact for MS-PE with
    # noise off: frame k is frame 0 moved right by 4k px, 1.5 R away from the borders.
    pkl = write_snapshot(tiny_mspe_generator(), tmp_path / 'mspe.pkl')
    outdir = tmp_path / 'out'
    result = invoke_generate([f'--network={pkl}', '--seeds=2', f'--outdir={outdir}', '--device=cpu',
                              '--noise-mode=none', '--extent=-32:48,-32:48', '--translate-strip=3,4'])
    assert result.exit_code == 0, result.output
    strip = read_png(outdir / 'seed0002-strip.png').astype(int)
    assert strip.shape == (80, 3 * 80, 3)
    frames = [strip[:, 80 * k:80 * (k + 1)] for k in range(3)]
    assert np.array_equal(frames[0], read_png(outdir / 'seed0002.png'))
    for k in (1, 2):
        moved, ref = frames[k][24:56, 24 + 4 * k:56], frames[0][24:56, 24:56 - 4 * k]
        assert np.abs(moved - ref).max() <= 1, np.abs(moved - ref).max()
    assert np.abs(frames[1] - frames[0]).max() > 10     # the content did move

def test_a_margin_trained_generator_renders_with_its_margin_unless_told_otherwise(tmp_path):
    # Trained with random margins of 0..8 px (--pe-margin=8), G renders with an 8 px margin when
    # --margin is not given (its margin-0 edge is one training rarely drew); --margin=0 is the plain
    # render, bit for bit; a generator trained without margins renders as before.
    from mspe_plugin import networks as pe_networks
    from mspe_plugin.encoding import Canvas
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=256, channel_max=32, pe='mspe', pe_margin=8)).eval()
    pkl = write_snapshot(G, tmp_path / 'margin.pkl')
    z = torch.from_numpy(np.random.RandomState(1).randn(1, G.z_dim)).float()
    with torch.no_grad():
        plain = generate.to_uint8(G(z, torch.zeros([1, 0]), noise_mode='const'))[0]
        margin8 = generate.to_uint8(G(z, torch.zeros([1, 0]), noise_mode='const', canvas=Canvas(margin=8)))[0]
        moved8 = generate.to_uint8(G(z, torch.zeros([1, 0]), noise_mode='const', canvas=Canvas(origin=(0, 4), margin=8)))[0]
    assert not np.array_equal(plain, margin8)
    for flags, expected in [([], margin8), (['--margin=0'], plain), (['--margin=8'], margin8), (['--shift=0,4'], moved8)]:
        outdir = tmp_path / ('out' + ''.join(flags).replace('=', '').replace(',', '_'))
        result = invoke_generate([f'--network={pkl}', '--seeds=1', f'--outdir={outdir}', '--device=cpu'] + flags)
        assert result.exit_code == 0, result.output
        assert np.array_equal(read_png(outdir / 'seed0001.png'), expected), flags
    plain_pkl = write_snapshot(tiny_mspe_generator(), tmp_path / 'plain.pkl')
    result = invoke_generate([f'--network={plain_pkl}', '--seeds=1', f'--outdir={tmp_path / "plain"}', '--device=cpu'])
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_png(tmp_path / 'plain' / 'seed0001.png'), expected_image(tiny_mspe_generator(), 1))

def test_canvas_flags_give_a_plain_host_pickle_canvas_support(tmp_path):
    pkl = write_snapshot(tiny_generator(), tmp_path / 'net.pkl')
    outdir = tmp_path / 'out'
    result = invoke_generate([f'--network={pkl}', '--seeds=0', f'--outdir={outdir}', '--device=cpu', '--size=16x24'])
    assert result.exit_code == 0, result.output
    assert read_png(outdir / 'seed0000.png').shape == (16, 24, 3)

@pytest.mark.parametrize('flags, expected', [
    (['--translate-strip=1,2'], 'N >= 2 frames'),
    (['--translate-strip=4'], '--translate-strip takes two numbers'),
    (['--zoom=-1'], 'zoom'),
    (['--extent=0:16,-8:24', '--shift=1,1'], '--extent sets the origin and size itself'),
])
def test_bad_canvas_flags_end_in_one_sentence(tmp_path, flags, expected):
    pkl = write_snapshot(tiny_mspe_generator(), tmp_path / 'mspe.pkl')
    result = invoke_generate([f'--network={pkl}', '--seeds=0', f'--outdir={tmp_path / "out"}'] + flags)
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert 'Traceback' not in result.output
