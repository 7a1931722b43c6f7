"""How a StyleGAN2-ADA host learns about MS-PE: a handful of calls from train.py, generate.py
and projector.py (our vendored host calls them through its plugin hook; for upstream and its
forks, patches/ add the same calls).

    cfg, pe_from_cfg = register.split_cfg(cfg)            # --cfg=mspe -> ('auto', 'mspe')
    register.configure_generator(args.G_kwargs, pe or pe_from_cfg, register.parse_pe_resize(pe_resize))
    img = G(z, c, noise_mode=..., **register.synthesis_kwargs(canvas))
"""

import re

import click
import torch

PE_CHOICES = ('none', 'sspe', 'mspe')
CFG_NAMES = ('mspe', 'sspe')
GENERATOR_CLASS = 'mspe_plugin.networks.Generator'

#----------------------------------------------------------------------------
# Training.

def split_cfg(cfg):
    """Map a --cfg value to (host cfg, pe): 'mspe' and 'sspe' use the host's 'auto' settings."""
    if cfg in CFG_NAMES:
        return 'auto', cfg
    return cfg, None

def parse_pe_resize(text):
    """'MIN,MAX' -> (MIN, MAX) zoom range for MS-PE with random resizing; None -> None."""
    if text is None or text == '':
        return None
    if isinstance(text, (tuple, list)):
        values = list(text)
    else:
        values = str(text).split(',')
    try:
        lo, hi = (float(v) for v in values)
    except ValueError:
        raise click.BadParameter(f'--pe-resize takes MIN,MAX zoom factors such as 0.5,2; got {text!r}.')
    if not 0 < lo <= hi:
        raise click.BadParameter(f'--pe-resize needs 0 < MIN <= MAX; got {text!r}.')
    return (lo, hi)

def configure_generator(G_kwargs, pe, pe_resize=None, pe_base=10000.0, pe_margin=None, pe_padding=None):
    """Turn the host's generator kwargs (EasyDict with class_name, synthesis_kwargs, ...) into
    an MS-PE / SS-PE / baseline-with-canvas generator, in place. `pe=None` leaves them alone.
    pe_margin / pe_padding: random training margins and the generator's padding (None: 0, 'zero')."""
    if pe is None:
        for flag, value in (('--pe-resize', pe_resize), ('--pe-margin', pe_margin), ('--pe-padding', pe_padding)):
            if value is not None:
                raise click.BadParameter(f'{flag} needs a positional encoding: add --pe=mspe (or --cfg=mspe).')
        return G_kwargs
    if pe not in PE_CHOICES:
        raise click.BadParameter(f'--pe must be one of {", ".join(PE_CHOICES)}; got {pe!r}.')
    G_kwargs['class_name'] = GENERATOR_CLASS
    synthesis_kwargs = G_kwargs.setdefault('synthesis_kwargs', {})
    synthesis_kwargs['pe'] = pe
    synthesis_kwargs['pe_base'] = float(pe_base)
    synthesis_kwargs['pe_resize'] = tuple(pe_resize) if pe_resize is not None else None
    if pe_margin:
        synthesis_kwargs['pe_margin'] = int(pe_margin)
    if pe_padding not in (None, 'zero'):
        synthesis_kwargs['pe_padding'] = pe_padding
    return G_kwargs

def run_desc_suffix(pe, pe_resize=None, pe_margin=None, pe_padding=None):
    """Suffix for the run folder name: '-mspe', '-mspe-rs0.5-2-m8-padnone', or '' for the plain host."""
    if pe is None:
        return ''
    suffix = f'-{pe}'
    if pe_resize is not None:
        suffix += '-rs' + '-'.join(f'{v:g}' for v in pe_resize)
    if pe_margin:
        suffix += f'-m{pe_margin}'
    if pe_padding not in (None, 'zero'):
        suffix += f'-pad{pe_padding}'
    return suffix

def default_device():
    """CUDA when present, else the CPU."""
    return torch.device('cuda') if torch.cuda.is_available() else torch.device('cpu')

#----------------------------------------------------------------------------
# Canvas flags for generate.py / projector.py.

