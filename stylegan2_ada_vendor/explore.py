"""Explore a generator's infinite canvas in the browser: a local tile server and a map-like page.

    python explore.py --network=../results/models/mspe.pkl               # then open http://127.0.0.1:8000
    python explore.py --network=net.pkl --projected-w=out/projected_w.npz --port=8080

Drag to pan, wheel to zoom, pick seed / class / psi / noise, save the view as a PNG. Tiles are
rendered on demand (CUDA when available, else the CPU), each with the generator's margin so that
neighbours join seamlessly, and kept in a bounded cache (--cache-mb). Needs mspe_plugin (the repo
root is put on the path, as generate.py does). Binds 127.0.0.1 unless --host says otherwise.
"""

import os
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # repo root: mspe_plugin

import click

import generate

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or weights file (path or URL)', required=True, metavar='PATH')
@click.option('--projected-w', help='Projection result file (projector.py) to show instead of seeds', type=str, metavar='FILE')
@click.option('--host', help='Address to bind (127.0.0.1: this machine only)', default='127.0.0.1', show_default=True)
@click.option('--port', help='Port (0: any free port)', type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option('--tile-size', help='Tile side in output pixels (rounded up to a multiple of R/4)', type=click.IntRange(min=8, max=1024), default=256, show_default=True)
@click.option('--cache-mb', help='Memory for cached PNG tiles, in MB', type=click.FloatRange(min=0), default=128, show_default=True)
@click.option('--device', 'device_name', help='auto (cuda when present, else cpu), cpu, cuda, cuda:N', default='auto', show_default=True)
@click.option('--verbose', is_flag=True, help='Log every request')
def explore(network_pkl, projected_w, host, port, tile_size, cache_mb, device_name, verbose):
    """Serve a map-like explorer of a generator's canvas on http://HOST:PORT."""
    if generate.PLUGIN is None:
        raise click.ClickException('The explorer needs mspe_plugin: run it from this repository or pip install mspe.')
    from mspe_plugin.explorer import TileRenderer, make_server
    from mspe_plugin.tiles import TileError
    device = generate.parse_device(device_name)
    print(f'Loading networks from "{network_pkl}"...')
    G = generate.load_generator(network_pkl, device)
    ws = generate.load_projected_w(projected_w, G, device) if projected_w is not None else None
    try:
        renderer = TileRenderer(G, tile_size=tile_size, cache_bytes=int(cache_mb * 2 ** 20), projected_ws=ws)
    except TileError as err:
        raise click.ClickException(str(err))
    try:
        server = make_server(renderer, host=host, port=port, quiet=not verbose)
    except OSError as err:
        raise click.ClickException(f'Cannot listen on {host}:{port} ({err.strerror or err}); pick another --port (0: any free one).')
    bound_host, bound_port = server.server_address[:2]
    print(f'Serving the explorer at http://{bound_host}:{bound_port}/  (tiles of {renderer.tile_size} px; Ctrl-C to stop)', flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print('Stopped.')
    finally:
        server.server_close()

if __name__ == '__main__':
    explore()  # pylint: disable=no-value-for-parameter
