"""The canvas explorer (stylegan2_ada_vendor/explore.py, mspe_plugin.explorer): map tiles that are
canvases and join into one render, a bounded cache, 4xx with a sentence for bad requests, a CLI
that binds 127.0.0.1, and a real headless browser that pans the view by dragging."""
import base64
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import PIL.Image
import pytest
import torch

from mspe_plugin import networks as pe_networks
from mspe_plugin import tiles
from mspe_plugin.encoding import Canvas
from mspe_plugin.explorer import TileRenderer, make_server

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')
R = 32
T = 32          # tile size of the fast tests

def make_G(c_dim=2):
    torch.manual_seed(0)
    return pe_networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=R, img_channels=3, mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(pe='mspe', channel_base=256, channel_max=16)).eval().requires_grad_(False)

class Served:
    """A TileRenderer served on 127.0.0.1 at a free port from a thread."""
    def __init__(self, renderer):
        self.renderer = renderer
        self.server = make_server(renderer, port=0)
        self.url = 'http://%s:%d' % self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path):
        """(status, headers, body) of GET path; 4xx/5xx do not raise."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

@pytest.fixture(scope='module')
def served():
    s = Served(TileRenderer(make_G(), tile_size=T))
    yield s
    s.close()

def png(body):
    return np.array(PIL.Image.open(io.BytesIO(body)).convert('RGB'))

def ws_of(G, seed, class_idx, psi):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    c = torch.zeros([1, G.c_dim])
    c[0, class_idx] = 1
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=psi)

#----------------------------------------------------------------------------

def test_server_binds_localhost_and_serves_the_page_and_info(served):
    assert served.server.server_address[0] == '127.0.0.1'
    status, headers, body = served.get('/')
    assert status == 200 and headers['Content-Type'].startswith('text/html')
    assert b'id="map"' in body and b'Save view as PNG' in body
    status, _, body = served.get('/info')
    info = json.loads(body)
    assert status == 200
    assert (info['resolution'], info['c_dim'], info['pe'], info['tile_size'], info['margin']) == (R, 2, 'mspe', T, 32)
    assert info['default_view']['z'] == 0

def test_tiles_are_canvases_that_join_into_one_render(served):
    """Four z=0 tiles are the pieces of one 2T x 2T render; a z=1 tile left of the origin is the
    canvas at zoom 2 there (uint8 PNG: within one level of rounding)."""
    query = '?seed=7&class=1&psi=0.5'
    parts = {}
    for x in (0, 1):
        for y in (0, 1):
            status, headers, body = served.get(f'/tile/0/{x}/{y}.png{query}')
            assert status == 200 and headers['Content-Type'] == 'image/png'
            parts[x, y] = png(body)
            assert parts[x, y].shape == (T, T, 3)
    stitched = np.concatenate([np.concatenate([parts[0, y], parts[1, y]], axis=1) for y in (0, 1)], axis=0)
    G = served.renderer.G
    ws = ws_of(G, 7, 1, 0.5)
    whole = tiles.render_tiled(G, ws, Canvas(size=(2 * T, 2 * T)), tile=2 * T)[0]
    assert np.abs(stitched.astype(int) - whole.astype(int)).max() <= 1
    _, _, body = served.get(f'/tile/1/-1/0.png{query}')
    zoomed = tiles.render_tiled(G, ws, Canvas(origin=(0, -T / 2), size=(T, T), zoom=2), tile=T)[0]
    assert np.abs(png(body).astype(int) - zoomed.astype(int)).max() <= 1
    assert np.abs(png(body).astype(int) - parts[0, 0].astype(int)).max() > 8     # a different place, a different image

def test_a_repeated_tile_is_a_cache_hit(served):
    before = served.renderer.stats_snapshot()
    _, first, body1 = served.get('/tile/2/3/-4.png?seed=1&class=0&psi=1&noise=none')
    _, second, body2 = served.get('/tile/2/3/-4.png?seed=1&class=0&psi=1&noise=none')
    after = served.renderer.stats_snapshot()
    assert (first['X-Cache'], second['X-Cache']) == ('miss', 'hit') and body1 == body2
    assert (after['hits'] - before['hits'], after['misses'] - before['misses'], after['renders'] - before['renders']) == (1, 1, 1)
    assert json.loads(served.get('/stats')[2])['hits'] == after['hits']

def test_the_cache_is_bounded_in_bytes():
    renderer = TileRenderer(make_G(), tile_size=T, cache_bytes=3000)
    keys = [renderer.parse_tile('0', str(x), '0', 'seed=2&class=0') for x in range(6)]
    sizes = [len(renderer.tile_png(key)[0]) for key in keys]
    stats = renderer.stats_snapshot()
    assert stats['cache_bytes'] <= 3000 and stats['cache_entries'] < 6 and sum(sizes) > 3000
    assert renderer.tile_png(keys[-1])[1] is True        # the newest stayed
    assert renderer.tile_png(keys[0])[1] is False        # the oldest went

@pytest.mark.parametrize('path,status,match', [
    ('/tile/a/0/0.png', 400, 'zoom level z must be an integer'),
    ('/tile/0/1.5/0.png', 400, 'tile column x must be an integer'),
    ('/tile/0/0/y.png', 400, 'tile row y must be an integer'),
    ('/tile/99/0/0.png', 400, 'between -4 and 6'),
    ('/tile/0/0/99999999.png', 400, 'between'),
    ('/tile/0/0/0.png?class=2', 400, 'class must be between 0 and 1'),
    ('/tile/0/0/0.png?class=x', 400, 'class must be an integer'),
    ('/tile/0/0/0.png?psi=abc', 400, 'psi must be a number'),
    ('/tile/0/0/0.png?psi=nan', 400, 'finite'),
    ('/tile/0/0/0.png?seed=-1', 400, 'seed must be between'),
    ('/tile/0/0/0.png?noise=random', 400, 'noise must be one of'),
    ('/tile/0/0/0.png?w=0', 400, 'projected-w'),
    ('/tile/0/0/0.png?size=9', 400, 'Unknown parameter'),
    ('/nowhere', 404, 'No such page'),
])
def test_bad_requests_get_a_4xx_with_one_sentence(served, path, status, match):
    got, headers, body = served.get(path)
    message = json.loads(body)['error']
    assert got == status and headers['Content-Type'] == 'application/json'
    assert match in message and message.endswith('.') and '\n' not in message

def test_an_unconditional_network_refuses_a_class():
    renderer = TileRenderer(make_G(c_dim=0), tile_size=T)
    with pytest.raises(Exception, match='unconditional'):
        renderer.parse_tile('0', '0', '0', 'class=1')
    assert renderer.info()['c_dim'] == 0 and renderer.info()['default_view']['class_idx'] is None

def test_projected_w_is_what_the_tiles_show():
    G = make_G()
    ws = torch.cat([ws_of(G, 1, 0, 1), ws_of(G, 2, 1, 1)])
    s = Served(TileRenderer(G, tile_size=T, projected_ws=ws))
    try:
        assert json.loads(s.get('/info')[2])['projected'] == 2
        status, _, body = s.get('/tile/0/0/0.png?w=1')
        assert status == 200
        expected = tiles.render_tiled(G, ws[1:], Canvas(size=(T, T)), tile=T)[0]
        assert np.abs(png(body).astype(int) - expected.astype(int)).max() <= 1
        status, _, body = s.get('/tile/0/0/0.png?w=2')
        assert status == 400 and 'between 0 and 1' in json.loads(body)['error']
    finally:
        s.close()

#----------------------------------------------------------------------------
# The command line.

def run_explore(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    return subprocess.Popen([sys.executable, 'explore.py'] + args, cwd=HOST, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)

def test_a_bad_network_path_fails_at_start_with_one_sentence(tmp_path):
    process = run_explore([f'--network={tmp_path / "missing.pkl"}', '--port=0'])
    out, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert 'Traceback' not in err
    line = [l for l in err.splitlines() if l.strip()][-1]
    assert line.startswith('Error: ') and 'does not exist' in line and line.endswith('.'), line

def test_the_cli_serves_on_127_0_0_1(tmp_path):
    path = tmp_path / 'net.pkl'
    G = make_G()
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=None), f)
    process = run_explore([f'--network={path}', '--port=0', f'--tile-size={T}', '--device=cpu'])
    try:
        url = None
        for line in process.stdout:
            if 'http://' in line:
                url = line.split('http://')[1].split('/')[0]
                break
        assert url is not None and url.startswith('127.0.0.1:'), url
        with urllib.request.urlopen(f'http://{url}/tile/0/0/0.png?class=1', timeout=60) as response:
            assert png(response.read()).shape == (T, T, 3)
    finally:
        process.terminate()
        process.communicate(timeout=60)

#----------------------------------------------------------------------------
# A real browser: Debian's chromium and chromium-driver (.ci/run installs them), driven by selenium.

def browser_or_skip():
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium (the test extra) is not installed')
    binary = next((shutil.which(n) for n in ('chromium', 'chromium-browser', 'google-chrome') if shutil.which(n)), None)
    driver = next((p for p in (shutil.which('chromedriver'), '/usr/lib/chromium/chromedriver') if p and os.path.exists(p)), None)
    if binary is None or driver is None:
        pytest.skip('no chromium / chromedriver on this machine (apt-get install chromium chromium-driver, as .ci/run does)')
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=640,480',
                '--force-device-scale-factor=1', '--hide-scrollbars'):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)

def wait_for_tiles(driver, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = driver.execute_script('return window.explorer && [explorer.ready, explorer.pending, explorer.loaded, explorer.failed]')
        if state and state[0] and state[1] == 0 and state[2] > 0:
            assert state[3] == 0, 'tiles failed to load'
            return
        time.sleep(0.2)
    raise AssertionError(f'tiles did not finish loading: {state}')

def map_pixels(driver):
    """The screenshot's pixels of the map element (RGB)."""
    shot = np.array(PIL.Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert('RGB')).astype(int)
    left, top, width, height = driver.execute_script(
        'const r = document.getElementById("map").getBoundingClientRect(); return [r.left, r.top, r.width, r.height];')
    return shot[int(top):int(top) + int(height), int(left):int(left) + int(width)]

