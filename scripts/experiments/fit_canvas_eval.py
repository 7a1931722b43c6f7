"""How well does projector.py --fit-canvas --fit-zoom find the canvas of real, unaligned digits?

    python scripts/experiments/fit_canvas_eval.py --num-digits 50

Targets: held-out MNIST test digits (index >= 8000, the digit classifier trains below), placed
and coloured as dataset_tool.py --place=upper-left --content-scale=0.5 --colorize does for the
training set, then moved by a random offset d in [-R/4, R/4]^2 and zoomed by a random factor s
in [0.75, 1.5] (log-uniform) about the centre c of the training quadrant. That is exactly the
image the canvas with origin c - (c + d) / s and zoom s sees (mspe_plugin.fit.resample_on_canvas),
the known canvas. Draws that push more than 10% of the digit's ink out of the frame are redrawn.

Each model projects each target twice (W space, or W+ with --w-plus; the offline pixel loss, the same steps):
  estimated  from the training canvas with the canvas found (--fit-canvas --fit-zoom: coarse
             search over origin and zoom scored with the mean w of every class, restarts, joint
             refinement);
             With --fit-method=anchor instead: the canvas on which the model's typical content
             frame (median centre and extent of 1000 of its samples) lands on the target's,
             then w projected on it from the best of three short starts (w_avg and the two
             samples nearest the target there; the "search" columns then judge that canvas);
  known      on the known canvas (only w is optimised).
Reported per model: the share of targets whose estimated origin is within 1 training pixel (both
axes) and zoom within 5% of the known canvas (for the coarse search's best placement alone and
after the fit), the same share among the targets whose digit stays off the frame's edge (none cut
off: mspe_plugin.fit.touches_frame), the median errors, and the reconstruction PSNR (dB, against the target) with
the canvas estimated and known. --zoom-range=1,1 makes shift-only targets (the zoom is then
known and not fitted); --targets=generated replaces the real digits by each model's own digits
rendered on the known canvas (a control: there the model can draw the target exactly where the
canvas says, so misses are the search's). Writes a JSON file.
"""

