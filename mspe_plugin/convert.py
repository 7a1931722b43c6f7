"""Loaded generators in a host: where they run, how a synthesis call renders a canvas, and the
conversion of a plain StyleGAN2-ADA generator (e.g. an upstream pickle) into one that can.
"""

import dataclasses

import click
import torch

#----------------------------------------------------------------------------

def default_device():
    """CUDA when present, else the CPU."""
    return torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')

def synthesis_kwargs(canvas):
    """Keyword arguments that render on `canvas` ({} for the training grid)."""
    return {} if canvas is None else {'canvas': canvas}

def default_margin(G):
    """The inference margin G renders with when none is asked for: the largest random training
    margin of a generator trained with them (--pe-margin), whose margin-0 render shows every edge
    at a place training rarely did (all four random margins 0), else 0."""
    return int(getattr(getattr(G, 'synthesis', None), 'pe_margin', 0) or 0)

def with_default_margin(G, canvas, margin):
    """`canvas` (None = the training grid) as the command line asked for it: `margin` is the
    --margin flag (None: not given, so G's default_margin; 0: none, the plain render)."""
    if margin is not None or not default_margin(G):
        return canvas
    from mspe_plugin.encoding import Canvas
    canvas = Canvas() if canvas is None else canvas
    return dataclasses.replace(canvas, margin=max(int(canvas.margin), default_margin(G)))

def with_canvas_support(G):
    """A generator that renders canvases: `G` itself when it has one, else (a plain StyleGAN2-ADA
    generator, e.g. an upstream pickle) the same weights in our baseline variant (pe='none'),
    which reads the learned constant on the canvas."""
    synthesis = getattr(G, 'synthesis', None)
    if getattr(synthesis, 'pe', None) is not None:
        return G
    init_kwargs = getattr(G, 'init_kwargs', None)
    if init_kwargs is None or not hasattr(synthesis, 'b4'):
        raise click.ClickException('This network cannot render a canvas (it is not a StyleGAN2-ADA generator '
                                   'built by a persistent class); drop --shift/--zoom/--size/--wrap/--extent.')
    from torch_utils import misc
    from mspe_plugin import networks as pe_networks
    kwargs = dict(init_kwargs)
    kwargs['synthesis_kwargs'] = dict(kwargs.get('synthesis_kwargs', {}), pe='none')
    device = next(G.parameters()).device
    canvas_G = pe_networks.Generator(**kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, canvas_G, require_all=True)
    return canvas_G.to(device)

def check_canvas_support(G, canvas):
    """Refuse, in one sentence, a canvas for a generator that cannot render one."""
    if canvas is None:
        return
    synthesis = getattr(G, 'synthesis', None)
    if getattr(synthesis, 'pe', None) is None:
        raise click.ClickException('This network has no canvas support (it was not trained with the mspe plugin); '
                                   'convert it with register.with_canvas_support(G), or drop --shift/--zoom/--size/--wrap/--extent.')

#----------------------------------------------------------------------------
