"""Make a training dataset (a zip or folder of PNGs plus dataset.json labels) from images, MNIST
IDX files or the built-in rendered digits, optionally cropping, resizing, placing the content
somewhere on a larger black canvas and colouring it.

Examples:

\b
  # The paper's spatially biased set: colour MNIST digits only in the upper-left quadrant.
  python dataset_tool.py --source=../tests/data/mnist/t10k-images-idx3-ubyte.gz \\
      --dest=~/datasets/mnist-ul.zip --place=upper-left --colorize --resolution=64
\b
  # Digits rendered with Pillow's built-in font (no download), 32x32.
  python dataset_tool.py --source=builtin:digits --dest=~/datasets/digits.zip --max-images=10000
\b
  # A folder of photos, centre-cropped and resized to 256x256.
  python dataset_tool.py --source=~/photos --dest=~/datasets/photos.zip \\
      --transform=center-crop --resolution=256
"""

import colorsys
import gzip
import io
import json
import os
import shutil
import struct
import zlib
import sys
import zipfile

import click
import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the host folder, for dnnlib


URL_SCHEMES = ('http://', 'https://', 'file://')
PLACES = ('upper-left', 'bottom-left', 'center', 'random', 'none')
RESIZE_FILTERS = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}

#----------------------------------------------------------------------------
# Per-image operations. Each takes and returns a PIL image in mode 'L' or 'RGB'.

def crop_center_square(image):
    """Largest centred square of `image`."""
    side = min(image.width, image.height)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))

def crop_center_wide(image, width, height, resample):
    """Upstream's 'center-crop-wide': scale to `width`, crop `height` rows around the centre and
    letterbox the strip onto a black `width` x `width` canvas."""
    scaled_h = max(int(round(width * image.height / image.width)), 1)
    image = image.resize((width, scaled_h), resample)
    top = (scaled_h - height) // 2
    strip = image.crop((0, top, width, top + height))  # rows outside the image come out black
    canvas = PIL.Image.new(image.mode, (width, width))
    canvas.paste(strip, (0, (width - height) // 2))
    return canvas

def place_on_canvas(content, canvas_size, place, content_scale, jitter, rng, resample):
    """Resize `content` to `content_scale` of the canvas and paste it onto a black canvas.

    :param content: PIL image (the digit or photo to place).
    :param canvas_size: (width, height) of the output canvas in pixels.
    :param place: 'upper-left', 'bottom-left', 'center' or 'random': where the content box lands.
    :param content_scale: fraction of the canvas side the content box occupies, in (0, 1].
        The content keeps its aspect ratio and fits inside (scale * W) x (scale * H).
    :param jitter: maximum random offset in pixels added to x and y; the box is then clipped to
        stay entirely on the canvas.
    :param rng: numpy Generator for 'random' and the jitter.
    :param resample: Pillow resampling filter.
    :return: PIL image of size `canvas_size`, black outside the content box.
    """
    cw, ch = canvas_size
    s = min(content_scale * cw / content.width, content_scale * ch / content.height)
    bw = int(np.clip(round(content.width * s), 1, cw))
    bh = int(np.clip(round(content.height * s), 1, ch))
    if place == 'upper-left':
        x, y = 0, 0
    elif place == 'bottom-left':
        x, y = 0, ch - bh
    elif place == 'center':
        x, y = (cw - bw) // 2, (ch - bh) // 2
    elif place == 'random':
        x, y = int(rng.integers(0, cw - bw + 1)), int(rng.integers(0, ch - bh + 1))
    else:
        raise ValueError(f'unknown place {place!r}')
    if jitter > 0:
        x += int(rng.integers(-jitter, jitter + 1))
        y += int(rng.integers(-jitter, jitter + 1))
    x, y = int(np.clip(x, 0, cw - bw)), int(np.clip(y, 0, ch - bh))
    canvas = PIL.Image.new(content.mode, (cw, ch))
    canvas.paste(content.resize((bw, bh), resample), (x, y))
    return canvas

def random_colour(rng):
    """A bright random colour (r, g, b) in 0..1: uniform hue, saturation in [0.6, 1], value 1,
    so the brightest channel is always 1 and max-over-channels recovers the grey digit."""
    return colorsys.hsv_to_rgb(float(rng.uniform()), float(rng.uniform(0.6, 1.0)), 1.0)

def colorize(image, colour):
    """Colour-MNIST: the intensity (max over channels) of `image` times `colour` on black, RGB."""
    arr = np.asarray(image, dtype=np.float32)
    intensity = arr if arr.ndim == 2 else arr.max(axis=2)
    rgb = intensity[:, :, np.newaxis] * np.asarray(colour, dtype=np.float32)
    return PIL.Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), 'RGB')

