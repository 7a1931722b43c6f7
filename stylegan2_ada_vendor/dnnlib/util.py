"""Configuration and I/O helpers of the host.

- `EasyDict`: a dict whose keys are also attributes (every config in the host is one).
- `Logger`: copies everything printed to stdout/stderr into a file (a run's log.txt).
- `construct_class_by_name` & co.: build objects from a dotted name plus kwargs, so that a
  config (`dict(class_name='training.networks.Generator', ...)`) is plain data.
- `open_url`: one way to open a local path, a file:// URL or an http(s) URL; downloads are
  cached on disk under `make_cache_dir_path('downloads')`, and an offline machine gets one
  sentence saying where to put the file instead of a hang.
"""

import contextlib
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import time
import types
import urllib.parse
import urllib.request

#----------------------------------------------------------------------------
# Configuration objects.

class EasyDict(dict):
    """A dict whose items can also be read and written as attributes (`d.key` is `d['key']`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

#----------------------------------------------------------------------------
# Logging.

class _TeeStream:
    """A text stream that forwards every write to `stream` and to `logger`'s file."""

    def __init__(self, logger, stream):
        self._logger = logger
        self._stream = stream

    def write(self, text):
        if isinstance(text, bytes):
            text = text.decode('utf-8', errors='replace')
        if not text:
            return 0
        self._logger.write_file(text)
        if self._stream is not None:
            self._stream.write(text)
            if self._logger.should_flush:
                self._stream.flush()
        return len(text)

    def flush(self):
        self._logger.flush_file()
        if self._stream is not None:
            self._stream.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):    # encoding, fileno, ... of the wrapped stream
        return getattr(self._stream, name)

class Logger:
    """Tee of stdout and stderr into a file: while it is open, everything printed still reaches
    the console (stdout to stdout, stderr to stderr) and is also appended to `file_name`.

    Loggers nest: a second Logger wraps the streams the first one installed, and closing
    restores the streams that were current when it was opened. Usable as a context manager.
    """

    def __init__(self,
        file_name   = None,     # File to copy the output into, None = console only.
        file_mode   = 'w',      # 'w' truncates the file, 'a' appends (resumed runs).
        should_flush = True,    # Flush the file and the console after every write.
    ):
        self.file = None
        if file_name is not None:
            self.file = open(file_name, file_mode, encoding='utf-8')
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        self._tee_stdout = _TeeStream(self, self.stdout)
        self._tee_stderr = _TeeStream(self, self.stderr)
        sys.stdout = self._tee_stdout
        sys.stderr = self._tee_stderr

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def write_file(self, text):
        """Append `text` to the file (no console output)."""
        if self.file is not None:
            self.file.write(text)
            if self.should_flush:
                self.file.flush()

    def flush_file(self):
        if self.file is not None:
            self.file.flush()

    def write(self, text):
        """Write `text` to the console's stdout and to the file."""
        self._tee_stdout.write(text)

    def flush(self):
        self._tee_stdout.flush()

    def close(self):
        """Flush and close the file and put back the streams this Logger replaced."""
        self.flush()
        if sys.stdout is self._tee_stdout:
            sys.stdout = self.stdout
        if sys.stderr is self._tee_stderr:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None

#----------------------------------------------------------------------------
# Files that are never half-written.

