"""Write results/README.md from its template (results/README.template.md) and the experiments'
JSON files, and the short results table of the top-level README between its markers. No number
is typed by hand: each one is read from a file a script wrote; the prose lives in the template.

    python -m scripts.experiments.results_md        # after the experiments (run_experiments.sh)

The template is a sequence of sections, each opened by a line `<!-- section: NAME -->`; the
function NAME of FILLS returns the section's placeholders ($command, $table, ...) or None when
its JSON file does not exist yet, and the section is then listed as not yet produced.
"""

import json
import os
import re
import string

import numpy as np

from scripts import ROOT

RESULTS = os.path.join(ROOT, 'results')
TEMPLATE = os.path.join(RESULTS, 'README.template.md')
BEGIN, END = '<!-- results:begin (python -m scripts.experiments.results_md) -->', '<!-- results:end -->'
LABELS = {'baseline': 'Baseline (const)', 'sspe': 'SS-PE', 'mspe': 'MS-PE', 'mspe_rs': 'MS-PE + resize',
          'default': 'MS-PE + resize + margins + plain outside'}
DDPM_LABELS = {'none': 'Baseline DDPM', 'mspe': 'MS-PE DDPM'}
SECTION_RE = re.compile(r'^<!-- section: (\w+) -->\n', re.MULTILINE)

def ddpm_label(name):
    """A reader's label for a model name of ddpm_reconstruct.model_name, e.g. 'mspe-margin16-pe-on-canvas'."""
    pe, _, rest = name.partition('-')
    label = DDPM_LABELS.get(pe, pe)
    if rest.startswith('margin'):
        margin = rest[len('margin'):].split('-')[0]
        where = 'encoding on the canvas' if rest.endswith('pe-on-canvas') else 'encoding on the content' if pe == 'mspe' else ''
        label += f', {margin} px random margins' + (f', {where}' if where else '')
    elif rest.startswith('window'):
        size = rest[len('window'):]
        whole = size.endswith('whole')
        label += f', random {size[:-len("whole")] if whole else size} px windows' + (', image whole inside' if whole else '') \
            + (', encoding on the window' if pe == 'mspe' else '')
    return label

def load(name):
    """The JSON file results/<name>, or None when it does not exist."""
    path = os.path.join(RESULTS, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)

def table(header, rows):
    """A markdown table."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)

def _order(name):
    """Sort key: the models in LABELS' order (baseline first, the border recipe last), others after."""
    return list(LABELS).index(name) if name in LABELS else len(LABELS)

def label(name):
    """Figure label of a model name or pickle path."""
    return LABELS.get(os.path.splitext(os.path.basename(name))[0], name)

def fmt(value, spec):
    return '-' if value is None else format(value, spec)

#----------------------------------------------------------------------------
# Section fills: {placeholder: text} or None.

def models():
    d = load('models/models.json')
    if d is None:
        return None
    rows = [[label(n), m['kimg'], m['snapshot'], m['seconds_per_kimg']] for n, m in d['models'].items()]
    return dict(command=d['command'], settings=d['settings'],
                table=table(['model', 'kimg', 'snapshot', 's/kimg (last tick)'], rows),
                grids=', '.join(f'[{n}](models/{n}-fakes.png)' for n in d['models']))

def classifier():
    d = load('models/digit_classifier.json')
    if d is None:
        return None
    train, held = d['train']['train_digits'], d['heldout_digits']
    return dict(command=d['command'], train_digits=f'{train[0]}..{train[1] - 1}', heldout_digits=f'{held[0]}..{held[1] - 1}',
                min_accuracy=f'{d["min_accuracy"]:.4f}',
                table=table(['placement / canvas / colour', 'accuracy'], [[k, f'{v:.4f}'] for k, v in d['accuracy'].items()]))

DIVERSITY_HEADER = ['model', 'classes', 'classes (confident)', 'confident', 'Frechet', 'shape std', 'label agreement', 'style spread',
                    'latent spread', 'D label pref.']

def _diversity_rows(rows, name):
    return [[name(k), f'{r["classes"]:.2f}', fmt(r.get('classes_confident'), '.2f'), f'{r["confident"]:.3f}', f'{r["frechet"]:.1f}',
             fmt(r.get('shape_std'), '.3f'), fmt(r.get('label_agreement'), '.3f'), fmt(r.get('style_spread'), '.3f'),
             fmt(r.get('latent_spread'), '.3f'), fmt(r.get('d_label_preference'), '.3f')]
            for k, r in rows.items()]

def diversity():
    d = load('paper/digit_diversity.json')
    if d is None:
        return None
    name = lambda k: 'data (other real images)' if k == 'data' else label(k)
    return dict(command=d['command'], num=d['num'], table=table(DIVERSITY_HEADER, _diversity_rows(d['rows'], name)))

