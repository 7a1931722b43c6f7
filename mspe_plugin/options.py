"""The command-line flags a StyleGAN2-ADA host gains from the plugin, and their parsing:
train.py's --cfg=mspe|sspe (CFG_RECIPES), --pe, --pe-resize and --pe-margin; generate.py's and projector.py's canvas flags
(--shift --zoom --size --wrap --extent --margin) and --translate-strip. Bad values end in one
click.BadParameter sentence.
"""

import re

import click

PE_CHOICES = ('none', 'sspe', 'mspe')
CFG_NAMES = ('mspe', 'sspe')
# What --cfg=mspe / --cfg=sspe set, on top of the host's 'auto' preset, for every flag not given.
# mspe is the border recipe (MS-PE + random resizing + random 0-8 px margins), chosen by measurement
# (results/README.md, "The border recipe"); the paper's plain MS-PE is --pe=mspe on any preset.
CFG_RECIPES = {
    'mspe': dict(pe='mspe', pe_resize=(0.75, 1.5), pe_margin=8),
    'sspe': dict(pe='sspe'),
}
RESIZE_OFF = ('off', 'none', '')

#----------------------------------------------------------------------------
# Training flags.

def split_cfg(cfg):
    """Map a --cfg value to (host cfg, pe): 'mspe' and 'sspe' use the host's 'auto' settings
    (resolve_cfg adds the rest of the --cfg=mspe recipe)."""
    if cfg in CFG_NAMES:
        return 'auto', cfg
    return cfg, None

def resolve_cfg(cfg, pe=None, pe_resize=None, pe_margin=None):
    """--cfg and the PE flags as given (None: not given) -> (host cfg, pe, pe_resize, pe_margin).

    --cfg=mspe is the host's 'auto' preset with --pe=mspe --pe-resize=0.75,1.5 --pe-margin=8; a flag
    given explicitly wins (--pe-resize=off and --pe-margin=0 switch the recipe's parts off). Other
    --cfg values set nothing: --pe=mspe alone is the paper's MS-PE.
    """
    host_cfg, _pe = split_cfg(cfg)
    recipe = CFG_RECIPES.get(cfg, {})
    pe = pe if pe is not None else recipe.get('pe')
    pe_resize = recipe.get('pe_resize') if pe_resize is None else parse_pe_resize(pe_resize)
    pe_margin = pe_margin if pe_margin is not None else recipe.get('pe_margin')
    return host_cfg, pe, pe_resize, pe_margin

def parse_pe_resize(text):
    """'MIN,MAX' -> (MIN, MAX) zoom range for MS-PE with random resizing; None or 'off' -> None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in RESIZE_OFF):
        return None
    if isinstance(text, (tuple, list)):
        values = list(text)
    else:
        values = str(text).split(',')
    try:
        lo, hi = (float(v) for v in values)
    except ValueError:
        raise click.BadParameter(f'--pe-resize takes MIN,MAX zoom factors such as 0.5,2, or off; got {text!r}.')
    if not 0 < lo <= hi:
        raise click.BadParameter(f'--pe-resize needs 0 < MIN <= MAX; got {text!r}.')
    return (lo, hi)

#----------------------------------------------------------------------------
# Canvas flags.

def _parse_pair(text, sep, name, cast=float):
    parts = re.split(sep, str(text).strip())
    if len(parts) != 2:
        raise click.BadParameter(f'{name} takes two numbers; got {text!r}.')
    try:
        return cast(parts[0]), cast(parts[1])
    except ValueError:
        raise click.BadParameter(f'{name} takes two numbers; got {text!r}.')

def canvas_options(fn):
    """click decorator adding --shift, --zoom, --size, --wrap, --extent and --margin to a command."""
    options = [
        click.option('--shift', type=str, default=None, help='Move the canvas by DY,DX training pixels (fractional ok)', metavar='DY,DX'),
        click.option('--zoom', type=float, default=None, help='Output pixels per training pixel (1.5 renders a 256 model at 384)'),
        click.option('--size', type=str, default=None, help='Output size HxW in pixels (default: the training size times zoom)', metavar='HxW'),
        click.option('--wrap', is_flag=True, default=False, help='Roll the coordinates modulo the training extent (the paper\'s rolled shift)'),
        click.option('--extent', type=str, default=None, help='Training-pixel extent Y0:Y1,X0:X1, e.g. 0:256,-128:384 beyond the border', metavar='Y0:Y1,X0:X1'),
        click.option('--margin', type=click.IntRange(min=0), default=None, help='Render N more pixels beyond every side of the canvas and crop them (N >= G.synthesis.receptive_radius() hides zero padding at any zoom) '
                     '[default: the random training margin of a generator trained with --pe-margin, else 0]', metavar='N'),
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

#----------------------------------------------------------------------------