@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Write `path` through a temporary file beside it: inside the block, write to the yielded
    file; when the block ends without an error the data is flushed to disk (fsync) and renamed
    onto `path` (os.replace), so a kill at any moment leaves either the previous file or the
    complete new one. On an error the temporary file (`<path>.tmp<pid>`) is removed.
    """
    tmp_path = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp_path, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    if os.name == 'posix':  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

#----------------------------------------------------------------------------
# Small formatting helpers.

def format_time(seconds):
    """Human-readable duration: '42s', '3m 07s', '5h 02m 09s', '2d 03h 04m'."""
    s = int(round(float(seconds)))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'

#----------------------------------------------------------------------------
# Cache folder.

_cache_dir = None

def set_cache_dir(path):
    """Use `path` as the root of every cache (downloads, metric statistics, built plugins);
    None goes back to the default (see make_cache_dir_path)."""
    global _cache_dir
    _cache_dir = path

def make_cache_dir_path(*paths):
    """Path inside the cache root: set_cache_dir(), else $DNNLIB_CACHE_DIR, else
    ~/.cache/dnnlib (the temporary folder when there is no home). Nothing is created."""
    if _cache_dir is not None:
        root = _cache_dir
    elif os.environ.get('DNNLIB_CACHE_DIR'):
        root = os.environ['DNNLIB_CACHE_DIR']
    else:
        home = os.path.expanduser('~')
        if home == '~' or not home:
            home = tempfile.gettempdir()
        root = os.path.join(home, '.cache', 'dnnlib')
    return os.path.join(root, *paths)

#----------------------------------------------------------------------------
# Objects by name.

def _resolve_attr(obj, dotted):
    """obj.a.b.c for dotted = 'a.b.c' ('' gives obj)."""
    for part in dotted.split('.') if dotted else []:
        obj = getattr(obj, part)
    return obj

def get_module_from_obj_name(obj_name):
    """Split a dotted name into (module, name inside that module), importing the longest module
    prefix that exists and holds the rest: 'training.networks.Generator' ->
    (<module training.networks>, 'Generator'); 'os.path.join' -> (<module posixpath>, 'join').
    A name without dots is looked up in __main__, then in builtins."""
    if '.' not in obj_name:
        for module_name in ('__main__', 'builtins'):
            module = sys.modules.get(module_name) or importlib.import_module(module_name)
            if hasattr(module, obj_name):
                return module, obj_name
        raise ImportError(f'{obj_name!r} is not a dotted name (module.name) and is not defined in __main__.')
    parts = obj_name.split('.')
    imported = None
    missing = None
    for i in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:i])
        local_name = '.'.join(parts[i:])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only "this prefix is not a module" lets us try a shorter one; a module that exists
            # but fails to import one of its own dependencies is a real error.
            if err.name is None or not (module_name == err.name or module_name.startswith(err.name + '.')):
                raise
            missing = err.name
            continue
        imported = imported or (module_name, local_name)
        try:
            _resolve_attr(module, local_name)
        except AttributeError:
            continue
        return module, local_name
    if imported is None:
        raise ImportError(f'Cannot import {obj_name!r}: there is no module named {missing!r}.')
    raise ImportError(f'Cannot find {obj_name!r}: module {imported[0]!r} has no {imported[1]!r}.')

def get_obj_from_module(module, obj_name):
    """The object `obj_name` (dotted, e.g. 'Class.method') inside `module`."""
    return _resolve_attr(module, obj_name)

def get_obj_by_name(name):
    """The object a dotted name refers to, importing its module: 'numpy.float32' -> numpy.float32."""
    module, local_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, local_name)

def call_func_by_name(*args, func_name=None, **kwargs):
    """Call the function (or class) named `func_name` with the given arguments."""
    if func_name is None:
        raise ValueError('call_func_by_name needs func_name.')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise TypeError(f'{func_name!r} is not callable.')
    return func(*args, **kwargs)

def construct_class_by_name(*args, class_name=None, **kwargs):
    """Instantiate the class named `class_name` with the given arguments: the way every
    EasyDict config (`dict(class_name=..., **kwargs)`) becomes an object."""
    if class_name is None:
        raise ValueError('construct_class_by_name needs class_name.')
    return call_func_by_name(*args, func_name=class_name, **kwargs)

def get_module_dir_by_obj_name(obj_name):
    """Folder of the module that defines `obj_name`."""
    module, _ = get_module_from_obj_name(obj_name)
    return os.path.dirname(os.path.abspath(module.__file__))

def is_top_level_function(obj):
    """Whether `obj` is a function defined at module level (reachable as module.name)."""
    if not isinstance(obj, types.FunctionType):
        return False
    module = sys.modules.get(obj.__module__)
    return module is not None and getattr(module, obj.__name__, None) is obj

def get_top_level_function_name(obj):
    """'module.function' for a module-level function; for one defined in the running script
    (__main__), the module name is the script's file name, so the name can be imported later."""
    if not is_top_level_function(obj):
        raise ValueError(f'{obj!r} is not a module-level function.')
    module_name = obj.__module__
    if module_name == '__main__':
        main_file = getattr(sys.modules['__main__'], '__file__', None)
        if main_file is not None:
            module_name = os.path.splitext(os.path.basename(main_file))[0]
    return f'{module_name}.{obj.__name__}'

#----------------------------------------------------------------------------
# URLs and downloads.

DOWNLOAD_TIMEOUT = (10, 60)     # Seconds to connect, seconds between received bytes.
DOWNLOAD_DEADLINE = 120         # Seconds after which no further attempt starts.

class DownloadError(OSError):
    """A URL could not be fetched; the message says where to put the file by hand."""

def is_url(obj, allow_file_urls=False):
    """Whether `obj` is an http(s) URL (or a file:// URL when allow_file_urls)."""
    if not isinstance(obj, str) or '://' not in obj:
        return False
    parsed = urllib.parse.urlparse(obj)
    if parsed.scheme == 'file':
        return allow_file_urls
    return parsed.scheme in ('http', 'https') and bool(parsed.netloc)

