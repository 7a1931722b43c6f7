"""The digit models of the spatial-bias experiments, and how the experiment scripts render them.

The four generators (baseline, SS-PE, MS-PE, MS-PE with random resizing) are trained by
scripts/train_digits.sh on colour MNIST digits biased to the upper-left corner and committed as
results/models/<name>.pkl. Every experiment script loads them from here and renders them
through the same Canvas call, so the comparison is one code path for all variants.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(ROOT, 'stylegan2_ada_vendor'), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import legacy  # noqa: E402  (the vendored host's loader)
from mspe_plugin.encoding import Canvas  # noqa: E402

MODELS = {                      # name -> label in figures
    'baseline': 'Baseline (const)',
    'sspe': 'SS-PE',
    'mspe': 'MS-PE',
    'mspe_rs': 'MS-PE + resize',
}
MODELS_DIR = os.path.join(ROOT, 'results', 'models')

def pick_device():
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')

def load_models(names=None, models_dir=MODELS_DIR, device=None):
    """{name: G_ema in eval mode} for every model whose pickle exists (missing ones are reported)."""
    device = device or pick_device()
    models = {}
    for name in (names or MODELS):
        path = os.path.join(models_dir, f'{name}.pkl')
        if not os.path.isfile(path):
            print(f'skipping {name}: {path} does not exist (train it with scripts/train_digits.sh)')
            continue
        with open(path, 'rb') as f:
            models[name] = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False).to(device)
    if not models:
        raise SystemExit(f'No digit models found in {models_dir}: run scripts/train_digits.sh first.')
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

@torch.no_grad()
def render(G, ws, canvas=None, noise_mode='const', batch=64):
    """Images [N, C, H, W] in [-1, 1] of ws on `canvas` (None = the training grid)."""
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

#----------------------------------------------------------------------------
# Image similarity.

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

#----------------------------------------------------------------------------

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
