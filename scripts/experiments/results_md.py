"""Write results/README.md (every number, figure and command) from the experiment scripts' JSON
files, and the summary section of the top-level README between its results markers. No number
is typed by hand: each one is read from a file a script wrote.

    python scripts/results_md.py            # after the experiment scripts (see results/README.md)
"""

import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'results')
BEGIN, END = '<!-- results:begin (scripts/results_md.py) -->', '<!-- results:end -->'
LABELS = {'baseline': 'Baseline (const)', 'sspe': 'SS-PE', 'mspe': 'MS-PE', 'mspe_rs': 'MS-PE + resize',
          'none': 'Baseline DDPM'}

def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)

def table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)

def label(name):
    return LABELS.get(name, name)

#----------------------------------------------------------------------------

def models_section():
    info = load('models/models.json')
    if info is None:
        return None
    rows = [[label(n), m['kimg'], m['snapshot'], m['seconds_per_kimg']] for n, m in info['models'].items()]
    return '\n'.join(['## The digit models', '',
        f'`{info["command"]}`: colour MNIST (test split) in the upper-left quadrant, 32 px, '
        f'{info["settings"]}.', '',
        table(['model', 'kimg', 'snapshot', 's/kimg (last tick, 1 core, shared)'], rows), '',
        'Their training grids: ' + ', '.join(f'`results/models/{n}-fakes.png`' for n in info['models']) + '.']
        + (['', info['note']] if info.get('note') else []))

def _diversity_rows(d, name):
    return [[name(k) if k != 'data' else 'data (other real images)',
             f'{r["classes"]:.2f}', f'{r["confident"]:.3f}', f'{r["classes_confident"]:.2f}', f'{r["frechet"]:.1f}', f'{r["pixel_std"]:.3f}',
             '-' if r.get('shape_std') is None else f'{r["shape_std"]:.3f}',
             '-' if r.get('label_agreement') is None else f'{r["label_agreement"]:.3f}',
             '-' if r.get('style_spread') is None else f'{r["style_spread"]:.3f}',
             '-' if r.get('d_label_preference') is None else f'{r["d_label_preference"]:.3f}',
             ' '.join(f'{h:.2f}' for h in r['histogram'])] for k, r in d['rows'].items()]

DIVERSITY_HEADER = ['model', 'classes', 'confident', 'classes (confident)', 'Frechet', 'pixel std', 'shape std', 'label agreement', 'style spread', 'D label pref.', 'class histogram 0..9']

def _probe_name(path):
    """'<run folder> @ <kimg> kimg' for a snapshot path."""
    run = os.path.basename(os.path.dirname(path))
    kimg = os.path.splitext(os.path.basename(path))[0].rsplit('-', 1)[-1]
    return f'{run} @ {float(kimg):g} kimg'

# The collapse probes, in the order they were run (each written by digit_diversity.py --json).
PROBE_FILES = ('collapse_probes_easy.json', 'collapse_probes_colour.json', 'collapse_probes_cond.json', 'collapse_probes_lr.json',
               'collapse_probes_batch.json', 'collapse_probes_width.json', 'collapse_probes_d.json', 'collapse_probes_length.json',
               'collapse_probes_pack.json', 'collapse_probes_labels.json')

def probes_section():
    """The collapse probes of earlier sessions (unconditional models, then the conditional recipe)."""
    parts = []
    for name in PROBE_FILES:
        found = load(name)
        if found is not None:
            parts += ['', f'Probe runs that looked for the cause of the collapse, {found["note"]} '
                      f'(`{found["command"]}`, `results/{name}`):', '',
                      table(DIVERSITY_HEADER, _diversity_rows(found, _probe_name))]
    if not parts:
        return None
    return '\n'.join(['## The collapse probes', '',
        'Before the committed (class-conditional) models, every unconditional setting we trained collapsed to one '
        'digit shape (README, "Reproducing the paper on digits"). These tables are the probes that looked for the '
        'cause and for a setting that trains; the columns are those of the first table. In their notes, "the committed '
        'models" or "runs" are the unconditional 192-kimg models committed at the time (in git history).'] + parts)

