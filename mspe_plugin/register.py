"""How a StyleGAN2-ADA host learns about MS-PE: a handful of calls from train.py, generate.py
and projector.py (our vendored host calls them through its plugin hook; for upstream and its
forks, patches/ add the same calls).

    cfg, pe, pe_resize, pe_margin = register.resolve_cfg(cfg, pe, pe_resize, pe_margin)
    # --cfg=mspe -> ('auto', 'mspe', (0.75, 1.5), 8): the border recipe; explicit flags win
    register.configure_generator(args.G_kwargs, pe, pe_resize, pe_margin=pe_margin)
    canvas = register.with_default_margin(G, canvas, margin_flag)     # a margin-trained G: its margin
    img = G(z, c, noise_mode=..., **register.synthesis_kwargs(canvas))

This module is the one name hosts import; the code lives by concern in
  options.py     the command-line flags (--cfg, --pe, --pe-resize, the canvas flags),
  configure.py   the generator configuration for training,
  convert.py     loaded generators: device, canvas rendering, conversion of plain generators.
"""

from mspe_plugin.configure import (GENERATOR_CLASS, configure_generator, configure_loss, configure_training, run_desc_suffix,
                                   set_outside_penalty)
from mspe_plugin.convert import (check_canvas_support, default_device, default_margin, synthesis_kwargs, with_canvas_support,
                                 with_default_margin)
from mspe_plugin.options import (CFG_NAMES, CFG_RECIPES, PE_CHOICES, canvas_from_options, canvas_options, parse_pe_resize,
                                 parse_translate_strip, resolve_cfg, split_cfg, strip_canvases, translate_strip_option)

__all__ = ['CFG_NAMES', 'CFG_RECIPES', 'GENERATOR_CLASS', 'PE_CHOICES', 'canvas_from_options', 'canvas_options', 'check_canvas_support',
           'configure_generator', 'configure_loss', 'configure_training', 'default_device', 'default_margin', 'parse_pe_resize', 'parse_translate_strip', 'resolve_cfg',
           'run_desc_suffix', 'set_outside_penalty', 'split_cfg', 'strip_canvases', 'synthesis_kwargs', 'translate_strip_option', 'with_canvas_support',
           'with_default_margin']
