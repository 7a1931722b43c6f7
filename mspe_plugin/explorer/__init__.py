"""The canvas explorer: a local tile server and one HTML page to pan and zoom a generator's
infinite canvas like a map (stylegan2_ada_vendor/explore.py starts it).

    from mspe_plugin.explorer import TileRenderer, make_server
    server = make_server(TileRenderer(G), port=8000)     # binds 127.0.0.1
    server.serve_forever()
"""

from mspe_plugin.explorer.server import RequestError, TileRenderer, make_server, page_html

__all__ = ['RequestError', 'TileRenderer', 'make_server', 'page_html']
