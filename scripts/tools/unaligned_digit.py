"""An unaligned target with a known canvas: a real MNIST test digit, placed and coloured as the
digit models' training set, then moved and zoomed (what projector.py --fit-canvas should undo).

    python -m scripts.tools.unaligned_digit --index=0 --shift=5,6 --zoom=1.25 --out=out/unaligned.png
    python stylegan2_ada_vendor/projector.py --network=results/models/default.pkl --target=out/unaligned.png \\
        --outdir=out/project --fit-canvas --fit-zoom --fit-method=anchor --loss=pixel

The digit moves by --shift (dy, dx) output pixels and grows by --zoom about the centre of the
training quadrant (scripts/experiments/fit_canvas_eval.py, known_canvas). Prints the canvas the
projector should find and writes the 32 px PNG (the repository's MNIST test digits; no download).
"""

import os

import click
import numpy as np
import PIL.Image

import scripts  # noqa: F401  (puts the vendored host on sys.path)
from scripts.experiments import fit_canvas_eval as fce
from mspe_plugin import fit

MNIST_DIR = os.path.join(scripts.ROOT, 'tests', 'data', 'mnist')

def parse_pair(text):
    try:
        dy, dx = (float(v) for v in text.split(','))
    except ValueError:
        raise click.BadParameter(f'{text!r} is not two numbers DY,DX, e.g. 5,6.', param_hint='--shift') from None
    return dy, dx

@click.command()
@click.option('--index', type=click.IntRange(min=0), default=0, show_default=True, help='MNIST test digit (0: a 7)')
@click.option('--shift', default='5,6', show_default=True, help='DY,DX: output pixels the digit moves (down, right)')
@click.option('--zoom', type=click.FloatRange(min=0.25, max=4), default=1.25, show_default=True, help='How much larger the digit is drawn')
@click.option('--resolution', type=click.IntRange(min=8), default=32, show_default=True, help='Training resolution of the digit models')
@click.option('--mnist', default=MNIST_DIR, show_default=True, help='Folder with t10k-images-idx3-ubyte.gz')
@click.option('--out', required=True, help='PNG to write')
def main(index, shift, zoom, resolution, mnist, out):
    """Write a moved and zoomed real digit and print its known canvas."""
    offset = parse_pair(shift)
    path = os.path.join(mnist, 't10k-images-idx3-ubyte.gz')
    if not os.path.isfile(path):
        raise click.ClickException(f'{path} does not exist; pass --mnist with the folder of the MNIST test split.')
    digits = fce.dataset_tool.read_idx(path, 2051)
    if index >= len(digits):
        raise click.ClickException(f'--index {index}: {path} holds {len(digits)} digits.')
    R = resolution
    aligned = fce.training_placement(digits[index], R, np.random.default_rng(index))
    canvas = fce.known_canvas(offset, zoom, R)
    target = fit.resample_on_canvas(aligned, canvas, R)
    if bool(fit.touches_frame(target)[0]):
        print('Note: the digit reaches the edge of the frame; a cut-off digit gives a partial frame to anchor to.')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    PIL.Image.fromarray(((target[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)).save(out)
    print(f'Wrote {out}: MNIST test digit {index} moved by ({offset[0]:g}, {offset[1]:g}) px and zoomed x{zoom:g}; '
          f'known canvas: origin ({canvas.origin[0]:.3f}, {canvas.origin[1]:.3f}), zoom {canvas.zoom:.4f}')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
