"""mspe: multi-scale positional encoding (MS-PE) for StyleGAN2-ADA and diffusion UNets."""
__version__ = '0.1.0'