#----------------------------------------------------------------------------

def output_size(width, height, options):
    """(width, height) of the output for a source image of `width` x `height` pixels."""
    o = options
    if o.transform == 'center-crop':
        width = height = min(width, height)
    if o.place != 'none':
        if o.width is not None:
            return o.width, o.height
        return max(int(round(width / o.content_scale)), 1), max(int(round(height / o.content_scale)), 1)
    if o.transform == 'center-crop-wide':
        return o.width, o.width
    if o.width is not None:
        return o.width, o.height
    return width, height

def convert_image(image, options, index, seed):
    """Apply transform, placement and colouring to one source image (PIL 'L' or 'RGB')."""
    o = options
    resample = RESIZE_FILTERS[o.resize_filter]
    if o.transform == 'center-crop':
        image = crop_center_square(image)
    elif o.transform == 'center-crop-wide':
        image = crop_center_wide(image, o.width, o.height, resample)
    if o.place != 'none':
        place_rng = np.random.default_rng([seed, index, 0])
        image = place_on_canvas(image, output_size(image.width, image.height, o), o.place,
                                o.content_scale, o.jitter, place_rng, resample)
    elif o.width is not None and o.transform != 'center-crop-wide' and image.size != (o.width, o.height):
        image = image.resize((o.width, o.height), resample)
    if o.colorize:
        image = colorize(image, random_colour(np.random.default_rng([seed, index, 1])))
    return image

def encode_png(image):
    """PNG bytes of a PIL image."""
    buf = io.BytesIO()
    image.save(buf, format='png', compress_level=6)
    return buf.getvalue()

#----------------------------------------------------------------------------
# Sources. Each gives a `Source`: output mode, the set of image sizes, whether it has labels,
# and an iterator of (index, PIL image in mode 'L' or 'RGB', label or None). Everything a user
# can get wrong is found here, before the destination is touched.

class SourceError(Exception):
    """A --source that cannot be read; the message says what to do."""

class Source:
    """What `open_source` returns (see the section comment)."""
    def __init__(self, mode, sizes, has_labels, images):
        self.mode = mode              # 'L' (all grey) or 'RGB' (some colour)
        self.sizes = set(sizes)       # {(width, height)} of the source images
        self.has_labels = has_labels  # labels come with the images
        self.images = images          # iterator of (index, PIL image, label)

_GREY_MODES = ('1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F')

def to_grey_or_rgb(image):
    """Convert any Pillow image to 'L' or 'RGB': 16-bit grey is scaled to 8 bits, transparent
    pixels are composited onto black."""
    if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
        arr = np.asarray(image, dtype=np.float64)
        arr = arr / 257.0 if image.mode != 'F' else arr
        return PIL.Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), 'L')
    if image.mode in ('1', 'L'):
        return image.convert('L')
    if image.mode in ('LA', 'La'):
        arr = np.asarray(image.convert('LA'), dtype=np.float32)
        return PIL.Image.fromarray(np.round(arr[:, :, 0] * arr[:, :, 1] / 255).astype(np.uint8), 'L')
    if image.mode in ('RGBA', 'RGBa', 'PA') or (image.mode == 'P' and 'transparency' in image.info):
        rgba = image.convert('RGBA')
        return PIL.Image.alpha_composite(PIL.Image.new('RGBA', rgba.size, (0, 0, 0, 255)), rgba).convert('RGB')
    return image.convert('RGB')