def progress():
    d = load('paper/training_progress.json')
    if d is None:
        return None
    def name(path):
        if path == 'data':
            return 'data (other real images)'
        run = os.path.normpath(path).split(os.sep)[-3]    # <runs>/<model>/<run>/network-snapshot-<kimg>.pkl
        kimg = float(os.path.splitext(os.path.basename(path))[0].rsplit('-', 1)[-1])
        return f'{run} @ {kimg:g} kimg'
    return dict(command=d['command'], note=d['note'], table=table(DIVERSITY_HEADER, _diversity_rows(d['rows'], name)))

def _shift_rows(d):
    """{model: headline numbers} of shift_consistency.json."""
    out = {}
    for name, curve in d['models'].items():
        at = {r['shift']: r for r in curve}
        moved = [r for r in curve if r['shift'] > 0]
        out[name] = dict(
            psnr_int=np.mean([r['psnr'] for r in moved if float(r['shift']).is_integer()]),
            psnr_frac=np.mean([r['psnr'] for r in moved if not float(r['shift']).is_integer()] or [np.nan]),
            ssim=np.mean([r['ssim'] for r in moved]),
            agreement=np.mean([r['class_agreement'] for r in moved]),
            moved={k: at.get(k, {}).get('moved') for k in (4.0, 8.0, 16.0)},
            ink=np.mean([r['ink'] for r in moved]),
            enlarged=d.get('enlarged', {}).get(name, {}).get('moved'))
    return out

def shift():
    d = load('paper/shift_consistency.json')
    if d is None:
        return None
    rows = [[label(n), f'{s["psnr_int"]:.2f}', f'{s["psnr_frac"]:.2f}', f'{s["ssim"]:.3f}', f'{s["agreement"]:.3f}'] +
            [fmt(s['moved'][k], '.1f') for k in (4.0, 8.0, 16.0)] + [f'{s["ink"]:.3f}', fmt(s['enlarged'], '.1f')]
            for n, s in _shift_rows(d).items()]
    header = ['model', 'PSNR int. d', 'PSNR frac. d', 'SSIM', 'class agr.', 'moved d=4', 'moved d=8', 'moved d=16', 'ink',
              'moved on 2x canvas']
    return dict(command='python -m scripts.experiments.shift_consistency', num=d['num'], step=d['step'], table=table(header, rows))

def eqt():
    d = load('paper/eqt.json')
    if d is None:
        return None
    rows = [[label(n), f'{s["eqt_int"]:.2f}', f'{s["eqt_frac"]:.2f}'] for n, s in d['models'].items()]
    return dict(command='python -m scripts.experiments.eqt', num=d['num'], max_frac=d['max_frac'],
                table=table(['model', 'EQ-T (integer)', 'EQ-T_frac'], rows))

def noise():
    d = load('paper/noise_std.json')
    if d is None:
        return None
    rows = [[label(n), f'{s["mean_std"]:.4f}', f'{s["max_pixel_std"]:.4f}'] for n, s in d['models'].items()]
    return dict(command='python -m scripts.experiments.noise_std', noises=d['noises'], num=d['num'],
                table=table(['model', 'mean std', 'max pixel std'], rows))

def strip():
    d = load('paper/translate_strip.json')
    if d is None:
        return None
    rows = [[label(n)] + [f'{v:.2f}' for v in agr] for n, agr in d['class_agreement_with_column0'].items()]
    return dict(command='python -m scripts.experiments.translate_strip', num=d['num'], step=d['step'],
                table=table(['model'] + [f'{s:g} px' for s in d['shifts']], rows))

def multiscale():
    d = load('paper/multiscale.json')
    if d is None:
        return None
    keys = list(next(iter(d['models'].values())))
    rows = [[label(n)] + [f'{s[k]:.1f}' for k in keys] for n, s in d['models'].items()]
    return dict(command='python -m scripts.experiments.multiscale --data=datasets/mnist-ul32.zip', num=d['num'],
                metric=d['metric'], table=table(['model'] + keys, rows))

def inversion():
    d = load('paper/inversion_shift.json')
    if d is None:
        return None
    cfg, modes = d['config'], d['config']['modes']
    header = ['case', 'model'] + [f'{m} {q}' for m in modes for q in ('PSNR', 'SSIM', 'agree')]
    rows = [[case, label(model)] + [f'{per_mode[m]["psnr"]:.2f}' if q == 'psnr' else fmt(per_mode[m][q], '.3f')
                                    for m in modes for q in ('psnr', 'ssim', 'agreement')]
            for case, per_model in d['summary'].items() for model, per_mode in per_model.items()]
    return dict(command=cfg['command'], num_real=cfg['num_real'], num_gen=cfg['num_gen'], num_steps=cfg['num_steps'],
                space=cfg['space'], loss=cfg['loss'], shift=cfg['shift'], table=table(header, rows))

