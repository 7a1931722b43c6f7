"""dnnlib: configs as data, log.txt tee, cache folder, and open_url (local, file://, cached http)."""

import functools
import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

import dnnlib
from dnnlib import util

HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'stylegan2_ada_vendor')

#----------------------------------------------------------------------------
# Configs.

def test_easydict_items_are_attributes():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1 and d['b'] == 2
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing

def test_construct_class_by_name_builds_config_objects():
    obj = util.construct_class_by_name(class_name='collections.OrderedDict', a=1, b=2)
    assert type(obj).__name__ == 'OrderedDict' and list(obj.items()) == [('a', 1), ('b', 2)]
    assert util.call_func_by_name(3, func_name='math.sqrt', ) == pytest.approx(3 ** 0.5)
    assert util.get_obj_by_name('os.path.join') is os.path.join
    assert util.get_obj_by_name('dnnlib.util.EasyDict') is dnnlib.EasyDict

def test_unknown_names_fail_with_the_missing_part_named():
    with pytest.raises(ImportError, match="no module named 'nosuchpackage'"):
        util.get_obj_by_name('nosuchpackage.networks.Generator')
    with pytest.raises(ImportError, match="module 'os.path' has no 'nosuch'"):
        util.get_obj_by_name('os.path.nosuch')

def test_import_error_inside_an_existing_module_is_not_hidden(tmp_path, monkeypatch):
    (tmp_path / 'brokenmod.py').write_text('import nosuchdependency_xyz\nX = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match='nosuchdependency_xyz'):
        util.get_obj_by_name('brokenmod.X')

def test_top_level_function_name_is_importable():
    name = util.get_top_level_function_name(util.format_time)
    assert name == 'dnnlib.util.format_time' and util.get_obj_by_name(name) is util.format_time
    with pytest.raises(ValueError):
        util.get_top_level_function_name(lambda: None)

@pytest.mark.parametrize('seconds, text', [(5, '5s'), (65, '1m 05s'), (3725, '1h 02m 05s'), (90061, '1d 01h 01m')])
def test_format_time(seconds, text):
    assert util.format_time(seconds) == text

def test_cache_dir_follows_env_and_set_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(util, '_cache_dir', None)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'env'))
    assert dnnlib.make_cache_dir_path('a', 'b') == os.path.join(str(tmp_path / 'env'), 'a', 'b')
    util.set_cache_dir(str(tmp_path / 'set'))
    assert dnnlib.make_cache_dir_path('a') == os.path.join(str(tmp_path / 'set'), 'a')
    util.set_cache_dir(None)
    monkeypatch.delenv('DNNLIB_CACHE_DIR')
    assert dnnlib.make_cache_dir_path() == os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')

#----------------------------------------------------------------------------
# Logger.

