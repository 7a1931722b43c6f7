"""Tile server of the canvas explorer (standard library only: http.server).

Why the standard library: the app is four GET routes; rendering is CPU/GPU-bound and runs one
tile at a time, so an async stack would add dependencies without adding throughput, while
ThreadingHTTPServer already answers cached tiles and the page while a tile renders.

Routes:
    GET /                               the page (index.html next to this file)
    GET /info                           JSON: resolution, c_dim, pe, tile size, zoom range, default view
    GET /stats                          JSON: tile requests, cache hits / misses, renders, cache size
    GET /tile/{z}/{x}/{y}.png?seed=&class=&psi=&noise=&w=
                                        one map tile (see below)

Tiles follow the web-map convention: at zoom level z the canvas is drawn at 2^z output pixels per
training pixel (z = 0: the training grid at its own size, the R x R image is tiles' pixels
[0, R)^2), cut into squares of `tile_size` output pixels; tile (x, y) covers training pixels
[x, x + 1) * tile_size / 2^z horizontally and [y, y + 1) * tile_size / 2^z vertically. x and y
may be negative: the canvas has no end. Each tile is a Canvas rendered with the generator's margin
(mspe_plugin.tiles), so neighbouring tiles join seamlessly.
"""

import collections
import io
import json
import math
import os
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import PIL.Image
import torch

from mspe_plugin import tiles
from mspe_plugin.encoding import Canvas

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'index.html')
MAX_TILE_INDEX = 2 ** 20        # |x|, |y| at most this: coordinates stay exact in float64 and the cache key small
NOISE_MODES = ('const', 'none') # 'random' would differ from tile to tile
_TILE_ROUTE = re.compile(r'^/tile/([^/]+)/([^/]+)/([^/]+)\.png$')

class RequestError(Exception):
    """A bad request: HTTP status and a one-sentence message for the client."""
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

def page_html():
    """The explorer's page (one HTML file with inline CSS and JS)."""
    with open(PAGE, 'rb') as f:
        return f.read()

#----------------------------------------------------------------------------

def _integer(text, name, lo=None, hi=None):
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise RequestError(400, f'{name} must be an integer, got {text!r}.') from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise RequestError(400, f'{name} must be between {lo} and {hi}, got {value}.')
    return value

