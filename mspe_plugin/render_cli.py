"""generate.py's flags for tiled images and videos (--tile, --video, --video-path, --video-out,
--fps, --frames) and the functions that carry them out.

    python generate.py --network=mspe.pkl --seeds=0 --class=3 --outdir=out --size=1024x4096 --tile=256
    python generate.py --network=mspe.pkl --seeds=0 --class=3 --outdir=out --video=pan --zoom=2 --size=64x128
    python generate.py --network=mspe.pkl --seeds=0 --class=3 --outdir=out --video-path="16,16,1;16,80,2" --video-out=out/walk.gif
"""

import os

import click
import torch

from mspe_plugin import tiles, video
from mspe_plugin.encoding import Canvas
from mspe_plugin.progress import Progress

def render_options(fn):
    """click decorator adding --tile, --video, --video-path, --video-out, --fps and --frames."""
    options = [
        click.option('--tile', type=click.IntRange(min=1), default=None, metavar='N',
                     help='Render the canvas in tiles of N output pixels (memory follows N, not the canvas); rounded up to a multiple of R/4'),
        click.option('--video', type=click.Choice(video.VIDEO_MODES), default=None,
                     help='Write a video per latent instead of images: pan (the view moves right by its width) or zoom (4x in)'),
        click.option('--video-path', type=str, default=None, metavar='Y,X,ZOOM;...',
                     help='Camera keyframes (view centre in training pixels, zoom) for a video, e.g. "16,16,1;16,80,2"'),
        click.option('--video-out', type=str, default=None, metavar='FILE',
                     help='Video file (.mp4 or .gif) for one latent [default: OUTDIR/seedNNNN-MODE.mp4]'),
        click.option('--fps', type=click.FloatRange(min=0, min_open=True), default=24, show_default=True, help='Video frame rate'),
        click.option('--frames', type=click.IntRange(min=2), default=48, show_default=True, help='Video frame count'),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn

def wants_video(video_mode=None, video_path=None, **_):
    return video_mode is not None or video_path is not None

def video_keyframes(G, canvas, canvas_flags, video_mode, video_path):
    """(keyframes, frame size (H, W)) from the flags; one sentence (click.BadParameter) when they clash."""
    R = G.img_resolution
    try:
        if video_path is not None:
            if video_mode is not None:
                raise click.BadParameter('--video-path is a camera path of its own: drop --video.')
            clashing = [f'--{name}' for name in ('shift', 'zoom', 'extent') if canvas_flags.get(name) is not None]
            if clashing:
                raise click.BadParameter(f'--video-path sets the centre and zoom of every keyframe: drop {" and ".join(clashing)}.')
            keys = video.parse_path(video_path)
            size = canvas.output_size(R) if canvas is not None and canvas.size is not None else Canvas(zoom=keys[0][2]).output_size(R)
            return keys, size
        start = canvas if canvas is not None else Canvas()
        return video.preset_path(video_mode, start, R), start.output_size(R)
    except video.VideoError as err:
        raise click.BadParameter(str(err))

def video_files(outdir, video_out, names, mode):
    """One output file per latent name: --video-out for a single latent, else OUTDIR/NAME-MODE.mp4."""
    if video_out is None:
        return [os.path.join(outdir, f'{name}-{mode}.mp4') for name in names]
    if len(names) != 1:
        raise click.BadParameter(f'--video-out names one file, but {len(names)} latents were given: pass one seed, or drop --video-out.')
    return [video_out]

def check_videos(paths, size, noise_mode):
    """Refuse, in one sentence and before any rendering, video files that cannot be written."""
    if noise_mode == 'random':
        raise click.BadParameter('Videos need --noise-mode=const or none (random noise would flicker from frame to frame).')
    try:
        for path in paths:
            video.check_output(path, size)
    except video.VideoError as err:
        raise click.ClickException(str(err))

def write_video(G, ws, path, keys, size, frames, fps, noise_mode, tile=None, wrap=False, margin=0):
    """Render ws [1, num_ws, w_dim] along the keyframes into `path` (.mp4 or .gif), with progress."""
    check_videos([path], size, noise_mode)
    try:
        canvases = video.frame_canvases(keys, frames, size, wrap=wrap, margin=margin)
        tile = tiles.aligned_tile_size(tile if tile is not None else max(size), G)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        bar = Progress(len(canvases), os.path.basename(path))
        with video.VideoWriter(path, fps=fps) as writer:
            for canvas in canvases:
                writer.append(tiles.render_tiled(G, ws, canvas, tile=tile, noise_mode=noise_mode)[0])
                bar.update()
        bar.close()
    except (video.VideoError, tiles.TileError) as err:
        raise click.ClickException(str(err))

def render_tiled_image(G, ws, canvas, tile, noise_mode):
    """uint8 [H, W, C] of ws [1, num_ws, w_dim] on `canvas` (None: the training grid), in tiles of
    `tile` output pixels (rounded up to the alignment, with a note), with a progress bar."""
    aligned = tiles.aligned_tile_size(tile, G)
    if aligned != tile:
        print(f'Note: --tile={tile} rounded up to {aligned} (a multiple of {tiles.tile_alignment(G)} output pixels).')
    try:
        return tiles.render_tiled(G, ws, canvas, tile=aligned, noise_mode=noise_mode, progress=True)[0]
    except tiles.TileError as err:
        raise click.ClickException(str(err))

def latent_ws(G, label, truncation_psi, z=None, ws=None):
    """ws [1, num_ws, w_dim] of a latent z (mapped with the label and psi) or projected ws as given."""
    if ws is not None:
        return ws
    with torch.no_grad():
        return G.mapping(z, label, truncation_psi=truncation_psi)

def tile_generator(G):
    """canvas_generator(G) with a one-sentence error."""
    try:
        return tiles.canvas_generator(G)
    except tiles.TileError as err:
        raise click.ClickException(str(err))
