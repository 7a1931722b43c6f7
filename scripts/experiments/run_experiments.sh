#!/usr/bin/env bash
# Every experiment of results/README.md, after the models exist:
#   GAN models:  bash scripts/experiments/train_digits.sh                (results/models/*.pkl)
#   DDPMs:       python -m scripts.experiments.ddpm_train ...            (results/models/ddpm-{none,mspe}.pt)
#
#   bash scripts/experiments/run_experiments.sh      # two lanes side by side, one core each
#   DDPM=0 bash scripts/experiments/run_experiments.sh   # keep the DDPM reconstructions (after retraining a GAN only)
#
# Each script writes its JSON and PNG into results/paper/; results_md.py then regenerates
# results/README.md and the README's results table from those files. The training progress table
# needs the runs themselves (not in a clone), so it is its own command, after train_digits.sh:
#   python -m scripts.experiments.digit_diversity runs/final/{baseline,sspe,mspe,mspe_rs,default}/0* --every=96 \
#       --num=1000 --prior=datasets/mnist60k-ul32-k100.zip --json results/paper/training_progress.json \
#       "--note=the final runs as their unconditional pickles, snapshots at multiples of 96 kimg and the last (496)"
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
mkdir -p runs
DATA=datasets/mnist-ul32.zip
[ -f "$DATA" ] || python stylegan2_ada_vendor/dataset_tool.py --source=tests/data/mnist/t10k-images-idx3-ubyte.gz \
    --dest="$DATA" --place=upper-left --colorize --resolution=32

M=results/models
P=results/paper
models=()
for name in baseline sspe mspe mspe_rs default; do
    [ -f "$M/$name.pkl" ] && models+=("$M/$name.pkl")
done
[ ${#models[@]} -gt 0 ] || { echo "no models in $M: train them with scripts/experiments/train_digits.sh" >&2; exit 1; }

gan_lane() {     # the paper's figures, canvas following, the grids sorted by digit
    python -m scripts.experiments.shift_consistency
    python -m scripts.experiments.eqt
    python -m scripts.experiments.noise_std
    python -m scripts.experiments.translate_strip
    python -m scripts.experiments.multiscale --data="$DATA"
    python -m scripts.experiments.canvas_follow "${models[@]}" --num=128 --json "$P/canvas_follow.json" "--note=the committed models, $M"
    python -m scripts.experiments.canvas_follow "${models[@]}" --num=128 --margin=8 --json "$P/canvas_follow_m8.json" \
        "--note=the committed models, $M, 8 px inference margin"
    python -m scripts.experiments.class_grid "${models[@]}" --out "$P/class_grid"
}
other_lane() {   # diversity, rolled shifts and EQ-T with a margin, inversion, the DDPMs
    python -m scripts.experiments.digit_diversity "${models[@]}" --num=1000 --data="$DATA" --json "$P/digit_diversity.json" \
        "--note=the committed models against the held-out test digits"
    python -m scripts.experiments.digit_diversity "${models[@]}" --num=1000 --data="$DATA" --margin=8 --json "$P/digit_diversity_m8.json" \
        "--note=the committed models against the held-out test digits, 8 px inference margin"
    python -m scripts.experiments.eqt --margin=8 --out "$P/eqt_m8.json"
    python -m scripts.experiments.shift_consistency --wrap --out "$P/shift_consistency_wrap"
    python -m scripts.experiments.shift_consistency --wrap --margin=8 --out "$P/shift_consistency_wrap_m8"
    ddpms=results/models/ddpm-none.pt    # the baseline first, then every other committed DDPM
    for d in mspe none-margin16 mspe-margin16 mspe-margin16-canvas none-window48 mspe-window48 none-window64whole mspe-window64whole; do
        [ -f "results/models/ddpm-$d.pt" ] && ddpms="$ddpms,results/models/ddpm-$d.pt"
    done
    if [ "${DDPM:-1}" = 0 ]; then
        echo "DDPM=0: ddpm_reconstruct not rerun (its JSON and figures stay as they are)"
    elif [ -f results/models/ddpm-none.pt ] && [ -f results/models/ddpm-mspe.pt ]; then
        python -m scripts.experiments.ddpm_reconstruct --models="$ddpms" --threads=1
    else
        echo "skipping ddpm_reconstruct: results/models/ddpm-{none,mspe}.pt missing (train them with scripts.experiments.ddpm_train)"
    fi
    python -m scripts.experiments.inversion_shift --mspe "$M/default.pkl" --baseline "$M/baseline.pkl" --num-steps=80 --modes=known,fit,anchor
    python -m scripts.experiments.fit_canvas_eval --mspe "$M/default.pkl" --baseline "$M/baseline.pkl" --num-digits 50 \
        --num-steps 100 --out "$P/fit_canvas_eval.json"
    python -m scripts.experiments.fit_canvas_eval --mspe "$M/default.pkl" --baseline "$M/baseline.pkl" --num-digits 50 \
        --num-steps 100 --fit-method=anchor --out "$P/fit_canvas_eval_anchor.json"
    python -m scripts.experiments.fit_canvas_eval --mspe "$M/default.pkl" --baseline "$M/baseline.pkl" --num-digits 50 \
        --num-steps 100 --fit-method=anchor --margin-mspe=8 --out "$P/fit_canvas_eval_anchor_m8.json"
}
gan_lane > runs/experiments-gan.log 2>&1 &
gan=$!
other_lane > runs/experiments-other.log 2>&1 &
other=$!
status=0
wait $gan || { echo "GAN lane failed: see runs/experiments-gan.log"; status=1; }
wait $other || { echo "DDPM/inversion lane failed: see runs/experiments-other.log"; status=1; }
python -m scripts.experiments.results_md
exit $status
