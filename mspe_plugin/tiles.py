"""Render a canvas of any extent tile by tile, with memory bounded by the tile size.

    G = canvas_generator(G)                                   # any StyleGAN2-ADA generator
    img = render_tiled(G, ws, Canvas(size=(1024, 4096)), tile=256)   # uint8 [N, 1024, 4096, C]

Every tile is its own canvas, rendered with a margin of the generator's receptive radius (in
output pixels) beyond each side and cropped, so that no pixel of a tile depends on where that
tile ends: the tiles are exactly the pieces of one render of the whole canvas with the same
margin (tests/test_tiles.py checks 1e-5). Padding-free generators (pe_padding='none') need no
margin. Tiles start at multiples of the coarsest scale's pixel (R / 4 output pixels), so every
scale of a tile samples the same coordinate grid as the whole canvas.

Why the margin is not scaled by the zoom: zoom only changes the coordinates the encoding is
evaluated at; the convolutions run on the output-pixel grid at every zoom, so zero padding reaches
the same number of output pixels into the image (a margin of receptive_radius() * zoom is too
small below zoom 1; tests/test_tiles.py shows it).

The tiles are written into one preallocated CPU array; each tile's tensors are freed before the
next, and its encodings bypass mspe_plugin.encoding's cache, so peak memory is that of one tile
plus the output array.
"""

import math

import numpy as np
import torch

from mspe_plugin.encoding import Canvas, encoding_from_coords
from mspe_plugin.progress import Progress

#----------------------------------------------------------------------------

class TileError(ValueError):
    """A tile size or generator that cannot render tiles; the message says what to change."""

class _TileCanvas(Canvas):
    """A Canvas whose encodings are computed per call instead of cached: every tile has its own
    coordinates, so caching them would only grow memory with the number of tiles."""
    def encoding(self, res, img_resolution, channels, base=10000.0, device=None, rows=None, cols=None):
        ys, xs = self.grid(res, img_resolution, rows, cols)
        return encoding_from_coords(ys, xs, channels, base).to(device)

def _synthesis(G):
    """The synthesis network of a generator (or the network itself)."""
    return getattr(G, 'synthesis', G)

def canvas_generator(G):
    """A generator that renders canvases with margins (the current mspe_plugin.networks walk).

    `G` itself when its synthesis network has `receptive_radius`; otherwise the same weights in
    the current class: a snapshot pickled with an older mspe_plugin keeps its variant (pe), a
    plain StyleGAN2-ADA generator (an upstream pickle) becomes the baseline variant (pe='none'),
    which reads the learned constant on the canvas. The radius of the rebuilt network is computed
    from its layers (SynthesisNetwork.receptive_radius), never guessed.

    :raises TileError: for a generator that was not built by a persistent class (no init_kwargs).
    """
    if callable(getattr(_synthesis(G), 'receptive_radius', None)):
        return G
    init_kwargs = getattr(G, 'init_kwargs', None)
    if init_kwargs is None or not hasattr(G, 'synthesis') or not hasattr(G.synthesis, 'b4'):
        raise TileError('This network cannot render tiles: it is not a StyleGAN2-ADA generator built by a persistent '
                        'class, so its receptive radius is unknown.')
    from torch_utils import misc
    from mspe_plugin import networks
    kwargs = dict(init_kwargs)
    kwargs['synthesis_kwargs'] = dict(kwargs.get('synthesis_kwargs', {}), pe=getattr(G.synthesis, 'pe', None) or 'none')
    device = next(G.parameters()).device
    rebuilt = networks.Generator(**kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, rebuilt, require_all=True)
    return rebuilt.to(device)

def tile_margin(G):
    """Output pixels a tile is rendered beyond each side: 0 for a padding-free network, else its
    receptive radius (independent of the zoom, see the module docstring)."""
    synthesis = _synthesis(G)
    if getattr(synthesis, 'pe_padding', 'zero') == 'none':
        return 0
    if not callable(getattr(synthesis, 'receptive_radius', None)):
        raise TileError('This network has no receptive_radius(); convert it with mspe_plugin.tiles.canvas_generator(G) first.')
    return int(math.ceil(synthesis.receptive_radius()))

