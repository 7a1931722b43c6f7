"""What every experiment script shares: the digit models and how they are rendered, the image
similarity measures, the Frechet distance, the digit classifier that reads generated digits,
MNIST, the device, and the figure helpers.

The four generators (baseline, SS-PE, MS-PE, MS-PE with random resizing) are trained by
scripts/experiments/train_digits.sh on colour MNIST digits biased to the upper-left corner and
committed as results/models/<name>.pkl. Every experiment loads them from here and renders them
through the same Canvas call, so the comparison is one code path for all variants.
"""

import dataclasses
import os
import shlex
import sys
import warnings

import click
import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from scripts import ROOT
import legacy  # noqa: E402  (the vendored host's loader; `scripts` put it on sys.path)
from mspe_plugin.encoding import Canvas  # noqa: E402

RESULTS = os.path.join(ROOT, 'results')
PAPER = os.path.join(RESULTS, 'paper')        # the experiments' JSON and figures
MNIST_TEST_DIR = os.path.join(ROOT, 'tests', 'data', 'mnist')                       # shipped: the 10k test split
MNIST_TRAIN_DIR = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'mnist')   # the 60k training split, where present
MNIST_FILES = {
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
}
CLASSIFIER_PATH = os.path.join(RESULTS, 'models', 'digit_classifier.pt')
CLASSIFIER_FORMAT = 'mspe-digit-classifier-v1'

def pick_device():
    """CUDA when present, else the CPU: the device every experiment runs on."""
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')

def command_line(module):
    """The command that is running, as `python -m <module> ARGS` (recorded in the JSON files)."""
    return ' '.join(['python -m', module] + ([shlex.join(sys.argv[1:])] if len(sys.argv) > 1 else []))

def out_path(name):
    """Default output path (no extension) of an experiment: results/paper/<name>."""
    return os.path.join(PAPER, name)

MODELS = {                      # name -> label in figures
    'baseline': 'Baseline (const)',
    'sspe': 'SS-PE',
    'mspe': 'MS-PE',
    'mspe_rs': 'MS-PE + resize',
    'default': 'MS-PE + resize + margins + plain outside (--cfg=mspe --pe-outside=30)',
}
MODELS_DIR = os.path.join(RESULTS, 'models')

def load_models(names=None, models_dir=MODELS_DIR, device=None):
    """{name: G_ema in eval mode} for every model whose pickle exists (missing ones are reported)."""
    device = device or pick_device()
    models = {}
    for name in (names or MODELS):
        path = os.path.join(models_dir, f'{name}.pkl')
        if not os.path.isfile(path):
            print(f'skipping {name}: {path} does not exist (train it with scripts/experiments/train_digits.sh)')
            continue
        with open(path, 'rb') as f:
            models[name] = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False).to(device)
    if not models:
        raise SystemExit(f'No digit models found in {models_dir}: run scripts/experiments/train_digits.sh first.')
    return models

def requested_classes(G, num, seed=0):
    """The digit class each seed asks a class-conditional G for: (seed + i) % c_dim, so any run
    of 10 consecutive seeds covers every digit once. None for an unconditional G (c_dim = 0)."""
    return None if G.c_dim == 0 else torch.arange(seed, seed + num) % G.c_dim

def conditioning(G, num, seed=0, device=None):
    """The label input c [num, c_dim] for seeds seed..seed+num-1: one-hot of requested_classes
    for a conditional G, an empty [num, 0] tensor for an unconditional one."""
    device = device or next(G.parameters()).device
    classes = requested_classes(G, num, seed)
    if classes is None:
        return torch.zeros([num, 0], device=device)
    return F.one_hot(classes, G.c_dim).float().to(device)

@torch.no_grad()
def latents(G, num, seed=0, psi=1.0):
    """Fixed ws [num, num_ws, w_dim] for seeds seed..seed+num-1 (one per image, reproducible)."""
    device = next(G.parameters()).device
    z = torch.from_numpy(np.stack([np.random.RandomState(seed + i).randn(G.z_dim) for i in range(num)])).float().to(device)
    return G.mapping(z, conditioning(G, num, seed, device), truncation_psi=psi)