def fit_canvas(names=None):
    """Canvas estimation of unaligned real digits (fit_canvas_eval.py, one file per projection
    space) with issue 23's bars; the figure of the last file. The final set's file
    (run_experiments.sh) once it holds the committed default, else the wide set's files."""
    if names is None:
        final = load('paper/fit_canvas_eval.json')
        final_set = final is not None and final['config'].get('mspe') == 'results/models/default.pkl'
        names = (('paper/fit_canvas_eval.json', 'paper/fit_canvas_eval_anchor.json', 'paper/fit_canvas_eval_anchor_m8.json') if final_set
                 else ('paper/fit_canvas_eval_wide_w.json', 'paper/fit_canvas_eval_wide.json'))
    runs = [(name, load(name)) for name in names]
    runs = [(name, d) for name, d in runs if d is not None]
    if not runs:
        return None
    keys = [('origin_within_1px_search', '.2f'), ('zoom_within_5pct_search', '.2f'), ('origin_within_1px', '.2f'),
            ('zoom_within_5pct', '.2f'), ('both', '.2f'), ('both_inside', '.2f'), ('origin_error_median', '.2f'), ('zoom_error_median', '.3f'),
            ('psnr_estimated', '.2f'), ('psnr_known', '.2f')]
    mspe_margin = lambda cfg: cfg.get('margin_mspe', cfg.get('margin', 0))     # files before --margin-mspe: --margin
    def space(cfg, model):
        margin = mspe_margin(cfg) if model == 'mspe' else cfg.get('margin', 0)
        return cfg['space'] + (f', {margin} px margin' if margin else '')
    def inside(s):
        return '-' if s.get('both_inside') is None else f'{s["both_inside"]:.2f} ({s["n_inside"]} of {s["n"]})'
    rows = [[label({'mspe': 'default'}.get(model, model)) + f' (`{d["config"][model]}`)', d['config'].get('fit_method', 'search'),
             space(d['config'], model), s['n']] + [inside(s) if k == 'both_inside' else fmt(s.get(k), f) for k, f in keys]
            for _, d in runs for model, s in d['summary'].items()]
    rows.append(['issue 23 bar (default)', '', '', '', '', '', '', '', '>= 0.9', '', '', '', 'baseline + 2', ''])
    header = ['model', '`--fit-method`', 'space', 'n', 'search: origin <= 1 px', 'search: zoom <= 5%', 'fit: origin <= 1 px', 'fit: zoom <= 5%',
              'both', 'both, digit off the frame\'s edge', 'median origin error (px)', 'median zoom error', 'PSNR, canvas estimated', 'PSNR, canvas known']
    plain = [(n, d) for n, d in runs if mspe_margin(d['config']) == d['config'].get('margin', 0)]
    name, cfg = (plain or runs)[-1][0], (plain or runs)[-1][1]['config']     # the figure: the last file without a margin of its own
    return dict(commands=', '.join(f'`{d["config"]["command"]}`' for _, d in runs), num_digits=cfg['num_digits'],
                num_steps=cfg['num_steps'], offsets=cfg['offsets'], zooms=cfg['zooms'], space=cfg['space'],
                figure=os.path.splitext(name)[0].split('/', 1)[1] + '.png',
                figure_rows=', '.join(r.replace('mspe ', f'{cfg["mspe"]} ').replace('baseline ', f'{cfg["baseline"]} ')
                                      for r in cfg.get('figure_rows', [])), table=table(header, rows))

def ddpm():
    d = load('paper/ddpm_reconstruct.json')
    if d is None:
        return None
    names = list(d['models'])
    ts = [r['t'] for r in d['models'][names[0]]['rows']]
    rows = []
    for name in names:
        res = d['models'][name]
        margin = res.get('inference_margin', 0)
        decoded = f'; decoded with a {margin} px margin' if margin else ''
        rows.append([f'{ddpm_label(name)} ({res["train_steps"]} steps{decoded})', 'kept bottom-left'] + [f'{r["kept_bottom_left"]:.2f}' for r in res['rows']])
        rows.append(['', 'class agreement'] + [f'{r["class_agreement"]:.2f}' for r in res['rows']])
    shifted = load('paper/ddpm_reconstruct_pe_shift.json')
    shift_text = 'Not measured yet with moved coordinates.'
    if shifted is not None:
        srows = [[f'{ddpm_label(name)} (coordinates moved by {tuple(res["pe_shift"])})'] +
                 [f'{r["kept_bottom_left"]:.2f}' for r in res['rows']] for name, res in shifted['models'].items()]
        sts = [r['t'] for r in next(iter(shifted['models'].values()))['rows']]
        shift_text = (f'The same inputs with the MS-PE models\' coordinates moved so that the bottom-left digit gets the '
                      f'coordinates the training digits had (`{shifted["command"]}`, {shifted["seeds"]} seeds; figure '
                      f'`paper/ddpm_reconstruct_pe_shift.png`), fraction kept bottom-left:\n\n' +
                      table(['model'] + [f't={t}' for t in sts], srows))
    return dict(command=d['command'], num=d['num'], first=d['first'], input_kept=f'{d["input_kept_bottom_left"]:.2f}',
                stride=d['stride'], seeds=d['seeds'], table=table(['model', 'measure'] + [f't={t}' for t in ts], rows),
                shift=shift_text)

