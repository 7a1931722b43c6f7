"""Generator configuration for training: turn a host's generator kwargs (the EasyDict with
`class_name` that train.py builds) into the plugin's MS-PE / SS-PE / baseline generator, and
name the run after it.
"""

import click

from mspe_plugin.options import PE_CHOICES

GENERATOR_CLASS = 'mspe_plugin.networks.Generator'

#----------------------------------------------------------------------------

def configure_generator(G_kwargs, pe, pe_resize=None, pe_base=10000.0):
    """Turn the host's generator kwargs (EasyDict with class_name, synthesis_kwargs, ...) into
    an MS-PE / SS-PE / baseline-with-canvas generator, in place. `pe=None` leaves them alone."""
    if pe is None:
        if pe_resize is not None:
            raise click.BadParameter('--pe-resize needs a positional encoding: add --pe=mspe (or --cfg=mspe).')
        return G_kwargs
    if pe not in PE_CHOICES:
        raise click.BadParameter(f'--pe must be one of {", ".join(PE_CHOICES)}; got {pe!r}.')
    G_kwargs['class_name'] = GENERATOR_CLASS
    synthesis_kwargs = G_kwargs.setdefault('synthesis_kwargs', {})
    synthesis_kwargs['pe'] = pe
    synthesis_kwargs['pe_base'] = float(pe_base)
    synthesis_kwargs['pe_resize'] = tuple(pe_resize) if pe_resize is not None else None
    return G_kwargs

def run_desc_suffix(pe, pe_resize=None):
    """Suffix for the run folder name: '-mspe', '-mspe-rs0.5-2', or '' for the plain host."""
    if pe is None:
        return ''
    suffix = f'-{pe}'
    if pe_resize is not None:
        suffix += '-rs' + '-'.join(f'{v:g}' for v in pe_resize)
    return suffix

#----------------------------------------------------------------------------