def _image_collection(where, names, read_bytes, max_images, no_labels=False):
    """Source from named image files (folder or zip): check every file, read labels (dataset.json,
    ignored with `no_labels`), iterate."""
    PIL.Image.init()
    names = sorted(n for n in names if not any(part.startswith('.') for part in n.split('/')) and not n.startswith('__MACOSX/'))
    others = [n for n in names if n != 'dataset.json' and os.path.splitext(n)[1].lower() not in PIL.Image.EXTENSION]
    if others:
        raise SourceError(f'{where}/{others[0]} is not an image file; remove it (and {len(others) - 1} other non-image '
                          f'files) or move it out of the source.' if len(others) > 1 else
                          f'{where}/{others[0]} is not an image file; remove it or move it out of the source.')
    fnames = [n for n in names if n != 'dataset.json']
    if not fnames:
        raise SourceError(f'{where} contains no images; point --source to a folder or zip of PNG/JPEG files.')
    all_fnames, fnames = fnames, fnames[:max_images]
    sizes, modes = set(), set()
    for fname in fnames:
        try:
            with PIL.Image.open(io.BytesIO(read_bytes(fname))) as image:
                sizes.add(image.size)
                modes.add('L' if image.mode in _GREY_MODES else 'RGB')
        except Exception as err:
            raise SourceError(f'{where}/{fname} is not a readable image ({err}); remove or replace it.') from None
    labels = None
    if 'dataset.json' in names and not no_labels:
        labels = _read_dataset_json(where, read_bytes, all_fnames)

    def images():
        for index, fname in enumerate(fnames):
            try:
                with PIL.Image.open(io.BytesIO(read_bytes(fname))) as image:
                    image.load()
                    image = to_grey_or_rgb(image)
            except Exception as err:
                raise SourceError(f'{where}/{fname} could not be decoded ({err}); remove or replace it.') from None
            yield index, image, (labels[fname] if labels is not None else None)
    return Source('RGB' if 'RGB' in modes else 'L', sizes, labels is not None, images())

def _read_dataset_json(where, read_bytes, fnames):
    """The labels of dataset.json as {file: label} (None for `"labels": null`); anything that
    does not label exactly the images `fnames` is a SourceError."""
    fix = '--no-labels writes the images without labels'
    try:
        entries = json.loads(read_bytes('dataset.json'))['labels']
        labels = None if entries is None else {str(name): label for name, label in entries}
    except Exception as err:    # unreadable member, bad JSON, wrong structure
        detail = f'{type(err).__name__}: {err}'.splitlines()[0].rstrip('.')
        raise SourceError(f'{where}/dataset.json is not valid ({detail}); it must hold {{"labels": [[file, label], ...]}} '
                          f'(or {fix}).') from None
    if labels is None:
        return None
    def plain(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) or \
            isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    bad = [name for name, label in labels.items() if not plain(label)]
    if bad:
        raise SourceError(f'{where}/dataset.json gives {bad[0]} the label {labels[bad[0]]!r}, which is neither a class '
                          f'number nor a list of numbers; fix the file (or {fix}).')
    missing = [f for f in fnames if f not in labels]
    if missing:
        raise SourceError(f'{where}/dataset.json has no label for {missing[0]}; label every image or remove dataset.json.')
    extra = sorted(set(labels) - set(fnames))
    if extra:
        raise SourceError(f'{where}/dataset.json has {len(labels)} labels for {len(fnames)} images (no image {extra[0]}); '
                          f'pair it with its own images (or {fix}).')
    return labels

