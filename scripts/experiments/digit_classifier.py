"""Train and evaluate the digit classifier of digits.py: a small CNN that recognises an
MNIST-style digit anywhere on a canvas, the instrument that reads generated digits (which digit,
and features for a Frechet distance), wherever a generator put them.

Position does not matter because the network is fully convolutional with a global max pool,
and it is trained on digits placed at random positions and scales on 32 and 64 px canvases, in
grey and in random colours. Train on the MNIST test split digits 0..7999 and report held-out
accuracy on 8000..9999:

    python -m scripts.experiments.digit_classifier --train      # results/models/digit_classifier.pt

Use it from Python (scripts.experiments.digits):

    model = load_classifier()                   # results/models/digit_classifier.pt
    labels, probs = classify(model, images)     # images [N, C, H, W]
    feats = features(model, images)             # [N, 128]
"""

import json
import os
import time

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from scripts.experiments import digits as dg
from scripts.experiments.digits import DigitClassifier, classify, prepare
import dataset_tool  # noqa: E402  (placement and colouring exactly as in the datasets)

TRAIN_DIGITS = (0, 8000)
HELDOUT_DIGITS = (8000, 10000)

#----------------------------------------------------------------------------
# Data: MNIST digits placed on canvases exactly as dataset_tool.py places them.

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
@click.option('--out', default=dg.CLASSIFIER_PATH, show_default=True, help='Classifier file (.pt); the report goes next to it as .json.')
@click.option('--mnist', default=dg.MNIST_TEST_DIR, show_default=True, help='Folder with MNIST\'s t10k-images/labels-idx*-ubyte.gz.')
@click.option('--steps', default=2500, show_default=True, type=click.IntRange(min=1), help='Training steps (batches of 64).')
@click.option('--seed', default=0, show_default=True, type=int, help='Training seed.')
@click.option('--threads', default=2, show_default=True, type=click.IntRange(min=1), help='CPU threads.')
def main(do_train, out, mnist, steps, seed, threads):
    """Train / evaluate the position-agnostic digit classifier (see the module docstring)."""
    torch.set_num_threads(threads)
    images, labels = dg.load_mnist(mnist)
    json_path = os.path.splitext(out)[0] + '.json'
    info = {}
    if do_train:
        start = time.time()
        model = train(images[slice(*TRAIN_DIGITS)], labels[slice(*TRAIN_DIGITS)], steps=steps, seed=seed)
        info = dict(train_digits=list(TRAIN_DIGITS), steps=steps, batch_size=64, seed=seed,
                    train_seconds=round(time.time() - start, 1), threads=threads)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        torch.save(dict(format=dg.CLASSIFIER_FORMAT, config=model.config, state_dict=model.state_dict(), info=info), out)
        print(f'Saved {out} ({os.path.getsize(out) / 2**20:.2f} MiB).')
    else:
        try:
            model = dg.load_classifier(out, device='cpu')
        except (FileNotFoundError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        info = model.info
    acc = evaluate(model, images[slice(*HELDOUT_DIGITS)], labels[slice(*HELDOUT_DIGITS)])
    print(f'Held-out accuracy (MNIST test digits {HELDOUT_DIGITS[0]}..{HELDOUT_DIGITS[1] - 1}, content scale 0.5):')
    for key, value in acc.items():
        print(f'  {key:28s} {100 * value:6.2f} %')
    print(f'  {"minimum":28s} {100 * min(acc.values()):6.2f} %')
    report = dict(heldout_digits=list(HELDOUT_DIGITS), content_scale=0.5, accuracy=acc,
                  min_accuracy=min(acc.values()), train=info or None,
                  command=dg.command_line('scripts.experiments.digit_classifier'))
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'Wrote {json_path}.')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