def overhead():
    d = load('bench/bench_pe_overhead.json')
    if d is None:
        return None
    rows = [[f'{r["res"]} px', r['batch']] + [f'{r["seconds"][v] * 1e3:.1f}' for v in ('host', 'none', 'mspe')] +
            [f'{r["mspe_vs_none_percent"]:+.1f}%', f'{r["mspe_vs_host_percent"]:+.1f}%'] +
            ([f'{r["seconds"]["mspe_rm"] * 1e3:.1f}', f'x{r["mspe_rm_vs_mspe_ratio"]:.2f}'] if 'mspe_rm' in r['seconds'] else ['-', '-']) +
            ([f'{r["seconds"]["mspe_rmo"] * 1e3:.1f}', f'x{r["mspe_rmo_vs_mspe_ratio"]:.2f}'] if 'mspe_rmo' in r['seconds'] else ['-', '-'])
            for r in d['rows']]
    return dict(command=d['command'], device=d['device'], threads=d['threads'],
                table=table(['res', 'batch', 'host G', '--pe=none', '--pe=mspe', 'MS-PE vs none', 'MS-PE vs host',
                             '+ resize + margins', 'vs --pe=mspe', '+ --pe-outside=30', 'vs --pe=mspe'], rows))

def host_speed():
    d = load('bench/bench_host.json')
    if d is None:
        return None
    impls = [k for k in ('eager', 'compiled', 'compiled_bf16', 'upstream') if k in d['rows'][0]]
    rows = []
    for r in d['rows']:
        for k in impls:
            x = r[k]
            rows.append([f'{r["res"]} px', k, f'{x["g_fwd_img_s"]:.1f}', f'{x["gd_step_img_s"]:.1f}',
                         f'{x["first_g_fwd_s"]:.1f}', f'{x["first_step_s"]:.1f}'])
    ratios = []
    for r in d['rows']:
        for key, label in (('compiled_vs_eager', 'compiled / eager'), ('compiled_bf16_vs_eager', 'compiled + bf16 / eager'),
                           ('compiled_vs_upstream', 'compiled / upstream'), ('compiled_bf16_vs_upstream', 'compiled + bf16 / upstream'),
                           ('eager_vs_upstream', 'eager / upstream')):
            if key in r:
                ratios.append([f'{r["res"]} px', label, f'x{r[key]["g_fwd"]:.2f}', f'x{r[key]["gd_step"]:.2f}'])
    return dict(command=d['command'], device=d['device'], threads=d['threads'],
                table=table(['res', 'networks', 'G fwd img/s', 'training step img/s', 'first G fwd s', 'first step s'], rows),
                ratios=table(['res', 'ratio', 'G fwd', 'training step'], ratios))

def train_speed():
    d = load('bench/bench_train.json')
    if d is None:
        return None
    keys = ['resolution', 'batch', 'aug', 'compile', 'cpu_bf16', 'kimg', 'sec_per_kimg', 'kimg_per_hour', 'wall_seconds']
    return dict(command=d['command'], cores=d['machine']['cpu_count'], threads=d['machine']['torch_threads'],
                table=table(keys, [[r.get(k, {'compile': 'off', 'cpu_bf16': False}.get(k)) for k in keys] for r in d['results']]))

def metrics_speed():
    d = load('bench/metrics_cpu.json')
    if d is None:
        return None
    rows = []
    for r in d['runs']:
        m = r['metrics']
        values = ', '.join(f'{name} {value:.4g}' for x in m.values() for name, value in x['results'].items())
        rows.append([r['run'], f'{r["wall_s"]:.0f}', ', '.join(f'{k} {x["total_time_str"]}' for k, x in m.items()), values,
                     r['torch_threads'], f'{r["load_average_1min_after"]:.2f}'])
    return dict(command=d['command'], cores=d['cpu_count'], torch=d['torch'],
                table=table(['run', 'wall s', 'time per metric', 'values', 'threads', 'load after'], rows))

def upstream():
    d = load('bench/compare_upstream.json')
    if d is None:
        return None
    keys = ['image', 'logits', 'G_grads', 'D_grads', 'r1_grad']
    return dict(command=d['command'], table=table(keys, [[f'{d[k]:.1e}' for k in keys]]))

def _probe_name(path):
    """'b1 (flags) @ 24 kimg' of a probe snapshot path runs/probe/<name>/<run>/network-snapshot-K.pkl."""
    if path == 'data':
        return 'data (other real images)'
    parts = path.replace(os.sep, '/').split('/')
    run = parts[-2] if len(parts) >= 2 else path
    flags = [f for f in run.split('-')[3:] if f not in ('auto', 'noaug', 'mspe') and not f.startswith(('kimg', 'cmax'))]
    kimg = float(os.path.splitext(parts[-1])[0].rsplit('-', 1)[-1])
    return f'{parts[-3] if len(parts) >= 3 else run} ({" ".join(flags) or "paper MS-PE"}) @ {kimg:g} kimg'

