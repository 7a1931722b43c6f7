#!/usr/bin/env bash
# The measurements of the wide model set (results/models/wide/, results/README.md "The border
# recipe on wider class-conditional models"), after train_digits.sh has trained it:
#
#   bash scripts/experiments/eval_wide.sh      # two lanes side by side, one core each
#
# Lane 1: canvas following, EQ-T and the rolled-shift PSNR as the models render by default;
# lane 2: the same with an 8 px inference margin (--margin 8, every rendering, G(0) included), then
# the Frechet distance of 1000 fakes against the held-out test digits. results_md.py then
# regenerates results/README.md from the JSON files.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
M=${MODELS:-results/models/wide}
P=results/paper/wide_
DATA=datasets/mnist-ul32.zip
[ -f "$DATA" ] || python stylegan2_ada_vendor/dataset_tool.py --source=tests/data/mnist/t10k-images-idx3-ubyte.gz \
    --dest="$DATA" --place=upper-left --colorize --resolution=32
mkdir -p runs
models=()
for name in baseline sspe mspe mspe_rs default; do
    [ -f "$M/$name.pkl" ] && models+=("$M/$name.pkl")
done
[ ${#models[@]} -gt 0 ] || { echo "no models in $M: train them with scripts/experiments/train_digits.sh" >&2; exit 1; }

lane() {   # lane MARGIN SUFFIX
    python -m scripts.experiments.canvas_follow "${models[@]}" --num=128 --margin="$1" --json "${P}canvas_follow$2.json" \
        "--note=the wide model set, $M"
    python -m scripts.experiments.eqt --models-dir "$M" --margin="$1" --out "${P}eqt$2.json"
    python -m scripts.experiments.shift_consistency --wrap --models-dir "$M" --margin="$1" --out "${P}shift_consistency_wrap$2"
}
lane 0 "" > runs/eval-wide-m0.log 2>&1 &
first=$!
{ lane 8 _m8
  python -m scripts.experiments.digit_diversity "${models[@]}" --num=1000 --data="$DATA" --json "${P}digit_diversity.json" \
      "--note=the wide model set against the held-out test digits"
} > runs/eval-wide-m8.log 2>&1 &
second=$!
status=0
wait $first || { echo "lane 1 failed: see runs/eval-wide-m0.log"; status=1; }
wait $second || { echo "lane 2 failed: see runs/eval-wide-m8.log"; status=1; }
python -m scripts.experiments.results_md
exit $status
