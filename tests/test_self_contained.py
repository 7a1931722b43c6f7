"""A clone of the project runs its tests with nothing beside it: the MNIST test split ships in
the repository, and a test that reaches for ../shared (our machines' data folder) fails."""
import gzip
import hashlib
import os
import subprocess
import sys

import pytest

from conftest import MNIST_DIR, ROOT, SHARED_DIR, SharedPathError

# MD5 of the decompressed canonical IDX files (LeCun, Cortes, Burges).
MNIST_T10K_MD5 = {
    't10k-images-idx3-ubyte.gz': '2646ac647ad5339dbf082846283269ea',
    't10k-labels-idx1-ubyte.gz': '27ae3e4e09519cfbb04c329615203637',
}

def test_mnist_test_split_ships_with_the_repository():
    assert os.path.commonpath([MNIST_DIR, ROOT]) == ROOT
    for name, md5 in MNIST_T10K_MD5.items():
        with gzip.open(os.path.join(MNIST_DIR, name)) as f:
            assert hashlib.md5(f.read()).hexdigest() == md5, name
    readme = open(os.path.join(MNIST_DIR, 'README.md')).read()
    assert 'LeCun' in readme and 'CC BY-SA 3.0' in readme

def test_mnist_files_are_tracked_by_git():
    """Shipped means committed: a clone gets them (a git checkout is what CI and users copy)."""
    if not os.path.isdir(os.path.join(ROOT, '.git')) and not os.path.isfile(os.path.join(ROOT, '.git')):
        pytest.skip('not a git checkout')
    out = subprocess.run(['git', 'ls-files', 'tests/data/mnist'], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip('git is not usable here')
    assert set(MNIST_T10K_MD5) <= {os.path.basename(p) for p in out.stdout.split()}

@pytest.mark.parametrize('how', ['open', 'listdir', 'relative', 'subprocess-arg'])
def test_touching_parent_shared_folder_is_refused(how, monkeypatch):
    """The guard fires whether or not ../shared exists, so a clone and our checkouts agree."""
    from conftest import _shared_hits
    target = os.path.join(SHARED_DIR, 'data', 'mnist', 't10k-images-idx3-ubyte.gz')
    with pytest.raises(SharedPathError, match='shared'):
        if how == 'open':
            open(target, 'rb')
        elif how == 'listdir':
            os.listdir(SHARED_DIR)
        elif how == 'relative':
            monkeypatch.chdir(ROOT)
            gzip.open(os.path.join('..', 'shared', 'data', 'mnist', 't10k-labels-idx1-ubyte.gz'))
        else:
            subprocess.run([sys.executable, '-c', 'pass', f'--source={target}'])
    assert _shared_hits        # recorded: the autouse fixture would fail the test ...
    del _shared_hits[:]        # ... so forget it here, where touching it was the point.
