"""A small CNN that recognises an MNIST-style digit anywhere on a canvas: the instrument that
reads generated digits (which digit, and features for a Frechet distance), wherever a generator
put them.

Position does not matter because the network is fully convolutional with a global max pool,
and it is trained on digits placed at random positions and scales on 32 and 64 px canvases, in
grey and in random colours. Inputs: grey or RGB images, uint8 in [0, 255] or float in [-1, 1],
any size >= 28 px; colour becomes intensity (per-pixel max over channels) and canvases smaller
than 64 px are upsampled so their short side is 64 (digits are then 18-64 px tall or wide).

Train on the MNIST test split digits 0..7999 and report held-out accuracy on 8000..9999:

    python scripts/digit_classifier.py --train --out results/digit_classifier.pt

Use it from Python:

    model = load_classifier()                   # results/digit_classifier.pt
    labels, probs = classify(model, images)     # images [N, C, H, W]
    feats = features(model, images)             # [N, 128]
"""

import json
import os
import sys
import time

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(ROOT, 'stylegan2_ada_vendor'))
import dataset_tool  # noqa: E402  (placement and colouring exactly as in the datasets)

DEFAULT_PATH = os.path.join(ROOT, 'results', 'digit_classifier.pt')
DEFAULT_MNIST = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'mnist')
WORK_SIDE = 64          # canvases with a shorter side are upsampled to this
MIN_SIDE = 28           # smallest accepted input side
TRAIN_DIGITS = (0, 8000)
HELDOUT_DIGITS = (8000, 10000)
FORMAT = 'mspe-digit-classifier-v1'

#----------------------------------------------------------------------------

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
    """Load a trained classifier (default results/digit_classifier.pt) in eval mode."""
    path = path or DEFAULT_PATH
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no digit classifier at {path}; train one with '
                                f'`python scripts/digit_classifier.py --train --out {path}`.')
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get('format') != FORMAT:
        raise ValueError(f'{path} is not a digit classifier saved by scripts/digit_classifier.py; retrain it.')
    model = DigitClassifier(**ckpt['config'])
    model.load_state_dict(ckpt['state_dict'])
    model.info = ckpt.get('info') or {}
    return model.to(device).eval()

#----------------------------------------------------------------------------
# Data: MNIST digits placed on canvases exactly as dataset_tool.py places them.

def load_mnist(mnist_dir):
    """MNIST test split from `mnist_dir`: (digits uint8 [10000, 28, 28], labels int64 [10000])."""
    digits = dataset_tool.read_idx(os.path.join(mnist_dir, 't10k-images-idx3-ubyte.gz'), 2051)
    labels = dataset_tool.read_idx(os.path.join(mnist_dir, 't10k-labels-idx1-ubyte.gz'), 2049)
    return digits, labels.astype(np.int64)

def place_digits(digits, res, place, content_scale, colour, rng, resample=PIL.Image.LANCZOS):
    """Put each 28x28 digit on a black `res` x `res` canvas.

    :param place: 'upper-left', 'bottom-left', 'center', 'random', or 'train' (random position
        and a random scale in [0.3, 1]; x and y snap to an edge 30% of the time each).
    :param colour: True for random bright colours (RGB output), False for grey.
    :return: uint8 numpy [N, C, res, res], C = 3 if colour else 1.
    """
    out = []
    for digit in digits:
        image = PIL.Image.fromarray(digit, 'L')
        if place == 'train':
            scale = float(rng.uniform(0.3, 1.0))
            canvas = _place_for_training(image, res, scale, rng, resample)
        else:
            canvas = dataset_tool.place_on_canvas(image, (res, res), place, content_scale, 0, rng, resample)
        if colour:
            canvas = dataset_tool.colorize(canvas, dataset_tool.random_colour(rng))
            out.append(np.asarray(canvas).transpose(2, 0, 1))
        else:
            out.append(np.asarray(canvas)[None])
    return np.stack(out)

def _place_for_training(image, res, scale, rng, resample):
    side = max(int(round(scale * res)), 8)
    pos = []
    for _ in range(2):
        r = rng.uniform()
        pos.append(0 if r < 0.15 else res - side if r < 0.3 else int(rng.integers(0, res - side + 1)))
    canvas = PIL.Image.new('L', (res, res))
    canvas.paste(image.resize((side, side), resample), tuple(pos))
    return canvas