def test_logger_tees_stdout_and_stderr_into_the_file(tmp_path):
    log = tmp_path / 'log.txt'
    script = (
        'import sys, dnnlib\n'
        f'logger = dnnlib.util.Logger(file_name={str(log)!r}, file_mode="a")\n'
        'print("to stdout")\n'
        'print("to stderr", file=sys.stderr)\n'
        'logger.close()\n'
        'print("after close")\n')
    log.write_text('earlier run\n')
    result = subprocess.run([sys.executable, '-c', script], cwd=HOST, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'to stdout\nafter close\n'
    assert result.stderr == 'to stderr\n'
    assert log.read_text() == 'earlier run\nto stdout\nto stderr\n'

def test_nested_loggers_restore_the_original_streams(tmp_path):
    stdout, stderr = sys.stdout, sys.stderr
    with util.Logger(file_name=str(tmp_path / 'outer.txt')):
        with util.Logger(file_name=str(tmp_path / 'inner.txt')):
            print('both')
        print('outer only')
    assert sys.stdout is stdout and sys.stderr is stderr
    assert (tmp_path / 'inner.txt').read_text() == 'both\n'
    assert (tmp_path / 'outer.txt').read_text() == 'both\nouter only\n'

#----------------------------------------------------------------------------
# open_url.

def test_open_url_reads_local_paths_and_file_urls(tmp_path):
    path = tmp_path / 'a b.pkl'
    path.write_bytes(b'payload')
    with util.open_url(str(path)) as f:
        assert f.read() == b'payload'
    assert util.open_url(str(path), return_filename=True) == str(path)
    with util.open_url(path.as_uri()) as f:     # file:///.../a%20b.pkl
        assert f.read() == b'payload'
    assert util.is_url(path.as_uri(), allow_file_urls=True) and not util.is_url(path.as_uri())
    assert util.is_url('https://example.org/x.pkl') and not util.is_url(str(path))

def test_open_url_missing_local_file_is_one_sentence(tmp_path):
    missing = str(tmp_path / 'missing.pkl')
    with pytest.raises(FileNotFoundError) as info:
        util.open_url(missing)
    message = str(info.value)
    assert missing in message and 'does not exist' in message and '\n' not in message and message.endswith('.')

def _forbid_network(monkeypatch):
    import requests
    def no_network(*_args, **_kwargs):
        raise AssertionError('open_url went to the network')
    monkeypatch.setattr(requests.Session, 'request', no_network)

def test_cached_url_opens_without_network(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    url = 'https://example.org/pretrained/net.pkl'
    cache_path = util.url_cache_path(url, str(tmp_path))
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    with open(cache_path, 'wb') as f:
        f.write(b'cached bytes')
    with util.open_url(url, cache_dir=str(tmp_path)) as f:
        assert f.read() == b'cached bytes'
    assert util.open_url(url, cache_dir=str(tmp_path), return_filename=True) == cache_path

def test_default_cache_dir_is_used_for_urls(tmp_path, monkeypatch):
    _forbid_network(monkeypatch)
    monkeypatch.setattr(util, '_cache_dir', str(tmp_path))
    url = 'http://example.org/x/detector.pt'
    cache_path = util.url_cache_path(url)
    assert cache_path.startswith(os.path.join(str(tmp_path), 'downloads'))
    os.makedirs(os.path.dirname(cache_path))
    with open(cache_path, 'wb') as f:
        f.write(b'x')
    with util.open_url(url, verbose=False) as f:
        assert f.read() == b'x'

def _assert_offline_sentence(message, url, cache_path):
    assert message == f'Could not download {url} (no network?): place the file at {cache_path} or pass a local path.'

def test_offline_download_fails_fast_in_one_sentence(tmp_path, monkeypatch):
    import requests
    calls = []
    def offline(*_args, **_kwargs):
        calls.append(1)
        raise requests.exceptions.ConnectionError('Name or service not known')
    monkeypatch.setattr(requests.Session, 'request', offline)
    url = 'https://example.org/pretrained/ffhq.pkl'
    with pytest.raises(util.DownloadError) as info:
        util.open_url(url, cache_dir=str(tmp_path), num_attempts=3, verbose=False)
    assert isinstance(info.value, OSError) and len(calls) == 3
    _assert_offline_sentence(str(info.value), url, util.url_cache_path(url, str(tmp_path)))
    assert os.listdir(tmp_path) == []   # no partial file left behind

def test_refused_connection_is_the_same_sentence(tmp_path):
    import socket
    with socket.socket() as s:      # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    url = f'http://127.0.0.1:{port}/net.pkl'
    start = time.time()
    with pytest.raises(util.DownloadError) as info:
        util.open_url(url, cache_dir=str(tmp_path), verbose=False)
    assert time.time() - start < 20
    _assert_offline_sentence(str(info.value), url, util.url_cache_path(url, str(tmp_path)))

@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server over tmp_path/www, counting GET requests."""
    root = tmp_path / 'www'
    root.mkdir()
    requests_seen = []
    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests_seen.append(self.path)
            super().do_GET()
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_address[1]}', root, requests_seen, server
    server.shutdown()
    server.server_close()

def test_http_download_is_cached_and_reused_offline(tmp_path, http_server):
    base, root, seen, server = http_server
    (root / 'net.pkl').write_bytes(b'\x80network bytes' * 1000)
    cache = str(tmp_path / 'cache')
    with util.open_url(f'{base}/net.pkl', cache_dir=cache, verbose=False) as f:
        assert f.read() == b'\x80network bytes' * 1000
    assert seen == ['/net.pkl']
    assert os.listdir(cache) == [os.path.basename(util.url_cache_path(f'{base}/net.pkl', cache))]
    server.shutdown()
    with util.open_url(f'{base}/net.pkl', cache_dir=cache, verbose=False) as f:
        assert f.read() == b'\x80network bytes' * 1000
    assert seen == ['/net.pkl']

def test_uncached_download_stays_in_memory(tmp_path, http_server):
    base, root, seen, _ = http_server
    (root / 'a.bin').write_bytes(b'abc')
    cache = str(tmp_path / 'cache')
    with util.open_url(f'{base}/a.bin', cache_dir=cache, cache=False, verbose=False) as f:
        assert f.read() == b'abc'
    assert not os.path.exists(cache)

def test_missing_url_is_not_retried(tmp_path, http_server):
    base, _, seen, _ = http_server
    with pytest.raises(util.DownloadError) as info:
        util.open_url(f'{base}/nothing.pkl', cache_dir=str(tmp_path / 'cache'), verbose=False)
    assert seen == ['/nothing.pkl']
    message = str(info.value)
    assert '(HTTP 404' in message and '\n' not in message and message.endswith('or pass a local path.')
