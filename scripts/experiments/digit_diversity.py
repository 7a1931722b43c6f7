"""Does a digit generator draw clean, diverse digits? The digit classifier's verdict on its fakes.

For each snapshot (a network pickle, or every snapshot of a run folder) it renders N fakes of
G_ema (psi=1, const noise, seeds 0..N-1) and reports, with the classifier of
scripts/experiments/digit_classifier.py:
  classes        how many digit classes the fakes cover: exp(entropy of the predicted-class
                 histogram), 10 = uniform over 0-9, 1 = every fake is the same digit (collapse);
  confident      fraction of fakes the classifier calls a digit with probability > 0.9;
  classes_confident  the same class count over those confident fakes only (a confused classifier
                 spreads its guesses, which raises `classes` without any real diversity);
  frechet        Frechet distance between classifier features of the fakes and of as many
                 dataset images (lower = closer to the data);
  pixel_std      per-pixel standard deviation across the fakes, averaged (0 = identical fakes);
  shape_std      the same within each class, on colour-blind shapes (the max over RGB): per class
                 (the class asked for, for a conditional G; else the classifier's), the per-pixel
                 std across that class's images, averaged over pixels and classes. Near 0 = one
                 shape per class, however many classes: the collapse a conditional G can hide;
  label_agreement  for a class-conditional G only: the share of fakes the classifier assigns to
                 the class they were drawn for (seed i asks for digit i % 10; null otherwise);
  style_spread   how much the latent moves the conv layers' modulation styles: per conv layer,
                 the std of each style channel across the fakes' ws over its mean |style|,
                 averaged over channels and layers (0.77 for the digit models at initialisation; near 0 = the
                 synthesis network draws the same shape for every latent);
  latent_spread  for a conditional G whose labels --data holds: how much the latent alone changes
                 the image. For 20 labels spread over the label range, 8 fakes each (seeds' latents,
                 the label fixed), the per-pixel std across those fakes, averaged over pixels and
                 labels, over the same for 8 real images of each label: 1 = as varied as the data
                 within a label, 0 = one image per label whatever the latent (null when --data has
                 no labels of G's size);
  d_label_preference  for a full snapshot of a conditional model: the share of real images that
                 its D scores higher with their own label than with a wrong one (0.5 = D ignores
                 the label, so nothing makes G draw the digit it is asked for).
The first row, 'data', scores other real images in place of the fakes: what a generator that
draws the data would score.

--prior=DATASET scores every snapshot of a self-conditioned run (a G conditioned on DATASET's cluster
labels) as the unconditional generator that stylegan2_ada_vendor/self_condition.py makes of it: each
latent draws its cluster at the frequency DATASET has it; latent_spread is then that of the
conditional G on DATASET's labels. So the training progress of such a run reads like its final pickle.

    python -m scripts.experiments.digit_diversity runs/digits/mspe/00000-...             # every snapshot of a run
    python -m scripts.experiments.digit_diversity runs/digits/mspe/00000-... --every=16  # those at 16, 32, ... kimg and the newest
    python -m scripts.experiments.digit_diversity results/models/*.pkl --json results/paper/digit_diversity.json
    python -m scripts.experiments.digit_diversity runs/final/mspe/00000-... --every=32 --prior=datasets/mnist60k-ul32-k100.zip
"""

import json
import os

import click
import numpy as np
import torch

from scripts.experiments import digits as dg
from scripts.experiments.collect_digit_models import SNAPSHOT_RE
import legacy  # noqa: E402  (the vendored host, on sys.path through `scripts`)

