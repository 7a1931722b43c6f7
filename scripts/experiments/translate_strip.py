"""The same latents at successive shifts, per model (paper Fig. 1 / 2): one image.

    python -m scripts.experiments.translate_strip [--num 3] [--steps 9] [--step 2.0] [--out results/paper/translate_strip.png]

Row block per model, one row per latent, columns: the canvas moved by -k*step pixels along both
axes (the digit trained in the upper-left corner walks towards the bottom-right). Beside the
PNG, a JSON records per model and column how many digits the classifier still reads as the
digit of column 0.
"""
import json
import os

import click

from scripts.experiments import digits as dg

@click.command()
@click.option('--num', type=int, default=3, help='Latents per model')
@click.option('--steps', type=int, default=9, help='Columns')
@click.option('--step', type=float, default=2.0, help='Pixels per column (fractional ok)')
@click.option('--seed', type=int, default=0)
@click.option('--models-dir', default=dg.MODELS_DIR)
@click.option('--out', default=dg.out_path('translate_strip') + '.png')
def main(num, steps, step, seed, models_dir, out):
    models = dg.load_models(models_dir=models_dir)
    classifier = dg.load_classifier(device=dg.pick_device())
    rows, agreement = [], {}
    for name, G in models.items():
        ws = dg.latents(G, num, seed=seed)
        images = [dg.render(G, ws, dg.shifted_canvas(G, -k * step, -k * step)) for k in range(steps)]
        first = dg.classify(classifier, images[0])[0]
        agreement[name] = [float((dg.classify(classifier, img)[0] == first).float().mean()) for img in images]
        columns = [dg.to_uint8(img) for img in images]
        rows += [[col[i] for col in columns] for i in range(num)]
    dg.save_rows(rows, out)
    with open(os.path.splitext(out)[0] + '.json', 'w') as f:
        json.dump(dict(num=num, steps=steps, step=step, shifts=[k * step for k in range(steps)],
                       class_agreement_with_column0=agreement), f, indent=1)
    print(f'wrote {out}: {num} rows per model in the order {", ".join(models)}; shift step {step} px')

if __name__ == '__main__':
    main()
