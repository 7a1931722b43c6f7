"""The repository's scripts, by role: tools/ (for users), bench/ (timings), experiments/ (the
paper's figures and tables). Run them from the repository root as modules:

    python -m scripts.tools.sefa --network results/models/mspe.pkl
    python -m scripts.experiments.eqt

Importing this package is the one place that puts the vendored host (stylegan2_ada_vendor/, run
like an upstream checkout: top-level dnnlib, torch_utils, training, legacy) and the repository
root (mspe_plugin, when it is not installed) on sys.path.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'stylegan2_ada_vendor')
for _path in (ROOT, HOST):
    if _path not in sys.path:
        sys.path.insert(0, _path)
