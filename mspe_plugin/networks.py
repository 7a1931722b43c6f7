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

#----------------------------------------------------------------------------
# Canvas plumbing. A canvas is any object with the mspe_plugin.encoding.Canvas protocol:
# is_default(R), output_size(R), render_size(R, res), grid(res, R), encoding(res, R, C, base, device).

def _default_tables(res, channels, base):
    """1-D encoding tables (x half, y half) of the training grid at scale `res`."""
    from mspe_plugin.encoding import sinusoidal_encoding    # construction time only (see module docstring)
    coords = torch.arange(res, dtype=torch.float64)
    pe = sinusoidal_encoding(coords[:1], coords, channels, base=base)    # [C, 1, res]: x half varies
    table_x = pe[:channels // 2, 0, :].clone()
    pe = sinusoidal_encoding(coords, coords[:1], channels, base=base)    # [C, res, 1]: y half varies
    table_y = pe[channels // 2:, :, 0].clone()
    return table_x, table_y

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
    weights = torch.zeros([coords.numel(), period])
    rows = torch.arange(coords.numel())
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, (lo + 1) % period), frac, accumulate=True)
    return weights

def _periodic_nearest_index(coords, period):
    """Integer indices of the nearest grid points of float `coords`, wrapped into [0, period)."""
    return torch.floor(torch.as_tensor(coords, dtype=torch.float64) + 0.5).long() % period

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
        **kwargs,                   # Arguments for the host's SynthesisNetwork (channel_base, channel_max, ...).
    ):
        if pe not in PE_VARIANTS:
            raise ValueError(f'Unknown positional encoding {pe!r}: choose one of {", ".join(PE_VARIANTS)}.')
        if pe_resize is not None:
            pe_resize = (float(pe_resize[0]), float(pe_resize[1]))
            if not 0 < pe_resize[0] <= pe_resize[1]:
                raise ValueError(f'pe_resize must be MIN,MAX with 0 < MIN <= MAX, got {pe_resize}.')
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **kwargs)
        self.pe = pe
        self.pe_base = float(pe_base)
        self.pe_resize = pe_resize

        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            channels = block.conv1.weight.shape[1]
            needs_pe = (res == 4 and pe != 'none') or (res > 4 and pe == 'mspe')
            if not needs_pe:
                continue
            if channels % 4 != 0:
                raise ValueError(f'The positional encoding needs channels divisible by 4; block {res} has {channels}: '
                                 f'change channel_base / channel_max.')
            table_x, table_y = _default_tables(res, channels, self.pe_base)
            # Derived data: pickled with the module (so snapshots render without mspe_plugin), not in state_dict.
            self.register_buffer(f'pe_table_x{res}', table_x.to(torch.float32), persistent=False)
            self.register_buffer(f'pe_table_y{res}', table_y.to(torch.float32), persistent=False)
            if res > 4:
                setattr(self, f'pe_gamma{res}', torch.nn.Parameter(torch.ones([])))
        if pe != 'none':
            del self.b4.const    # Eq. 4: h_1 = G_0(PE_0, w_0), no learned constant.

    #------------------------------------------------------------------------

    def _encoding(self, res, canvas, device):
        """PE_res [C, h, w] of the canvas (the stored tables on the training grid)."""
        if canvas is None:
            return _expand_tables(getattr(self, f'pe_table_x{res}'), getattr(self, f'pe_table_y{res}'))
        channels = getattr(self, f'pe_table_x{res}').shape[0] * 2
        return canvas.encoding(res, self.img_resolution, channels, base=self.pe_base, device=device).to(torch.float32)

    def _constant(self, canvas):
        """The baseline's learned constant read on the canvas: periodic, bilinear between pixels."""
        const = self.b4.const
        if canvas is None:
            return const
        ys, xs = canvas.grid(4, self.img_resolution)
        wy = _periodic_linear_weights(ys, 4).to(const.device)
        wx = _periodic_linear_weights(xs, 4).to(const.device)
        return torch.einsum('hi,cij,wj->chw', wy, const, wx)

    def _noise(self, layer, res, canvas, batch_size, height, width, noise_mode, device):
        """Noise for one layer at scale `res`: drawn at canvas size ('random'), or the layer's fixed
        field read by global coordinate ('const'), so a shifted canvas sees shifted noise."""
        if not layer.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'random':
            return torch.randn([batch_size, 1, height, width], device=device) * layer.noise_strength
        if noise_mode != 'const':
            raise ValueError(f'Unknown noise_mode {noise_mode!r}: choose random, const or none.')
        if canvas is None:
            return layer.noise_const * layer.noise_strength
        ys, xs = canvas.grid(res, self.img_resolution)
        iy = _periodic_nearest_index(ys, layer.noise_const.shape[0]).to(device)
        ix = _periodic_nearest_index(xs, layer.noise_const.shape[1]).to(device)
        return layer.noise_const[iy][:, ix] * layer.noise_strength

    #------------------------------------------------------------------------

    def _block(self, block, x, img, ws, canvas, noise_mode, fused_modconv, force_fp32):
        """One synthesis block on the canvas (the host block's modules, our walk)."""
        res = block.resolution
        w_iter = iter(ws.unbind(dim=1))
        batch_size, device = ws.shape[0], ws.device
        dtype = torch.float16 if block.use_fp16 and not force_fp32 and device.type == 'cuda' else torch.float32
        if canvas is None:
            height = width = res
        else:
            height, width = canvas.render_size(self.img_resolution, res)
        noise = lambda layer: self._noise(layer, res, canvas, batch_size, height, width, noise_mode, device)

        if block.in_channels == 0:
            x = self._encoding(4, canvas, device) if self.pe != 'none' else self._constant(canvas)
            x = x.to(dtype).unsqueeze(0).repeat([batch_size, 1, 1, 1])
            if fused_modconv is None:
                fused_modconv = _fused_modconv_default(x)
            x = _synthesis_layer(block.conv1, x, next(w_iter), noise(block.conv1), fused_modconv)
        else:
            x = x.to(dtype)
            if fused_modconv is None:
                fused_modconv = _fused_modconv_default(x)
            resnet = (block.architecture == 'resnet')
            y = block.skip(x, gain=np.sqrt(0.5)) if resnet else None
            x = _synthesis_layer(block.conv0, x, next(w_iter), noise(block.conv0), fused_modconv)
            if self.pe == 'mspe':
                # Eq. 3: h_{l+1} = G_l(w_l, h_l) + gamma_l * PE_l, added between the two convolutions.
                x = x + getattr(self, f'pe_gamma{res}').to(dtype) * self._encoding(res, canvas, device).to(dtype)
            x = _synthesis_layer(block.conv1, x, next(w_iter), noise(block.conv1), fused_modconv,
                                 gain=np.sqrt(0.5) if resnet else 1)
            if resnet:
                x = y.add_(x)

        if img is not None:
            img = upfirdn2d.upsample2d(img, block.resample_filter)
        if block.is_last or block.architecture == 'skip':
            rgb = block.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = img + rgb if img is not None else rgb
        return x, img

    def render(self, ws, canvas=None, noise_mode='random', fused_modconv=None, force_fp32=False):
        """Render ws [N, num_ws, w_dim] on `canvas` (None = the training grid) -> [N, C, H, W]."""
        if canvas is not None and canvas.is_default(self.img_resolution):
            canvas = None
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)    # convs + the next block's first w for ToRGB
            w_idx += block.num_conv
            x, img = self._block(block, x, img, cur_ws, canvas, noise_mode, fused_modconv, force_fp32)
        if canvas is not None:
            height, width = canvas.output_size(self.img_resolution)
            img = img[:, :, :height, :width]     # rendered on whole coarse pixels; crop exactly
        return img

    def forward(self, ws, canvas=None, **render_kwargs):
        # MS-PE with random resizing: render at a random zoom, resize back to R (D sees only R).
        if self.training and self.pe_resize is not None and canvas is None:
            from mspe_plugin.encoding import Canvas    # training needs the plugin installed
            zoom = float(np.random.uniform(*self.pe_resize))
            size = max(int(round(self.img_resolution * zoom)), 1)
            img = self.render(ws, Canvas(size=(size, size), zoom=size / self.img_resolution), **render_kwargs)
            if size != self.img_resolution:
                img = F.interpolate(img, size=(self.img_resolution, self.img_resolution), mode='bilinear',
                                    align_corners=False, antialias=(size > self.img_resolution))
            return img
        return self.render(ws, canvas=canvas, **render_kwargs)

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
