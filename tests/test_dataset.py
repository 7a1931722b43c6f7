"""Datasets: dataset_tool.py writes what training.dataset reads back (pixels, labels, flips,
subsets), MNIST digits land where --place says, and every bad input ends in one sentence with
nothing overwritten."""

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from conftest import HOST, MNIST_DIR
from training.dataset import DatasetError, ImageFolderDataset

TOOL = os.path.join(HOST, 'dataset_tool.py')
MNIST_IMAGES = os.path.join(MNIST_DIR, 't10k-images-idx3-ubyte.gz')
MNIST_LABELS = os.path.join(MNIST_DIR, 't10k-labels-idx1-ubyte.gz')

def run_tool(*args, cwd=None):
    """Run dataset_tool.py in a subprocess; returns (returncode, stdout, stderr)."""
    proc = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr

def make_folder(path, count=5, size=(8, 8), mode='RGB', labels=True, seed=0):
    """A folder of random PNGs (in a subfolder, to test recursion) plus dataset.json labels."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for i in range(count):
        shape = (size[1], size[0], 3) if mode == 'RGB' else (size[1], size[0])
        arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
        fname = f'sub/img{i}.png'
        os.makedirs(os.path.join(path, 'sub'), exist_ok=True)
        PIL.Image.fromarray(arr, mode).save(os.path.join(path, fname))
        arrays[fname] = arr
    if labels:
        with open(os.path.join(path, 'dataset.json'), 'w') as f:
            json.dump({'labels': [[fname, i % 3] for i, fname in enumerate(sorted(arrays))]}, f)
    return arrays

def as_chw(arr):
    return arr.transpose(2, 0, 1) if arr.ndim == 3 else arr[None]

#----------------------------------------------------------------------------
# Round trips through dataset_tool.py and ImageFolderDataset.

@pytest.mark.parametrize('dest_name', ['out.zip', 'outdir'])
def test_tool_round_trip_keeps_pixels_and_labels(tmp_path, dest_name):
    arrays = make_folder(tmp_path / 'src')
    dest = str(tmp_path / dest_name)
    rc, out, err = run_tool(f'--source={tmp_path / "src"}', f'--dest={dest}')
    assert rc == 0, err
    ds = ImageFolderDataset(dest, use_labels=True)
    assert len(ds) == 5 and ds.image_shape == [3, 8, 8] and ds.resolution == 8
    assert ds.label_shape == [3] and ds.has_onehot_labels
    for i, fname in enumerate(sorted(arrays)):
        image, label = ds[i]
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, as_chw(arrays[fname]))
        np.testing.assert_array_equal(label, np.eye(3, dtype=np.float32)[i % 3])

def test_grey_folder_stays_one_channel_and_resizes(tmp_path):
    make_folder(tmp_path / 'src', size=(16, 16), mode='L', labels=False)
    rc, _, err = run_tool(f'--source={tmp_path / "src"}', f'--dest={tmp_path / "g.zip"}', '--resolution=8',
                          '--resize-filter=box')
    assert rc == 0, err
    ds = ImageFolderDataset(str(tmp_path / 'g.zip'))
    assert ds.image_shape == [1, 8, 8] and not ds.has_labels and ds[0][1].shape == (0,)
    # Items are writable arrays: torch's collate warns about read-only ones (a view of PIL's buffer).
    assert ds[0][0].flags.writeable

def test_xflip_doubles_length_with_mirrored_copies(tmp_path):
    arrays = make_folder(tmp_path / 'src')
    ds = ImageFolderDataset(str(tmp_path / 'src'), xflip=True, use_labels=True)
    assert len(ds) == 10
    for i in range(5):
        np.testing.assert_array_equal(ds[i + 5][0], ds[i][0][:, :, ::-1])
        np.testing.assert_array_equal(ds[i + 5][1], ds[i][1])
        assert ds.get_details(i + 5).xflip and not ds.get_details(i).xflip
    assert ds[0][0].flags['C_CONTIGUOUS'] and ds[7][0].flags['C_CONTIGUOUS']

def test_max_size_takes_a_seeded_subset(tmp_path):
    arrays = make_folder(tmp_path / 'src', count=12)
    a = ImageFolderDataset(str(tmp_path / 'src'), max_size=4, random_seed=1)
    b = ImageFolderDataset(str(tmp_path / 'src'), max_size=4, random_seed=1)
    c = ImageFolderDataset(str(tmp_path / 'src'), max_size=4, random_seed=2)
    assert len(a) == 4
    raw = [a.get_details(i).raw_idx for i in range(4)]
    assert raw == sorted(raw) and raw == [b.get_details(i).raw_idx for i in range(4)]
    assert raw != [c.get_details(i).raw_idx for i in range(4)]
    originals = [as_chw(arrays[f]) for f in sorted(arrays)]
    for i in range(4):
        np.testing.assert_array_equal(a[i][0], originals[raw[i]])

def test_zip_dataset_pickles_and_loads_in_worker_processes(tmp_path):
    make_folder(tmp_path / 'src', count=8)
    assert run_tool(f'--source={tmp_path / "src"}', f'--dest={tmp_path / "d.zip"}')[0] == 0
    ds = ImageFolderDataset(str(tmp_path / 'd.zip'), use_labels=True)
    expected = np.stack([ds[i][0] for i in range(8)])  # opens the zip in this process first
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3][0], expected[3])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    images = torch.cat([x for x, _ in loader]).numpy()
    np.testing.assert_array_equal(images, expected)

#----------------------------------------------------------------------------
# MNIST and the built-in digits.

def mnist_labels(count):
    with gzip.open(MNIST_LABELS) as f:
        return list(np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:count])

def read_zip(path):
    """All images of a dataset zip as uint8 [N, H, W, C] and its labels list."""
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith('.png'))
        images = np.stack([np.asarray(PIL.Image.open(io.BytesIO(z.read(n)))) for n in names])
        labels = json.loads(z.read('dataset.json'))['labels']
    return (images if images.ndim == 4 else images[..., None]), labels

def test_mnist_upper_left_colour_digits_stay_in_upper_left_quadrant(tmp_path):
    # The paper's spatially biased set, as in the README command (fewer images).
    dest = str(tmp_path / 'mnist-ul.zip')
    rc, out, err = run_tool(f'--source={MNIST_IMAGES}', f'--dest={dest}', '--place=upper-left', '--colorize',
                            '--resolution=64', '--max-images=64')
    assert rc == 0, err
    images, labels = read_zip(dest)
    assert images.shape == (64, 64, 64, 3)
    mass = images.astype(np.float64).sum(axis=(0, 3))
    assert mass[:32, :32].sum() > 0 and mass.sum() == mass[:32, :32].sum()  # all foreground in the quadrant
    assert (images.reshape(64, -1, 3).max(axis=1) > 0).all()                 # every image has a digit
    colours = images.reshape(64, -1, 3)[np.arange(64), images.reshape(64, -1, 3).sum(2).argmax(1)]
    assert len({tuple(c // 32) for c in colours}) > 5                         # random foreground colours
    assert [l for _, l in labels] == mnist_labels(64)
    assert ImageFolderDataset(dest, use_labels=True).label_shape == [10]

def test_mnist_reads_from_a_url_with_its_labels(tmp_path):
    dest = str(tmp_path / 'url.zip')
    rc, _, err = run_tool(f'--source=file://{MNIST_IMAGES}', f'--dest={dest}', '--max-images=8')
    assert rc == 0, err
    images, labels = read_zip(dest)
    assert images.shape == (8, 28, 28, 1) and [l for _, l in labels] == mnist_labels(8)
    with gzip.open(MNIST_IMAGES) as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)[:8 * 28 * 28].reshape(8, 28, 28)
    np.testing.assert_array_equal(images[..., 0], raw)  # no placement: the digits bit for bit

@pytest.mark.parametrize('place,box', [('bottom-left', (slice(16, 32), slice(0, 16))),
                                       ('center', (slice(8, 24), slice(8, 24)))])
def test_mnist_placement_puts_digits_in_their_box(tmp_path, place, box):
    dest = str(tmp_path / 'p.zip')
    rc, _, err = run_tool(f'--source={MNIST_IMAGES}', f'--dest={dest}', f'--place={place}', '--resolution=32',
                          '--max-images=16')
    assert rc == 0, err
    images, _ = read_zip(dest)
    assert images.shape == (16, 32, 32, 1)
    mass = images.astype(np.float64).sum(axis=(0, 3))
    assert mass[box].sum() == mass.sum() > 0

def test_random_placement_with_seed_is_reproducible_and_varied(tmp_path):
    args = [f'--source={MNIST_IMAGES}', '--place=random', '--resolution=32', '--max-images=16', '--content-scale=0.4']
    assert run_tool(*args, f'--dest={tmp_path / "a.zip"}', '--seed=3')[0] == 0
    assert run_tool(*args, f'--dest={tmp_path / "b.zip"}', '--seed=3')[0] == 0
    a, _ = read_zip(tmp_path / 'a.zip')
    b, _ = read_zip(tmp_path / 'b.zip')
    np.testing.assert_array_equal(a, b)
    corners = {tuple(np.argwhere(img[..., 0] > 0).min(axis=0) // 4) for img in a}
    assert len(corners) > 4

def test_builtin_digits_render_labelled_colour_digits(tmp_path):
    dest = str(tmp_path / 'digits.zip')
    rc, out, err = run_tool('--source=builtin:digits', f'--dest={dest}', '--max-images=30')
    assert rc == 0, err
    images, labels = read_zip(dest)
    assert images.shape == (30, 32, 32, 3)
    values = [l for _, l in labels]
    assert set(values) <= set(range(10)) and len(set(values)) >= 6
    assert (images.reshape(30, -1).max(axis=1) > 128).all()                 # a bright digit each
    assert (images[:, 0, :, :] == 0).all() and (images[:, :, 0, :] == 0).all()  # black border

#----------------------------------------------------------------------------
# Bad inputs: one sentence, non-zero exit, nothing overwritten.

def assert_one_sentence_error(rc, err, *words):
    assert rc != 0
    assert 'Traceback' not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith('Error: ') and last.rstrip().endswith('.')
    for word in words:
        assert word in last, last

@pytest.mark.parametrize('case', ['missing', 'unknown-type', 'unknown-builtin', 'non-image', 'corrupt',
                                  'bad-place', 'scale-without-place', 'mixed-sizes', 'idx-folder'])
def test_bad_source_or_option_refused_in_one_sentence(tmp_path, case):
    src = tmp_path / 'src'
    args = []
    words = []
    if case == 'missing':
        args, words = [f'--source={tmp_path / "nope"}'], ['does not exist']
    elif case == 'unknown-type':
        (tmp_path / 'data.csv').write_text('1,2\n')
        args, words = [f'--source={tmp_path / "data.csv"}'], ['is not a folder']
    elif case == 'unknown-builtin':
        args, words = ['--source=builtin:faces'], ['builtin:digits']
    elif case == 'non-image':
        make_folder(src)
        (src / 'notes.txt').write_text('hello')
        args, words = [f'--source={src}'], ['notes.txt', 'not an image']
    elif case == 'corrupt':
        make_folder(src, count=3)
        data = (src / 'sub' / 'img1.png').read_bytes()
        (src / 'sub' / 'img1.png').write_bytes(data[:60])  # header intact, pixels cut off
        args, words = [f'--source={src}'], ['img1.png']
    elif case == 'bad-place':
        args, words = [f'--source={MNIST_IMAGES}', '--place=diagonal'], ['--place']
    elif case == 'scale-without-place':
        args, words = [f'--source={MNIST_IMAGES}', '--content-scale=0.3'], ['--place']
    elif case == 'mixed-sizes':
        make_folder(src, count=2, labels=False)
        PIL.Image.new('RGB', (9, 9)).save(src / 'odd.png')
        args, words = [f'--source={src}'], ['--resolution']
    elif case == 'idx-folder':
        args, words = [f'--source={MNIST_DIR}'], ['t10k-images-idx3-ubyte.gz']
    dest = tmp_path / 'out.zip'
    rc, out, err = run_tool(*args, f'--dest={dest}')
    assert_one_sentence_error(rc, err, *words)
    assert not dest.exists() and not any(p.name.startswith('.out.zip') for p in tmp_path.iterdir())

@pytest.mark.parametrize('kind', ['zip', 'folder'])
def test_existing_dest_is_refused_and_left_untouched(tmp_path, kind):
    if kind == 'zip':
        dest = tmp_path / 'old.zip'
        dest.write_bytes(b'precious')
    else:
        dest = tmp_path / 'old'
        dest.mkdir()
        (dest / 'keep.txt').write_text('precious')
    rc, out, err = run_tool('--source=builtin:digits', '--max-images=3', f'--dest={dest}')
    assert_one_sentence_error(rc, err, 'already exists')
    if kind == 'zip':
        assert dest.read_bytes() == b'precious'
    else:
        assert [p.name for p in dest.iterdir()] == ['keep.txt'] and (dest / 'keep.txt').read_text() == 'precious'
    assert sorted(p.name for p in tmp_path.iterdir()) == [dest.name]

def test_empty_dest_folder_is_filled(tmp_path):
    (tmp_path / 'empty').mkdir()
    rc, _, err = run_tool('--source=builtin:digits', '--max-images=3', f'--dest={tmp_path / "empty"}')
    assert rc == 0, err
    assert len(ImageFolderDataset(str(tmp_path / 'empty'))) == 3

#----------------------------------------------------------------------------
# ImageFolderDataset refusals.

def test_dataset_refuses_bad_sources_in_one_sentence(tmp_path):
    def error_of(path, **kwargs):
        with pytest.raises(DatasetError) as info:
            ImageFolderDataset(str(path), **kwargs)
        message = str(info.value)
        assert '\n' not in message and message.endswith('.')
        return message

    assert 'does not exist' in error_of(tmp_path / 'missing.zip')
    (tmp_path / 'empty').mkdir()
    assert 'no images' in error_of(tmp_path / 'empty')
    (tmp_path / 'file.txt').write_text('x')
    assert 'neither a folder nor a .zip' in error_of(tmp_path / 'file.txt')

    make_folder(tmp_path / 'mixed_size', count=2, labels=False)
    PIL.Image.new('RGB', (4, 4)).save(tmp_path / 'mixed_size' / 'z.png')
    assert 'mixes image sizes' in error_of(tmp_path / 'mixed_size')

    make_folder(tmp_path / 'mixed_mode', count=2, labels=False)
    PIL.Image.new('L', (8, 8)).save(tmp_path / 'mixed_mode' / 'z.png')
    assert 'channel modes' in error_of(tmp_path / 'mixed_mode')

    make_folder(tmp_path / 'broken', count=2, labels=False)
    (tmp_path / 'broken' / 'sub' / 'img0.png').write_bytes(b'not a png at all')
    assert 'img0.png' in error_of(tmp_path / 'broken')

    make_folder(tmp_path / 'nolabels', count=2, labels=False)
    assert 'no labels' in error_of(tmp_path / 'nolabels', use_labels=True)

def test_corrupt_pixels_are_reported_with_the_file_name(tmp_path):
    make_folder(tmp_path / 'src', count=2, labels=False)
    data = (tmp_path / 'src' / 'sub' / 'img1.png').read_bytes()
    (tmp_path / 'src' / 'sub' / 'img1.png').write_bytes(data[:60])
    ds = ImageFolderDataset(str(tmp_path / 'src'))
    with pytest.raises(DatasetError, match='img1.png'):
        ds[1]

@pytest.mark.parametrize('size', [(16, 8), (12, 12)])
def test_resolution_needs_square_power_of_two_images(tmp_path, size):
    make_folder(tmp_path / 'src', count=2, size=size, labels=False)
    ds = ImageFolderDataset(str(tmp_path / 'src'))
    assert ds.image_shape == [3, size[1], size[0]] and ds[0][0].shape == (3, size[1], size[0])
    with pytest.raises(DatasetError, match='square power-of-two'):
        ds.resolution
