"""MS-PE, SS-PE and baseline generators on a StyleGAN2-ADA host, with canvas rendering.

`Generator(..., synthesis_kwargs=dict(pe='mspe' | 'sspe' | 'none', pe_base, pe_resize))`
keeps the host's mapping network, num_ws, block and parameter names; only the synthesis walk
changes (Choi et al., ICCV 2021):
  - coarsest scale: the positional encoding PE_0 replaces the learned 4x4 constant ('mspe',
    'sspe'); the baseline ('none') keeps the constant;
  - every later block ('mspe'): upsampling conv -> x + gamma_l * PE_l -> second conv -> ToRGB,
    gamma_l a learnable scalar per block initialised to 1 (Eq. 3).
Every variant renders any canvas (`synthesis(ws, canvas=...)`, see mspe_plugin.encoding):
shifted, zoomed, wider, rolled or beyond the training border. The baseline reads its constant
periodically with bilinear blending, so the three variants compare under one call.

This module is pickled into snapshots (torch_utils.persistence) and must load in any
StyleGAN2-ADA checkout, even one without mspe_plugin: it imports only torch, numpy and the
host's torch_utils / training.networks. Two things need mspe_plugin and are only reached
where it is installed: building a new network (the encoding tables are computed by
mspe_plugin.encoding) and rendering a canvas (the caller passes a Canvas object). A loaded
snapshot renders its training grid from the tables stored in it.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import bias_act
from torch_utils.ops import upfirdn2d
from training import networks

PE_VARIANTS = ('none', 'sspe', 'mspe')
PADDINGS = ('zero', 'none')

#----------------------------------------------------------------------------
# Canvas plumbing. A canvas is any object with the mspe_plugin.encoding.Canvas protocol:
# is_default(R), output_size(R), margin, grid(res, R, rows, cols), encoding(res, R, C, base, device, rows, cols),
# with rows / cols index ranges [a, b) of the canvas grid at scale res.

# How far zero padding reaches into a layer's output, in output pixels per side (the host's 3x3
# convolutions and 4-tap filters; tests/test_border.py measures them). The padding-free
# walk crops these rings after every layer, so no output depends on where an edge is.
_RING_CONV = 1          # 3x3 convolution
_RING_UP_CONV = 2       # upsampling 3x3 convolution (transposed convolution + FIR filter)
_RING_UP_FILTER = 1     # FIR upsampling of the image (skip) and of the resnet shortcut
_SQRT_HALF = float(np.sqrt(0.5))    # a Python float: torch.compile traces NumPy scalars as tensors

def _default_tables(rows, channels, base):
    """1-D encoding tables (x half [C/2, n], y half [C/2, n]) of the training grid on the index range `rows`."""
    from mspe_plugin.encoding import sinusoidal_encoding    # construction time only (see module docstring)
    coords = torch.arange(rows[0], rows[1], dtype=torch.float64)
    pe = sinusoidal_encoding(coords[:1], coords, channels, base=base)    # [C, 1, n]: x half varies
    table_x = pe[:channels // 2, 0, :].clone()
    pe = sinusoidal_encoding(coords, coords[:1], channels, base=base)    # [C, n, 1]: y half varies
    table_y = pe[channels // 2:, :, 0].clone()
    return table_x, table_y

def _frequency_mask(channels, base, pixel, min_period):
    """[C/2] float64: 1 for the channels of one axis' half (sin f_0, cos f_0, sin f_1, ...) whose
    period, 2 pi / f_k scale pixels of `pixel` output pixels each, is at least `min_period` output
    pixels, else 0 (f_k = base^(-2k / (C/2)), as mspe_plugin.encoding)."""
    k = torch.arange(channels // 4, dtype=torch.float64)
    period = 2 * np.pi * torch.exp(2 * k * np.log(base) / (channels // 2)) * pixel
    return (period >= min_period).to(torch.float64).repeat_interleave(2)

def _expand_tables(table_x, table_y):
    """[C/2, W] x-table and [C/2, H] y-table -> [C, H, W] encoding (x channels first, as encoding.py)."""
    height, width = table_y.shape[1], table_x.shape[1]
    return torch.cat([table_x[:, None, :].expand(-1, height, -1), table_y[:, :, None].expand(-1, -1, width)], dim=0)

def _periodic_linear_weights(coords, period):
    """[n, period] matrix that reads a periodic signal at float `coords` with linear blending."""
    coords = torch.as_tensor(coords, dtype=torch.float64)
    lo = torch.floor(coords)
    frac = (coords - lo).to(torch.float32)
    lo = lo.long() % period
    weights = torch.zeros([coords.numel(), period], device=coords.device)
    rows = torch.arange(coords.numel(), device=coords.device)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, (lo + 1) % period), frac, accumulate=True)
    return weights

def _periodic_nearest_index(coords, period):
    """Integer indices of the nearest grid points of float `coords`, wrapped into [0, period)."""
    return torch.floor(torch.as_tensor(coords, dtype=torch.float64) + 0.5).long() % period

def _crop(x, have, want):
    """The part of x [..., h, w] that covers the index ranges want = ((ya, yb), (xa, xb)), x covering `have`."""
    (hy, hx), (wy, wx) = have, want
    assert hy[0] <= wy[0] and wy[1] <= hy[1] and hx[0] <= wx[0] and wx[1] <= hx[1], (have, want)
    if have == want:
        return x
    return x[..., wy[0] - hy[0]:wy[1] - hy[0], wx[0] - hx[0]:wx[1] - hx[0]]

def _up(ranges, ring):
    """Index ranges after a 2x upsampling whose outer `ring` pixels per side are cropped."""
    return tuple((2 * a + ring, 2 * b - ring) for a, b in ranges)

def _shrink(ranges, ring):
    return tuple((a + ring, b - ring) for a, b in ranges)

class _PaddingFree:
    """The attributes SynthesisNetwork._plan reads, as a padding-free network of the same shape would have them."""
    def __init__(self, synthesis):
        self.img_resolution = synthesis.img_resolution
        self.block_resolutions = synthesis.block_resolutions
        self.pe_padding = 'none'

#----------------------------------------------------------------------------

def _fused_modconv_default(x):
    """Grouped modulated convolution on CUDA; on CPU the non-fused path is faster (bench_host.py)."""
    return x.device.type == 'cuda'

def _synthesis_layer(layer, x, w, noise, fused_modconv, gain=1):
    """A host SynthesisLayer's computation with the noise given explicitly (the canvas decides
    it). Uses only upstream's public pieces, so it runs on any StyleGAN2-ADA checkout."""
    styles = layer.affine(w)
    x = networks.modulated_conv2d(x=x, weight=layer.weight, styles=styles, noise=noise, up=layer.up,
        padding=layer.padding, resample_filter=layer.resample_filter, flip_weight=(layer.up == 1),
        fused_modconv=fused_modconv)
    act_clamp = layer.conv_clamp * gain if layer.conv_clamp is not None else None
    return bias_act.bias_act(x, layer.bias.to(x.dtype), act=layer.activation, gain=layer.act_gain * gain, clamp=act_clamp)

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisNetwork(networks.SynthesisNetwork):
    """The host's synthesis network with positional encodings and canvas rendering."""
    def __init__(self,
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output image resolution (the training canvas is R x R).
        img_channels,               # Number of color channels.
        pe              = 'mspe',   # 'mspe': PE input + gamma_l * PE_l per block; 'sspe': PE input only; 'none': learned constant.
        pe_base         = 10000.0,  # Frequency base of the encoding (authors' code: 10000; the paper's text: 100).
        pe_resize       = None,     # (min, max) zoom: "MS-PE w/ random resizing" while training; None = off.
        pe_margin       = 0,        # Training renders random margins of 0..pe_margin output pixels per side, then crops them.
        pe_padding      = 'zero',   # 'zero': the host's zero-padded convolutions; 'none': padding-free (every layer's border ring cropped).
        pe_translate    = 0,        # Training renders the window at a random offset of -T..T training pixels (reals move alike: mspe_plugin.translate).
        pe_min_period   = 0,        # Leave out (zero) encoding frequencies whose period is under this many output pixels; 0 = all.
        pe_min_period_res = 4,      # ... at the scales of this resolution and finer.
        **kwargs,                   # Arguments for the host's SynthesisNetwork (channel_base, channel_max, ...).
    ):
        if pe not in PE_VARIANTS:
            raise ValueError(f'Unknown positional encoding {pe!r}: choose one of {", ".join(PE_VARIANTS)}.')
        if pe_resize is not None:
            pe_resize = (float(pe_resize[0]), float(pe_resize[1]))
            if not 0 < pe_resize[0] <= pe_resize[1]:
                raise ValueError(f'pe_resize must be MIN,MAX with 0 < MIN <= MAX, got {pe_resize}.')
        if isinstance(pe_margin, bool) or int(pe_margin) != pe_margin or pe_margin < 0:
            raise ValueError(f'pe_margin must be a non-negative number of pixels, got {pe_margin!r}.')
        if isinstance(pe_translate, bool) or int(pe_translate) != pe_translate or pe_translate < 0:
            raise ValueError(f'pe_translate must be a non-negative number of pixels, got {pe_translate!r}.')
        if isinstance(pe_min_period, bool) or not pe_min_period >= 0:
            raise ValueError(f'pe_min_period must be a non-negative number of pixels, got {pe_min_period!r}.')
        if pe_padding not in PADDINGS:
            raise ValueError(f'Unknown pe_padding {pe_padding!r}: choose one of {", ".join(PADDINGS)}.')
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)
        self.pe = pe
        self.pe_base = float(pe_base)
        self.pe_resize = pe_resize
        self.pe_margin = int(pe_margin)
        self.pe_padding = pe_padding
        self.pe_translate = int(pe_translate)
        self.pe_min_period = float(pe_min_period)
        self.pe_min_period_res = int(pe_min_period_res)

        R = img_resolution
        plan = self._plan(((0, R), (0, R)))
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            channels = block.conv1.weight.shape[1]
            needs_pe = (res == 4 and pe != 'none') or (res > 4 and pe == 'mspe')
            if not needs_pe:
                continue
            if channels % 4 != 0:
                raise ValueError(f'The positional encoding needs channels divisible by 4; block {res} has {channels}: '
                                 f'change channel_base / channel_max.')
            rows, cols = plan[res]['pe']
            table_x, _ = _default_tables(cols, channels, self.pe_base)
            _, table_y = _default_tables(rows, channels, self.pe_base)
            if self.pe_min_period and res >= self.pe_min_period_res:
                # Applied where the encoding is used, so tables copied from another network keep it.
                keep = _frequency_mask(channels, self.pe_base, R // res, self.pe_min_period)
                self.register_buffer(f'pe_keep{res}', torch.cat([keep, keep]).to(torch.float32)[:, None, None], persistent=False)
            # Derived data: pickled with the module (so snapshots render without mspe_plugin), not in state_dict.
            self.register_buffer(f'pe_table_x{res}', table_x.to(torch.float32), persistent=False)
            self.register_buffer(f'pe_table_y{res}', table_y.to(torch.float32), persistent=False)
            if res > 4:
                setattr(self, f'pe_gamma{res}', torch.nn.Parameter(torch.ones([])))
        if pe != 'none':
            del self.b4.const    # Eq. 4: h_1 = G_0(PE_0, w_0), no learned constant.

    #------------------------------------------------------------------------

    def _plan(self, out):
        """Index ranges ((ya, yb), (xa, xb)) per scale for an image covering `out` at scale R:
        plan[res]['pe'] where the encoding (or constant) enters, plan[res]['x'] the block's output.
        Zero padding: whole coarsest pixels doubled at every scale (the canvas rendered as one
        image, cropped at the end). Padding-free: each scale computes what the next one needs,
        plus the rings its layers lose."""
        R = self.img_resolution
        resolutions = self.block_resolutions
        plan = {res: {} for res in resolutions}
        if getattr(self, 'pe_padding', 'zero') == 'zero':
            f = R // resolutions[0]
            coarse = tuple((a // f, -(-b // f)) for a, b in out)
            for res in resolutions:
                k = res // resolutions[0]
                plan[res]['x'] = plan[res]['pe'] = tuple((a * k, b * k) for a, b in coarse)
            return plan
        need = out
        for res in reversed(resolutions):
            plan[res]['x'] = need
            if res == resolutions[0]:
                plan[res]['pe'] = _shrink(need, -_RING_CONV)
            else:
                lower = tuple(((a - _RING_UP_CONV - _RING_CONV) // 2, -(-(b + _RING_UP_CONV + _RING_CONV) // 2)) for a, b in need)
                plan[res]['pe'] = _up(lower, _RING_UP_CONV)
                need = lower
        return plan

    def receptive_radius(self):
        """Pixels of the output grid beyond which the canvas edge cannot reach a zero-padded
        output: a canvas margin of receptive_radius() output pixels, at any zoom (the layers run
        on the output grid; zoom only moves the coordinates), makes every pixel independent of
        where the canvas ends. Padding-free networks (pe_padding='none') need no margin."""
        free_plan = SynthesisNetwork._plan(_PaddingFree(self), ((0, 1), (0, 1)))
        coarsest = self.block_resolutions[0]
        return -free_plan[coarsest]['pe'][0][0] * (self.img_resolution // coarsest)

    def _coords(self, canvas, res, rows, cols):
        """(ys, xs) coordinates of the index ranges at scale `res` (canvas None: the training grid)."""
        if canvas is None:
            return torch.arange(*rows, dtype=torch.float64), torch.arange(*cols, dtype=torch.float64)
        return canvas.grid(res, self.img_resolution, rows, cols)

    def _encoding(self, res, canvas, ranges, device):
        """PE_res [C, h, w] on the index ranges (the stored tables on the training grid)."""
        table_x, table_y = getattr(self, f'pe_table_x{res}'), getattr(self, f'pe_table_y{res}')
        if canvas is None:
            pe = _expand_tables(table_x, table_y)
        else:
            pe = canvas.encoding(res, self.img_resolution, table_x.shape[0] * 2, base=self.pe_base, device=device,
                                 rows=ranges[0], cols=ranges[1]).to(torch.float32)
        keep = getattr(self, f'pe_keep{res}', None)
        return pe if keep is None else pe * keep

    def _constant(self, canvas, ranges=None):
        """The baseline's learned constant read on the index ranges (None: the canvas's own grid):
        periodic, bilinear between pixels."""
        const = self.b4.const
        if canvas is None and ranges in (None, ((0, 4), (0, 4))):
            return const
        ys, xs = canvas.grid(4, self.img_resolution) if ranges is None else self._coords(canvas, 4, *ranges)
        wy = _periodic_linear_weights(ys, const.shape[1]).to(const.device)
        wx = _periodic_linear_weights(xs, const.shape[2]).to(const.device)
        return torch.einsum('hi,cij,wj->chw', wy, const, wx)

    def _noise(self, layer, res, canvas, ranges, batch_size, noise_mode, device):
        """Noise for one layer at scale `res` on the index ranges: drawn at that size ('random'), or
        the layer's fixed field read by global coordinate ('const'), so a shifted canvas sees shifted noise."""
        if not layer.use_noise or noise_mode == 'none':
            return None
        (ya, yb), (xa, xb) = ranges
        if noise_mode == 'random':
            return torch.randn([batch_size, 1, yb - ya, xb - xa], device=device) * layer.noise_strength
        if noise_mode != 'const':
            raise ValueError(f'Unknown noise_mode {noise_mode!r}: choose random, const or none.')
        if canvas is None and ranges == ((0, res), (0, res)):
            return layer.noise_const * layer.noise_strength
        ys, xs = self._coords(canvas, res, *ranges)
        iy = _periodic_nearest_index(ys, layer.noise_const.shape[0]).to(device)
        ix = _periodic_nearest_index(xs, layer.noise_const.shape[1]).to(device)
        return layer.noise_const[iy][:, ix] * layer.noise_strength

    #------------------------------------------------------------------------

    def _block(self, block, x, img, ws, canvas, plan, noise_mode, fused_modconv, force_fp32):
        """One synthesis block on the canvas (the host block's modules, our walk): x and img cover
        the previous scale's plan[...]['x'] ranges and come back covering this scale's."""
        res = block.resolution
        w_iter = iter(ws.unbind(dim=1))
        batch_size, device = ws.shape[0], ws.device
        if hasattr(block, 'compute_dtype'):    # our host (bfloat16 on CPU with --cpu-bf16)
            dtype = block.compute_dtype(device, force_fp32)
        else:                                   # an upstream checkout's block
            dtype = torch.float16 if block.use_fp16 and not force_fp32 and device.type == 'cuda' else torch.float32
        ring = _RING_CONV if getattr(self, 'pe_padding', 'zero') == 'none' else 0
        noise = lambda layer, ranges: self._noise(layer, res, canvas, ranges, batch_size, noise_mode, device)
        have = plan[res]['pe']

        if block.in_channels == 0:
            x = self._encoding(4, canvas, have, device) if self.pe != 'none' else self._constant(canvas, have)
            x = x.to(dtype).unsqueeze(0).repeat([batch_size, 1, 1, 1])
            if fused_modconv is None:
                fused_modconv = _fused_modconv_default(x)
            x = _synthesis_layer(block.conv1, x, next(w_iter), noise(block.conv1, have), fused_modconv)
            x = _crop(x, have, _shrink(have, ring))
        else:
            prev = plan[res // 2]['x']
            upsampled = _up(prev, 0)
            x = x.to(dtype)
            if fused_modconv is None:
                fused_modconv = _fused_modconv_default(x)
            resnet = (block.architecture == 'resnet')
            y = block.skip(x, gain=_SQRT_HALF) if resnet else None
            x = _synthesis_layer(block.conv0, x, next(w_iter), noise(block.conv0, upsampled), fused_modconv)
            x = _crop(x, upsampled, have)
            if self.pe == 'mspe':
                # Eq. 3: h_{l+1} = G_l(w_l, h_l) + gamma_l * PE_l, added between the two convolutions.
                x = x + getattr(self, f'pe_gamma{res}').to(dtype) * self._encoding(res, canvas, have, device).to(dtype)
            x = _synthesis_layer(block.conv1, x, next(w_iter), noise(block.conv1, have), fused_modconv,
                                 gain=_SQRT_HALF if resnet else 1)
            x = _crop(x, have, _shrink(have, ring))
            if resnet:
                x = _crop(y, upsampled, _shrink(have, ring)).add_(x)
        x = _crop(x, _shrink(have, ring), plan[res]['x'])

        if img is not None:
            img = upfirdn2d.upsample2d(img, block.resample_filter)
            img = _crop(img, _up(plan[res // 2]['x'], 0), plan[res]['x'])
        if block.is_last or block.architecture == 'skip':
            rgb = block.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + rgb if img is not None else rgb
        return x, img

    def render(self, ws, canvas=None, noise_mode='random', fused_modconv=None, force_fp32=False):
        """Render ws [N, num_ws, w_dim] on `canvas` (None = the training grid) -> [N, C, H, W]."""
        R = self.img_resolution
        if canvas is not None and canvas.is_default(R):
            canvas = None
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        height, width = (R, R) if canvas is None else canvas.output_size(R)
        margin = 0 if canvas is None else int(getattr(canvas, 'margin', 0))
        out = ((-margin, height + margin), (-margin, width + margin))
        plan = self._plan(out)
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)    # convs + the next block's first w for ToRGB
            w_idx += block.num_conv
            x, img = self._block(block, x, img, cur_ws, canvas, plan, noise_mode, fused_modconv, force_fp32)
        return _crop(img, plan[R]['x'], ((0, height), (0, width)))    # the canvas, without margins and spare pixels

    @property
    def random_canvas(self):
        """Whether training renders a random canvas every step (random resizing, margins or
        translation): its shapes change per step, so the host's compiled path runs it eager."""
        return self.pe_resize is not None or bool(getattr(self, 'pe_margin', 0)) or bool(getattr(self, 'pe_translate', 0))

    def forward(self, ws, canvas=None, **render_kwargs):
        if not (self.training and canvas is None and self.random_canvas):
            return self.render(ws, canvas=canvas, **render_kwargs)
        # Training: MS-PE with random resizing renders at a random zoom, resized back to R (D sees only R);
        # random margins render the training grid inside a larger canvas and crop it, so the edge of
        # the rendered canvas (and of zero padding) sits at a random distance from content whose
        # coordinates stay fixed; random translation renders the window [t, t + R) (the reals are
        # moved by their own draw of t, mspe_plugin.translate), so D sees content outside [0, R) too.
        from mspe_plugin.encoding import Canvas    # training needs the plugin installed
        translate = getattr(self, 'pe_translate', 0)
        R = self.img_resolution
        zoom = float(np.random.uniform(*self.pe_resize)) if self.pe_resize is not None else 1.0
        size = max(int(round(R * zoom)), 1)
        zoom = size / R
        top, bottom, left, right = (int(m) for m in np.random.randint(0, self.pe_margin + 1, size=4))
        ty, tx = (int(t) for t in np.random.randint(-translate, translate + 1, size=2)) if translate else (0, 0)
        canvas = Canvas(origin=(ty - top / zoom, tx - left / zoom), size=(size + top + bottom, size + left + right), zoom=zoom)
        img = self.render(ws, canvas, **render_kwargs)[:, :, top:top + size, left:left + size]
        if size != R:
            img = F.interpolate(img, size=(R, R), mode='bilinear', align_corners=False, antialias=(size > R))
        return img

#----------------------------------------------------------------------------

@persistence.persistent_class
class Generator(torch.nn.Module):
    """StyleGAN2 generator whose synthesis network has positional encodings (see module docstring).
    Same signature, attributes and call as the host's Generator; `canvas=` is an extra keyword."""
    def __init__(self,
        z_dim,                      # Input latent (Z) dimensionality.
        c_dim,                      # Conditioning label (C) dimensionality.
        w_dim,                      # Intermediate latent (W) dimensionality.
        img_resolution,             # Output resolution.
        img_channels,               # Number of output color channels.
        mapping_kwargs      = {},   # Arguments for the host's MappingNetwork.
        synthesis_kwargs    = {},   # Arguments for SynthesisNetwork (pe, pe_base, pe_resize, channel_base, ...).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = networks.MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    @property
    def pe(self):
        return self.synthesis.pe

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