def _parse_pair(text, sep, name, cast=float):
    parts = re.split(sep, str(text).strip())
    if len(parts) != 2:
        raise click.BadParameter(f'{name} takes two numbers; got {text!r}.')
    try:
        return cast(parts[0]), cast(parts[1])
    except ValueError:
        raise click.BadParameter(f'{name} takes two numbers; got {text!r}.')

def canvas_options(fn):
    """click decorator adding --shift, --zoom, --size, --wrap and --extent to a command."""
    options = [
        click.option('--shift', type=str, default=None, help='Move the canvas by DY,DX training pixels (fractional ok)', metavar='DY,DX'),
        click.option('--zoom', type=float, default=None, help='Output pixels per training pixel (1.5 renders a 256 model at 384)'),
        click.option('--size', type=str, default=None, help='Output size HxW in pixels (default: the training size times zoom)', metavar='HxW'),
        click.option('--wrap', is_flag=True, default=False, help='Roll the coordinates modulo the training extent (the paper\'s rolled shift)'),
        click.option('--extent', type=str, default=None, help='Training-pixel extent Y0:Y1,X0:X1, e.g. 0:256,-128:384 beyond the border', metavar='Y0:Y1,X0:X1'),
        click.option('--margin', type=click.IntRange(min=0), default=None, help='Render N more pixels beyond every side of the canvas and crop them (hides zero padding; see receptive_radius)', metavar='N'),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn

def canvas_from_options(shift=None, zoom=None, size=None, wrap=False, extent=None, margin=None):
    """Build a Canvas from the canvas flags; None when every flag has its default."""
    if shift is None and zoom is None and size is None and not wrap and extent is None and not margin:
        return None
    from mspe_plugin.encoding import Canvas, CanvasError
    try:
        zoom_value = 1.0 if zoom is None else float(zoom)
        if extent is not None:
            if shift is not None or size is not None:
                raise click.BadParameter('--extent sets the origin and size itself: drop --shift and --size.')
            y_part, x_part = _parse_pair(extent, r',', '--extent', cast=str)
            y0, y1 = _parse_pair(y_part, r':', '--extent')
            x0, x1 = _parse_pair(x_part, r':', '--extent')
            canvas = Canvas.from_extent(((y0, y1), (x0, x1)), zoom=zoom_value)
            return Canvas(origin=canvas.origin, size=canvas.size, zoom=canvas.zoom, wrap=wrap, margin=margin or 0)
        origin = _parse_pair(shift, r',', '--shift') if shift is not None else (0.0, 0.0)
        size_value = None
        if size is not None:
            size_value = _parse_pair(size.lower(), r'x', '--size', cast=int)
        return Canvas(origin=origin, size=size_value, zoom=zoom_value, wrap=wrap, margin=margin or 0)
    except CanvasError as err:
        raise click.BadParameter(str(err))

def translate_strip_option(fn):
    """click decorator adding --translate-strip=N,STEP (paper Fig. 1: one latent at N shifts)."""
    return click.option('--translate-strip', type=str, default=None, metavar='N,STEP',
        help='Also write the same latent at N canvases, each moved STEP pixels right (fractional ok), side by side')(fn)

def parse_translate_strip(text):
    """'N,STEP' -> (N, STEP): N >= 2 frames, STEP pixels between them; None -> None."""
    if text is None:
        return None
    n, step = _parse_pair(text, r',', '--translate-strip')
    if not (float(n).is_integer() and n >= 2) or step == 0:
        raise click.BadParameter(f'--translate-strip takes N,STEP with N >= 2 frames and a non-zero STEP in pixels, such as 8,2.5; got {text!r}.')
    return int(n), float(step)

def strip_canvases(canvas, n, step):
    """The canvases of a translate strip: `canvas` (None = the training grid) with the content
    moved right by 0, step, ..., (n - 1) * step pixels (the canvas origin moves left)."""
    from mspe_plugin.encoding import Canvas
    base = canvas if canvas is not None else Canvas()
    return [base.shifted(0, -k * step) for k in range(n)]

def synthesis_kwargs(canvas):
    """Keyword arguments that render on `canvas` ({} for the training grid)."""
    return {} if canvas is None else {'canvas': canvas}

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