def probes(canvas_json='paper/probes_canvas.json', diversity_json='paper/probes_diversity.json'):
    canvas, div = load(canvas_json), load(diversity_json)
    if canvas is None or div is None:
        return None
    rows = [[_probe_name(r['snapshot'])] + [fmt(r[f'move_{d}'], '.2f') for d in (4, 8, 16)] +
            [fmt(r['enlarged'], '.2f'), fmt(r['zoom2'] if r['zoom2'] == r['zoom2'] else None, '.2f'),    # NaN: no ink
             f'{r["agreement"]:.3f}'] for r in canvas['rows']]
    return dict(canvas_command=canvas['command'], canvas_num=canvas['num'], diversity_command=div['command'], diversity_num=div['num'],
                canvas_table=table(['probe', 'move_4', 'move_8', 'move_16', 'enlarged', 'zoom2', 'class agreement'], rows),
                diversity_table=table(DIVERSITY_HEADER, _diversity_rows(div['rows'], _probe_name)))

def _stem(path):
    """A model's name from its pickle path: results/models/wide/default.pkl -> default."""
    return os.path.splitext(os.path.basename(path))[0]

def _rolled_frac(wrap, name):
    """Mean PSNR of one model against G(0) rolled by d over the off-grid shifts d + 0.5 of a
    shift_consistency --wrap file; None without the file or its rows."""
    frac = [x['psnr'] for x in (wrap or {'models': {}})['models'].get(name, []) if not float(x['shift']).is_integer()]
    return float(np.mean(frac)) if frac else None

def _frechet(div):
    """{model name: Frechet distance} of a digit_diversity file (the data row left out)."""
    return {_stem(k): v['frechet'] for k, v in div['rows'].items() if k != 'data'}

def _border_rows(models_d, canvas, eqt_d, wrap, frechet=None):
    """Rows of the wide set's table: canvas following, EQ-T and rolled-shift PSNR per model (and,
    with `frechet`, the Frechet distance and s/kimg)."""
    follow = {_stem(r['snapshot']): r for r in canvas['rows']}
    rows = []
    for name, info in sorted(models_d['models'].items(), key=lambda item: _order(item[0])):
        r = follow.get(name, {})
        e = eqt_d['models'].get(name, {})
        row = [label(name), fmt(info.get('kimg'), 'g')] + [fmt(r.get(f'move_{d}'), '.3f') for d in (4, 8, 16)] + \
              [fmt(r.get('enlarged'), '.3f'), fmt(r.get('zoom2'), '.2f'), fmt(r.get('agreement'), '.3f'),
               fmt(e.get('eqt_int'), '.2f'), fmt(e.get('eqt_frac'), '.2f'), fmt(_rolled_frac(wrap, name), '.2f')]
        if frechet is not None:
            row += [fmt(frechet.get(name), '.1f'), fmt(info.get('seconds_per_kimg'), '.1f')]
        rows.append(row)
    bar = ['issue 22 bar (default)', '', '>= 0.9', '>= 0.9', '>= 0.9', '>= 0.9', '>= 1.8', '>= 0.9',
           'baseline + 6', 'baseline + 6', 'baseline + 3']
    rows.append(bar + (['<= 1.25 x baseline', ''] if frechet is not None else []))
    header = ['model', 'kimg', 'move_4', 'move_8', 'move_16', 'enlarged', 'zoom2', 'class agreement', 'EQ-T', 'EQ-T_frac',
              'rolled PSNR (d + 0.5)'] + (['Frechet', 's/kimg'] if frechet is not None else [])
    return table(header, rows)

