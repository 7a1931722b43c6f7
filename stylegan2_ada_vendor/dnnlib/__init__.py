"""dnnlib: the host's small configuration and I/O toolbox (EasyDict, class construction by name,
logging to log.txt, cached downloads). Imported as a top-level package, as in upstream."""

from . import util
from .util import EasyDict, make_cache_dir_path
