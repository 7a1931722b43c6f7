#!/usr/bin/env bash
# Train the digit generators of the spatial-bias experiments (paper Fig. 1, 2, 4, Table 1) on
# colour-MNIST digits biased to the upper-left quadrant, with identical settings and seeds:
#
#   baseline  learned 4x4 constant (the host's StyleGAN2 generator)
#   sspe      positional encoding as the input only (the paper's SS-PE ablation)
#   mspe      MS-PE: PE input + gamma_l * PE_l at every later scale
#   mspe_rs   MS-PE with random resizing (G renders at a zoom in [0.75, 1.5], resized back)
#   default   MS-PE with random resizing and random 0-8 px margins per side (the border recipe,
#             --pe-resize=0.75,1.5 --pe-margin=8; what --cfg=mspe means) and the plain-outside penalty
#             for plain-background data (--pe-outside=30, mspe_plugin/outside.py)
#
#   bash scripts/experiments/train_digits.sh                  # all four, one after another
#   bash scripts/experiments/train_digits.sh mspe baseline    # just these
#   KIMG=300 bash scripts/experiments/train_digits.sh         # a longer schedule (runs resume and extend)
#   COND=1 bash scripts/experiments/train_digits.sh           # class-conditional on the MNIST labels (--cond=1),
#                                                             # runs in runs/digits-cond/
#   RUNS=runs/digits-c128 CMAX=128 bash scripts/experiments/train_digits.sh   # wider networks, in a folder of their own
#   RUNS=runs/digits-lr01 LR=0.01 bash scripts/experiments/train_digits.sh    # G and D learning rate 0.01 (--glr/--dlr)
#
# Class-conditional models on the MNIST labels with the label cross-entropy recipe (train.py's
# "training recipe" flags, training/loss_labelce.py; the earlier committed set, in git history):
#   RUNS=runs/digits-labelce COND=1 EXTRA="--label-ce=10 --dmap=1 --dmap-lr=1" bash scripts/experiments/train_digits.sh
# Unconditional runs of this setting collapse to one digit shape: results/NOTES.md.
# The wider set on the 60k training split (results/models/wide/, results/README.md "The border recipe"):
#   RUNS=runs/cond MODELS=results/models/wide COND=1 CBASE=1024 CMAX=128 SNAP_TICKS=4 \
#     MNIST=../shared/data/mnist/train-images-idx3-ubyte.gz DATA=datasets/mnist60k-ul32.zip \
#     EXTRA="--label-ce=10 --dmap=1 --dmap-lr=1 --compile=on --cpu-bf16=1" \
#     bash scripts/experiments/train_digits.sh baseline mspe default
#
# The committed models (results/models/*.pkl; issue "Diverse digits"): unconditional, by self-conditioning on 100
# shape clusters of the 60k split (cluster_labels.py), D's minibatch-std groups holding one cluster until 480 kimg,
# random batches for the last 16 (results/NOTES.md):
#   python -m scripts.experiments.cluster_labels --data=datasets/mnist60k-ul32.zip --k=100 --dest=datasets/mnist60k-ul32-k100.zip
#   RUNS=runs/final MODELS=results/models COND=1 SELF_COND=1 CFG=auto CBASE=1024 CMAX=128 SNAP_TICKS=4 KIMG=496 \
#     DATA=datasets/mnist60k-ul32-k100.zip \
#     EXTRA="--label-ce=10 --dmap=1 --dmap-lr=1 --label-groups=1 --label-groups-kimg=480 --compile=on --cpu-bf16=1" \
#     bash scripts/experiments/train_digits.sh baseline sspe mspe mspe_rs default
# `default` trains the border recipe to OUTSIDE_KIMG (128) and continues with --pe-outside=30 from there, as
# the committed default.pkl did (results/NOTES.md "A plain world beyond the grid"; the penalty joined that run
# by an edit of its training_options.json, which train.py --resume-run --pe-outside now makes). That run's
# snapshot and options: results/models/resume/outside-w30/.
#
# Every run lives in $RUNS/<name>/ (default runs/digits) and resumes from its newest snapshot when
# the script is started again (a killed run loses at most one snapshot interval). After each run
# its newest snapshot's G_ema goes to results/models/<name>.pkl (collect_digit_models.py), where
# the experiment scripts read it. To train the models side by side, one core each:
#   OMP_NUM_THREADS=1 bash scripts/experiments/train_digits.sh NAME &
#
# Why 32 px: the paper trains at 64 px; on CPU a 64 px model costs ~4x the time per image, so we
# keep the paper's layout (digit at half the canvas side, in the upper-left quadrant) at 32 px.
# Why --aug=noaug: ADA's geometric augmentations (integer translation, rotation, scaling) would
# show the generator the digit at other places and undo the bias the experiment is about. Why
# --cmax=32: digits need few channels, and wider networks cost several times the time per kimg.
# The data are MNIST's test split, shipped in tests/data/mnist.
set -euo pipefail
cd "$(dirname "$0")/../.."