def border_models(prefix='paper/wide_', models_json='models/wide/models.json'):
    """A model set's canvas following, EQ-T, rolled-shift PSNR and Frechet distance per model, with
    issue 22's bars beside them; the same measures again with an inference margin where its JSON
    files (<prefix>*_m8.json) exist. The wide set (results/models/wide) by default."""
    canvas, eqt_d = load(prefix + 'canvas_follow.json'), load(prefix + 'eqt.json')
    wrap, div, models_d = load(prefix + 'shift_consistency_wrap.json'), load(prefix + 'digit_diversity.json'), load(models_json)
    if None in (canvas, eqt_d, wrap, div, models_d):
        return None
    models_dir = os.path.join('results', os.path.dirname(models_json))
    out = os.path.join('results', prefix)
    frechet = _frechet(div)
    fills = dict(train_command=models_d['command'], settings=models_d['settings'], canvas_command=canvas['command'],
                 canvas_num=canvas['num'], eqt_num=eqt_d['num'], wrap_num=wrap['num'], div_command=div['command'],
                 div_num=div['num'], trained=', '.join(sorted(models_d['models'], key=_order)),
                 table=_border_rows(models_d, canvas, eqt_d, wrap, frechet), margin_text='')
    m = load(prefix + 'canvas_follow_m8.json'), load(prefix + 'eqt_m8.json'), load(prefix + 'shift_consistency_wrap_m8.json')
    if None not in m:
        div8 = load(prefix + 'digit_diversity_m8.json')
        fills['margin_text'] = (
            f'With an inference margin of {m[1]["margin"]} px (every rendering, G(0) included, drawn {m[1]["margin"]} px '
            'wider on every side and cropped: `--margin 8`, as `generate.py --margin=8`), the same models and latents: '
            f'`{m[0]["command"]}`, `python -m scripts.experiments.eqt --models-dir {models_dir} --margin 8 --out '
            f'{out}eqt_m8.json`, `python -m scripts.experiments.shift_consistency --wrap --margin 8 '
            f'--models-dir {models_dir} --out {out}shift_consistency_wrap_m8`' +
            (f' and `{div8["command"]}` (Frechet)' if div8 else '') + ':\n\n' +
            _border_rows(models_d, *m, frechet=_frechet(div8) if div8 else None))
    sweep = []      # (margin, baseline, default): the pair files, margin 8 from the full set's file
    for n in (4, 8, 12, 16):
        w = load(f'{prefix}shift_consistency_wrap_m{n}_pair.json') or (m[2] if n == 8 else None)
        if w is not None:
            sweep.append((n, _rolled_frac(w, 'baseline'), _rolled_frac(w, 'default')))
    if len(sweep) > 1:
        fills['margin_text'] += (
            '\n\nThe rolled-shift PSNR at d + 0.5 over inference margins (baseline and default only: '
            '`python -m scripts.experiments.shift_consistency --wrap --margin N --models-dir DIR --out '
            f'{out}shift_consistency_wrap_mN_pair`, DIR holding links to the two pickles; margin 8 from the '
            'file above): ' + '; '.join(f'margin {n}: {b:.2f} vs {d:.2f} dB ({d - b:+.2f})' for n, b, d in sweep) +
            '. Margins 12 and 16 print the same numbers: beyond about 12 px the canvas edge no longer reaches the '
            'output, so a larger margin cannot close the rest of the gap to the +3 dB bar.')
    return fills

FILLS = dict(models=models, classifier=classifier, diversity=diversity, progress=progress, shift=shift, eqt=eqt, noise=noise,
             strip=strip, multiscale=multiscale, inversion=inversion, ddpm=ddpm, overhead=overhead, host_speed=host_speed,
             train_speed=train_speed, metrics_speed=metrics_speed, upstream=upstream, probes=probes,
             border_models=border_models, fit_canvas=fit_canvas,
             border_final=lambda: border_models('paper/', 'models/models.json'),
             probes_recipes=lambda: probes('paper/probes_recipes_canvas.json', 'paper/probes_recipes_diversity.json'))

#----------------------------------------------------------------------------

def results_page(template_text):
    """(results/README.md text, names of the sections whose JSON is missing)."""
    parts = SECTION_RE.split(template_text)
    head, sections = parts[0], list(zip(parts[1::2], parts[2::2]))
    unknown = [name for name, _ in sections if name not in FILLS]
    if unknown:
        raise SystemExit(f'{TEMPLATE} has sections without a fill in results_md.py: {", ".join(unknown)}.')
    out, missing = [head], []
    for name, text in sections:
        values = FILLS[name]()
        if values is None:
            missing.append(name)
        else:
            out.append(string.Template(text).substitute(values))
    if missing:
        out.append(f'Not yet produced: {", ".join(missing)}.\n')
    return ''.join(out), missing