def file_url_to_path(url):
    """Local path of a file:// URL ('file:///tmp/a%20b.pkl' -> '/tmp/a b.pkl')."""
    parsed = urllib.parse.urlparse(url)
    path = urllib.request.url2pathname(parsed.path)
    if parsed.netloc and parsed.netloc != 'localhost':
        path = '//' + parsed.netloc + path     # UNC share
    return path

def url_cache_path(url, cache_dir=None):
    """Where open_url keeps (or looks for) the download of `url`:
    <cache_dir>/<md5 of the URL>_<file name of the URL>."""
    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_hash = hashlib.md5(url.encode('utf-8')).hexdigest()
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'download'
    name = re.sub(r'[^0-9a-zA-Z._-]+', '_', name)[:64]
    return os.path.join(cache_dir, f'{url_hash}_{name}')

def _open_local(path, return_filename):
    if not os.path.isfile(path):
        what = 'is a folder, not a file' if os.path.isdir(path) else 'does not exist'
        raise FileNotFoundError(f'{path} {what}; pass the path of an existing file or an http(s) URL.')
    return path if return_filename else open(path, 'rb')

def _download(url, num_attempts):
    """Bytes behind an http(s) URL; raises DownloadError after `num_attempts` failed tries."""
    try:
        import requests
    except ImportError:
        raise DownloadError(f'Could not download {url} (the requests package is missing: pip install requests)') from None
    start = time.time()
    reason = None
    with requests.Session() as session:
        for attempt in range(num_attempts):
            if attempt > 0 and time.time() - start > DOWNLOAD_DEADLINE:
                break
            try:
                with session.get(url, timeout=DOWNLOAD_TIMEOUT, stream=True) as res:
                    if res.status_code >= 400:
                        reason = f'HTTP {res.status_code} {res.reason or ""}'.strip()
                        if res.status_code < 500 and res.status_code != 429:
                            break   # the server said no: retrying will not help
                        continue
                    data = io.BytesIO()
                    for chunk in res.iter_content(chunk_size=1 << 20):
                        data.write(chunk)
                    expected = res.headers.get('Content-Length')
                    if expected is not None and res.headers.get('Content-Encoding') is None and int(expected) != data.tell():
                        reason = f'connection closed after {data.tell()} of {expected} bytes'
                        continue
                    return data.getvalue()
            except requests.exceptions.RequestException as err:
                reason = 'no network?' if isinstance(err, requests.exceptions.ConnectionError) else type(err).__name__
    raise DownloadError(f'Could not download {url} ({reason})')

def open_url(url, cache_dir=None, num_attempts=10, verbose=True, return_filename=False, cache=True):
    """Open a local path, a file:// URL or an http(s) URL for binary reading.

    :param url: path or URL.
    :param cache_dir: folder of the download cache (default make_cache_dir_path('downloads')).
    :param num_attempts: tries per download before giving up (each with a timeout).
    :param verbose: print a line while downloading.
    :param return_filename: return the local file name instead of an open file (http(s) URLs
        need cache=True for that).
    :param cache: look in and write to the download cache; False keeps the bytes in memory.
    :return: a binary file object (or a file name).

    A URL already in the cache is opened without any network access. A failed download raises
    DownloadError (an OSError) with one sentence naming the cache path where the file can be
    placed by hand.
    """
    if num_attempts < 1:
        raise ValueError('num_attempts must be at least 1.')
    if return_filename and not cache:
        raise ValueError('return_filename needs cache=True.')
    url = os.fspath(url)
    if '://' not in url:
        return _open_local(url, return_filename)
    if url.startswith('file://'):
        return _open_local(file_url_to_path(url), return_filename)
    if not is_url(url):
        raise ValueError(f'{url} is neither a local path nor an http(s) or file:// URL.')

    cache_path = url_cache_path(url, cache_dir)
    if cache and os.path.isfile(cache_path):
        return cache_path if return_filename else open(cache_path, 'rb')

    if verbose:
        print(f'Downloading {url} ...', end='', flush=True)
    try:
        data = _download(url, num_attempts)
    except DownloadError as err:
        if verbose:
            print(' failed.', flush=True)
        raise DownloadError(f'{err}: place the file at {cache_path} or pass a local path.') from None
    if verbose:
        print(' done', flush=True)
    if not cache:
        return io.BytesIO(data)

    # Write under a temporary name and rename: concurrent processes never see half a file.
    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(cache_path), prefix='.tmp_' + os.path.basename(cache_path))
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp_path, cache_path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return cache_path if return_filename else open(cache_path, 'rb')