KIMG=${KIMG:-192}                # the committed models: 192 kimg
SNAP_TICKS=${SNAP_TICKS:-2}      # a snapshot every 2 ticks of 4 kimg
CMAX=${CMAX:-32}                 # 32 channels at every scale of G and D
CBASE=${CBASE:-}                 # channel base (--cbase; empty: the preset's), e.g. 1024 with CMAX=128
MODELS=${MODELS:-results/models} # where collect_digit_models.py puts the G_ema pickles and models.json
CFG=${CFG:-cpu}                  # base config of train.py (cpu: the committed models)
COND=${COND:-0}                  # 1: condition G and D on the digit's label (dataset.json)
LR=${LR:-}                       # learning rate of G and D (--glr/--dlr); empty: the preset's 0.0025
SELF_COND=${SELF_COND:-0}        # 1: DATA's labels are shape clusters (cluster_labels.py); the collected G_ema is
                                 # unconditional (it draws the cluster from its latent, training/self_conditioning.py)
EXTRA=${EXTRA:-}                 # more train.py flags for a new run, e.g. EXTRA="--label-ce=10 --dmap=1 --dmap-lr=1"
MNIST=${MNIST:-tests/data/mnist/t10k-images-idx3-ubyte.gz}    # the digits DATA is built from when missing
DATA=${DATA:-datasets/mnist-ul32.zip}
OUTSIDE=${OUTSIDE:-30}           # default: weight of the plain-outside penalty (train.py --pe-outside)
OUTSIDE_KIMG=${OUTSIDE_KIMG:-128}  # default: the penalty joins the run here (train.py --resume-run --pe-outside);
                                 # 0: from the start (not what the committed default did)
NAMES=("$@")
if [ "$COND" = 1 ]; then COND_FLAG=--cond=1; DEFAULT_RUNS=runs/digits-cond; else COND_FLAG=; DEFAULT_RUNS=runs/digits; fi
RUNS=${RUNS:-$DEFAULT_RUNS}      # where the runs live (another schedule: another folder, e.g. RUNS=runs/digits-c128 CMAX=128)
[ ${#NAMES[@]} -gt 0 ] || NAMES=(baseline sspe mspe mspe_rs)
if [ -n "$LR" ]; then LR_FLAGS="--glr=$LR --dlr=$LR"; else LR_FLAGS=; fi
LR_FLAGS="$LR_FLAGS $EXTRA"
if [ -n "$CBASE" ]; then LR_FLAGS="$LR_FLAGS --cbase=$CBASE"; fi

if [ ! -f "$DATA" ]; then
    python stylegan2_ada_vendor/dataset_tool.py --source="$MNIST" --dest="$DATA" \
        --place=upper-left --colorize --resolution=32
fi

pe_flags() {
    case "$1" in
        baseline) echo "--pe=none" ;;
        sspe)     echo "--pe=sspe" ;;
        mspe)     echo "--pe=mspe" ;;
        mspe_rs)  echo "--pe=mspe --pe-resize=0.75,1.5" ;;
        default)  echo "--pe=mspe --pe-resize=0.75,1.5 --pe-margin=8" ;;    # + --pe-outside from OUTSIDE_KIMG (below)
        *) echo "unknown model '$1': choose from baseline sspe mspe mspe_rs default" >&2; exit 2 ;;
    esac
}