def _border_summary(prefix='paper/'):
    """The README's table of the committed models: canvas following, EQ-T and rolled PSNR (plain
    and with the 8 px inference margin), Frechet distance and shape variety; None until its JSON
    files exist."""
    models_d, canvas, eqt_d, wrap, div = (load(n) for n in ('models/models.json', prefix + 'canvas_follow.json',
                                                           prefix + 'eqt.json', prefix + 'shift_consistency_wrap.json',
                                                           prefix + 'digit_diversity.json'))
    if None in (models_d, canvas, eqt_d, wrap, div):
        return None
    eqt8, wrap8, div8 = load(prefix + 'eqt_m8.json'), load(prefix + 'shift_consistency_wrap_m8.json'), load(prefix + 'digit_diversity_m8.json')
    follow = {_stem(r['snapshot']): r for r in canvas['rows']}
    frechet, frechet8 = _frechet(div), (_frechet(div8) if div8 else {})
    variety = {_stem(k): r for k, r in div['rows'].items() if k != 'data'}
    rows = []
    for n in sorted(models_d['models'], key=_order):
        r, e, e8 = follow.get(n, {}), eqt_d['models'].get(n, {}), (eqt8 or {'models': {}})['models'].get(n, {})
        v = variety.get(n, {})
        rows.append([label(n) + (' (`--cfg=mspe --pe-outside=30`)' if n == 'default' else ''), fmt(r.get('move_8'), '.2f'), fmt(r.get('enlarged'), '.2f'),
                     fmt(r.get('zoom2'), '.2f'), fmt(e.get('eqt_int'), '.2f'), fmt(e.get('eqt_frac'), '.2f'), fmt(_rolled_frac(wrap, n), '.2f'),
                     fmt(e8.get('eqt_int'), '.2f'), fmt(e8.get('eqt_frac'), '.2f'), fmt(_rolled_frac(wrap8, n), '.2f'), fmt(frechet.get(n), '.1f'),
                     fmt(frechet8.get(n), '.1f'), fmt(v.get('classes_confident'), '.2f'), fmt(v.get('shape_std'), '.3f')])
    kimg = sorted({m['kimg'] for m in models_d['models'].values()})
    link = 'results/README.md#do-the-committed-models-follow-the-canvas-issue-22'
    header = [f'[committed models]({link}), {"/".join(f"{k:g}" for k in kimg)} kimg',
              'moved at d = 8, share of d', 'moved on 2x canvas, share of R/2', 'ink extent at zoom 2, x', 'EQ-T', 'EQ-T frac',
              'rolled PSNR (d + 0.5)', 'EQ-T, margin 8', 'EQ-T frac, margin 8', 'rolled PSNR, margin 8', 'Frechet',
              'Frechet, margin 8', 'classes (confident)', 'shape std']
    return table(header, rows)

def _get(d, name, key):
    """d['models'][name][key] of an experiment's JSON; None where the file or the model is missing."""
    return ((d or {}).get('models') or {}).get(name, {}).get(key)