def diversity_section():
    d = load('digit_diversity.json')
    if d is None:
        return None
    rows = _diversity_rows(d, lambda k: label(os.path.splitext(os.path.basename(k))[0]))
    return '\n'.join(['## Do the models draw clean, diverse digits?', '',
        f'`{d.get("command", "python scripts/digit_diversity.py")}`: {d["num"]} fakes per model (seeds 0..{d["num"] - 1}, '
        'psi 1, const noise) read by the digit classifier. classes = exp(entropy) of the predicted-class '
        'histogram (10 = all digits equally, 1 = one digit: mode collapse); confident = share called a digit '
        'with p > 0.9 (a noisy blob can get there too: read it with the Frechet distance); classes (confident) = the class count over those alone; Frechet = distance of classifier features to real images; '
        'shape std = per-pixel std of the colour-blind shapes (max over RGB) within each class (asked for, or as classified), averaged: '
        'near 0 = one shape per class, a collapse the class count cannot see; '
        'label agreement (class-conditional models only) = share of fakes the classifier assigns to the digit they were drawn for '
        '(seed i asks for digit i mod 10); style spread = how much the latents move the conv layers\' modulation styles '
        '(std across the fakes over mean |style|, per channel, averaged; about 0.77 at initialisation, near 0 = one shape for every latent); D label pref. (full snapshots of conditional models) = share of real images their D scores '
        'higher with their own label than with a wrong one (0.5 = D ignores the label).', '',
        table(DIVERSITY_HEADER, rows)])

def progress_section():
    """The committed models' verdicts at several snapshots of their runs (digit_diversity.py --every)."""
    d = load('training_progress.json')
    if d is None:
        return None
    return '\n'.join(['## How the committed models learned', '',
        f'`{d["command"]}` ({d["note"]}): the columns of the table above, with D label pref. from each full snapshot\'s D.', '',
        table(DIVERSITY_HEADER, _diversity_rows(d, _probe_name))])

