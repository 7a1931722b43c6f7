"""Closed-form factorisation of latent semantics (SeFa; Shen & Zhou, CVPR 2021) for StyleGAN2-ADA,
MS-PE, SS-PE and baseline generators, and latent editing along the directions found.

    python -m scripts.tools.sefa --network results/models/mspe.pkl --seeds 0-3 --outdir out/sefa
    python -m scripts.tools.sefa --network NET.pkl --projected-w out/projected_w.npz --layers 0-3 --k 3

SeFa: every style (the affine layer that turns w into one modulation vector) is a linear map
A_l [channels_l, w_dim]. Stacking the chosen layers' maps into A (each row normalised to unit
length, so that every style channel counts once) and taking the top-k eigenvectors of A^T A gives
the unit directions n in W along which the styles change most (max ||A n||^2, orthonormal). An
edit moves w by `strength * n` in the chosen layers only. For every seed (or the projected latent,
rendered on its saved canvas) the script writes a strip image: one row per direction, one column
per strength; plus directions.npz (directions, eigenvalues, layers).
"""

import os
import re

import click
import numpy as np
import PIL.Image
import torch

import scripts  # noqa: F401  (puts the vendored host on sys.path)

#----------------------------------------------------------------------------

def style_layers(G):
    """[(w_index, kind, affine)] for every modulated layer, in the order ws are consumed: block b's
    conv layers take consecutive ws, its ToRGB takes the w after them (the next block's first)."""
    out = []
    w_idx = 0
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f'b{res}')
        convs = [getattr(block, name) for name in ('conv0', 'conv1') if hasattr(block, name)]
        for i, layer in enumerate(convs):
            out.append((w_idx + i, 'conv', layer.affine))
        if getattr(block, 'num_torgb', 0):
            out.append((w_idx + len(convs), 'torgb', block.torgb.affine))
        w_idx += block.num_conv
    return out

def parse_layers(layers, num_ws):
    """Which w indices: 'all', a string such as '0-3,6', or a sequence of ints. Sorted list."""
    if isinstance(layers, str):
        if layers.strip() == 'all':
            return list(range(num_ws))
        indices = []
        for part in layers.split(','):
            m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
            if not m:
                raise ValueError(f'Layers are "all" or indices and ranges such as 0-3,6; got {layers!r}.')
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            indices.extend(range(lo, hi + 1))
    else:
        indices = [int(i) for i in layers]
    bad = [i for i in indices if not 0 <= i < num_ws]
    if bad or not indices:
        raise ValueError(f'Layer indices must lie in 0..{num_ws - 1} (this generator has {num_ws} ws); got {layers!r}.')
    return sorted(set(indices))

def sefa_directions(G, layers='all', k=5):
    """Top-k SeFa directions of G's styles for the chosen w indices.

    The conv layers' affine maps are used (as the SeFa paper does for StyleGAN2); an index that
    only feeds a ToRGB layer (the last one) contributes that layer's map instead.

    :param G: generator with G.synthesis (host, MS-PE, SS-PE or baseline variant).
    :param layers: 'all', '0-3,6' or a list of w indices.
    :param k: number of directions (<= w_dim).
    :return: (directions [k, w_dim] float32, unit rows, orthonormal, strongest first;
              eigenvalues [k] float32, descending).
    """
    indices = set(parse_layers(layers, G.num_ws))
    found = style_layers(G)
    weights = []
    for idx in sorted(indices):
        convs = [aff for i, kind, aff in found if i == idx and kind == 'conv']
        chosen = convs or [aff for i, kind, aff in found if i == idx]
        weights.extend(aff.weight.detach().to(torch.float64).cpu() for aff in chosen)
    A = torch.cat(weights, dim=0)                                   # [sum of channels, w_dim]
    A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)            # each style channel: unit row
    if not 1 <= k <= A.shape[1]:
        raise ValueError(f'k must lie in 1..{A.shape[1]} (w_dim); got {k}.')
    eigenvalues, eigenvectors = torch.linalg.eigh(A.T @ A)          # ascending
    directions = eigenvectors[:, -k:].flip(1).T.contiguous()        # [k, w_dim], strongest first
    # Eigenvectors have no sign: make each one's largest component positive (reproducible strips).
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    return (directions * signs).to(torch.float32), eigenvalues[-k:].flip(0).to(torch.float32)

def edit_ws(ws, direction, strength, layers='all'):
    """ws [N, num_ws, w_dim] moved by strength * direction [w_dim] in the chosen w indices (a new tensor)."""
    if ws.ndim != 3:
        raise ValueError(f'ws must be [N, num_ws, w_dim]; got shape {tuple(ws.shape)}.')
    indices = parse_layers(layers, ws.shape[1])
    out = ws.clone()
    out[:, indices] += float(strength) * direction.to(ws.device, ws.dtype)
    return out