def test_browser_drag_pans_the_view_and_requests_new_tiles():
    driver = browser_or_skip()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    s = Served(TileRenderer(make_G(), tile_size=64))
    try:
        driver.get(s.url + '/#seed=3&class=1&psi=0.8')
        wait_for_tiles(driver)
        before = map_pixels(driver)
        requests = s.renderer.stats_snapshot()['tile_requests']
        element = driver.find_element('id', 'map')
        dx, dy = 100, 70
        ActionChains(driver).move_to_element(element).click_and_hold().move_by_offset(-dx, -dy).release().perform()
        wait_for_tiles(driver)
        after = map_pixels(driver)
        assert s.renderer.stats_snapshot()['tile_requests'] > requests            # new tiles came into view
        h, w, _ = before.shape
        assert h > 2 * dy and w > 2 * dx
        # The content moved with the pointer: what was at (x, y) is now at (x - dx, y - dy).
        moved = np.abs(after[:h - dy, :w - dx] - before[dy:, dx:])
        assert moved.mean() < 0.5 and moved.max() <= 2, (moved.mean(), moved.max())
        assert np.abs(after - before).mean() > 2          # and the view is not what it was
        # "Save view as PNG" draws exactly what is on screen.
        url = driver.execute_script('return explorer.viewDataURL()')
        saved = np.array(PIL.Image.open(io.BytesIO(base64.b64decode(url.split(',', 1)[1]))).convert('RGB')).astype(int)
        assert saved.shape == after.shape and np.abs(saved - after).max() <= 2
        # The wheel zooms in one level about the pointer and loads that level's tiles.
        ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(element), 0, -120).perform()
        wait_for_tiles(driver)
        keys = driver.execute_script('return [explorer.view.z, Array.from(explorer.tiles.keys())]')
        assert keys[0] == 1 and keys[1] and all(k.startswith('1/') for k in keys[1])
    finally:
        driver.quit()
        s.close()