def balance_section(every_kimg=20):
    """D's verdicts during the digit runs (scripts/run_stats.py): who wins, G or D."""
    d = load('training_balance.json')
    if d is None:
        return None
    rows = []
    for run, ticks in d['runs'].items():
        for i, t in enumerate(ticks):
            # The first tick past each multiple of every_kimg (ticks end a batch past 4 kimg), and the last.
            crossed = i > 0 and None not in (t['kimg'], ticks[i - 1]['kimg']) and \
                int(t['kimg'] // every_kimg) > int(ticks[i - 1]['kimg'] // every_kimg)
            if i == 0 or crossed or i == len(ticks) - 1:
                rows.append([f'`{run.rstrip("/")}`', f'{t["kimg"]:.1f}' if t['kimg'] is not None else '-'] +
                            [f'{t[k]:.3f}' if t[k] is not None else '-' for k in ('real_sign', 'fake_sign', 'G_loss', 'D_loss')])
    return '\n'.join(['## Who wins, G or D?', '',
        f'`{d["command"]}`: per tick, the mean sign of D\'s logits on reals (+1 = every real called real) and on '
        'fakes (-1 = every fake caught), and the mean losses, every {every_kimg} kimg and the last tick of each run. '
        'A fake sign near -1 means D rejects nearly every fake.'.format(every_kimg=every_kimg), '',
        table(['run', 'kimg', 'real sign', 'fake sign', 'G loss', 'D loss'], rows)])

def chase_section():
    """How many steps G needs to fool a frozen D, and D to catch G again (scripts/gd_chase.py)."""
    d = load('gd_chase.json')
    if d is None:
        return None
    rows = []
    for run in d['runs']:
        for i, p in enumerate(run['phases']):
            rows.append([f'`{run["snapshot"]}`' if i == 0 else '', p['who'], p['steps'], f'{p["kimg"]:.2f}',
                         'yes' if p['flipped'] else 'no', f'{p["fake_sign_start"]:+.3f}', f'{p["fake_sign_end"]:+.3f}',
                         f'{p["image_change"]:.3f}' if 'image_change' in p else '-'])
    batch = sorted({run['batch'] for run in d['runs']})
    return '\n'.join(['## How far apart are G and D?', '',
        f'`{d["command"]}`: from each full snapshot, G trains against a frozen D until D calls most fakes of fixed '
        'latents real (G phase), then D against that frozen G until it calls them fake again (D phase), in turn, '
        'with the run\'s own optimisers (Adam settings scaled for lazy regularisation, the Adam moments saved with the '
        f'snapshot). steps = minibatches of {"/".join(str(b) for b in batch)} images; a tick is 4 kimg; '
        'fake sign = mean sign of D\'s logits on those fakes before and after the phase; image change = mean |change| '
        'of those fakes over the G phase, in [-1, 1] pixels.', '',
        table(['snapshot', 'phase', 'steps', 'kimg', 'flipped', 'fake sign before', 'after', 'image change'], rows)])

def classifier_section():
    d = load('digit_classifier.json')
    if d is None:
        return None
    acc = d['accuracy']
    rows = [[k, f'{v:.4f}'] for k, v in acc.items()]
    return '\n'.join(['## The measuring instrument: a position-robust digit classifier', '',
        f'`{d["command"]}`: trained on MNIST test digits {d["train"]["train_digits"][0]}..{d["train"]["train_digits"][1] - 1} '
        f'with random placement, scale and colour; accuracy on the held-out digits '
        f'{d["heldout_digits"][0]}..{d["heldout_digits"][1] - 1} at every placement (min {d["min_accuracy"]:.4f}):', '',
        table(['placement / canvas / colour', 'accuracy'], rows)])

def shift_summary(d):
    rows = []
    enlarged = d.get('enlarged', {})
    for name, curve in d['models'].items():
        big = enlarged.get(name, {})
        ints = [r for r in curve if float(r['shift']).is_integer() and r['shift'] > 0]
        fracs = [r for r in curve if not float(r['shift']).is_integer()]
        at = {r['shift']: r for r in curve}
        rows.append([label(name),
                     f'{np.mean([r["psnr"] for r in ints]):.2f}', f'{np.mean([r["psnr"] for r in fracs]):.2f}' if fracs else '-',
                     f'{at[8.0]["psnr"]:.2f}' if 8.0 in at else '-', f'{at[8.5]["psnr"]:.2f}' if 8.5 in at else '-',
                     f'{np.mean([r["ssim"] for r in curve if r["shift"] > 0]):.3f}',
                     f'{np.mean([r["class_agreement"] for r in curve if r["shift"] > 0]):.3f}',
                     f'{min(r["class_agreement"] for r in curve):.3f}'] +
                    [f'{at[d]["class_agreement"]:.3f}' if d in at else '-' for d in (4.0, 8.0)] +
                    [f'{at[d]["moved"]:.1f}' if at.get(d, {}).get('moved') is not None else '-' for d in (4.0, 8.0, 16.0)] +
                    [f'{np.mean([r["ink"] for r in curve if r["shift"] > 0]):.3f}' if all('ink' in r for r in curve) else '-'] +
                    [f'{big["moved"]:.1f}' if big.get('moved') is not None else '-'])
    return table(['model', 'PSNR int. d>0', 'PSNR frac. d', 'PSNR d=8', 'PSNR d=8.5', 'SSIM d>0', 'class agr. d>0', 'class agr. min',
                  'class agr. d=4', 'class agr. d=8', 'moved d=4', 'moved d=8', 'moved d=16', 'ink d>0', 'moved on 2x canvas'], rows)

def shift_section():
    d = load('shift_consistency.json')
    if d is None:
        return None
    return '\n'.join(['## Shift consistency (paper Fig. 2d)', '',
        f'`python scripts/shift_consistency.py`: {d["num"]} latents per model, shifts 0..16 px '
        f'(R/2, the paper\'s 0..32 px at 64 px) in {d["step"]} px steps along the diagonal; '
        'G on the moved canvas against G(0) translated by d (Lanczos-3, exact for whole pixels), '
        'on the pixels both cover. d = 8 px is one pixel of the 4x4 constant. moved = how far the digit\'s ink centre moved '
        'along the shift, in pixels (d for a digit that follows the canvas, 0 for one that stays put; - = no ink left); '
        'ink = share of renderings on moved canvases that still have ink. moved on 2x canvas = the same move on the canvas '
        '[-R/2, 3R/2]^2 (the training grid in the middle of a 2R-wide image): R/2 = 16 for a digit placed by the encoding, '
        '0 for one placed by the image border (which only zero padding can tell).', '',
        shift_summary(d), '', '![shift consistency](shift_consistency.png)'])

def eqt_section():
    d = load('eqt.json')
    if d is None:
        return None
    rows = [[label(n), f'{s["eqt_int"]:.2f}', f'{s["eqt_frac"]:.2f}'] for n, s in d['models'].items()]
    return '\n'.join(['## EQ-T (StyleGAN3\'s translation equivariance)', '',
        f'`python scripts/eqt.py`: {d["num"]} latents, one random translation each within '
        f'+-{d["max_frac"]} R per axis, PSNR (dB) of G on the moved canvas against G(0) translated.', '',
        table(['model', 'EQ-T (integer)', 'EQ-T_frac'], rows), '', '![EQ-T](eqt.png)'])

def noise_section():
    d = load('noise_std.json')
    if d is None:
        return None
    rows = [[label(n), f'{s["mean_std"]:.4f}', f'{s["max_pixel_std"]:.4f}'] for n, s in d['models'].items()]
    return '\n'.join(['## Noise dependence (paper Fig. 4)', '',
        f'`python scripts/noise_std.py`: per-pixel std of the image over {d["noises"]} noise maps for '
        f'{d["num"]} fixed latents per model (images in [-1, 1]).', '',
        table(['model', 'mean std', 'max pixel std'], rows), '', '![noise std](noise_std.png)'])

def strip_section():
    d = load('translate_strip.json')
    if d is None:
        return None
    rows = [[label(n)] + [f'{v:.2f}' for v in agr] for n, agr in d['class_agreement_with_column0'].items()]
    return '\n'.join(['## Translate strips (paper Fig. 1 / 2)', '',
        f'`python scripts/translate_strip.py`: {d["num"]} latents per model, canvas moved by k * {d["step"]} px '
        'along both axes; the table: fraction of digits the classifier reads as in column 0.', '',
        table(['model'] + [f'{s:g} px' for s in d['shifts']], rows), '', '![translate strip](translate_strip.png)'])

def multiscale_section():
    d = load('multiscale.json')
    if d is None:
        return None
    keys = list(next(iter(d['models'].values())))
    rows = [[label(n)] + [f'{s[k]:.1f}' for k in keys] for n, s in d['models'].items()]
    return '\n'.join(['## Multi-scale and beyond the border (paper Fig. 6-8, Table 1)', '',
        f'`python scripts/multiscale.py --data=datasets/mnist-ul32.zip`: {d["num"]} images per model and canvas; '
        f'{d["metric"]} against the dataset rendered on the same canvas (lower is better). Canvases: '
        'zoom 1, 1.5, 2; 2x width; `[-0.5 W, 1.5 W]`.', '',
        table(['model'] + keys, rows), '', '![multiscale](multiscale.png)'])

def inversion_section():
    d = load('inversion_shift.json')
    if d is None:
        return None
    cfg, summary = d['config'], d['summary']
    modes = cfg['modes']
    header = ['case', 'model'] + [f'{m} {q}' for m in modes for q in ('PSNR', 'SSIM', 'agree')]
    rows = []
    for case, per_model in summary.items():
        for model, per_mode in per_model.items():
            rows.append([case, label(model)] + [f'{per_mode[m][q]:.3f}' if q != 'psnr' else f'{per_mode[m][q]:.2f}'
                                                for m in modes for q in ('psnr', 'ssim', 'agreement')])
    return '\n'.join(['## Inversion of shifted and zoomed digits (paper Fig. 5 analog)', '',
        f'`{cfg["command"]}`: {cfg["num_real"]} real + {cfg["num_gen"]} generated digit(s) per model, '
        f'{cfg["num_steps"]} projection steps in {cfg["space"]}, loss {cfg["loss"]}; shifts of {cfg["shift"]} px. '
        '`known`: projected onto the canvas of the case; `fit`: canvas origin and zoom fitted. '
        '`agree`: the classifier reads the target\'s digit in the reconstruction.', '',
        table(header, rows), '', '![inversion](inversion_shift.png)'])

def ddpm_section():
    d = load('ddpm_reconstruct.json')
    if d is None:
        return None
    names = list(d['models'])
    ts = [r['t'] for r in d['models'][names[0]]['rows']]
    rows = []
    for name in names:
        res = d['models'][name]
        rows.append([label(name) + f' ({res["train_steps"]} steps)', 'kept bottom-left'] + [f'{r["kept_bottom_left"]:.2f}' for r in res['rows']])
        rows.append(['', 'class agreement'] + [f'{r["class_agreement"]:.2f}' for r in res['rows']])
    return '\n'.join(['## DDPM reconstruction at an unseen position (paper Fig. 9)', '',
        f'`{d["command"]}`: {d["num"]} held-out digits (MNIST {d["first"]}..) in the bottom-left quadrant '
        f'({d["input_kept_bottom_left"]:.2f} of the inputs have their centre of mass there), encoded to t and decoded '
        f'by the reverse process (stride {d["stride"]}), {d["seeds"]} seeds each. The models: '
        '`results/ddpm/ddpm-{none,mspe}.pt`, trained by `scripts/ddpm_train.py` (commands in its docstring; '
        'their samples: `results/ddpm/ddpm-*-samples.png`).', '',
        table(['model', 'measure'] + [f't={t}' for t in ts], rows), '',
        '![DDPM reconstructions](ddpm_reconstruct.png)', '', '![kept bottom-left vs t](ddpm_reconstruct-curve.png)'])

def bench_section():
    parts = []
    d = load('bench_pe_overhead.json')
    if d is not None:
        rows = [[f'{r["res"]} px', r['batch'], f'{r["seconds"]["host"] * 1e3:.1f}', f'{r["seconds"]["none"] * 1e3:.1f}',
                 f'{r["seconds"]["mspe"] * 1e3:.1f}', f'{r["mspe_vs_none_percent"]:+.1f}%', f'{r["mspe_vs_host_percent"]:+.1f}%']
                for r in d['rows']]
        parts += [f'`{d["command"].strip()}` ({d["device"]}, {d["threads"]} thread(s)): one G+D training step (main '
                  'phases), the variants interleaved step by step (so a busy machine slows all three alike), median ms.', '',
                  table(['res', 'batch', 'host G', '--pe=none', '--pe=mspe', 'MS-PE vs none', 'MS-PE vs host'], rows)]
    d = load('bench_host.json')
    if d is not None:
        rows = [[f'{r["res"]} px', r['batch'], f'{r["g_fwd_fused_img_s"]:.1f}', f'{r["g_fwd_nonfused_img_s"]:.1f}',
                 f'{r["gd_fwd_bwd_img_s"]:.1f}'] for r in d['rows']]
        parts += ['', f'`python scripts/bench_host.py --threads={d["threads"]} --out results/bench_host.json` ({d["device"]}, '
                  'cpu preset widths, z 128), img/s:', '',
                  table(['res', 'batch', 'G fwd fused', 'G fwd non-fused', 'G+D fwd+bwd'], rows)]
    d = load('bench_train.json')
    if d is not None:
        keys = ['resolution', 'batch', 'aug', 'kimg', 'sec_per_kimg', 'kimg_per_hour']
        rows = [[r[k] for k in keys] for r in d['results']]
        m = d['machine']
        parts += ['', f'`{d["command"]}`: the `cpu` preset trained for a few ticks, {m["cpu_count"]} cores, '
                  f'{m["torch_threads"]} torch threads; load average before {m["load_average_before"][0]}, after '
                  f'{m["load_average_after"][0]} (another job held one core: the figures are a lower bound).', '',
                  table(keys, rows)]
    if not parts:
        return None
    return '\n'.join(['## Speed', ''] + parts)

SECTIONS = [models_section, diversity_section, progress_section, probes_section, balance_section, chase_section, classifier_section, shift_section, eqt_section, noise_section, strip_section,
            multiscale_section, inversion_section, ddpm_section, bench_section]

def main():
    parts = ['# Results', '',
             'Every number below was printed into a JSON file by the script named with it; this page is '
             'generated from those files by `python scripts/results_md.py`. Runs on 2 CPU cores.']
    missing = []
    for section in SECTIONS:
        text = section()
        if text is None:
            missing.append(section.__name__.replace('_section', ''))
        else:
            parts += ['', text]
    if missing:
        parts += ['', f'Not yet produced: {", ".join(missing)}.']
    with open(os.path.join(RESULTS, 'README.md'), 'w') as f:
        f.write('\n'.join(parts) + '\n')

    # Summary in the top-level README: the headline tables, with links into results/README.md.
    summary = []
    for section in (diversity_section, shift_section, eqt_section, noise_section, multiscale_section, inversion_section, ddpm_section,
                    bench_section):
        text = section()
        if text is not None:
            lines = text.replace('](', '](results/').split('\n')
            lines[0] = '#' + lines[0]
            summary += lines + ['']
    readme_path = os.path.join(ROOT, 'README.md')
    readme = open(readme_path).read()
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme = head + BEGIN + '\n' + '\n'.join(summary) + END + tail
        with open(readme_path, 'w') as f:
            f.write(readme)
    print(f'wrote results/README.md ({len(SECTIONS) - len(missing)} sections; missing: {", ".join(missing) or "none"}) '
          f'and the README summary')

if __name__ == '__main__':
    main()
