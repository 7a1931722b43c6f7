"""A small UNet with guided-diffusion's / improved-diffusion's module layout, for testing the
MS-PE hook structurally (guided-diffusion is not on PyPI). Written here from the public
description of that layout: `input_blocks` / `middle_block` / `output_blocks` of
`TimestepEmbedSequential` containers, `ResBlock` (optionally resampling, `resblock_updown`),
`AttentionBlock`, `Downsample` / `Upsample`, and the custom gradient checkpoint that passes
gradients only to a block's own parameters.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

#----------------------------------------------------------------------------

class _Checkpoint(torch.autograd.Function):
    """Recompute `fn` in backward; gradients flow only to `inputs` and the listed `params`."""
    @staticmethod
    def forward(ctx, fn, num_inputs, *args):
        ctx.fn = fn
        ctx.inputs = args[:num_inputs]
        ctx.params = args[num_inputs:]
        with torch.no_grad():
            return fn(*ctx.inputs)

    @staticmethod
    def backward(ctx, grad_out):
        inputs = [x.detach().requires_grad_(True) for x in ctx.inputs]
        with torch.enable_grad():
            out = ctx.fn(*inputs)
        grads = torch.autograd.grad(out, inputs + list(ctx.params), grad_out, allow_unused=True)
        return (None, None) + tuple(grads)

def checkpoint(fn, inputs, params, enabled):
    """fn(*inputs), with guided-diffusion-style checkpointing when `enabled`."""
    if not enabled:
        return fn(*inputs)
    return _Checkpoint.apply(fn, len(inputs), *inputs, *params)

def timestep_embedding(t, dim, max_period=10000):
    """Sinusoidal timestep embedding [N, dim] of timesteps t [N]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

#----------------------------------------------------------------------------

class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """Sequential that passes the embedding to the children that take it."""
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x

class Downsample(nn.Module):
    """Halve the resolution: strided 3x3 conv (use_conv) or 2x2 average pooling."""
    def __init__(self, channels, use_conv, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.op = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x):
        return self.op(x)

class Upsample(nn.Module):
    """Double the resolution: nearest neighbour, then a 3x3 conv (use_conv)."""
    def __init__(self, channels, use_conv, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1) if use_conv else None

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode='nearest')
        return self.conv(x) if self.conv is not None else x

class ResBlock(TimestepBlock):
    """Residual block with timestep embedding; optionally resamples (up / down) inside."""
    def __init__(self, channels, emb_channels, out_channels=None, use_checkpoint=False, up=False, down=False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(nn.GroupNorm(4, channels), nn.SiLU(), nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, self.out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(4, self.out_channels), nn.SiLU(),
                                        nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if self.out_channels == channels else nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x, emb):
        return checkpoint(self._forward, (x, emb), tuple(self.parameters()), self.use_checkpoint)

    def _forward(self, x, emb):
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)

class AttentionBlock(nn.Module):
    """Single-head self-attention over the spatial positions."""
    def __init__(self, channels, use_checkpoint=False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.norm = nn.GroupNorm(4, channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        return checkpoint(self._forward, (x,), tuple(self.parameters()), self.use_checkpoint)

    def _forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(n, c, -1)).chunk(3, dim=1)
        weights = torch.softmax(torch.einsum('nct,ncs->nts', q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum('nts,ncs->nct', weights, v)
        return x + self.proj_out(out).reshape(n, c, h, w)

#----------------------------------------------------------------------------

class UNetModel(nn.Module):
    """Tiny UNet with guided-diffusion's layout; forward(x [N, C, H, W], timesteps [N]) -> [N, C_out, H, W]."""
    def __init__(self,
        image_size,                     # Training image size (read by attach as the training extent).
        in_channels         = 3,        # Input image channels.
        model_channels      = 8,        # Base width.
        out_channels        = 3,        # Output channels.
        num_res_blocks      = 1,        # ResBlocks per level.
        attention_resolutions = (2,),   # Downsampling rates with attention.
        channel_mult        = (1, 2, 2),# Width multiplier per level.
        use_checkpoint      = False,    # Custom gradient checkpoint in ResBlocks and attention.
        resblock_updown     = False,    # Resample with ResBlocks instead of Downsample / Upsample.
    ):
        super().__init__()
        self.image_size = image_size
        self.model_channels = model_channels
        emb_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        res_kwargs = dict(emb_channels=emb_dim, use_checkpoint=use_checkpoint)

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skip_channels, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, out_channels=mult * model_channels, **res_kwargs)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, use_checkpoint))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = ResBlock(ch, down=True, **res_kwargs) if resblock_updown else Downsample(ch, True)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, **res_kwargs), AttentionBlock(ch, use_checkpoint),
                                                    ResBlock(ch, **res_kwargs))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), out_channels=mult * model_channels, **res_kwargs)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, use_checkpoint))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, up=True, **res_kwargs) if resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(nn.GroupNorm(4, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))

    def forward(self, x, timesteps):
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        hs, h = [], x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