def training_batch(digits, labels, batch_size, rng):
    """A random training batch: prepared input [N, 1, H, W] (with gain and noise) and labels [N]."""
    idx = rng.integers(0, len(digits), size=batch_size)
    res = int(rng.choice([32, 64]))
    resample = [PIL.Image.LANCZOS, PIL.Image.BOX, PIL.Image.BILINEAR][int(rng.integers(0, 3))]
    images = place_digits(digits[idx], res, 'train', None, bool(rng.uniform() < 0.5), rng, resample)
    x = prepare(images)
    x = x * torch.from_numpy(rng.uniform(0.5, 1.0, size=[batch_size, 1, 1, 1]).astype(np.float32))
    noisy = torch.from_numpy((rng.uniform(size=[batch_size, 1, 1, 1]) < 0.3) * rng.uniform(0, 0.08, size=[batch_size, 1, 1, 1])).float()
    x = (x + noisy * torch.randn_like(x)).clamp(0, 1)
    return x, torch.from_numpy(labels[idx])

#----------------------------------------------------------------------------

def train(digits, labels, steps, batch_size=64, lr=2e-3, seed=0, log=print):
    """Train a DigitClassifier on `digits` with random placements; returns the model (eval mode)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    start, run_loss, run_acc = time.time(), 0.0, 0.0
    for step in range(1, steps + 1):
        x, y = training_batch(digits, labels, batch_size, rng)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item() / 100
        run_acc += float((logits.argmax(1) == y).float().mean()) / 100
        if step % 100 == 0:
            log(f'step {step:5d}/{steps}  loss {run_loss:.3f}  train acc {run_acc:.3f}  {time.time() - start:6.0f} s')
            run_loss = run_acc = 0.0
    return model.eval()

EVAL_PLACES = ('upper-left', 'bottom-left', 'center', 'random')

def evaluate(model, digits, labels, content_scale=0.5, seed=123):
    """Held-out accuracy per placement ({place}/{res}px/{grey|colour}, plus the bare 28 px digits)."""
    results = {}
    pred, _ = classify(model, digits)
    results['bare-28px/grey'] = float((pred.cpu().numpy() == labels).mean())
    for place in EVAL_PLACES:
        for res in (32, 64):
            for colour in (False, True):
                rng = np.random.default_rng([seed, res, int(colour), EVAL_PLACES.index(place)])
                images = place_digits(digits, res, place, content_scale, colour, rng)
                pred, _ = classify(model, images)
                results[f'{place}/{res}px/{"colour" if colour else "grey"}'] = float((pred.cpu().numpy() == labels).mean())
    return results

#----------------------------------------------------------------------------

@click.command()
@click.option('--train', 'do_train', is_flag=True, help='Train a new classifier (otherwise evaluate --out).')
@click.option('--out', default=DEFAULT_PATH, show_default=True, help='Classifier file (.pt); the report goes next to it as .json.')
@click.option('--mnist', default=DEFAULT_MNIST, show_default=True, help='Folder with t10k-images/labels-idx*-ubyte.gz.')
@click.option('--steps', default=2500, show_default=True, type=click.IntRange(min=1), help='Training steps (batches of 64).')
@click.option('--seed', default=0, show_default=True, type=int, help='Training seed.')
@click.option('--threads', default=2, show_default=True, type=click.IntRange(min=1), help='CPU threads.')
def main(do_train, out, mnist, steps, seed, threads):
    """Train / evaluate the position-agnostic digit classifier (see the module docstring)."""
    torch.set_num_threads(threads)
    try:
        digits, labels = load_mnist(mnist)
    except dataset_tool.SourceError as err:
        raise click.ClickException(f'--mnist: {err}') from None
    json_path = os.path.splitext(out)[0] + '.json'
    info = {}
    if do_train:
        start = time.time()
        model = train(digits[slice(*TRAIN_DIGITS)], labels[slice(*TRAIN_DIGITS)], steps=steps, seed=seed)
        info = dict(train_digits=list(TRAIN_DIGITS), steps=steps, batch_size=64, seed=seed,
                    train_seconds=round(time.time() - start, 1), threads=threads)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        torch.save(dict(format=FORMAT, config=model.config, state_dict=model.state_dict(), info=info), out)
        print(f'Saved {out} ({os.path.getsize(out) / 2**20:.2f} MiB).')
    else:
        try:
            model = load_classifier(out, device='cpu')
        except (FileNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        info = model.info
    acc = evaluate(model, digits[slice(*HELDOUT_DIGITS)], labels[slice(*HELDOUT_DIGITS)])
    print(f'Held-out accuracy (MNIST test digits {HELDOUT_DIGITS[0]}..{HELDOUT_DIGITS[1] - 1}, content scale 0.5):')
    for key, value in acc.items():
        print(f'  {key:28s} {100 * value:6.2f} %')
    print(f'  {"minimum":28s} {100 * min(acc.values()):6.2f} %')
    report = dict(heldout_digits=list(HELDOUT_DIGITS), content_scale=0.5, accuracy=acc,
                  min_accuracy=min(acc.values()), train=info or None,
                  command='python scripts/digit_classifier.py ' + ' '.join(sys.argv[1:]))
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'Wrote {json_path}.')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