def snapshots(paths, every=None):
    """Expand run folders into their snapshots (in training order; with `every`, only those at a
    positive multiple of `every` kimg, and the newest); keep pickles as given."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted((float(m.group(1)), name) for name in os.listdir(path) for m in [SNAPSHOT_RE.match(name)] if m)
            if not found:
                raise SystemExit(f'{path} holds no network-snapshot-*.pkl: pass a run folder or a pickle.')
            if every:
                last = found[-1][0]
                found = [(k, name) for k, name in found if k > 0 and (abs(k / every - round(k / every)) < 1e-6 or k == last)]
                if not found:
                    raise SystemExit(f'{path} holds no snapshot past 0 kimg: train it further or drop --every.')
            out += [os.path.join(path, name) for _, name in found]
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise SystemExit(f'{path} does not exist: pass a run folder or a network pickle.')
    return out

def class_histogram(labels):
    """Share of each digit 0-9 among int labels [N] (all zeros for N = 0)."""
    return torch.bincount(labels, minlength=10).double() / max(len(labels), 1)

def effective_classes(hist):
    """exp(entropy) of a class histogram: 10 = uniform, 1 = one class, 0 = empty."""
    nz = hist[hist > 0]
    return float(torch.exp(-(nz * nz.log()).sum())) if len(nz) else 0.0

def shape_std(images, groups):
    """The shape_std of the module docstring for images [N, C, H, W] and their classes [N]
    (classes with fewer than two images are left out; 0 when none is left)."""
    shapes = images.amax(dim=1)
    groups = groups.to(shapes.device)
    stds = [shapes[groups == k].std(dim=0).mean() for k in groups.unique() if int((groups == k).sum()) >= 2]
    return float(torch.stack(stds).mean()) if stds else 0.0

def verdict(images, clf, real_feats, requested=None):
    """The verdict (the numbers of the module docstring and the class histogram) for images
    [N, C, H, W] in [-1, 1]; `requested` [N] = the classes a conditional G was asked for."""
    labels, probs = dg.classify(clf, images)
    labels, sure = labels.cpu(), (probs.max(dim=1).values > 0.9).cpu()
    agreement = None if requested is None else float((labels == requested.cpu()).double().mean())
    hist = class_histogram(labels)
    feats = dg.features(clf, images).cpu().double().numpy()
    return dict(classes=effective_classes(hist),
                classes_confident=effective_classes(class_histogram(labels[sure])),
                confident=float(sure.double().mean()),
                frechet=float(dg.frechet_distance(feats, real_feats)),
                pixel_std=float(images.std(dim=0).mean()),
                shape_std=shape_std(images, labels if requested is None else requested),
                label_agreement=agreement,
                histogram=[round(float(h), 4) for h in hist])

@torch.no_grad()
def style_spread(G, ws):
    """The style_spread of the module docstring for G and ws [N, num_ws, w_dim] (ToRGB layers,
    which set the colour, are left out)."""
    from scripts.tools.sefa import style_layers    # every modulated layer with the w index it reads
    spreads = []
    for w_idx, kind, affine in style_layers(G):
        if kind == 'conv':
            styles = affine(ws[:, w_idx])
            spreads.append(float((styles.std(dim=0) / styles.abs().mean(dim=0).clamp(min=1e-8)).mean()))
    return sum(spreads) / len(spreads)

@torch.no_grad()
def latent_spread(G, data, num_labels=20, per_label=8, seed=0):
    """The latent_spread of the module docstring (None when dataset `data` has no labels of G's size)."""
    from training.dataset import DatasetError, ImageFolderDataset
    from training.label_groups import dataset_labels
    try:
        ds = ImageFolderDataset(data, use_labels=True)
        if ds.label_dim != G.c_dim:
            return None
        labels = dataset_labels(ds)
    except DatasetError:
        return None
    device = next(G.parameters()).device
    rnd = np.random.RandomState(seed)
    fake_std, real_std = [], []
    for k in np.unique(np.linspace(0, G.c_dim - 1, num_labels).round().astype(int)):
        members = np.flatnonzero(labels == k)
        if members.size < 2:
            continue
        z = torch.from_numpy(np.stack([np.random.RandomState(seed + i).randn(G.z_dim) for i in range(per_label)])).float().to(device)
        c = torch.nn.functional.one_hot(torch.full([per_label], int(k)), G.c_dim).float().to(device)
        fake_std.append(float(dg.render(G, G.mapping(z, c)).std(dim=0).mean()))
        picked = rnd.choice(members, size=min(per_label, members.size), replace=False)
        reals = torch.from_numpy(np.stack([ds[int(i)][0] for i in picked])).float() / 127.5 - 1
        real_std.append(float(reals.std(dim=0).mean()))
    return float(np.mean(fake_std) / np.mean(real_std)) if real_std else None

@torch.no_grad()
def d_label_preference(D, data, num, seed=0):
    """The d_label_preference of the module docstring: `num` real images of dataset `data` (its
    dataset.json labels), each scored with its label and with a random other one."""
    from training.dataset import DatasetError, ImageFolderDataset
    try:
        ds = ImageFolderDataset(data, use_labels=True)
        ds.get_label(0)
    except DatasetError as err:
        raise SystemExit(f'{err} (--data must be the labelled training data of the conditional model)') from None
    rnd = np.random.RandomState(seed)
    idx = rnd.permutation(len(ds))[:num]
    device = next(D.parameters()).device
    items = [ds[i] for i in idx]    # (image, one-hot label)
    images = torch.from_numpy(np.stack([image for image, _ in items])).float().to(device) / 127.5 - 1
    labels = torch.from_numpy(np.stack([label for _, label in items])).float().to(device)
    own = labels.argmax(dim=1)
    other = (own + torch.from_numpy(rnd.randint(1, labels.shape[1], size=len(idx))).to(device)) % labels.shape[1]
    right = D(images, labels).flatten()
    wrong = D(images, torch.nn.functional.one_hot(other, labels.shape[1]).float()).flatten()
    return float((right > wrong).double().mean())

def prior_of(path):
    """The label prior of a labelled dataset: the frequency of each of its labels."""
    from training.dataset import DatasetError, ImageFolderDataset
    from training.self_conditioning import label_prior
    try:
        ds = ImageFolderDataset(path, use_labels=True)
    except DatasetError as err:
        raise click.ClickException(f'--prior {path}: {err}') from err
    if not ds.has_labels:
        raise click.ClickException(f'--prior {path} has no labels: pass the cluster-labelled data the run was trained on.')
    return label_prior(ds)

@click.command()
@click.argument('paths', nargs=-1, metavar='SNAPSHOT_OR_RUN...')
@click.option('--data', default='datasets/mnist-ul32.zip', show_default=True, help='The training dataset (the Frechet reference)')
@click.option('--num', type=click.IntRange(min=2), default=500, show_default=True, help='Fakes per snapshot')
@click.option('--classifier', default=None, help='Digit classifier (default results/models/digit_classifier.pt)')
@click.option('--json', 'json_path', default=None, help='Also write the rows here')
@click.option('--note', default='', help='A sentence stored with the rows (what the snapshots are)')
@click.option('--every', type=float, default=None, help='Of a run folder, only the snapshots at multiples of this kimg, and the newest')
@click.option('--net', type=click.Choice(['G_ema', 'G']), default='G_ema', show_default=True, help='Which generator of a snapshot to score (G: the raw, not averaged, weights)')
@click.option('--prior', default=None, help='Cluster-labelled training data of a self-conditioned run: score its snapshots as the unconditional generator (clusters drawn at this data\'s frequencies)')
@dg.margin_option
def main(paths, data, num, classifier, json_path, note, every, net, prior, margin):
    """The digit classifier's verdict on the fakes of network pickles or run folders."""
    from training.self_conditioning import self_conditioned
    device = dg.pick_device()
    prior_path, prior = prior, (None if prior is None else prior_of(prior))
    clf = dg.load_classifier(classifier, device=device)
    real = dg.load_real(data, 2 * num)
    real_feats = dg.features(clf, real[:num]).cpu().double().numpy()
    rows = {'data': verdict(real[num:], clf, real_feats)}    # other real images: the reference row
    for path in snapshots(paths, every):
        with open(path, 'rb') as f:
            snapshot = legacy.load_network_pkl(f)
        if snapshot.get(net) is None:
            raise click.ClickException(f'{path} holds no {net}; score G_ema (--net=G_ema).')
        G = snapshot[net].eval().requires_grad_(False).to(device)
        if prior is not None:
            if G.c_dim != len(prior):
                raise click.ClickException(f'{path}: G has {G.c_dim} labels, --prior {prior_path} {len(prior)}: pass the data the run was trained on.')
            spread = latent_spread(G, prior_path)
            G = self_conditioned(G, prior)
        else:
            spread = latent_spread(G, data) if G.c_dim > 0 else None
        ws = dg.latents(G, num, seed=0)
        requested = dg.requested_classes(G, num, seed=0)
        if G.c_dim not in (0, 10):
            requested = None    # labels that are not digits (a self-conditioned G's clusters): scored as unconditional
        rows[path] = verdict(dg.render(G, ws, margin=margin), clf, real_feats, requested)
        rows[path]['style_spread'] = style_spread(G, ws)
        if spread is not None or G.c_dim > 0:
            rows[path]['latent_spread'] = spread
        if G.c_dim > 0 and snapshot.get('D') is not None and prior is None:
            rows[path]['d_label_preference'] = d_label_preference(snapshot['D'].eval().requires_grad_(False).to(device), data, num)
    for path, r in rows.items():
        agree = '' if r['label_agreement'] is None else f'  label_agreement {r["label_agreement"]:.3f}'
        agree += f'  style_spread {r["style_spread"]:.3f}' if 'style_spread' in r else ''
        agree += f'  latent_spread {r["latent_spread"]:.3f}' if r.get('latent_spread') is not None else ''
        agree += f'  d_label_preference {r["d_label_preference"]:.3f}' if 'd_label_preference' in r else ''
        print(f'{path}: classes {r["classes"]:.2f}  confident {r["confident"]:.3f}  classes_confident {r["classes_confident"]:.2f}  '
              f'frechet {r["frechet"]:.1f}  pixel_std {r["pixel_std"]:.3f}  shape_std {r["shape_std"]:.3f}' + agree)
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(dict(command=dg.command_line('scripts.experiments.digit_diversity'), num=num, data=data, note=note,
                           prior=prior_path, margin=margin, rows=rows), f, indent=1)

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