train_to() {   # train_to NAME KIMG [MORE_FLAGS]: start the run of NAME, or continue it, to KIMG (MORE_FLAGS: either way)
    local name=$1 kimg=$2 more_flags=${3:-}
    local flags outdir run_dir
    flags=$(pe_flags "$name")
    outdir=$RUNS/$name
    if ls "$outdir"/*/training_options.json >/dev/null 2>&1; then
        run_dir=$(ls -d "$outdir"/*/ | sort | tail -n 1)
        if ls "$run_dir"network-snapshot-*.pkl >/dev/null 2>&1; then
            # --resume-run refuses a run that already reached KIMG (nothing to do); a crash is told
            # too, and its newest snapshot is still collected below.
            # shellcheck disable=SC2086
            python stylegan2_ada_vendor/train.py --resume-run="$run_dir" --kimg="$kimg" $more_flags \
                || echo "$name: train.py ended with an error (see above; 'already reached' means the run is done)"
        else
            rm -rf "$run_dir"    # died before its first snapshot: nothing to keep
        fi
    fi
    if ! ls "$outdir"/*/network-snapshot-*.pkl >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        python stylegan2_ada_vendor/train.py --outdir="$outdir" --data="$DATA" --cfg="$CFG" --cmax="$CMAX" $flags \
            --aug=noaug --mirror=false --kimg="$kimg" --snap="$SNAP_TICKS" --seed=0 --metrics=none $COND_FLAG $LR_FLAGS $more_flags
    fi
}

reached() {    # reached NAME KIMG: whether the newest snapshot of NAME's run is at KIMG or later
    local newest
    newest=$(ls "$RUNS/$1"/*/network-snapshot-*.pkl 2>/dev/null | sed 's/.*network-snapshot-\([0-9.]*\)\.pkl$/\1/' | sort -g | tail -n 1)
    [ -n "$newest" ] && awk "BEGIN { exit !($newest >= $2) }"
}

mkdir -p "$MODELS"
for name in "${NAMES[@]}"; do
    pe_flags "$name" >/dev/null
    if [ "$name" = default ] && awk "BEGIN { exit !($OUTSIDE_KIMG <= 0) }"; then
        train_to "$name" "$KIMG" "--pe-outside=$OUTSIDE"                         # the penalty from the start
    elif [ "$name" = default ] && awk "BEGIN { exit !($OUTSIDE_KIMG >= $KIMG) }"; then
        echo "$name: KIMG=$KIMG ends before OUTSIDE_KIMG=$OUTSIDE_KIMG, so this run gets no --pe-outside (OUTSIDE_KIMG=0: from the start)"
        train_to "$name" "$KIMG"
    elif [ "$name" = default ]; then
        reached "$name" "$OUTSIDE_KIMG" || train_to "$name" "$OUTSIDE_KIMG"     # the border recipe alone, then
        if reached "$name" "$OUTSIDE_KIMG"; then
            train_to "$name" "$KIMG" "--pe-outside=$OUTSIDE"                     # the plain-outside penalty joins the run
        else
            echo "$name: the run stopped before $OUTSIDE_KIMG kimg; start the script again to continue it" >&2
        fi
    else
        train_to "$name" "$KIMG"
    fi
    if [ "$SELF_COND" = 1 ]; then SELF_FLAG=--self-cond; else SELF_FLAG=; fi
    # shellcheck disable=SC2086
    python -m scripts.experiments.collect_digit_models --runs="$RUNS" --out="$MODELS" $SELF_FLAG "$name"    # G_ema-only copy, its fakes, models.json
done