def margin_option(fn):
    """click decorator: --margin N, the inference margin dg.render applies to every rendering."""
    return click.option('--margin', type=click.IntRange(min=0), default=0, show_default=True,
                        help='Inference margin: render N more pixels beyond every side of every canvas '
                             '(the training grid too) and crop them')(fn)

@torch.no_grad()
def render(G, ws, canvas=None, noise_mode='const', batch=64, margin=0):
    """Images [N, C, H, W] in [-1, 1] of ws on `canvas` (None = the training grid). margin > 0
    renders that many more pixels beyond every side and crops them (the inference margin,
    Canvas.margin), the training grid included, so that no pixel depends on where the edge is."""
    if margin:
        R = G.img_resolution
        canvas = canvas or Canvas(size=(R, R))
        canvas = dataclasses.replace(canvas, margin=int(margin))
    extra = {} if canvas is None else dict(canvas=canvas)    # a plain StyleGAN2 G renders the training grid only
    out = [G.synthesis(ws[i:i + batch], noise_mode=noise_mode, **extra) for i in range(0, len(ws), batch)]
    return torch.cat(out).clamp(-1, 1)

def shifted_canvas(G, dy, dx):
    """The training canvas moved by (dy, dx) image pixels (content moves by -d)."""
    return Canvas(origin=(float(dy), float(dx)), size=(G.img_resolution, G.img_resolution))

#----------------------------------------------------------------------------
# Reference translation of an image (what an ideally equivariant generator would produce).

def _lanczos_kernel(t, a=3):
    t = np.asarray(t, dtype=np.float64)
    out = np.sinc(t) * np.sinc(t / a)
    out[np.abs(t) >= a] = 0
    return out

def translate_image(img, dy, dx, a=3):
    """Sample `img` [N, C, H, W] at (i + dy, j + dx) with a Lanczos-`a` kernel (exact for integer
    shifts). Returns (image, mask): mask [H, W] is True where all taps fall inside the image."""
    n, c, h, w = img.shape
    def matrix(size, d):
        pos = np.arange(size)[:, None] + d
        taps = np.arange(size)[None, :]
        m = _lanczos_kernel(taps - pos, a)
        valid = (pos[:, 0] - a > -1) & (pos[:, 0] + a < size)     # every tap with weight inside
        if float(d).is_integer():
            valid = (pos[:, 0] >= 0) & (pos[:, 0] <= size - 1)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(m).float().to(img.device), torch.from_numpy(valid).to(img.device)
    my, vy = matrix(h, dy)
    mx, vx = matrix(w, dx)
    out = torch.einsum('hi,ncij,wj->nchw', my, img, mx)
    return out, vy[:, None] & vx[None, :]

