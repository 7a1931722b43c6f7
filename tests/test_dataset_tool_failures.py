"""dataset_tool.py on damaged input: a corrupt zip, a truncated or bad-magic IDX file, a broken
dataset.json, labels that do not match the images, and labels that cannot be read each end in
one sentence with a non-zero exit and no --dest; going without labels takes --no-labels."""

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest

from conftest import HOST

TOOL = os.path.join(HOST, 'dataset_tool.py')

def run_tool(*args):
    proc = subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr

def assert_one_sentence_error(rc, err, *words):
    assert rc != 0, err
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('Error: ') and lines[0].endswith('.'), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]

def idx_bytes(array, magic):
    array = np.asarray(array, dtype=np.uint8)
    return struct.pack('>I', magic) + struct.pack(f'>{array.ndim}I', *array.shape) + array.tobytes()

def write_mnist(folder, count=6, labels_count=None, gz=True, labels=True):
    """Tiny MNIST-style IDX files (8x8 digits) in `folder`; returns the images path."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = '.gz' if gz else ''
    pack = gzip.compress if gz else (lambda data: data)
    images = folder / f'tiny-images-idx3-ubyte{suffix}'
    images.write_bytes(pack(idx_bytes(rng.integers(0, 256, size=(count, 8, 8)), 2051)))
    if labels:
        n = count if labels_count is None else labels_count
        (folder / f'tiny-labels-idx1-ubyte{suffix}').write_bytes(pack(idx_bytes(np.arange(n) % 10, 2049)))
    return images

def png_bytes(seed):
    buf = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8), 'RGB').save(buf, format='png')
    return buf.getvalue()

def write_zip(path, count=3, dataset_json=None):
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            zf.writestr(f'img{i}.png', png_bytes(i))
        if dataset_json is not None:
            zf.writestr('dataset.json', dataset_json if isinstance(dataset_json, str) else json.dumps(dataset_json))
    return path

def read_labels(dest):
    with zipfile.ZipFile(dest) as zf:
        return json.loads(zf.read('dataset.json'))['labels']

#----------------------------------------------------------------------------

@pytest.mark.parametrize('case', ['garbage', 'truncated', 'bad-member'])
def test_corrupt_zip_source_is_one_sentence(tmp_path, case):
    src = tmp_path / 'src.zip'
    if case == 'garbage':
        src.write_bytes(b'PK\x03\x04 this is not really a zip')
        words = ['is not a readable zip']
    elif case == 'truncated':
        data = write_zip(tmp_path / 'full.zip').read_bytes()
        src.write_bytes(data[:len(data) // 2])
        words = ['is not a readable zip']
    else:   # central directory intact, one member's compressed bytes damaged
        write_zip(src)
        data = bytearray(src.read_bytes())
        start = data.index(b'img1.png') + len('img1.png') + 10
        data[start:start + 20] = b'\xff' * 20
        src.write_bytes(bytes(data))
        words = ['img1.png']
    dest = tmp_path / 'out.zip'
    assert_one_sentence_error(*run_tool(f'--source={src}', f'--dest={dest}')[::2], *words)
    assert not dest.exists()

@pytest.mark.parametrize('case', ['truncated-body', 'truncated-header', 'bad-magic', 'bad-gzip', 'labels-bad-magic', 'labels-truncated'])
def test_damaged_idx_file_is_one_sentence(tmp_path, case):
    images = write_mnist(tmp_path / 'mnist', gz=(case == 'bad-gzip'))
    labels = tmp_path / 'mnist' / 'tiny-labels-idx1-ubyte'
    if case == 'truncated-body':
        images.write_bytes(images.read_bytes()[:-10])
        words = ['is truncated']
    elif case == 'truncated-header':
        images.write_bytes(images.read_bytes()[:10])
        words = ['is truncated']
    elif case == 'bad-magic':
        images.write_bytes(b'\x00\x00\x09\x99' + images.read_bytes()[4:])
        words = ['bad magic number']
    elif case == 'bad-gzip':
        data = bytearray(images.read_bytes())
        data[12:30] = b'\x00' * 18
        images.write_bytes(bytes(data))
        words = ['could not be read']
    elif case == 'labels-bad-magic':
        labels.write_bytes(b'\x00\x00\x08\x03' + labels.read_bytes()[4:])
        words = ['tiny-labels-idx1-ubyte', 'bad magic number', '--no-labels']
    else:
        labels.write_bytes(labels.read_bytes()[:-2])
        words = ['tiny-labels-idx1-ubyte', 'is truncated', '--no-labels']
    dest = tmp_path / 'out.zip'
    assert_one_sentence_error(*run_tool(f'--source={images}', f'--dest={dest}')[::2], *words)
    assert not dest.exists()

def test_unreadable_labels_need_no_labels_to_go_without(tmp_path):
    images = write_mnist(tmp_path / 'mnist', gz=False)
    (tmp_path / 'mnist' / 'tiny-labels-idx1-ubyte').write_bytes(b'\x00\x00\x08\x01')
    dest = tmp_path / 'out.zip'
    rc, out, err = run_tool(f'--source={images}', f'--dest={dest}', '--no-labels')
    assert rc == 0, err
    assert read_labels(dest) is None and 'with labels' not in out

def test_mnist_without_its_labels_file_is_an_error_unless_no_labels(tmp_path):
    images = write_mnist(tmp_path / 'mnist', labels=False)
    dest = tmp_path / 'out.zip'
    assert_one_sentence_error(*run_tool(f'--source={images}', f'--dest={dest}')[::2], 'no MNIST labels file', '--no-labels')
    assert not dest.exists()
    rc, _, err = run_tool(f'--source={images}', f'--dest={dest}', '--no-labels')
    assert rc == 0, err
    assert read_labels(dest) is None

def test_mnist_labels_come_along(tmp_path):
    images = write_mnist(tmp_path / 'mnist', count=6)
    dest = tmp_path / 'out.zip'
    rc, _, err = run_tool(f'--source={images}', f'--dest={dest}')
    assert rc == 0, err
    assert [label for _, label in read_labels(dest)] == [0, 1, 2, 3, 4, 5]

@pytest.mark.parametrize('dataset_json, words', [
    ('{"labels": [["img0.png", 1], ', ['dataset.json is not valid']),
    ({'labels': 5}, ['dataset.json is not valid']),
    ({'labels': [['img0.png', 1, 2], ['img1.png', 0], ['img2.png', 1]]}, ['dataset.json is not valid']),
    ({'names': []}, ['dataset.json is not valid']),
    ({'labels': [['img0.png', 'cat'], ['img1.png', 0], ['img2.png', 1]]}, ['img0.png', "'cat'"]),
])
def test_malformed_dataset_json_is_one_sentence(tmp_path, dataset_json, words):
    src = write_zip(tmp_path / 'src.zip', dataset_json=dataset_json)
    dest = tmp_path / 'out.zip'
    assert_one_sentence_error(*run_tool(f'--source={src}', f'--dest={dest}')[::2], *words)
    assert not dest.exists()

@pytest.mark.parametrize('case', ['mnist-more-labels', 'mnist-fewer-labels', 'json-more-labels', 'json-fewer-labels'])
def test_label_and_image_counts_must_match(tmp_path, case):
    if case.startswith('mnist'):
        src = write_mnist(tmp_path / 'mnist', count=6, labels_count=8 if 'more' in case else 4)
        words = [f'has {8 if "more" in case else 4} labels for 6 images']
    else:
        names = [f'img{i}.png' for i in range(4 if 'more' in case else 2)]
        src = write_zip(tmp_path / 'src.zip', count=3, dataset_json={'labels': [[n, 0] for n in names]})
        words = ['has 4 labels for 3 images', 'img3.png'] if 'more' in case else ['has no label for img2.png']
    dest = tmp_path / 'out.zip'
    assert_one_sentence_error(*run_tool(f'--source={src}', f'--dest={dest}')[::2], *words)
    assert not dest.exists()

def test_dataset_json_labelling_every_image_survives_max_images(tmp_path):
    src = write_zip(tmp_path / 'src.zip', count=3, dataset_json={'labels': [[f'img{i}.png', i] for i in range(3)]})
    dest = tmp_path / 'out.zip'
    rc, _, err = run_tool(f'--source={src}', f'--dest={dest}', '--max-images=2')
    assert rc == 0, err
    assert [label for _, label in read_labels(dest)] == [0, 1]
