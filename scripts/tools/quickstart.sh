#!/usr/bin/env bash
# The README's main job, on a fresh machine with no download: build the embedded spatially
# biased digits (rendered with Pillow's font, upper-left quadrant, random colours), train a small
# MS-PE generator with `train.py --cfg=mspe` (the border recipe) for a few minutes, and render it on shifted, zoomed,
# wider and beyond-the-border canvases.
#
#   bash scripts/tools/quickstart.sh              # 12 kimg: a few minutes on a CPU
#   KIMG=40 bash scripts/tools/quickstart.sh      # longer (the run resumes where it stopped)
#
# Output: out/quickstart/{shift,zoom,wide,beyond}/ (seed PNGs, grid.png, translate strips), and
# the same canvases of our committed MNIST model in out/quickstart/trained-*/:
# results/models/default.pkl, the unconditional digit default (`--cfg=mspe`: MS-PE with random resizing
# and random margins, the border recipe; plus --pe-outside=30, which keeps the canvas beyond the grid
# plain; results/README.md), which follows the canvas; where that one is
# missing, the class-conditional results/models/wide/default.pkl drawing digit $CLASS (default 3).
# Then a moved and zoomed real digit projected into default.pkl with its canvas found
# (out/quickstart/unaligned/: target.png, proj.png, projected_w.npz with the fitted canvas).
set -euo pipefail
cd "$(dirname "$0")/../.."

KIMG=${KIMG:-12}
CLASS=${CLASS:-3}     # the digit the class-conditional fallback model draws
DATA=datasets/quickstart-digits.zip
OUT=out/quickstart
HOST=stylegan2_ada_vendor

if [ ! -f "$DATA" ]; then
    python $HOST/dataset_tool.py --source=builtin:digits --dest="$DATA" --max-images=4000 \
        --place=upper-left --colorize --resolution=32
fi

# Train (or continue) the MS-PE model (--cfg=mspe: MS-PE with random resizing and 0-8 px random
# margins, the border recipe): 32 channels per scale keep it CPU sized; no augmentation,
# since ADA's translations would teach the generator other positions than the data's; minibatches
# of 8 instead of 32: the same images in four times the steps, which a run this short needs before
# its drawing follows the canvas; --pe-outside=30, as our digit default: a plain background beyond
# the grid, no copies of the drawing there (results/NOTES.md, "The quickstart's own run").
RUNS=runs/quickstart
if ls $RUNS/*/network-snapshot-*.pkl >/dev/null 2>&1; then
    run_dir=$(ls -d $RUNS/*/ | sort | tail -n 1)
    python $HOST/train.py --resume-run="$run_dir" --kimg="$KIMG" || true     # refuses when already done
else
    python $HOST/train.py --outdir=$RUNS --data="$DATA" --cfg=mspe --cmax=32 --aug=noaug --batch=8 --pe-outside=30 \
        --kimg="$KIMG" --tick=2 --snap=2 --metrics=none
fi
network=$(ls $RUNS/*/network-snapshot-*.pkl | sort | tail -n 1)

render() {   # render NETWORK PREFIX [FLAGS]: the four canvases of the README
    local net=$1 prefix=$2
    shift 2
    python $HOST/generate.py --network="$net" --seeds=0-7 --grid --outdir="$OUT/${prefix}shift" --translate-strip=9,2 "$@"
    python $HOST/generate.py --network="$net" --seeds=0-7 --grid --outdir="$OUT/${prefix}zoom" --zoom=2 "$@"
    python $HOST/generate.py --network="$net" --seeds=0-7 --grid --outdir="$OUT/${prefix}wide" --size=32x64 "$@"
    python $HOST/generate.py --network="$net" --seeds=0-7 --grid --outdir="$OUT/${prefix}beyond" --extent=-16:48,-16:48 "$@"
}
render "$network" ""
if [ -f results/models/default.pkl ]; then
    render results/models/default.pkl trained-
elif [ -f results/models/wide/default.pkl ]; then
    render results/models/wide/default.pkl trained- --class="$CLASS"
fi
# Project an unaligned real digit (MNIST test digit 0, moved 5 px down and 6 px right, zoomed x1.25)
# into the committed model: the canvas is found by anchoring to the model's typical digit frame.
if [ -f results/models/default.pkl ]; then
    python -m scripts.tools.unaligned_digit --index=0 --shift=5,6 --zoom=1.25 --out="$OUT/unaligned/target-in.png"
    python $HOST/projector.py --network=results/models/default.pkl --target="$OUT/unaligned/target-in.png" \
        --outdir="$OUT/unaligned" --fit-canvas --fit-zoom --fit-method=anchor --loss=pixel --num-steps=200
fi
echo "Done: $network rendered into $OUT/ (shift: translate strips, 2 px per frame; zoom: 2x; wide: 32x64; beyond: [-16, 48]^2)."
