"""The same latents at successive shifts, per model (paper Fig. 1 / 2): one image.

    python scripts/translate_strip.py [--num 3] [--steps 9] [--step 2.0] [--out results/translate_strip.png]

Row block per model, one row per latent, columns: the canvas moved by -k*step pixels along both
axes (the digit trained in the upper-left corner walks towards the bottom-right). Beside the
PNG, a JSON records per model and column how many digits the classifier still reads as the
digit of column 0.
"""
import json
import os

import click

import digit_models as dm
from digit_classifier import classify, load_classifier

@click.command()
@click.option('--num', type=int, default=3, help='Latents per model')
@click.option('--steps', type=int, default=9, help='Columns')
@click.option('--step', type=float, default=2.0, help='Pixels per column (fractional ok)')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dm.MODELS_DIR)
@click.option('--out', default=os.path.join(dm.ROOT, 'results', 'translate_strip.png'))
def main(num, steps, step, seed, models_dir, out):
    models = dm.load_models(models_dir=models_dir)
    classifier = load_classifier(device=dm.pick_device())
    rows, agreement = [], {}
    for name, G in models.items():
        ws = dm.latents(G, num, seed=seed)
        images = [dm.render(G, ws, dm.shifted_canvas(G, -k * step, -k * step)) for k in range(steps)]
        first = classify(classifier, images[0])[0]
        agreement[name] = [float((classify(classifier, img)[0] == first).float().mean()) for img in images]
        columns = [dm.to_uint8(img) for img in images]
        rows += [[col[i] for col in columns] for i in range(num)]
    dm.save_rows(rows, out)
    with open(os.path.splitext(out)[0] + '.json', 'w') as f:
        json.dump(dict(num=num, steps=steps, step=step, shifts=[k * step for k in range(steps)],
                       class_agreement_with_column0=agreement), f, indent=1)
    print(f'wrote {out}: {num} rows per model in the order {", ".join(models)}; shift step {step} px')

if __name__ == '__main__':
    main()