#----------------------------------------------------------------------------

def parse_seeds(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in str(text).split(','):
        m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if not m:
            raise click.BadParameter(f'Seeds are numbers and ranges such as 0-3,7; got {text!r}.', param_hint='--seeds')
        seeds.extend(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return seeds

def parse_strengths(text):
    try:
        return [float(v) for v in str(text).split(',')]
    except ValueError:
        raise click.BadParameter(f'Strengths are comma-separated numbers such as -3,0,3; got {text!r}.', param_hint='--strengths')

def load_projected(path, device):
    """(ws [1, num_ws, w_dim], Canvas or None) from projector.py's projected_w.npz."""
    try:
        data = np.load(path)
        ws = torch.from_numpy(data['w']).to(device, torch.float32)
    except (OSError, ValueError, KeyError):
        raise click.ClickException(f'--projected-w {path} is not a projected_w.npz written by projector.py.')
    canvas = None
    if 'canvas_origin' in data:
        from mspe_plugin.encoding import Canvas
        canvas = Canvas(origin=tuple(float(v) for v in data['canvas_origin']), size=tuple(int(v) for v in data['canvas_size']),
                        zoom=float(data['canvas_zoom']), wrap=bool(data['canvas_wrap']))
    return ws, canvas

@torch.no_grad()
def edit_strip(G, ws, directions, strengths, layers, canvas=None, noise_mode='const'):
    """uint8 [rows * H, cols * W, C]: row i = direction i, column j = strengths[j], for ws [1, num_ws, w_dim]."""
    kwargs = {} if canvas is None else {'canvas': canvas}
    rows = []
    for direction in directions:
        batch = torch.cat([edit_ws(ws, direction, s, layers) for s in strengths])
        img = G.synthesis(batch, noise_mode=noise_mode, **kwargs)
        img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        rows.append(np.concatenate(list(img), axis=1))
    return np.concatenate(rows, axis=0)

def save_png(array, path):
    PIL.Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)

@click.command()
@click.option('--network', 'network_pkl', required=True, help='Network pickle filename')
@click.option('--layers', default='all', show_default=True, help='w indices to factorise and edit: all, or e.g. 0-3,6')
@click.option('--k', type=click.IntRange(min=1), default=5, show_default=True, help='Number of directions')
@click.option('--seeds', default='0-3', show_default=True, help='Seeds to edit (ignored with --projected-w)')
@click.option('--projected-w', 'projected_w', default=None, help='Edit this projected_w.npz (from projector.py) instead of seeds')
@click.option('--strengths', default='-3,-1.5,0,1.5,3', show_default=True, help='Edit strengths along each direction')
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi for seeds')
@click.option('--class', 'class_idx', type=int, default=None, help='Class label of the seeds (a conditional network only)')
@click.option('--outdir', required=True, help='Where to save the strips and directions.npz')
def main(network_pkl, layers, k, seeds, projected_w, strengths, truncation_psi, class_idx, outdir):
    """Find SeFa directions of a generator and edit seeds or a projected latent along them."""
    import projector    # the host's projector: the same network loading and device choice
    device = projector.parse_device('auto')
    strengths = parse_strengths(strengths)
    G = projector.load_generator(network_pkl, device)
    try:
        directions, eigenvalues = sefa_directions(G, layers, min(k, G.w_dim))
    except ValueError as err:
        raise click.ClickException(str(err))
    if projected_w is not None:
        ws, canvas = load_projected(projected_w, device)
        if ws.shape[1:] != (G.num_ws, G.w_dim):
            raise click.ClickException(f'--projected-w holds ws of shape {tuple(ws.shape[1:])}, but the network needs {(G.num_ws, G.w_dim)}.')
        targets = [('projected', ws, canvas)]
        if canvas is not None:      # a plain generator (e.g. upstream's) reads its constant on the canvas
            from mspe_plugin import register
            G = register.with_canvas_support(G)
    else:
        from generate import class_label    # the host's --class handling (its checks and messages)
        c = class_label(G, class_idx, device)
        targets = []
        for seed in parse_seeds(seeds):
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
            targets.append((f'seed{seed:04d}', G.mapping(z, c, truncation_psi=truncation_psi), None))

    os.makedirs(outdir, exist_ok=True)
    print('eigenvalues: ' + ', '.join(f'{v:.2f}' for v in eigenvalues.tolist()))
    for name, ws, canvas in targets:
        path = os.path.join(outdir, f'sefa-{name}.png')
        save_png(edit_strip(G, ws, directions.to(device), strengths, layers, canvas), path)
        print(f'wrote {path} (rows: directions 0..{len(directions) - 1}, columns: strengths {strengths})')
    np.savez(os.path.join(outdir, 'directions.npz'), directions=directions.numpy(), eigenvalues=eigenvalues.numpy(),
             layers=np.array(parse_layers(layers, G.num_ws)))

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
