"""Videos through the canvas (mspe_plugin.video, generate.py --video / --video-path): camera paths,
frames that are canvases of one latent, files that decode to the requested frame count and size."""
import os
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from mspe_plugin import networks as pe_networks
from mspe_plugin import tiles, video
from mspe_plugin.encoding import Canvas

torch.set_num_threads(1)

R = 32

def make_G(c_dim=0):
    torch.manual_seed(0)
    return pe_networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=R, img_channels=3, mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(pe='mspe', channel_base=256, channel_max=16)).eval().requires_grad_(False)

@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp('net') / 'mspe.pkl'
    G = make_G(c_dim=2)
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    return str(path)

def run_generate(args):
    result = CliRunner().invoke(generate.generate_images, args + ['--device=cpu'])
    return result

def one_sentence_error(result):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    line = [l for l in result.stderr.splitlines() if l.strip()][-1]
    assert line.startswith('Error: ') and line.endswith('.'), line
    return line

#----------------------------------------------------------------------------
# Camera paths.

def test_camera_path_parses_keyframes_and_refuses_bad_ones():
    assert video.parse_path('16,16,1;16,80,2') == [(16.0, 16.0, 1.0), (16.0, 80.0, 2.0)]
    assert video.parse_path(' 0,0,1 ; 1,2,0.5 ;') == [(0.0, 0.0, 1.0), (1.0, 2.0, 0.5)]
    for bad, match in (('16,16,1', 'at least two'), ('1,2;3,4,1', 'not three numbers'), ('0,0,1;0,0,0', 'zoom > 0'),
                       ('0,0,1;a,0,1', 'not three numbers'), ('0,0,1;0,nan,1', 'finite')):
        with pytest.raises(video.VideoError, match=match):
            video.parse_path(bad)

def test_frames_interpolate_centre_linearly_and_zoom_geometrically():
    keys = [(16.0, 16.0, 1.0), (16.0, 80.0, 4.0)]
    canvases = video.frame_canvases(keys, 3, (32, 64))
    assert [c.zoom for c in canvases] == [1.0, 2.0, 4.0]
    centres = [(c.origin[0] + 16 / c.zoom, c.origin[1] + 32 / c.zoom) for c in canvases]
    np.testing.assert_allclose(centres, [(16, 16), (16, 48), (16, 80)])
    assert all(c.size == (32, 64) for c in canvases)
    with pytest.raises(video.VideoError, match='at least 2 frames'):
        video.frame_canvases(keys, 1, (32, 64))

def test_presets_pan_by_the_view_width_and_zoom_in_4x():
    canvas = Canvas(origin=(0.0, 0.0), size=(32, 64), zoom=2.0)
    (y0, x0, z0), (y1, x1, z1) = video.preset_path('pan', canvas, R)
    assert (y0, x0, z0) == (8.0, 16.0, 2.0) and (y1, x1, z1) == (8.0, 48.0, 2.0)
    assert video.preset_path('zoom', canvas, R)[-1] == (8.0, 16.0, 8.0)

def test_pan_frames_show_one_canvas_moving():
    """Consecutive pan frames (8 px apart) are the same canvas moved by 8 px: the content slides,
    it is not redrawn (rendered with the tile margin, so each frame's edge is out of sight)."""
    G = make_G()
    torch.manual_seed(1)
    ws = G.mapping(torch.randn([1, 8]), None)
    keys = video.preset_path('pan', Canvas(size=(32, 64)), R)      # 64 px in 8 frame steps
    first, second = (tiles.render_tiled(G, ws, c, tile=64, dtype=np.float32)[0] for c in video.frame_canvases(keys, 9, (32, 64))[:2])
    np.testing.assert_allclose(second[:, :-8], first[:, 8:], atol=1e-5, rtol=0)
    assert np.abs(second - first).max() > 1e-2

#----------------------------------------------------------------------------
# Files.

def test_gif_decodes_to_the_requested_frames_and_size(snapshot, tmp_path):
    out = tmp_path / 'pan.gif'
    result = run_generate([f'--network={snapshot}', '--seeds=3', '--class=1', f'--outdir={tmp_path}', '--video=pan',
                           '--size=24x40', '--frames=7', '--fps=10', f'--video-out={out}'])
    assert result.exit_code == 0, result.output
    with PIL.Image.open(out) as gif:
        assert gif.n_frames == 7 and gif.size == (40, 24)
        assert gif.info['duration'] == 100

def test_mp4_decodes_to_the_requested_frames_and_size(snapshot, tmp_path):
    av = pytest.importorskip('av', reason='PyAV (the optional video extra: pip install av) is not installed')
    result = run_generate([f'--network={snapshot}', '--seeds=3-4', '--class=0', f'--outdir={tmp_path}',
                           '--video-path=8,8,1;8,40,0.5;20,20,2', '--size=24x40', '--frames=9'])
    assert result.exit_code == 0, result.output
    for seed in (3, 4):
        with av.open(str(tmp_path / f'seed{seed:04d}-path.mp4')) as container:
            frames = [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]
        assert len(frames) == 9 and frames[0].shape == (24, 40, 3)

def test_bad_video_requests_end_in_one_sentence(snapshot, tmp_path):
    base = [f'--network={snapshot}', '--class=0', f'--outdir={tmp_path}']
    cases = [
        (['--seeds=0', '--video=pan', f'--video-out={tmp_path / "a.avi"}'], '.mp4 or .gif'),
        (['--seeds=0-1', '--video=pan', f'--video-out={tmp_path / "a.gif"}'], 'one file'),
        (['--seeds=0', '--video=pan', '--noise-mode=random', f'--video-out={tmp_path / "a.gif"}'], 'flicker'),
        (['--seeds=0', '--video=pan', '--video-path=0,0,1;0,8,1'], 'drop --video'),
        (['--seeds=0', '--video-path=0,0,1;0,8,1', '--shift=1,1'], 'drop --shift'),
        (['--seeds=0', '--video-path=0,0,1'], 'at least two'),
        (['--seeds=0', '--video=zoom', '--frames=1'], '--frames'),
    ]
    if video.have_mp4():
        cases.append((['--seeds=0', '--video=pan', '--size=25x32'], 'even width and height'))
    for args, match in cases:
        line = one_sentence_error(run_generate(base + args))
        assert match in line, (args, line)
    assert not any(name.endswith(('.gif', '.mp4', '.avi')) for name in os.listdir(tmp_path))

def test_tiled_image_equals_one_render(snapshot, tmp_path):
    """generate.py --tile writes the image of one render with the tile margin (tile rounded up)."""
    result = run_generate([f'--network={snapshot}', '--seeds=5', '--class=1', f'--outdir={tmp_path}', '--size=40x72',
                           '--shift=-3,7', '--tile=20'])
    assert result.exit_code == 0, result.output
    assert 'rounded up to 24' in result.output
    G = make_G(c_dim=2)
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 8)).float()
    with torch.no_grad():
        ws = G.mapping(z, torch.tensor([[0.0, 1.0]]))
        img = G.synthesis(ws, canvas=Canvas(origin=(-3, 7), size=(40, 72), margin=tiles.tile_margin(G)), noise_mode='const')
    written = np.array(PIL.Image.open(tmp_path / 'seed0005.png')).astype(int)
    assert written.shape == (40, 72, 3)
    assert np.abs(written - tiles.to_uint8(img)[0].astype(int)).max() <= 1
