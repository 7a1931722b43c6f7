"""Test setup: the vendored host is imported like an upstream checkout (top-level `dnnlib`,
`torch_utils`, `training`, `metrics`), and tests run on CPU with few threads.

Tests are self-contained: the data they need ships in `tests/data/` (MNIST's test split in
`tests/data/mnist/`). A user's clone has no `../shared` beside it, so any test that opens, lists
or passes to a subprocess a path under the parent folder's `shared/` fails here too, with the
path in the message (an audit hook watches the whole test session)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')
for p in (HOST, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

# The suite is a CPU suite: its tests compare with results computed in float32 on the CPU, bit for
# bit where the host promises it, and start CPU processes under gloo. On a machine with a GPU, the
# GPU is hidden from the tests and from every process they start (set before anything touches
# CUDA), unless MSPE_TEST_CUDA=1: then tests/test_cuda.py runs the CUDA paths, with tolerances
# where float32 results on the GPU may differ (`MSPE_TEST_CUDA=1 pytest tests/test_cuda.py`).
TEST_CUDA = os.environ.get('MSPE_TEST_CUDA') == '1'
if not TEST_CUDA:
    os.environ['CUDA_VISIBLE_DEVICES'] = ''

DATA_DIR = os.path.join(ROOT, 'tests', 'data')
MNIST_DIR = os.path.join(DATA_DIR, 'mnist')

#----------------------------------------------------------------------------
# Guard: nothing under ../shared (our own machines' data folder) may be touched by a test.

SHARED_DIR = os.path.join(os.path.dirname(ROOT), 'shared')
_shared_prefixes = sorted({os.path.abspath(SHARED_DIR), os.path.realpath(SHARED_DIR)})
_shared_hits = []

def under_shared(path):
    """Whether `path` (str, bytes or os.PathLike; relative to the working directory) names
    `../shared` or something inside it."""
    try:
        path = os.path.abspath(os.fsdecode(path))
    except TypeError:       # a file descriptor, or no path at all
        return False
    return any(path == p or path.startswith(p + os.sep) for p in _shared_prefixes)

class SharedPathError(RuntimeError):
    """A test touched ../shared, which a clone of the project does not have."""

# Audit events that name paths, and which of their arguments are paths.
_PATH_EVENTS = {'open': (0,), 'os.listdir': (0,), 'os.scandir': (0,), 'os.chdir': (0,), 'glob.glob': (0,),
                'shutil.copyfile': (0, 1), 'shutil.copytree': (0, 1), 'os.symlink': (0, 1)}

def _audit(event, args):
    if event in _PATH_EVENTS:
        paths = [args[i] for i in _PATH_EVENTS[event] if i < len(args)]
    elif event == 'subprocess.Popen':
        argv = args[1]
        paths = [argv] if isinstance(argv, (str, bytes, os.PathLike)) else list(argv or [])
        # Options such as --source=../shared/... carry the path after the '='.
        paths += [a.split('=', 1)[1] for a in paths if isinstance(a, str) and '=' in a]
        paths += [args[2]] if args[2] is not None else []
    else:
        return
    for path in paths:
        if isinstance(path, (str, bytes, os.PathLike)) and under_shared(path):
            _shared_hits.append(f'{event}: {os.fsdecode(path)}')
            raise SharedPathError(f'a test touched {os.fsdecode(path)} ({event}); tests must use data shipped '
                                  f'in {DATA_DIR}, since a clone of the project has no ../shared.')

sys.addaudithook(_audit)

@pytest.fixture(autouse=True)
def _no_shared_paths():
    """Fail the test even if it caught the guard's exception."""
    del _shared_hits[:]
    yield
    if _shared_hits:
        hits = list(_shared_hits)
        del _shared_hits[:]
        pytest.fail(f'test touched ../shared ({"; ".join(hits)}); ship its data in {DATA_DIR}.', pytrace=False)
