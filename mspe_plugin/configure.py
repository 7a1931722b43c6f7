"""Generator configuration for training: turn a host's generator kwargs (the EasyDict with
`class_name` that train.py builds) into the plugin's MS-PE / SS-PE / baseline generator, and
name the run after it.
"""

import click

from mspe_plugin.options import PE_CHOICES

GENERATOR_CLASS = 'mspe_plugin.networks.Generator'

#----------------------------------------------------------------------------

def configure_generator(G_kwargs, pe, pe_resize=None, pe_base=10000.0, pe_margin=None, pe_padding=None, pe_translate=None,
                        pe_min_period=None, pe_min_period_res=None, pe_outside=None):
    """Turn the host's generator kwargs (EasyDict with class_name, synthesis_kwargs, ...) into
    an MS-PE / SS-PE / baseline-with-canvas generator, in place. `pe=None` leaves them alone.
    pe_margin / pe_padding / pe_translate: random training margins, the generator's padding and
    random training windows (None: 0, 'zero', 0; pe_translate also needs configure_loss);
    pe_min_period / pe_min_period_res: encoding frequencies left out (None: all kept);
    pe_outside: checked here (it needs a generator with canvases), applied by configure_loss."""
    if pe is None:
        for flag, value in (('--pe-resize', pe_resize), ('--pe-margin', pe_margin), ('--pe-padding', pe_padding),
                            ('--pe-translate', pe_translate), ('--pe-min-period', pe_min_period),
                            ('--pe-min-period-res', pe_min_period_res), ('--pe-outside', pe_outside)):
            if value is not None:
                raise click.BadParameter(f'{flag} needs a positional encoding: add --pe=mspe (or --cfg=mspe).')
        return G_kwargs
    if pe not in PE_CHOICES:
        raise click.BadParameter(f'--pe must be one of {", ".join(PE_CHOICES)}; got {pe!r}.')
    if pe_outside is not None and not float(pe_outside) >= 0:
        raise click.BadParameter(f'--pe-outside is a weight of zero or more; got {pe_outside!r}.')
    G_kwargs['class_name'] = GENERATOR_CLASS
    synthesis_kwargs = G_kwargs.setdefault('synthesis_kwargs', {})
    synthesis_kwargs['pe'] = pe
    synthesis_kwargs['pe_base'] = float(pe_base)
    synthesis_kwargs['pe_resize'] = tuple(pe_resize) if pe_resize is not None else None
    if pe_margin:
        synthesis_kwargs['pe_margin'] = int(pe_margin)
    if pe_padding not in (None, 'zero'):
        synthesis_kwargs['pe_padding'] = pe_padding
    if pe_translate:
        synthesis_kwargs['pe_translate'] = int(pe_translate)
    if pe_min_period_res is not None and not pe_min_period:
        raise click.BadParameter('--pe-min-period-res says where --pe-min-period applies: give --pe-min-period=P too.')
    if pe_min_period:
        synthesis_kwargs['pe_min_period'] = float(pe_min_period)
        if pe_min_period_res is not None:
            synthesis_kwargs['pe_min_period_res'] = int(pe_min_period_res)
    return G_kwargs

def configure_loss(loss_kwargs, pe_translate=None, pe_outside=None):
    """The loss's half of the plugin's training options, in place on loss_kwargs (an EasyDict with
    class_name): random training windows wrap the host's loss in
    mspe_plugin.translate.TranslatedRealsLoss (the reals move alike), and pe_outside > 0 wraps the
    result in mspe_plugin.outside.PlainOutsideLoss (a plain background beyond the training grid).
    None / 0 leaves the loss alone."""
    if pe_translate:
        inner = dict(loss_kwargs)
        loss_kwargs.clear()
        loss_kwargs.update(class_name='mspe_plugin.translate.TranslatedRealsLoss', translate=int(pe_translate),
                           inner_class_name=inner.pop('class_name'), **inner)
    if pe_outside:
        inner = dict(loss_kwargs)
        loss_kwargs.clear()
        loss_kwargs.update(class_name='mspe_plugin.outside.PlainOutsideLoss', outside_weight=float(pe_outside),
                           wrapped_class_name=inner.pop('class_name'), **inner)
    return loss_kwargs

OUTSIDE_LOSS = 'mspe_plugin.outside.PlainOutsideLoss'

def set_outside_penalty(G_kwargs, loss_kwargs, weight):
    """Give a continuing run (its saved G_kwargs and loss_kwargs, in place) the plain-outside
    penalty at `weight` (train.py --resume-run=DIR --pe-outside=W): a loss without it is wrapped
    as configure_loss does; one with it gets the new weight; weight 0 unwraps it. Raises
    ValueError (one sentence) for a generator without canvases.

    :return: the previous weight (0 for none)."""
    weight = float(weight)
    if not weight >= 0:
        raise ValueError(f'--pe-outside is a weight of zero or more; got {weight!r}.')
    if G_kwargs.get('class_name') != GENERATOR_CLASS:
        raise ValueError('--pe-outside renders the canvas beyond the training grid, which this run\'s generator '
                         f'({G_kwargs.get("class_name")}) has no canvas for; it needs a run trained with --pe (or --cfg=mspe).')
    if loss_kwargs.get('class_name') == OUTSIDE_LOSS:
        previous = float(loss_kwargs.get('outside_weight', 1.0))
        if weight > 0:
            loss_kwargs['outside_weight'] = weight
        else:
            inner = dict(loss_kwargs)
            loss_kwargs.clear()
            loss_kwargs.update(class_name=inner.pop('wrapped_class_name'),
                               **{k: v for k, v in inner.items() if k not in ('class_name', 'outside_weight', 'outside_reach')})
        return previous
    configure_loss(loss_kwargs, None, weight)
    return 0.0

def configure_training(args, pe_resize=None, pe_margin=None, pe_translate=None, pe_padding=None, pe_min_period=None, pe_min_period_res=None,
                       pe_outside=None):
    """The host's training-loop options (args, the EasyDict train.py builds) that the plugin's
    generator needs, in place. With random canvases (random resizing, margins or translation) the
    shapes change every step, and cuDNN benchmarking (upstream's default on CUDA) would benchmark
    every new shape again, so it is switched off; on an H200 the first ticks of such runs were
    several times slower with it (results/NOTES.md). Other runs are left alone."""
    if pe_resize is not None or pe_margin or pe_translate:
        args['cudnn_benchmark'] = False
    return args

def run_desc_suffix(pe, pe_resize=None, pe_margin=None, pe_padding=None, pe_translate=None, pe_min_period=None, pe_min_period_res=None,
                    pe_outside=None):
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
    if pe_translate:
        suffix += f'-t{pe_translate}'
    if pe_min_period:
        suffix += f'-minp{pe_min_period:g}' + (f'r{pe_min_period_res}' if pe_min_period_res is not None else '')
    if pe_outside:
        suffix += f'-out{float(pe_outside):g}'
    return suffix

#----------------------------------------------------------------------------
