"""Who is winning a training run? D's verdicts and the losses, tick by tick, from stats.jsonl.

Every tick train.py appends its statistics to <run>/stats.jsonl. This script reads the ones that
tell the balance between G and D:
  real_sign   mean sign of D's logits on reals (+1 = every real called real; ADA's overfitting
              heuristic r_t, target 0.6);
  fake_sign   the same on fakes (-1 = every fake caught: D wins outright);
  real_score, fake_score   mean logits;
  G_loss, D_loss, r1_penalty   the tick's mean losses;
  augment     ADA's probability p (0 without augmentation).

    python scripts/run_stats.py runs/digits/baseline/00000-...                 # every tick
    python scripts/run_stats.py RUN_A RUN_B --every=4 --json results/balance.json
"""

import argparse
import json
import os
import shlex
import sys

SERIES = dict(real_sign='Loss/signs/real', fake_sign='Loss/signs/fake', real_score='Loss/scores/real',
              fake_score='Loss/scores/fake', G_loss='Loss/G/loss', D_loss='Loss/D/loss',
              r1_penalty='Loss/r1_penalty', augment='Progress/augment')

def read_run(run_dir):
    """[{kimg, tick, <series>...}] of one run folder, in training order."""
    path = os.path.join(run_dir, 'stats.jsonl')
    if not os.path.isfile(path):
        raise SystemExit(f'{run_dir} has no stats.jsonl: give a run folder that train.py wrote.')
    ticks = []
    for number, line in enumerate(open(path), 1):
        if not line.strip():
            continue
        try:
            stats = json.loads(line)
        except json.JSONDecodeError:
            # A run killed while writing leaves a torn last line: say so and read on.
            print(f'{path}: line {number} is not JSON; skipped.', file=sys.stderr)
            continue
        row = dict(kimg=stats.get('Progress/kimg', {}).get('mean'), tick=stats.get('Progress/tick', {}).get('mean'))
        for name, key in SERIES.items():
            value = stats.get(key, {})
            row[name] = value.get('mean') if value.get('num', 1) else None
        ticks.append(row)
    return ticks

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='run folders (each with a stats.jsonl)')
    parser.add_argument('--every', type=int, default=1, help='print every N-th tick (the last one always)')
    parser.add_argument('--json', default=None, help='also write the ticks here')
    args = parser.parse_args(argv)
    if args.every < 1:
        raise SystemExit(f'--every must be a positive number of ticks; got {args.every}.')
    record = dict(command='python scripts/run_stats.py ' + shlex.join(sys.argv[1:] if argv is None else argv), runs={})
    for run_dir in args.runs:
        ticks = read_run(run_dir)
        record['runs'][run_dir] = ticks
        print(run_dir)
        print('  kimg    real_sign fake_sign real_score fake_score G_loss  D_loss  r1_penalty augment')
        for i, t in enumerate(ticks):
            if i % args.every and i != len(ticks) - 1:
                continue
            cells = [f'{t[k]:9.3f}' if t[k] is not None else '        -' for k in SERIES]
            print(f'  {t["kimg"] if t["kimg"] is not None else float("nan"):7.1f} ' + ' '.join(cells))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(record, f, indent=1)

if __name__ == '__main__':
    main()