class TileRenderer:
    """Renders, encodes and caches the map tiles of one generator (thread-safe).

    :param G: a generator (any StyleGAN2-ADA G; converted by tiles.canvas_generator).
    :param tile_size: tile side in output pixels (rounded up to a multiple of R / 4).
    :param cache_bytes: the PNG cache holds at most this many bytes (least recently used out).
    :param projected_ws: optional ws [N, num_ws, w_dim] (projector.py) to show instead of seeds.
    :param min_zoom, max_zoom: the range of zoom levels z served.
    """
    def __init__(self, G, tile_size=256, cache_bytes=64 << 20, projected_ws=None, min_zoom=-4, max_zoom=6):
        self.G = tiles.canvas_generator(G)
        self.device = next(self.G.parameters()).device
        self.tile_size = tiles.aligned_tile_size(tile_size, self.G)
        self.cache_bytes = int(cache_bytes)
        self.projected_ws = projected_ws
        self.min_zoom, self.max_zoom = int(min_zoom), int(max_zoom)
        self._cache = collections.OrderedDict()       # key -> PNG bytes, least recently used first
        self._cached_bytes = 0
        self._ws = collections.OrderedDict()          # latent key -> ws [1, num_ws, w_dim]
        self._lock = threading.Lock()                 # guards the caches and counters
        self._render_lock = threading.Lock()          # one render at a time
        self.stats = dict(tile_requests=0, hits=0, misses=0, renders=0, bad_requests=0)

    #------------------------------------------------------------------------

    def info(self):
        """What the page needs to know about the network and the tiles (JSON-serialisable)."""
        synthesis = self.G.synthesis
        R = self.G.img_resolution
        default_z = min(max(0, self.min_zoom), self.max_zoom)     # the training grid at its own size
        return dict(
            resolution=R, img_channels=self.G.img_channels, c_dim=self.G.c_dim, z_dim=self.G.z_dim,
            pe=getattr(synthesis, 'pe', 'none'), padding=getattr(synthesis, 'pe_padding', 'zero'),
            margin=tiles.tile_margin(self.G), tile_size=self.tile_size, min_zoom=self.min_zoom, max_zoom=self.max_zoom,
            max_tile_index=MAX_TILE_INDEX, noise_modes=list(NOISE_MODES),
            projected=0 if self.projected_ws is None else int(self.projected_ws.shape[0]),
            default_view=dict(z=default_z, cy=R / 2, cx=R / 2, seed=0, class_idx=0 if self.G.c_dim else None,
                              psi=0.7, noise='const'))

    def stats_snapshot(self):
        with self._lock:
            return dict(self.stats, cache_entries=len(self._cache), cache_bytes=self._cached_bytes, cache_limit=self.cache_bytes)

    def parse_tile(self, z, x, y, query):
        """Validate a tile request: (z, x, y) ints and the latent parameters; RequestError(400) if bad."""
        z = _integer(z, 'The zoom level z', self.min_zoom, self.max_zoom)
        x = _integer(x, 'The tile column x', -MAX_TILE_INDEX, MAX_TILE_INDEX)
        y = _integer(y, 'The tile row y', -MAX_TILE_INDEX, MAX_TILE_INDEX)
        params = {key: values[-1] for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        unknown = sorted(set(params) - {'seed', 'class', 'psi', 'noise', 'w'})
        if unknown:
            raise RequestError(400, f'Unknown parameter {unknown[0]!r}: tiles take seed, class, psi, noise and w.')
        noise = params.get('noise', 'const')
        if noise not in NOISE_MODES:
            raise RequestError(400, f'noise must be one of {", ".join(NOISE_MODES)} (random noise would differ from tile to tile), got {noise!r}.')
        if self.projected_ws is not None:
            latent = ('w', _integer(params.get('w', '0'), 'The projected w index', 0, self.projected_ws.shape[0] - 1))
        else:
            if 'w' in params:
                raise RequestError(400, 'This explorer shows seeds, not projected w: start it with --projected-w to use w.')
            seed = _integer(params.get('seed', '0'), 'The seed', 0, 2 ** 32 - 1)
            class_idx = params.get('class', '')
            if self.G.c_dim == 0:
                if class_idx != '':
                    raise RequestError(400, 'This network is unconditional: drop the class parameter.')
                class_idx = None
            else:
                class_idx = _integer(class_idx or '0', 'The class', 0, self.G.c_dim - 1)
            try:
                psi = float(params.get('psi', '1'))
            except ValueError:
                raise RequestError(400, f'psi must be a number, got {params.get("psi")!r}.') from None
            if not math.isfinite(psi) or abs(psi) > 10:
                raise RequestError(400, f'psi must be a finite number between -10 and 10, got {params.get("psi")!r}.')
            latent = ('seed', seed, class_idx, psi)
        return (z, x, y, noise, latent)

    def tile_canvas(self, z, x, y):
        """The Canvas of tile (x, y) at zoom level z."""
        zoom = 2.0 ** z
        T = self.tile_size
        return Canvas(origin=(y * T / zoom, x * T / zoom), size=(T, T), zoom=zoom)

    def _latent_ws(self, latent):
        with self._lock:
            if latent in self._ws:
                self._ws.move_to_end(latent)
                return self._ws[latent]
        if latent[0] == 'w':
            ws = self.projected_ws[latent[1]].unsqueeze(0).to(self.device)
        else:
            _, seed, class_idx, psi = latent
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, self.G.z_dim)).to(self.device, torch.float32)
            c = torch.zeros([1, self.G.c_dim], device=self.device)
            if class_idx is not None:
                c[:, class_idx] = 1
            with torch.no_grad():
                ws = self.G.mapping(z, c, truncation_psi=psi)
        with self._lock:
            self._ws[latent] = ws
            while len(self._ws) > 32:
                self._ws.popitem(last=False)
        return ws

    def _lookup(self, key):
        with self._lock:
            png = self._cache.get(key)
            if png is not None:
                self._cache.move_to_end(key)
            return png

    def _store(self, key, png):
        with self._lock:
            if key in self._cache or len(png) > self.cache_bytes:
                return
            self._cache[key] = png
            self._cached_bytes += len(png)
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= len(old)

    def tile_png(self, key):
        """(PNG bytes, cache hit?) of a parsed tile key (parse_tile)."""
        with self._lock:
            self.stats['tile_requests'] += 1
        png = self._lookup(key)
        if png is None:
            with self._render_lock:
                png = self._lookup(key)             # another thread may have rendered it meanwhile
                if png is None:
                    png = self._render(key)
                    self._store(key, png)
                    hit = False
                else:
                    hit = True
        else:
            hit = True
        with self._lock:
            self.stats['hits' if hit else 'misses'] += 1
        return png, hit

    def _render(self, key):
        z, x, y, noise, latent = key
        ws = self._latent_ws(latent)
        image = tiles.render_tiled(self.G, ws, self.tile_canvas(z, x, y), tile=self.tile_size, noise_mode=noise)[0]
        with self._lock:
            self.stats['renders'] += 1
        buffer = io.BytesIO()
        if image.shape[2] == 1:
            PIL.Image.fromarray(image[:, :, 0], 'L').save(buffer, format='PNG')
        else:
            PIL.Image.fromarray(image[:, :, :3], 'RGB').save(buffer, format='PNG')
        return buffer.getvalue()

#----------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the TileRenderer at self.server.renderer."""
    server_version = 'mspe-explorer/1'
    quiet = True

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-cache')
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def _send_json(self, data, status=200):
        self._send(status, json.dumps(data).encode(), 'application/json')

    def _send_error(self, status, message):
        self._send_json(dict(error=message), status)

    def do_GET(self):  # pylint: disable=invalid-name
        renderer = self.server.renderer
        url = urllib.parse.urlsplit(self.path)
        try:
            if url.path in ('/', '/index.html'):
                self._send(200, page_html(), 'text/html; charset=utf-8')
            elif url.path == '/info':
                self._send_json(renderer.info())
            elif url.path == '/stats':
                self._send_json(renderer.stats_snapshot())
            else:
                match = _TILE_ROUTE.match(url.path)
                if match is None:
                    raise RequestError(404, f'No such page {url.path!r}: the explorer serves /, /info, /stats and /tile/Z/X/Y.png.')
                key = renderer.parse_tile(*match.groups(), url.query)
                png, hit = renderer.tile_png(key)
                self._send(200, png, 'image/png', [('X-Cache', 'hit' if hit else 'miss')])
        except RequestError as err:
            with renderer._lock:
                renderer.stats['bad_requests'] += 1
            self._send_error(err.status, err.message)
        except (BrokenPipeError, ConnectionResetError):
            pass                # the page moved on and closed the connection

    do_HEAD = do_GET

def make_server(renderer, host='127.0.0.1', port=0, quiet=True):
    """A ThreadingHTTPServer serving `renderer` on host:port (port 0: any free port; see
    server.server_address). Call serve_forever() (e.g. in a thread) and shutdown()."""
    server = ThreadingHTTPServer((host, int(port)), _Handler)
    server.daemon_threads = True
    server.renderer = renderer
    server.quiet = quiet
    return server