import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _path in (os.path.join(ROOT, 'stylegan2_ada_vendor'), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import click
import numpy as np
import PIL.Image
import torch

import dataset_tool  # noqa: E402  (the vendored host's dataset tool: placement and colours)
import projector  # noqa: E402
from mspe_plugin import fit, register  # noqa: E402
from mspe_plugin.encoding import Canvas  # noqa: E402

FIGURE_COLUMNS = 10                 # Targets shown in the figure.
HELD_OUT = 8000                     # MNIST test digits below this index train the digit classifier.

#----------------------------------------------------------------------------
# Targets.

def training_placement(digit, R, rng):
    """A 28x28 uint8 digit where the models were trained: the upper-left quadrant, coloured
    (dataset_tool's placement and colours). [1, 3, R, R] in [-1, 1]."""
    img = dataset_tool.place_on_canvas(PIL.Image.fromarray(digit, 'L'), (R, R), 'upper-left', 0.5, 0, rng, PIL.Image.LANCZOS)
    img = dataset_tool.colorize(img, dataset_tool.random_colour(rng))
    return torch.from_numpy(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1)[None]

def known_canvas(offset, zoom, R):
    """The canvas on which the training quadrant, zoomed by `zoom` about its centre c, lands moved
    by `offset` (dy, dx) output pixels: output p shows training c + (p - c - offset) / zoom."""
    c = R / 4 - 0.5
    return Canvas(origin=tuple(c - (c + d) / zoom for d in offset), zoom=zoom, size=(R, R))

def random_placements(rng, R, max_offset=None, zoom_range=(0.75, 1.5)):
    """Endless (offset, zoom, known canvas) draws: offset uniform in +- max_offset (None = R/4)
    per axis, zoom log-uniform in zoom_range."""
    max_offset = R / 4 if max_offset is None else max_offset
    while True:
        offset = tuple(float(v) for v in rng.uniform(-max_offset, max_offset, size=2))
        zoom = float(np.exp(rng.uniform(*np.log(zoom_range))))
        yield offset, zoom, known_canvas(offset, zoom, R)

@torch.no_grad()
def generated_targets(G, count, seed, zoom_range=(0.75, 1.5)):
    """The model's own digits (class k = i mod c_dim, psi 0.7) rendered on random known canvases:
    targets the model can draw exactly where the canvas says, so a miss is the search's fault."""
    R = G.img_resolution
    device = next(G.parameters()).device
    rng = np.random.default_rng(seed)
    placements = random_placements(rng, R, zoom_range=zoom_range)
    z = torch.from_numpy(rng.standard_normal([count, G.z_dim])).to(device, torch.float32)
    c = torch.zeros([count, G.c_dim], device=device)
    if G.c_dim > 0:
        c[torch.arange(count), torch.arange(count) % G.c_dim] = 1
    ws = G.mapping(z, c, truncation_psi=0.7)
    targets = []
    for i in range(count):
        offset, zoom, canvas = next(placements)
        target = G.synthesis(ws[i:i + 1], canvas=canvas, noise_mode='const').clamp(-1, 1).cpu()
        targets.append(dict(index=i, label=int(i % G.c_dim) if G.c_dim else -1, offset=offset, canvas=canvas, target=target))
    return targets

def make_targets(mnist_dir, count, R, seed, max_offset=None, zoom_range=(0.75, 1.5), min_ink=0.9):
    """`count` held-out digits at random placements: list of dict(index, label, canvas, target
    [1, 3, R, R] in [-1, 1]). Placements losing more than 1 - min_ink of the ink are redrawn."""
    digits = dataset_tool.read_idx(os.path.join(mnist_dir, 't10k-images-idx3-ubyte.gz'), 2051)
    labels = dataset_tool.read_idx(os.path.join(mnist_dir, 't10k-labels-idx1-ubyte.gz'), 2049)
    if len(digits) <= HELD_OUT:
        raise click.ClickException(f'{mnist_dir} holds {len(digits)} test digits; the held-out ones start at {HELD_OUT}.')
    rng = np.random.default_rng(seed)
    picks = rng.choice(np.arange(HELD_OUT, len(digits)), size=count, replace=False)
    placements = random_placements(rng, R, max_offset, zoom_range)
    targets = []
    for index in picks:
        aligned = training_placement(digits[index], R, np.random.default_rng([seed, int(index)]))
        ink = float((aligned + 1).sum())
        while True:
            offset, zoom, canvas = next(placements)
            target = fit.resample_on_canvas(aligned, canvas, R)
            if float((target + 1).sum()) >= min_ink * ink * zoom ** 2:
                break
        targets.append(dict(index=int(index), label=int(labels[index]), offset=offset, canvas=canvas, target=target))
    return targets

#----------------------------------------------------------------------------
# The measurement.

def psnr(a, b):
    """PSNR (dB) of two [1, C, H, W] images in [-1, 1]."""
    return float(10 * torch.log10(4 / (a - b).square().mean().clamp_min(1e-10)))

def evaluate_fit(G, targets, num_steps, seed, zoom_search=(0.7, 1.6), w_avg_samples=2000, device='cpu', log=print, margin=0, w_plus=False,
                 fit_method='search', images=None):
    """Project every target with the canvas estimated and known; one row per target.
    zoom_search None: the zoom is known to be 1 (shift-only targets), only the origin is fitted.
    margin: the inference margin of every canvas (Canvas.margin; output pixels drawn beyond each side);
    w_plus: project into W+ (one w per layer) instead of W; fit_method: projector.project's
    ('search', or 'anchor': the canvas on which G's typical content frame lands on the target's); images: a list that receives (target,
    reconstruction estimated, reconstruction known) of the first FIGURE_COLUMNS targets."""
    rows = []
    R = G.img_resolution
    for i, t in enumerate(targets):
        target = ((t['target'][0] + 1) * 127.5).clamp(0, 255).to(device)
        common = dict(num_steps=num_steps, loss='pixel', seed=seed, w_avg_samples=w_avg_samples, device=device, w_plus=w_plus)
        start = time.time()
        torch.manual_seed(seed)
        est = projector.project(G, target, canvas=Canvas(size=(R, R), margin=margin), fit_canvas=True, fit_zoom=zoom_search is not None,
                                search_zoom_range=zoom_search or (1.0, 1.0), fit_method=fit_method, **common)
        torch.manual_seed(seed)
        truth = dataclasses.replace(t['canvas'], margin=margin)
        known = projector.project(G, target, canvas=truth, **common)
        with torch.no_grad():
            recon_est = G.synthesis(est.ws[-1:].to(device), canvas=est.canvases[-1], noise_mode='const').clamp(-1, 1).cpu()
            recon_known = G.synthesis(known.ws[-1:].to(device), canvas=truth, noise_mode='const').clamp(-1, 1).cpu()
        found = est.canvases[-1]
        row = dict(index=t['index'], label=t['label'], offset=list(t['offset']),
                   origin_true=list(truth.origin), zoom_true=truth.zoom,
                   origin_est=list(found.origin), zoom_est=found.zoom,
                   origin_search=list(est.candidates[0].origin), zoom_search=est.candidates[0].zoom,
                   class_search=est.candidates[0].latent,
                   origin_error=max(abs(a - b) for a, b in zip(found.origin, truth.origin)),
                   zoom_error=abs(found.zoom / truth.zoom - 1),
                   psnr_estimated=psnr(recon_est, t['target']), psnr_known=psnr(recon_known, t['target']),
                   touches_frame=bool(fit.touches_frame(t['target'])[0]))
        if images is not None and len(images) < FIGURE_COLUMNS:
            images.append((t['target'], recon_est, recon_known))
        rows.append(row)
        log(f'  {i + 1:>3d}/{len(targets)} digit {t["label"]}: origin {fmt(truth.origin)} -> {fmt(found.origin)}, '
            f'zoom {truth.zoom:.3f} -> {found.zoom:.3f}, PSNR est {row["psnr_estimated"]:.2f} known {row["psnr_known"]:.2f} dB '
            f'({time.time() - start:.0f} s)')
    return rows

def save_figure(images, path, scale=3):
    """A grid PNG: targets in the first row, then per model its reconstructions with the canvas
    estimated and with it known, one column per target. images: {model: [(target, est, known)]}."""
    names = list(images)
    shared = all(torch.equal(a[0], b[0]) for name in names for a, b in zip(images[name], images[names[0]]))
    modes = ('estimated', 'known') if shared else ('targets', 'estimated', 'known')     # generated targets: each model's own
    rows = [[case[0] for case in images[names[0]]]] if shared else []
    rows += [[case[('targets', 'estimated', 'known').index(mode)] for case in images[name]] for name in names for mode in modes]
    to_uint8 = lambda img: ((img[0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
    grid = np.concatenate([np.concatenate([to_uint8(img) for img in row], axis=1) for row in rows], axis=0)
    PIL.Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), PIL.Image.NEAREST).save(path)
    return (['targets'] if shared else []) + [f'{name} {mode}' for name in names for mode in modes]

def fmt(pair):
    return f'({pair[0]:.2f}, {pair[1]:.2f})'

def summarize(rows):
    """Shares within tolerance and means over the rows of one model; the keys ending in _search
    judge the coarse search's best placement alone, before any optimisation."""
    origin_ok = [r['origin_error'] <= 1.0 for r in rows]
    zoom_ok = [r['zoom_error'] <= 0.05 for r in rows]
    search_origin_ok = [max(abs(a - b) for a, b in zip(r['origin_search'], r['origin_true'])) <= 1.0 for r in rows]
    search_zoom_ok = [abs(r['zoom_search'] / r['zoom_true'] - 1) <= 0.05 for r in rows]
    inside = [a and b for a, b, r in zip(origin_ok, zoom_ok, rows) if not r.get('touches_frame', False)]
    return dict(n=len(rows),
                origin_within_1px_search=round(float(np.mean(search_origin_ok)), 3),
                zoom_within_5pct_search=round(float(np.mean(search_zoom_ok)), 3),
                origin_within_1px=round(float(np.mean(origin_ok)), 3),
                zoom_within_5pct=round(float(np.mean(zoom_ok)), 3),
                both=round(float(np.mean([a and b for a, b in zip(origin_ok, zoom_ok)])), 3),
                n_inside=len(inside),           # targets whose digit does not reach the frame's edge (none cut off)
                both_inside=round(float(np.mean(inside)), 3) if inside else None,
                origin_error_median=round(float(np.median([r['origin_error'] for r in rows])), 3),
                zoom_error_median=round(float(np.median([r['zoom_error'] for r in rows])), 4),
                psnr_estimated=round(float(np.mean([r['psnr_estimated'] for r in rows])), 2),
                psnr_known=round(float(np.mean([r['psnr_known'] for r in rows])), 2))

def parse_range(text, flag, example):
    """'MIN,MAX' -> (MIN, MAX) with 0 < MIN <= MAX, else one sentence."""
    try:
        lo, hi = (float(v) for v in text.split(','))
        fit.zoom_grid((lo, hi))
    except ValueError:
        raise click.BadParameter(f'{flag} takes MIN,MAX with 0 < MIN <= MAX, such as {example}; got {text!r}.')
    return (lo, hi)

#----------------------------------------------------------------------------

@click.command()
@click.option('--mspe', 'mspe_pkl', default=os.path.join(ROOT, 'results', 'models', 'default.pkl'), show_default=True, help='MS-PE snapshot (default: the --cfg=mspe model)')
@click.option('--baseline', 'baseline_pkl', default=os.path.join(ROOT, 'results', 'models', 'baseline.pkl'), show_default=True, help='Baseline snapshot')
@click.option('--num-digits', type=click.IntRange(min=1), default=50, show_default=True, help='Held-out test digits')
@click.option('--num-steps', type=click.IntRange(min=1), default=100, show_default=True, help='Projection steps (each mode)')
@click.option('--zoom-range', default='0.75,1.5', show_default=True, help='Zooms of the targets, MIN,MAX (1,1: shifts only, zoom not fitted)', metavar='MIN,MAX')
@click.option('--zoom-search', default='0.7,1.6', show_default=True, help='Zoom range of the coarse search, MIN,MAX', metavar='MIN,MAX')
@click.option('--targets', 'source', type=click.Choice(['real', 'generated']), default='real', show_default=True,
              help='Held-out MNIST digits, or each model\'s own digits rendered on the known canvas (a control: the model can draw them there)')
@click.option('--mnist', default=os.path.join(ROOT, 'tests', 'data', 'mnist'), show_default=True, help='Folder with the MNIST t10k IDX files')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--fit-method', type=click.Choice(['search', 'anchor']), default='search', show_default=True,
              help='How the canvas is estimated (projector.py --fit-method): the search, or anchoring to the typical content frame')
@click.option('--w-plus', is_flag=True, help='Project into W+ (one w per layer, projector.py --w-plus) instead of W')
@click.option('--margin', type=click.IntRange(min=0), default=0, show_default=True, help='Inference margin of every canvas (output pixels drawn beyond each side and cropped), both models')
@click.option('--margin-mspe', type=click.IntRange(min=0), default=None, help='Inference margin of the --mspe model alone (e.g. the margin it was trained with) [default: --margin]')
@click.option('--out', default=os.path.join(ROOT, 'results', 'paper', 'fit_canvas_eval.json'), show_default=True, help='JSON file to write')
def main(mspe_pkl, baseline_pkl, num_digits, num_steps, zoom_range, zoom_search, source, mnist, seed, fit_method, w_plus, margin, margin_mspe, out):
    """Canvas estimation on moved and zoomed real digits: MS-PE against the baseline."""
    zoom_range, zoom_search = (parse_range(text, flag, example) for text, flag, example in
                               ((zoom_range, '--zoom-range', '0.75,1.5'), (zoom_search, '--zoom-search', '0.7,1.6')))
    shifts_only = zoom_range == (1.0, 1.0)
    margin_mspe = margin if margin_mspe is None else margin_mspe
    for path in (os.path.join(mnist, 't10k-images-idx3-ubyte.gz'), os.path.join(mnist, 't10k-labels-idx1-ubyte.gz')):
        if not os.path.isfile(path):
            raise click.ClickException(f'{path} does not exist; pass --mnist with the folder of the MNIST test split.')
    device = projector.parse_device('auto')
    models = {}
    for name, path in (('mspe', mspe_pkl), ('baseline', baseline_pkl)):
        if not os.path.isfile(path):
            raise click.ClickException(f'--{name} {path} does not exist; pass a network snapshot.')
        models[name] = register.with_canvas_support(projector.load_generator(path, device))
    R = models['mspe'].img_resolution
    if any((G.img_resolution, G.img_channels) != (R, 3) for G in models.values()):
        raise click.ClickException('Both models must draw RGB images at the same resolution (colour digits).')

    targets = make_targets(mnist, num_digits, R, seed, zoom_range=zoom_range) if source == 'real' else None
    start = time.time()
    rows, summary, images = {}, {}, {}
    for name, G in models.items():
        print(f'{name}:')
        own = targets if targets is not None else generated_targets(G, num_digits, seed, zoom_range)
        rows[name] = evaluate_fit(G, own, num_steps, seed, zoom_search=None if shifts_only else zoom_search, device=device, w_plus=w_plus,
                                  margin=margin_mspe if name == 'mspe' else margin,
                                  fit_method=fit_method, images=images.setdefault(name, []))
        summary[name] = summarize(rows[name])
    print(f'{"model":>9} {"n":>3} {"search: origin<=1px":>19} {"zoom<=5%":>9} {"fit: origin<=1px":>16} {"zoom<=5%":>9} {"both":>5} {"both, digit inside":>18} '
          f'{"med.err px":>10} {"med.err zoom":>12} {"PSNR est":>9} {"PSNR known":>10}')
    for name, s in summary.items():
        print(f'{name:>9} {s["n"]:>3} {s["origin_within_1px_search"]:>19.2f} {s["zoom_within_5pct_search"]:>9.2f} '
              f'{s["origin_within_1px"]:>16.2f} {s["zoom_within_5pct"]:>9.2f} {s["both"]:>5.2f} {s["both_inside"] if s["both_inside"] is not None else float("nan"):>8.2f} of {s["n_inside"]:>2d} inside '
              f'{s["origin_error_median"]:>10.2f} {s["zoom_error_median"]:>12.3f} {s["psnr_estimated"]:>9.2f} {s["psnr_known"]:>10.2f}')
    config = dict(mspe=os.path.relpath(mspe_pkl, ROOT), baseline=os.path.relpath(baseline_pkl, ROOT), resolution=R,
                  targets=source, num_digits=num_digits, num_steps=num_steps, zoom_search=list(zoom_search), seed=seed, margin=margin,
                  margin_mspe=margin_mspe,
                  offsets=f'uniform in [-{R / 4:g}, {R / 4:g}]^2 px', zooms=f'log-uniform in [{zoom_range[0]:g}, {zoom_range[1]:g}]',
                  zoom_fitted=not shifts_only,
                  fit_method=fit_method, loss=projector.PyramidLoss.name, space='W+' if w_plus else 'W', seconds=round(time.time() - start, 1),
                  command='python scripts/experiments/fit_canvas_eval.py ' + ' '.join(sys.argv[1:]))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure = os.path.splitext(out)[0] + '.png'
    config['figure_rows'] = save_figure(images, figure)
    with open(out, 'w') as f:
        json.dump(dict(config=config, summary=summary, rows=rows), f, indent=1)
    print(f'wrote {out} and {figure}')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
