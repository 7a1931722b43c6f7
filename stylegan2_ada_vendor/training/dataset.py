"""Training data: a generic `Dataset` (index bookkeeping, x-flips, labels) and
`ImageFolderDataset`, which reads images from a folder or a zip written by `dataset_tool.py`.

Items are `(image, label)`: `image` is a uint8 numpy array `[C, H, W]`, `label` a float32 numpy
array (integer class labels come back one-hot). Labels live in `dataset.json` at the root of the
folder or zip: `{"labels": [["00000/img00000000.png", 6], ...]}` (or `"labels": null`).
Every problem a user can cause raises `DatasetError` with one sentence saying what to do.
"""

import json
import os
import zipfile

import numpy as np
import PIL.Image
import torch

#----------------------------------------------------------------------------

class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message says what was wrong and what to do.

    It subclasses ValueError so that callers catching ValueError (train.py) report it cleanly."""

# Pillow modes we read as 1-channel and as 3-channel images; anything else is refused.
_GREY_MODES = ('1', 'L', 'I', 'I;16', 'I;16B', 'I;16L')
_COLOUR_MODES = ('RGB', 'P', 'CMYK', 'YCbCr', 'LAB', 'HSV')

def image_channels(mode, fname):
    """Number of channels a Pillow `mode` becomes here (1 or 3), or DatasetError for alpha/odd modes."""
    if mode in _GREY_MODES:
        return 1
    if mode in _COLOUR_MODES:
        return 3
    raise DatasetError(f'{fname} has Pillow mode {mode!r} (alpha or unusual channels); '
                       f'convert the images with dataset_tool.py, which writes grey or RGB PNGs.')

def image_to_array(image, channels):
    """Convert a PIL image to a uint8 array `[channels, H, W]` (channels 1: grey, 3: RGB)."""
    if channels == 1:
        if image.mode in ('I', 'I;16', 'I;16B', 'I;16L'):
            arr = np.asarray(image, dtype=np.float64)  # 16-bit grey: scale to 8 bits
            arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        else:
            arr = np.array(image.convert('L'))    # a copy: np.asarray of a PIL image is read-only
        return arr[np.newaxis]
    return np.array(image.convert('RGB')).transpose(2, 0, 1)

#----------------------------------------------------------------------------

class Dataset(torch.utils.data.Dataset):
    """Index bookkeeping shared by all datasets: subset (`max_size`), x-flip doubling and labels.

    Subclasses implement `_load_raw_image(raw_idx)` -> uint8 `[C, H, W]` and
    `_load_raw_labels()` -> numpy array `[N]` (int) / `[N, D]` (float) or None.
    """

    def __init__(self,
        name,                   # Name of the dataset (e.g. the zip's file name without .zip).
        raw_shape,              # Shape of the raw image data [N, C, H, W].
        max_size    = None,     # Use at most this many images (a random subset); None = all.
        use_labels  = False,    # Return labels from dataset.json? False = zero-length labels.
        xflip       = False,    # Double the dataset with horizontally mirrored copies?
        random_seed = 0,        # Seed that picks the max_size subset.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._label_shape = None

        # Subset: a seeded random choice, kept in file order.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None:
            if int(max_size) < 1:
                raise DatasetError(f'max_size must be at least 1; got {max_size}.')
            if self._raw_idx.size > max_size:
                np.random.RandomState(random_seed).shuffle(self._raw_idx)
                self._raw_idx = np.sort(self._raw_idx[:int(max_size)])

        # X-flips: the second half of the indices repeats the first, mirrored.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

        if use_labels:
            self._get_raw_labels()  # fail now, in one sentence, rather than inside a data loader

    def _get_raw_labels(self):
        """All labels of the raw images, `[N]` int64 or `[N, D]` float32 (D = 0 without labels)."""
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                if self._use_labels:
                    raise DatasetError(f'use_labels=True, but dataset {self._name!r} has no labels; '
                                       f'add them to dataset.json or train without labels.')
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            labels = np.asarray(labels)
            if labels.shape[0] != self._raw_shape[0]:
                raise DatasetError(f'dataset {self._name!r} has {labels.shape[0]} labels for '
                                   f'{self._raw_shape[0]} images; rewrite dataset.json with one label per image.')
            if labels.dtype == np.int64:
                if labels.ndim != 1 or (labels.size and labels.min() < 0):
                    raise DatasetError(f'dataset {self._name!r} has integer labels that are not class '
                                       f'indices >= 0; use one non-negative integer per image.')
            elif labels.dtype == np.float32:
                if labels.ndim != 2:
                    raise DatasetError(f'dataset {self._name!r} has float labels that are not vectors; '
                                       f'use one list of numbers per image.')
            else:
                raise DatasetError(f'dataset {self._name!r} has labels of type {labels.dtype}; '
                                   f'use integer class indices or float vectors.')
            self._raw_labels = labels
        return self._raw_labels

    def close(self):
        """Release open files (they are reopened on the next access)."""

    def _load_raw_image(self, raw_idx):
        raise NotImplementedError(f'{type(self).__name__} must implement _load_raw_image')

    def _load_raw_labels(self):
        raise NotImplementedError(f'{type(self).__name__} must implement _load_raw_labels')

    def __getstate__(self):
        # Labels are re-read on demand; subclasses drop open file handles.
        return dict(self.__dict__, _raw_labels=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        """Return `(image uint8 [C, H, W], label float32 [label_dim])` for index `idx`."""
        image = self._load_raw_image(self._raw_idx[idx])
        if list(image.shape) != self.image_shape or image.dtype != np.uint8:
            raise DatasetError(f'image {idx} of dataset {self._name!r} has shape {list(image.shape)} '
                               f'({image.dtype}), not {self.image_shape} (uint8); rewrite the dataset '
                               f'with dataset_tool.py so all images match.')
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx):
        """Label of item `idx` as float32 `[label_dim]` (one-hot for integer class labels)."""
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.copy()

    def get_details(self, idx):
        """Where item `idx` comes from: `raw_idx`, `xflip` and the raw (not one-hot) label."""
        import dnnlib  # imported here so the dataset works before the rest of the host is loaded
        return dnnlib.EasyDict(raw_idx=int(self._raw_idx[idx]), xflip=(int(self._xflip[idx]) != 0),
                               raw_label=self._get_raw_labels()[self._raw_idx[idx]].copy())

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        """`[C, H, W]` of every image."""
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def resolution(self):
        """Side of the square images; the StyleGAN2 networks need square power-of-two sizes."""
        _, h, w = self.image_shape
        if h != w or h < 4 or h & (h - 1):
            raise DatasetError(f'dataset {self._name!r} has {w}x{h} images, but StyleGAN2 training needs '
                               f'square power-of-two sizes; rewrite it with dataset_tool.py --resolution=N.')
        return h

    @property
    def label_shape(self):
        """`[label_dim]`: number of classes for integer labels, vector length for float labels."""
        if self._label_shape is None:
            raw = self._get_raw_labels()
            if raw.dtype == np.int64:
                self._label_shape = [int(raw.max()) + 1 if raw.size else 0]
            else:
                self._label_shape = list(raw.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """Images from a folder (searched recursively) or a zip, with labels from `dataset.json`.

    All images must share one size and be all grey or all colour; this is checked from the
    image headers when the dataset is opened.
    """

    def __init__(self,
        path,                   # Folder or .zip of images.
        resolution  = None,     # Expected image side; None = whatever the images have.
        name        = None,     # Dataset name; None = the file name of `path` without extension.
        **super_kwargs,         # max_size, use_labels, xflip, random_seed (see Dataset).
    ):
        self._path = str(path)
        self._zipfile = None
        self._zip_pid = None

        if not os.path.exists(self._path):
            raise DatasetError(f'dataset path {self._path!r} does not exist; give a folder or a .zip '
                               f'of images (make one with dataset_tool.py).')
        if os.path.isdir(self._path):
            self._type = 'dir'
            self._all_fnames = {os.path.relpath(os.path.join(root, fname), start=self._path).replace(os.sep, '/')
                                for root, _dirs, files in os.walk(self._path) for fname in files}
        elif self._file_ext(self._path) == '.zip':
            self._type = 'zip'
            try:
                self._all_fnames = set(self._get_zipfile().namelist())
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetError(f'{self._path} is not a readable zip ({err}); rewrite it with dataset_tool.py.') from None
        else:
            raise DatasetError(f'dataset path {self._path!r} is neither a folder nor a .zip; '
                               f'convert it with dataset_tool.py.')

        PIL.Image.init()
        self._image_fnames = sorted(f for f in self._all_fnames
                                    if self._file_ext(f) in PIL.Image.EXTENSION and not os.path.basename(f).startswith('.'))
        if len(self._image_fnames) == 0:
            raise DatasetError(f'no images found in {self._path}; point to a folder or zip of PNG/JPEG '
                               f'images (make one with dataset_tool.py).')

        raw_shape = [len(self._image_fnames)] + self._scan_image_shape()
        if resolution is not None and (raw_shape[2] != resolution or raw_shape[3] != resolution):
            raise DatasetError(f'{self._path} has {raw_shape[3]}x{raw_shape[2]} images, not the requested '
                               f'{resolution}x{resolution}; drop the resolution or rewrite the dataset.')
        if name is None:
            name = os.path.splitext(os.path.basename(self._path.rstrip('/\\')))[0]
        super().__init__(name=name, raw_shape=raw_shape, **super_kwargs)

    @staticmethod
    def _file_ext(fname):
        return os.path.splitext(fname)[1].lower()

    def _get_zipfile(self):
        # One handle per process: a handle inherited through fork would share its file offset.
        assert self._type == 'zip'
        if self._zipfile is None or self._zip_pid != os.getpid():
            self._zipfile = zipfile.ZipFile(self._path)
            self._zip_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._get_zipfile().open(fname, 'r')

    def _scan_image_shape(self):
        """`[C, H, W]` shared by all images, read from headers; DatasetError on a mismatch."""
        shape = None
        for fname in self._image_fnames:
            try:
                with self._open_file(fname) as f:
                    with PIL.Image.open(f) as image:
                        cur = [image_channels(image.mode, fname), image.height, image.width]
            except DatasetError:
                raise
            except Exception as err:
                raise DatasetError(f'{fname} in {self._path} is not a readable image ({err}); '
                                   f'remove or replace it.') from None
            if shape is None:
                shape, first = cur, fname
            elif cur != shape:
                what = 'sizes' if cur[1:] != shape[1:] else 'channel modes (grey and colour)'
                raise DatasetError(f'{self._path} mixes image {what}: {first} is {shape[2]}x{shape[1]}x{shape[0]}, '
                                   f'{fname} is {cur[2]}x{cur[1]}x{cur[0]}; make them uniform with dataset_tool.py.')
        return shape

    def close(self):
        try:
            if self._zipfile is not None and self._zip_pid == os.getpid():
                self._zipfile.close()
        finally:
            self._zipfile = None
            self._zip_pid = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zip_pid=None)

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        try:
            with self._open_file(fname) as f:
                with PIL.Image.open(f) as image:
                    image.load()
                    return image_to_array(image, self._raw_shape[1])
        except Exception as err:
            raise DatasetError(f'{fname} in {self._path} could not be decoded ({err}); '
                               f'remove or replace the corrupt image.') from None

    def _load_raw_labels(self):
        fname = 'dataset.json'
        if fname not in self._all_fnames:
            return None
        try:
            with self._open_file(fname) as f:
                labels = json.load(f)['labels']
        except (ValueError, KeyError, TypeError) as err:
            raise DatasetError(f'dataset.json in {self._path} is not valid ({err}); it must hold '
                               f'{{"labels": [[filename, label], ...]}}.') from None
        if labels is None:
            return None
        try:
            labels = dict(labels)
        except (TypeError, ValueError):
            raise DatasetError(f'dataset.json in {self._path} must list [filename, label] pairs '
                               f'under "labels".') from None
        missing = [f for f in self._image_fnames if f not in labels]
        if missing:
            raise DatasetError(f'dataset.json in {self._path} has no label for {missing[0]} '
                               f'({len(missing)} images unlabelled); label every image or remove dataset.json.')
        labels = [labels[f] for f in self._image_fnames]
        try:
            labels = np.array(labels)
        except ValueError:
            raise DatasetError(f'dataset.json in {self._path} mixes label shapes; use one integer or '
                               f'one equal-length vector per image.') from None
        if labels.dtype.kind in 'iu':
            return labels.astype(np.int64)
        if labels.dtype.kind in 'fb':
            labels = labels.astype(np.float32)
            return labels[:, np.newaxis] if labels.ndim == 1 else labels
        raise DatasetError(f'dataset.json in {self._path} has non-numeric labels; use integers or numbers.')

#----------------------------------------------------------------------------