def roll_image(img, dy, dx):
    """`img` [N, C, H, W] moved by (dy, dx) pixels down and right with wrap-around: exact
    `torch.roll` for whole pixels, the band-limited (Fourier phase) shift for fractions. The
    reference of shift_consistency.py --wrap, where every pixel of the image is compared."""
    h, w = img.shape[-2:]
    if float(dy).is_integer() and float(dx).is_integer():
        return torch.roll(img, shifts=(int(dy), int(dx)), dims=(2, 3))
    def phase(size, d):
        k = torch.fft.fftfreq(size, device=img.device, dtype=torch.float64)
        ramp = torch.exp(-2j * np.pi * k * d)
        if size % 2 == 0:    # the Nyquist term of a real image: only the real part of its phase ramp
            ramp[size // 2] = np.cos(np.pi * d)
        return ramp
    spec = torch.fft.fft2(img.double())
    spec = spec * phase(h, dy)[:, None] * phase(w, dx)[None, :]
    return torch.fft.ifft2(spec).real.to(img.dtype)

#----------------------------------------------------------------------------
# Image similarity (the one PSNR and SSIM of every table).

def psnr(a, b, mask=None, data_range=2.0):
    """Per-image PSNR (dB) of [N, C, H, W] images in [-1, 1], over `mask` [H, W] if given."""
    err = (a - b).square()
    if mask is not None:
        err = err[:, :, mask]
    mse = err.flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(data_range ** 2 / mse)

def ssim(a, b, mask=None, data_range=2.0, window=7):
    """Per-image mean SSIM (Wang et al. 2004, uniform 7x7 window) over `mask` [H, W] if given."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pad = window // 2
    def blur(t):
        return F.avg_pool2d(F.pad(t, [pad] * 4, mode='replicate'), window, stride=1)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    if mask is not None:
        s = s[:, :, mask]
    return s.flatten(1).mean(dim=1)

def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to feature sets a [N, D] and b [M, D]."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():     # a singular product is expected for collapsed fakes (newer SciPy has no `disp`)
        warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    return float(np.square(mu_a - mu_b).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))

#----------------------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (figures go to files; the
    `experiments` extra installs matplotlib)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt

def to_uint8(img):
    """[N, C, H, W] in [-1, 1] -> uint8 numpy [N, H, W, C]."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

def save_rows(rows, path, pad=2, scale=2):
    """Save rows of uint8 [H, W, C] images (rows may differ in width) as one PNG, upscaled."""
    from PIL import Image
    height = max(max(im.shape[0] for im in row) for row in rows)
    widths = [sum(im.shape[1] + pad for im in row) for row in rows]
    canvas = np.full([len(rows) * (height + pad) + pad, max(widths) + pad, 3], 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        x = pad
        for im in row:
            im = im if im.shape[2] == 3 else np.repeat(im, 3, axis=2)
            y = pad + r * (height + pad)
            canvas[y:y + im.shape[0], x:x + im.shape[1]] = im
            x += im.shape[1] + pad
    image = Image.fromarray(canvas)
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    image.save(path)

#----------------------------------------------------------------------------
# MNIST and dataset images.

def load_mnist(mnist_dir=MNIST_TEST_DIR, split='test'):
    """MNIST's `split` ('test': 10k, 'train': 60k) from `mnist_dir`: (digits uint8 [N, 28, 28],
    labels int64 [N]). Missing files end the script with one sentence naming them."""
    import dataset_tool
    paths = [os.path.join(mnist_dir, name) for name in MNIST_FILES[split]]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f'{mnist_dir} lacks {" and ".join(missing)}: MNIST\'s standard {split} files (from Yann LeCun\'s '
                         'site or any MNIST mirror); put them there or pass --mnist DIR.')
    try:
        digits = dataset_tool.read_idx(paths[0], 2051)
        labels = dataset_tool.read_idx(paths[1], 2049)
    except dataset_tool.SourceError as err:
        raise SystemExit(f'--mnist: {err}') from None
    return digits, labels.astype(np.int64)

def load_real(path, num):
    """`num` images of dataset `path` (zip or folder of dataset_tool.py), a fixed random pick,
    float [num, C, H, W] in [-1, 1]."""
    from training.dataset import DatasetError, ImageFolderDataset
    try:
        ds = ImageFolderDataset(path)
    except (DatasetError, OSError, ValueError) as err:
        raise SystemExit(f'--data: {err} (build the dataset with stylegan2_ada_vendor/dataset_tool.py)') from None
    idx = np.random.RandomState(0).permutation(len(ds))[:num]
    return torch.from_numpy(np.stack([ds[i][0] for i in idx])).float() / 127.5 - 1


#----------------------------------------------------------------------------
# The digit classifier: reads which digit a generator drew, wherever it drew it (trained by
# digit_classifier.py; committed as results/models/digit_classifier.pt).

WORK_SIDE = 64          # canvases with a shorter side are upsampled to this
MIN_SIDE = 28           # smallest accepted input side

class DigitClassifier(torch.nn.Module):
    """Fully convolutional digit classifier with a global max pool (any input size).

    forward(x): x float [N, 1, H, W] intensity in [0, 1] (see `prepare`) -> logits [N, 10].
    """

    def __init__(self,
        channels    = (32, 32, 64, 128, 128),   # Conv widths; the first conv has stride 2, then 2x max pools.
        feature_dim = 128,                      # Width of the penultimate (feature) layer.
        num_classes = 10,                       # Number of digit classes.
    ):
        super().__init__()
        self.config = dict(channels=list(channels), feature_dim=feature_dim, num_classes=num_classes)
        layers, in_ch = [], 1
        for idx, out_ch in enumerate(channels):
            layers += [torch.nn.Conv2d(in_ch, out_ch, 3, stride=(2 if idx == 0 else 1), padding=1, bias=False),
                       torch.nn.BatchNorm2d(out_ch), torch.nn.ReLU(inplace=True)]
            if 1 <= idx < len(channels) - 1:
                layers.append(torch.nn.MaxPool2d(2))
            in_ch = out_ch
        self.trunk = torch.nn.Sequential(*layers)
        self.fc = torch.nn.Linear(in_ch, feature_dim)
        self.head = torch.nn.Linear(feature_dim, num_classes)

    def features(self, x):
        """Penultimate features [N, feature_dim] of prepared input x [N, 1, H, W]."""
        h = self.trunk(x).amax(dim=(2, 3))  # global max pool: where the digit is does not matter
        return F.relu(self.fc(h))

    def forward(self, x):
        return self.head(self.features(x))

def prepare(images, device=None):
    """Turn user images into the network's input: intensity in [0, 1], short side >= 64.

    :param images: torch tensor or numpy array, [N, C, H, W] (C = 1 or 3), [N, H, W, C] or
        [N, H, W]; uint8 in [0, 255] or float in [-1, 1] (the generator's range).
    :param device: device of the result (default: the input's, numpy -> cpu).
    :return: float32 tensor [N, 1, H', W'].
    """
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f'images must be [N, C, H, W], [N, H, W, C] or [N, H, W]; got shape {list(x.shape)}.')
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise ValueError(f'images must have 1 (grey) or 3 (RGB) channels; got shape {list(x.shape)}.')
    if min(x.shape[2:]) < MIN_SIDE:
        raise ValueError(f'images must be at least {MIN_SIDE} px on each side; got {x.shape[3]}x{x.shape[2]}.')
    if device is not None:
        x = x.to(device)
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    else:
        x = ((x.to(torch.float32) + 1) / 2).clamp(0, 1)
    x = x.amax(dim=1, keepdim=True)  # colour -> intensity
    side = min(x.shape[2:])
    if side < WORK_SIDE:
        size = [int(round(s * WORK_SIDE / side)) for s in x.shape[2:]]
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    return x

@torch.no_grad()
def _batched(model, images, fn, batch_size=256):
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat([fn(prepare(images[i:i + batch_size], device=device))
                          for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)

def classify(model, images):
    """Most likely digit of every image: (labels int64 [N], probs float32 [N, 10]) on the model's device."""
    probs = _batched(model, images, lambda x: model(x).softmax(dim=1))
    return probs.argmax(dim=1), probs

def features(model, images):
    """Penultimate features [N, D] (D = 128) of every image, e.g. for a Frechet distance."""
    return _batched(model, images, model.features)

def load_classifier(path=None, device=None):
    """Load a trained classifier (default results/models/digit_classifier.pt) in eval mode."""
    path = path or CLASSIFIER_PATH
    device = device or pick_device()
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no digit classifier at {path}; train one with '
                                f'`python -m scripts.experiments.digit_classifier --train --out {path}`.')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get('format') != CLASSIFIER_FORMAT:
        raise ValueError(f'{path} is not a digit classifier saved by scripts/experiments/digit_classifier.py; retrain it.')
    model = DigitClassifier(**ckpt['config'])
    model.load_state_dict(ckpt['state_dict'])
    model.info = ckpt.get('info') or {}
    return model.to(device).eval()