def open_image_folder(path, max_images, no_labels=False):
    """Images found recursively under folder `path` (hidden files skipped; dataset.json = labels)."""
    names = [os.path.relpath(os.path.join(root, f), path).replace(os.sep, '/')
             for root, _dirs, files in os.walk(path) for f in files]
    idx_files = [n for n in names if 'idx3-ubyte' in n]
    if idx_files and not any(os.path.splitext(n)[1].lower() in PIL.Image.EXTENSION for n in names):
        raise SourceError(f'{path} holds MNIST IDX files, not images; pass the images file itself, '
                          f'e.g. --source={os.path.join(path, idx_files[0])}.')
    def read_bytes(name):
        with open(os.path.join(path, name), 'rb') as f:
            return f.read()
    return _image_collection(path.rstrip('/\\'), names, read_bytes, max_images, no_labels)

def open_image_zip(path_or_file, where, max_images, no_labels=False):
    """Images inside a zip (a path or an open binary file); dataset.json at its root = labels."""
    try:
        archive = zipfile.ZipFile(path_or_file)
        names = [n for n in archive.namelist() if not n.endswith('/')]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise SourceError(f'{where} is not a readable zip ({err}); check the file.') from None
    return _image_collection(where, names, archive.read, max_images, no_labels)

def _open_path_or_url(path):
    """Binary file object for a local path or a URL (http(s), file://; through dnnlib.util.open_url)."""
    if path.startswith(URL_SCHEMES):
        import dnnlib  # pylint: disable=import-outside-toplevel
        return dnnlib.util.open_url(path)
    return open(path, 'rb')

def read_idx(path, expected_magic):
    """Read an IDX file (optionally gzipped; path or URL) into a uint8 array of its dimensions."""
    try:
        with _open_path_or_url(path) as f:
            data = f.read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise SourceError(f'{path} could not be read ({err}); check the path or re-download the file.') from None
    if len(data) < 8 or struct.unpack('>I', data[:4])[0] != expected_magic:
        raise SourceError(f'{path} is not an MNIST IDX file (bad magic number); use the original '
                          f'*-images-idx3-ubyte[.gz] / *-labels-idx1-ubyte[.gz] files.')
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise SourceError(f'{path} is truncated (its header ends after {len(data)} bytes); re-download it.')
    dims = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise SourceError(f'{path} is truncated ({len(body)} bytes of data for shape {list(dims)}); re-download it.')
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)

def mnist_labels_path(images_path):
    """The labels file next to an images file, or None: *-labels-idx1-ubyte with or without .gz."""
    base = images_path[:-3] if images_path.endswith('.gz') else images_path
    base = base.replace('images-idx3-ubyte', 'labels-idx1-ubyte').replace('images.idx3-ubyte', 'labels.idx1-ubyte')
    if base == (images_path[:-3] if images_path.endswith('.gz') else images_path):
        return None
    candidates = [base + '.gz', base] if images_path.endswith('.gz') else [base, base + '.gz']
    if images_path.startswith(URL_SCHEMES):
        return candidates[0]
    return next((c for c in candidates if os.path.isfile(c)), None)

def open_mnist(path, max_images, no_labels=False):
    """MNIST IDX digits (grey 28x28) with the labels of the matching labels file, which must be
    there and readable unless `no_labels` (then none are read)."""
    images = read_idx(path, 2051)
    if images.ndim != 3:
        raise SourceError(f'{path} holds {images.ndim}-d data, not a stack of images; use an idx3 images file.')
    labels = None
    if not no_labels:
        labels_path = mnist_labels_path(path)
        if labels_path is None:
            raise SourceError(f'no MNIST labels file (*-labels-idx1-ubyte[.gz]) was found next to {path}; put it there, '
                              f'or pass --no-labels to write the digits without labels.')
        try:
            labels = read_idx(labels_path, 2049)
        except SourceError as err:
            raise SourceError(f'{str(err).rstrip(".")} (the labels of {os.path.basename(path)}; or pass --no-labels to write '
                              f'the digits without labels).') from None
        if labels.shape != images.shape[:1]:
            raise SourceError(f'{labels_path} has {labels.shape[0]} labels for {images.shape[0]} images; '
                              f'pair the images file with its own labels file.')
    images = images[:max_images]

    def iterate():
        for index, digit in enumerate(images):
            yield index, PIL.Image.fromarray(digit, 'L'), (int(labels[index]) if labels is not None else None)
    return Source('L', [(images.shape[2], images.shape[1])], labels is not None, iterate())

