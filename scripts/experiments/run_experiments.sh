#!/usr/bin/env bash
# Every experiment of results/README.md, after the models exist:
#   GAN models:  bash scripts/experiments/train_digits.sh                (results/models/*.pkl)
#   DDPMs:       python -m scripts.experiments.ddpm_train ...            (results/models/ddpm-{none,mspe}.pt)
#
#   bash scripts/experiments/run_experiments.sh      # two lanes side by side, one core each
#
# Each script writes its JSON and PNG into results/paper/; results_md.py then regenerates
# results/README.md and the README's results table from those files.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
mkdir -p runs
DATA=datasets/mnist-ul32.zip
[ -f "$DATA" ] || python stylegan2_ada_vendor/dataset_tool.py --source=tests/data/mnist/t10k-images-idx3-ubyte.gz \
    --dest="$DATA" --place=upper-left --colorize --resolution=32

gan_lane() {
    python -m scripts.experiments.shift_consistency
    python -m scripts.experiments.eqt
    python -m scripts.experiments.noise_std
    python -m scripts.experiments.translate_strip
    python -m scripts.experiments.multiscale --data="$DATA"
    python -m scripts.experiments.digit_diversity results/models/{baseline,sspe,mspe,mspe_rs}.pkl --data="$DATA" \
        --json results/paper/digit_diversity.json
}
other_lane() {
    if [ -f results/models/ddpm-none.pt ] && [ -f results/models/ddpm-mspe.pt ]; then
        python -m scripts.experiments.ddpm_reconstruct --threads=1
    else
        echo "skipping ddpm_reconstruct: results/models/ddpm-{none,mspe}.pt missing (train them with scripts.experiments.ddpm_train)"
    fi
    python -m scripts.experiments.inversion_shift --num-steps=80
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
