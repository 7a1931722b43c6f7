#!/usr/bin/env bash
# Every experiment of results/README.md, after the models exist:
#   GAN models:  bash scripts/train_digits.sh            (results/models/*.pkl)
#   DDPMs:       python scripts/ddpm_train.py ...         (results/ddpm/ddpm-{none,mspe}.pt)
#
#   bash scripts/run_experiments.sh          # two lanes side by side (one core each), ~30 min on 2 cores
#
# Each script writes its JSON and PNG into results/; scripts/results_md.py then regenerates
# results/README.md and the README's summary from those files.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
mkdir -p runs
DATA=datasets/mnist-ul32.zip
[ -f "$DATA" ] || python stylegan2_ada_vendor/dataset_tool.py --source=../shared/data/mnist/t10k-images-idx3-ubyte.gz \
    --dest="$DATA" --place=upper-left --colorize --resolution=32

gan_lane() {
    python scripts/shift_consistency.py
    python scripts/eqt.py
    python scripts/noise_std.py
    python scripts/translate_strip.py
    python scripts/multiscale.py --data="$DATA"
}
other_lane() {
    if [ -f results/ddpm/ddpm-none.pt ] && [ -f results/ddpm/ddpm-mspe.pt ]; then
        python scripts/ddpm_reconstruct.py --threads=1
    else
        echo "skipping ddpm_reconstruct.py: results/ddpm/ddpm-{none,mspe}.pt missing (train them with scripts/ddpm_train.py)"
    fi
    python scripts/inversion_shift.py --num-steps=80
}
gan_lane > runs/experiments-gan.log 2>&1 &
gan=$!
other_lane > runs/experiments-other.log 2>&1 &
other=$!
status=0
wait $gan || { echo "GAN lane failed: see runs/experiments-gan.log"; status=1; }
wait $other || { echo "DDPM/inversion lane failed: see runs/experiments-other.log"; status=1; }
python scripts/results_md.py
exit $status