def tile_alignment(G):
    """Output pixels a tile's offset must be a multiple of: one pixel of the coarsest scale."""
    synthesis = _synthesis(G)
    return synthesis.img_resolution // synthesis.block_resolutions[0]

def aligned_tile_size(tile, G):
    """`tile` rounded up to a multiple of tile_alignment(G)."""
    step = tile_alignment(G)
    return -(-int(tile) // step) * step

def tile_grid(canvas, img_resolution, tile):
    """The tiles of `canvas`, row by row: (rows, cols, tile canvas) with rows = (a, b) and
    cols = (a, b) the output-pixel ranges the tile covers. Tile canvases keep the zoom and wrap of
    `canvas` and start tile * k / zoom training pixels further."""
    height, width = canvas.output_size(img_resolution)
    oy, ox = canvas.origin
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            rows, cols = (top, min(top + tile, height)), (left, min(left + tile, width))
            sub = _TileCanvas(origin=(oy + top / canvas.zoom, ox + left / canvas.zoom), size=(rows[1] - rows[0], cols[1] - cols[0]),
                              zoom=canvas.zoom, wrap=canvas.wrap, margin=canvas.margin)
            yield rows, cols, sub

def to_uint8(img):
    """Float images [N, C, H, W] in [-1, 1] -> uint8 numpy [N, H, W, C] (generate.py's rounding)."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()

def render_tiled(G, ws, canvas=None, tile=256, noise_mode='const', dtype=np.uint8, out=None, progress=False, margin=None):
    """Render ws [N, num_ws, w_dim] on `canvas` tile by tile into one CPU array.

    :param G: a generator or synthesis network with canvas support and receptive_radius
        (canvas_generator(G) makes one).
    :param canvas: a mspe_plugin.encoding.Canvas (None = the training grid); its margin is raised to
        the tile margin when smaller.
    :param tile: tile side in output pixels, a multiple of tile_alignment(G).
    :param noise_mode: 'const' (a fixed noise field read by global coordinate, so tiles agree) or
        'none'; 'random' would draw different noise per tile and is refused.
    :param dtype: np.uint8 (images as generate.py writes them) or np.float32 (raw output).
    :param out: optional preallocated array [N, H, W, C] of that dtype to write into.
    :param margin: output pixels rendered beyond each tile (None = tile_margin(G)).
    :param progress: draw a one-line progress bar on stderr.
    :return: numpy array [N, H, W, C]: equal (1e-5 for float32) to one render of the whole canvas
        with the same margin.
    """
    synthesis = _synthesis(G)
    R = synthesis.img_resolution
    if noise_mode not in ('const', 'none'):
        raise TileError(f'Tiles need noise_mode const or none (random noise differs from tile to tile), got {noise_mode!r}.')
    step = tile_alignment(G)
    if isinstance(tile, bool) or int(tile) != tile or tile <= 0 or tile % step != 0:
        raise TileError(f'The tile size must be a positive multiple of {step} output pixels (one coarsest pixel), got {tile!r}.')
    canvas = Canvas() if canvas is None else canvas
    margin = max(tile_margin(G) if margin is None else int(margin), canvas.margin)
    canvas = Canvas(origin=canvas.origin, size=canvas.output_size(R), zoom=canvas.zoom, wrap=canvas.wrap, margin=margin)
    height, width = canvas.output_size(R)
    shape = (ws.shape[0], height, width, synthesis.img_channels)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != np.dtype(dtype):
        raise TileError(f'The output array must be {np.dtype(dtype).name} of shape {list(shape)}, got {out.dtype.name} {list(out.shape)}.')
    tiles = list(tile_grid(canvas, R, int(tile)))
    bar = Progress(len(tiles), f'{height}x{width} in {len(tiles)} tiles', enabled=progress)
    with torch.no_grad():
        for (ya, yb), (xa, xb), sub in tiles:
            img = synthesis(ws, canvas=sub, noise_mode=noise_mode)
            out[:, ya:yb, xa:xb, :] = to_uint8(img) if out.dtype == np.uint8 else img.permute(0, 2, 3, 1).cpu().numpy()
            del img
            bar.update()
    bar.close()
    return out