def summary_table():
    """The README's results table: one row per digit model, headline numbers, links."""
    div, sc, eq, ns, ms = (load(f'paper/{n}.json') for n in ('digit_diversity', 'shift_consistency', 'eqt', 'noise_std', 'multiscale'))
    names = list((sc or eq or {'models': {}})['models'])
    confident = {_stem(k): r.get('classes_confident') for k, r in (div or {'rows': {}})['rows'].items()}
    shifts = _shift_rows(sc) if sc else {}
    rows = []
    for n in names:
        s = shifts.get(n, {})
        rows.append([label(n), fmt(confident.get(n), '.2f'), fmt(s.get('psnr_int'), '.2f'), fmt(s.get('enlarged'), '.1f'),
                     fmt(_get(eq, n, 'eqt_int'), '.2f'), fmt(_get(eq, n, 'eqt_frac'), '.2f'),
                     fmt(_get(ns, n, 'mean_std'), '.4f'), fmt(_get(ms, n, 'zoom2'), '.1f')])
    header = ['model', '[classes (confident)](results/README.md#do-the-models-draw-clean-diverse-digits)',
              '[shift PSNR](results/README.md#shift-consistency-paper-fig-2d)', '[moved on 2x canvas](results/README.md#shift-consistency-paper-fig-2d)',
              '[EQ-T](results/README.md#eq-t-stylegan3s-translation-equivariance)', 'EQ-T frac',
              '[noise std](results/README.md#noise-dependence-paper-fig-4)', '[Frechet, zoom 2](results/README.md#multi-scale-and-beyond-the-border-paper-fig-6-8-table-1)']
    lines = [table(header, rows)]
    committed = _border_summary()
    if committed:
        lines += ['', committed]
    dd = load('paper/ddpm_reconstruct.json')
    if dd is not None:
        kept = {name: {r['t']: r['kept_bottom_left'] for r in m['rows']} for name, m in dd['models'].items()}
        ts = [t for t in (300, 400, 600) if all(t in k for k in kept.values())]
        lines += ['', table(['[DDPM, Fig. 9](results/README.md#ddpm-reconstruction-at-an-unseen-position-paper-fig-9)'] +
                            [f'kept bottom-left, t={t}' for t in ts],
                            [[ddpm_label(name)] + [f'{k[t]:.2f}' for t in ts] for name, k in kept.items()])]
    fits = {name: load(f'paper/{name}.json') for name in ('fit_canvas_eval', 'fit_canvas_eval_anchor')}
    if all(d is not None and d['config'].get('mspe') == 'results/models/default.pkl' for d in fits.values()):
        search, anchor = fits['fit_canvas_eval']['summary'], fits['fit_canvas_eval_anchor']['summary']
        cfg = fits['fit_canvas_eval_anchor']['config']
        lines += ['', f'[Canvas of unaligned real digits](results/README.md#finding-the-canvas-of-unaligned-real-digits-issue-23) '
                  f'({cfg["num_digits"]} held-out digits moved by offsets {cfg["offsets"]}, zooms {cfg["zooms"]}; '
                  '`projector.py --fit-canvas --fit-zoom`): origin within 1 px and zoom within 5% for '
                  f'{anchor["mspe"]["both"]:.2f} of them with `--fit-method=anchor` ({search["mspe"]["both"]:.2f} with the search) '
                  f'on the digit default (`--cfg=mspe --pe-outside=30`), {anchor["baseline"]["both"]:.2f} ({search["baseline"]["both"]:.2f}) on the baseline; '
                  f'PSNR with the canvas anchored {anchor["mspe"]["psnr_estimated"]:.2f} against {anchor["baseline"]["psnr_estimated"]:.2f} dB'
                  + (f' ({m8["summary"]["mspe"]["psnr_estimated"]:.2f} with the digit default drawn at its '
                     f'{m8["config"]["margin_mspe"]} px inference margin)' if (m8 := load('paper/fit_canvas_eval_anchor_m8.json')) else '') + '.']
    oh = load('bench/bench_pe_overhead.json')
    if oh is not None:
        lines += ['', '[Cost of MS-PE](results/README.md#what-ms-pe-costs-per-training-step) per G+D training step against '
                  '`--pe=none`: ' + ', '.join(f'{r["mspe_vs_none_percent"]:+.1f}% at {r["res"]} px' for r in oh['rows']) + '.']
        if all('mspe_rm_vs_mspe_ratio' in r for r in oh['rows']):
            outside = ''
            if all('mspe_rmo_vs_mspe_ratio' in r for r in oh['rows']):
                outside = ('; with `--pe-outside=30` as well (the digit default) '
                           + ', '.join(f'x{r["mspe_rmo_vs_mspe_ratio"]:.2f}' for r in oh['rows']))
            lines += ['', 'Cost of the border recipe (`--cfg=mspe`) against the paper\'s MS-PE (`--pe=mspe`), per eager G+D step '
                      'timed in one process (`' + oh['command'] + '`): '
                      + ', '.join(f'x{r["mspe_rm_vs_mspe_ratio"]:.2f} at {r["res"]} px' for r in oh['rows']) + outside + '.']
    hs = load('bench/bench_host.json')
    if hs is not None and 'compiled_vs_eager' in hs['rows'][0]:
        parts = []
        for r in hs['rows']:
            part = f'{r["res"]} px: G forward x{r["compiled_vs_eager"]["g_fwd"]:.2f}, training step x{r["compiled_vs_eager"]["gd_step"]:.2f} over eager'
            if 'compiled_vs_upstream' in r:
                part += f' (x{r["compiled_vs_upstream"]["g_fwd"]:.2f}, x{r["compiled_vs_upstream"]["gd_step"]:.2f} over upstream\'s networks)'
            if 'compiled_bf16_vs_upstream' in r:
                part += f'; with --cpu-bf16 x{r["compiled_bf16_vs_upstream"]["g_fwd"]:.2f}, x{r["compiled_bf16_vs_upstream"]["gd_step"]:.2f} over upstream'
            parts.append(part)
        lines += ['', f'[Compiled path](results/README.md#speed-of-the-hosts-networks) (`--compile`, {hs["device"]}, {hs["threads"]} threads): ' + '; '.join(parts) + '.']
    mc = load('bench/metrics_cpu.json')
    if mc is not None:
        walls = ', '.join(f'{r["run"]} {r["wall_s"]:.0f} s' for r in mc['runs'])
        lines += ['', f'[CPU-sized metrics](results/README.md#wall-time-of-the-cpu-sized-metrics) (`calc_metrics.py '
                  f'--metrics={",".join(mc["metrics"])}`, {mc["cpu_count"]} cores, 2000 fakes against a cached subset of 2000 '
                  f'reals): {walls} (cold: the reals\' features extracted first; warm: found in the cache).']
    tb = load('bench/tiles.json')
    if tb is not None:
        lines += ['', f'Tiled rendering (`{tb["command"]}`, {tb["device"]}, {tb["torch_threads"]} thread{"s" if tb["torch_threads"] != 1 else ""}): a '
                  f'{tb["canvas"][0]} x {tb["canvas"][1]} canvas of `{tb["network"]}` in {tb["tiles"]} tiles of {tb["tile"]} px, '
                  f'{tb["seconds"]:g} s, peak memory growth {tb["peak_growth_during_render_mb"]:g} MB '
                  f'(one {tb["tile"]} px tile alone: {tb["one_tile"]["peak_growth_during_render_mb"]:g} MB).']
    return '\n'.join(lines) + '\n'

def main():
    with open(TEMPLATE) as f:
        page, missing = results_page(f.read())
    with open(os.path.join(RESULTS, 'README.md'), 'w') as f:
        f.write(page)
    readme_path = os.path.join(ROOT, 'README.md')
    with open(readme_path) as f:
        readme = f.read()
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + BEGIN + '\n' + summary_table() + END + tail    # built before the file is opened for writing
        with open(readme_path, 'w') as f:
            f.write(text)
    print(f'wrote results/README.md (missing: {", ".join(missing) or "none"}) and the README\'s results table')

if __name__ == '__main__':
    main()
