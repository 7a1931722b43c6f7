"""Test setup: the vendored host is imported like an upstream checkout (top-level `dnnlib`,
`torch_utils`, `training`, `metrics`), and tests run on CPU with few threads."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')
for p in (HOST, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

MNIST_DIR = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'mnist')
