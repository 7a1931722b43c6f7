"""Videos through the canvas: one latent, a camera moving smoothly over its infinite canvas.

A camera path is a list of keyframes (cy, cx, zoom): the view's centre in training pixels and
its zoom (output pixels per training pixel). Frames interpolate the centre linearly and the zoom
geometrically (a constant zoom speed), segment after segment; every frame is a Canvas of a fixed
output size, rendered tile by tile with the generator's margin (mspe_plugin.tiles), so what a
frame shows does not depend on where that frame ends.

    keys = preset_path('pan', Canvas(size=(64, 128), zoom=2), 32)
    with VideoWriter('pan.mp4', fps=24) as video:
        for canvas in frame_canvases(keys, 48, (64, 128)):
            video.append(render_tiled(G, ws, canvas, tile=128)[0])

MP4 is written with PyAV (the `av` wheel ships FFmpeg's libraries: H.264 when the wheel has
libx264, else MPEG-4 part 2); GIF with Pillow.
"""

import math
import os

import numpy as np
import PIL.Image

from mspe_plugin.encoding import Canvas

VIDEO_MODES = ('pan', 'zoom')
VIDEO_SUFFIXES = ('.mp4', '.gif')
ZOOM_PRESET_FACTOR = 4.0        # --video=zoom ends at 4x the starting zoom.

class VideoError(ValueError):
    """A camera path, frame count or output file that cannot be made; the message says what to change."""

#----------------------------------------------------------------------------
# Camera paths.

def parse_path(text):
    """'Y,X,ZOOM;Y,X,ZOOM;...' -> [(cy, cx, zoom), ...]: at least two keyframes, zoom > 0."""
    keys = []
    for part in str(text).split(';'):
        if not part.strip():
            continue
        values = part.split(',')
        try:
            cy, cx, zoom = (float(v) for v in values)
        except ValueError:
            raise VideoError(f'A camera path is Y,X,ZOOM keyframes separated by ";" (e.g. 16,16,1;16,80,2); '
                             f'{part.strip()!r} is not three numbers.') from None
        if not all(math.isfinite(v) for v in (cy, cx, zoom)) or zoom <= 0:
            raise VideoError(f'Keyframe {part.strip()!r} needs finite numbers and a zoom > 0.')
        keys.append((cy, cx, zoom))
    if len(keys) < 2:
        raise VideoError(f'A camera path needs at least two Y,X,ZOOM keyframes separated by ";"; got {text!r}.')
    return keys

def preset_path(mode, canvas, img_resolution):
    """Keyframes of a preset starting at `canvas` (its origin, size and zoom):
    'pan' moves the view right by its own width; 'zoom' zooms in 4x about its centre."""
    if mode not in VIDEO_MODES:
        raise VideoError(f'Unknown video mode {mode!r}: choose one of {", ".join(VIDEO_MODES)}.')
    height, width = canvas.output_size(img_resolution)
    cy = canvas.origin[0] + height / 2 / canvas.zoom
    cx = canvas.origin[1] + width / 2 / canvas.zoom
    if mode == 'pan':
        return [(cy, cx, canvas.zoom), (cy, cx + width / canvas.zoom, canvas.zoom)]
    return [(cy, cx, canvas.zoom), (cy, cx, canvas.zoom * ZOOM_PRESET_FACTOR)]

def camera(keys, t):
    """(cy, cx, zoom) at t in [0, 1] along the keyframes (equal time per segment)."""
    position = min(max(float(t), 0.0), 1.0) * (len(keys) - 1)
    i = min(int(position), len(keys) - 2)
    u = position - i
    (y0, x0, z0), (y1, x1, z1) = keys[i], keys[i + 1]
    return (y0 + u * (y1 - y0), x0 + u * (x1 - x0), z0 * (z1 / z0) ** u)

def frame_canvases(keys, frames, size, wrap=False, margin=0):
    """The `frames` canvases of size (H, W) along the keyframes, first and last included."""
    if isinstance(frames, bool) or int(frames) != frames or frames < 2:
        raise VideoError(f'A video needs at least 2 frames, got {frames!r}.')
    height, width = size
    canvases = []
    for k in range(int(frames)):
        cy, cx, zoom = camera(keys, k / (frames - 1))
        origin = (cy - height / 2 / zoom, cx - width / 2 / zoom)
        canvases.append(Canvas(origin=origin, size=(height, width), zoom=zoom, wrap=wrap, margin=margin))
    return canvases

#----------------------------------------------------------------------------
# Writing.

def have_mp4():
    """True when PyAV (the MP4 encoder) is importable."""
    try:
        import av  # noqa: F401 pylint: disable=unused-import
    except ImportError:
        return False
    return True

def check_output(path, size):
    """Refuse, in one sentence, an output the writer cannot make: a suffix other than .mp4 / .gif,
    MP4 without PyAV, or MP4 (yuv420p) at an odd width or height."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VideoError(f'The video file must end in .mp4 or .gif, got {os.path.basename(str(path))!r}.')
    if suffix == '.mp4':
        if not have_mp4():
            raise VideoError('Writing MP4 needs PyAV: pip install av (or the mspe[video] extra), or write a .gif.')
        if size[0] % 2 or size[1] % 2:
            raise VideoError(f'MP4 (H.264, yuv420p) needs an even width and height, got {size[0]}x{size[1]}: '
                             f'pass --size with even numbers or write a .gif.')
    return suffix

class VideoWriter:
    """Append uint8 frames [H, W, C] (C = 1 or 3); `close` (or the with-block) finishes the file.
    MP4 frames stream to the encoder; GIF frames are kept until the end (Pillow writes them at once)."""
    def __init__(self, path, fps=24):
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise VideoError(f'The frame rate must be a number > 0, got {fps!r}.')
        self.path = str(path)
        self.fps = fps
        self.suffix = os.path.splitext(self.path)[1].lower()
        if self.suffix not in VIDEO_SUFFIXES:
            raise VideoError(f'The video file must end in .mp4 or .gif, got {os.path.basename(self.path)!r}.')
        self.size = None
        self.frames = []
        self._container = self._stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _open_mp4(self, height, width):
        import av
        from fractions import Fraction
        self._container = av.open(self.path, mode='w')
        codec = 'libx264' if 'libx264' in av.codecs_available else 'mpeg4'
        self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = 'yuv420p'
        if codec == 'libx264':
            self._stream.options = {'crf': '18'}

    def append(self, frame):
        frame = np.asarray(frame, dtype=np.uint8)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = np.repeat(frame, 3, axis=2)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f'Video frames must be uint8 [H, W, 1 or 3], got shape {list(frame.shape)}.')
        if self.size is None:
            self.size = frame.shape[:2]
            if self.suffix == '.mp4':
                check_output(self.path, self.size)
                self._open_mp4(*self.size)
        elif frame.shape[:2] != self.size:
            raise VideoError(f'All frames must have one size: {list(self.size)}, then {list(frame.shape[:2])}.')
        if self.suffix == '.gif':
            self.frames.append(PIL.Image.fromarray(frame, 'RGB'))
            return
        import av
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24')):
            self._container.mux(packet)

    def close(self):
        if self.suffix == '.gif' and self.frames:
            # One adaptive palette per frame; equal durations (in ms, GIF's unit is 10 ms).
            self.frames[0].save(self.path, save_all=True, append_images=self.frames[1:], loop=0,
                                duration=int(round(1000 / self.fps)), optimize=False)
            self.frames = []
        if self._container is not None:
            for packet in self._stream.encode(None):     # flush the encoder's delayed frames
                self._container.mux(packet)
            self._container.close()
            self._container = None