BUILTIN_TILE = 32  # side of a builtin:digits image

def render_digit(label, rng, tile=BUILTIN_TILE):
    """One digit drawn with Pillow's built-in font: random height (45-80% of the tile), stroke
    width, rotation (+-15 degrees) and bright colour, centred on a black RGB `tile` x `tile` image."""
    font = PIL.ImageFont.load_default(size=64)
    if not isinstance(font, PIL.ImageFont.FreeTypeFont):
        raise SourceError('builtin:digits needs Pillow built with FreeType (for a scalable default font); '
                          'reinstall Pillow from PyPI.')
    glyph = PIL.Image.new('L', (160, 160))
    PIL.ImageDraw.Draw(glyph).text((80, 80), str(label), fill=255, font=font, anchor='mm',
                                   stroke_width=int(rng.integers(0, 5)), stroke_fill=255)
    glyph = glyph.rotate(float(rng.uniform(-15, 15)), resample=PIL.Image.BICUBIC)
    glyph = glyph.crop(glyph.getbbox())
    height = float(rng.uniform(0.45, 0.8)) * tile
    width = min(glyph.width * height / glyph.height, 0.9 * tile)
    glyph = glyph.resize((max(int(round(width)), 1), max(int(round(height)), 1)), PIL.Image.LANCZOS)
    canvas = PIL.Image.new('L', (tile, tile))
    canvas.paste(glyph, ((tile - glyph.width) // 2, (tile - glyph.height) // 2))
    return colorize(canvas, random_colour(rng))

def open_builtin_digits(max_images, seed):
    """`builtin:digits`: rendered digits 0-9 with labels, 10000 unless --max-images says otherwise."""
    count = 10000 if max_images is None else max_images

    def iterate():
        for index in range(count):
            rng = np.random.default_rng([seed, index, 2])
            label = int(rng.integers(0, 10))
            yield index, render_digit(label, rng), label
    return Source('RGB', [(BUILTIN_TILE, BUILTIN_TILE)], True, iterate())

def open_source(source, max_images, seed, no_labels=False):
    """Dispatch on --source: builtin:digits, an MNIST IDX file, a folder or a zip (path or URL)."""
    if source.startswith('builtin:'):
        if source != 'builtin:digits':
            raise SourceError(f'unknown builtin source {source!r}; the built-in one is builtin:digits.')
        return open_builtin_digits(max_images, seed)
    is_url = source.startswith(URL_SCHEMES)
    path = source if is_url else os.path.expanduser(source)
    name = os.path.basename(path.split('?')[0])
    if 'idx3-ubyte' in name:
        if not is_url and not os.path.isfile(path):
            raise SourceError(f'--source {source} does not exist; give the path of an MNIST *-images-idx3-ubyte[.gz] file.')
        return open_mnist(path, max_images, no_labels)
    if is_url and name.lower().endswith('.zip'):
        try:
            with _open_path_or_url(path) as f:
                data = f.read()
        except OSError as err:
            raise SourceError(f'--source {source} could not be downloaded ({err}); check the URL.') from None
        return open_image_zip(io.BytesIO(data), source, max_images, no_labels)
    if not is_url and os.path.isdir(path):
        return open_image_folder(path, max_images, no_labels)
    if not is_url and not os.path.exists(path):
        raise SourceError(f'--source {source} does not exist; give an image folder, a .zip, an MNIST IDX file or builtin:digits.')
    if not is_url and name.lower().endswith('.zip'):
        return open_image_zip(path, source, max_images, no_labels)
    raise SourceError(f'--source {source} is not a folder, a .zip, an MNIST *-images-idx3-ubyte[.gz] file or '
                      f'builtin:digits; convert it to one of those.')

#----------------------------------------------------------------------------
# Destination: written to a hidden temporary sibling and moved into place only when complete,
# so a failed run leaves --dest exactly as it was.

class WriterError(Exception):
    """A --dest that cannot be written; the message says what to do."""

class DatasetWriter:
    """Collects files for a dataset folder or zip and moves it to `dest` on `commit()`."""

    def __init__(self, dest):
        self.dest = os.path.abspath(os.path.expanduser(dest)) if dest else ''
        if not self.dest:
            raise WriterError('--dest is empty; give an output folder or a .zip path.')
        self.is_zip = self.dest.lower().endswith('.zip')
        self._check_free()
        parent = os.path.dirname(self.dest)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as err:
            raise WriterError(f'cannot create the folder for --dest {dest} ({err}); choose another path.') from None
        self.temp = os.path.join(parent, f'.{os.path.basename(self.dest)}.partial-{os.getpid()}')
        if self.is_zip:
            self._zip = zipfile.ZipFile(self.temp, 'w', compression=zipfile.ZIP_STORED)
        else:
            os.makedirs(self.temp)

    def _check_free(self):
        if os.path.isdir(self.dest):
            if self.is_zip or os.listdir(self.dest):
                raise WriterError(f'--dest {self.dest} already exists and is not empty; choose a new path or delete it first.')
        elif os.path.lexists(self.dest):
            if not self.is_zip:
                raise WriterError(f'--dest {self.dest} is an existing file, not a folder; choose a new path (or a .zip).')
            if os.path.getsize(self.dest) > 0:
                raise WriterError(f'--dest {self.dest} already exists and is not empty; choose a new path or delete it first.')

    def add(self, fname, data):
        """Store bytes `data` as `fname` ('00000/img00000000.png', 'dataset.json')."""
        if self.is_zip:
            self._zip.writestr(fname, data)
        else:
            path = os.path.join(self.temp, fname)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)

    def commit(self):
        """Move the finished dataset to `dest` (refusing if something appeared there meanwhile)."""
        if self.is_zip:
            self._zip.close()
        self._check_free()
        if os.path.isdir(self.dest):
            os.rmdir(self.dest)
        os.replace(self.temp, self.dest)

    def abort(self):
        """Delete the temporary output; `dest` is untouched."""
        if self.is_zip:
            self._zip.close()
            if os.path.exists(self.temp):
                os.remove(self.temp)
        else:
            shutil.rmtree(self.temp, ignore_errors=True)

#----------------------------------------------------------------------------

class OptionError(Exception):
    """Inconsistent command-line options."""

def check_options(o):
    """Validate and complete the options in place (width/height from --resolution, defaults)."""
    if o.resolution is not None:
        if o.resolution < 1:
            raise OptionError(f'--resolution must be a positive number of pixels; got {o.resolution}.')
        for flag, val in (('--width', o.width), ('--height', o.height)):
            if val is not None and val != o.resolution:
                raise OptionError(f'{flag}={val} contradicts --resolution={o.resolution}; give one of them.')
        o.width = o.height = o.resolution
    if (o.width is None) != (o.height is None):
        raise OptionError('give both --width and --height (or --resolution=N for a square).')
    if o.width is not None and (o.width < 1 or o.height < 1):
        raise OptionError(f'--width and --height must be positive; got {o.width}x{o.height}.')
    if o.max_images is not None and o.max_images < 1:
        raise OptionError(f'--max-images must be at least 1; got {o.max_images}.')
    o.place = o.place or 'none'
    if o.place == 'none':
        if o.content_scale is not None or o.jitter:
            raise OptionError('--content-scale and --jitter only apply with --place; add --place=upper-left '
                              '(or bottom-left, center, random).')
    else:
        o.content_scale = 0.5 if o.content_scale is None else o.content_scale
        if not 0 < o.content_scale <= 1:
            raise OptionError(f'--content-scale must be in (0, 1]; got {o.content_scale}.')
        if o.jitter < 0:
            raise OptionError(f'--jitter must be 0 or more pixels; got {o.jitter}.')
        if o.transform == 'center-crop-wide':
            raise OptionError('--transform=center-crop-wide letterboxes to the output size and cannot be combined '
                              'with --place; use --transform=center-crop or none.')
    if o.transform == 'center-crop-wide' and o.width is None:
        raise OptionError('--transform=center-crop-wide needs --width and --height.')

def convert_dataset(o):
    """Read the source, convert every image and write the dataset; returns a one-line summary."""
    check_options(o)
    source = open_source(o.source, max_images=o.max_images, seed=o.seed, no_labels=o.no_labels)
    sizes = {output_size(w, h, o) for w, h in source.sizes}
    if len(sizes) > 1:
        raise OptionError(f'the images of {o.source} come out in {len(sizes)} different sizes; add --resolution=N '
                          f'(or --width/--height) so they all match.')
    (out_w, out_h), = sizes
    mode = 'RGB' if (o.colorize or source.mode == 'RGB') else 'L'
    writer = DatasetWriter(o.dest)  # refuses an existing non-empty destination before writing anything
    labels = [] if source.has_labels and not o.no_labels else None
    count = 0
    try:
        for index, image, label in source.images:
            image = convert_image(image.convert(mode), o, index, o.seed)
            if image.size != (out_w, out_h):
                raise OptionError(f'image {index} of {o.source} came out {image.width}x{image.height}, not '
                                  f'{out_w}x{out_h}; add --resolution=N so all images match.')
            idx_str = f'{count:08d}'
            archive_fname = f'{idx_str[:5]}/img{idx_str}.png'
            writer.add(archive_fname, encode_png(image))
            if labels is not None:
                labels.append([archive_fname, label])
            count += 1
        writer.add('dataset.json', json.dumps({'labels': labels}).encode('utf-8'))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    summary = (f'Wrote {count} image{"" if count == 1 else "s"} ({out_w}x{out_h}, {"RGB" if mode == "RGB" else "grey"}'
               f'{", with labels" if labels is not None else ""}) to {o.dest}.')
    if out_w != out_h or out_w < 4 or out_w & (out_w - 1):
        summary += (f'\nNote: StyleGAN2 training needs square power-of-two images; {out_w}x{out_h} is not '
                    f'(add --resolution=N to resize).')
    return summary

#----------------------------------------------------------------------------

@click.command(help=__doc__)
@click.option('--source', help='Folder or zip of images, MNIST *-images-idx3-ubyte[.gz] (path or URL), or builtin:digits', required=True, metavar='PATH')
@click.option('--dest', help='Output folder or .zip (must not exist or be empty)', required=True, metavar='PATH')
@click.option('--max-images', help='Write at most this many images [default: all; builtin:digits 10000]', type=int)
@click.option('--transform', help='Crop before resizing', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--resize-filter', help='Resampling filter [default: lanczos]', type=click.Choice(list(RESIZE_FILTERS)), default='lanczos')
@click.option('--width', help='Output width', type=int)
@click.option('--height', help='Output height', type=int)
@click.option('--resolution', help='Output width and height (square)', type=int)
@click.option('--place', help='Where the content lands on a black canvas [default: none]', type=click.Choice(PLACES))
@click.option('--content-scale', help='Fraction of the canvas side the content occupies [default: 0.5]', type=float)
@click.option('--jitter', help='Random offset of the placed content, in pixels [default: 0]', type=int, default=0)
@click.option('--colorize', help='Colour-MNIST: random foreground colour on black, RGB output', is_flag=True)
@click.option('--seed', help='Random seed for placement, colours and builtin:digits [default: 0]', type=int, default=0)
@click.option('--no-labels', help='Write the images without labels (else unreadable or missing labels are an error)', is_flag=True)
def main(**kwargs):
    options = _Options(kwargs)
    try:
        click.echo(convert_dataset(options))
    except (OptionError, SourceError, WriterError) as err:
        raise click.ClickException(str(err)) from None

class _Options:
    """Attribute access to the command-line options."""
    def __init__(self, kwargs):
        self.__dict__.update(kwargs)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
