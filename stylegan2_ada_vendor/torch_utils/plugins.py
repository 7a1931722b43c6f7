"""What the host's scripts share about their surroundings: the optional mspe_plugin hook and the
device to run on.

- `load_plugin()`: the plugin's registration module when mspe_plugin is installed, None when it
  is not, and PluginError (one sentence with the underlying error) when it is installed but
  cannot be imported: a broken install must not look like an absent one, where the plugin's
  flags would silently vanish.
- `default_device(rank)`: cuda:rank when CUDA is available, else the CPU; `parse_device(text)`
  for a --device flag.
"""

import importlib
import sys

import torch

#----------------------------------------------------------------------------
# The plugin hook.

PLUGIN_PACKAGE = 'mspe_plugin'          # Package a host looks for.
PLUGIN_API = 'mspe_plugin.register'     # Its module with the registration API (canvas options, split_cfg, ...).

class PluginError(Exception):
    """The plugin is installed but cannot be imported; the message is one sentence."""

def load_plugin(package=PLUGIN_PACKAGE, api=PLUGIN_API):
    """Import the plugin's registration module.

    :param package: top-level package of the plugin; only its own absence means "not installed".
    :param api: module to import from it.
    :return: the module, or None when `package` is not installed.
    :raises PluginError: when `package` exists but importing `api` fails for any other reason
        (a missing dependency, a syntax error, an exception at import time).
    """
    try:
        return importlib.import_module(api)
    except ModuleNotFoundError as err:
        if err.name == package:
            return None
        error = err
    except Exception as err:    # whatever the plugin's import raises: report it, never hide it
        error = err
    text = str(error).strip().splitlines()
    detail = f'{type(error).__name__}: {text[0]}' if text else type(error).__name__
    raise PluginError(f'{package} is installed but {api} cannot be imported ({detail.rstrip(".")}); '
                      f'fix or reinstall it, or uninstall it to run without the plugin.') from error

def load_plugin_or_exit():
    """load_plugin() for a command-line script that needs the answer while it is being imported
    (its click options depend on it): a broken plugin prints one sentence and exits with status 1."""
    try:
        return load_plugin()
    except PluginError as err:
        print(f'Error: {err}', file=sys.stderr)
        raise SystemExit(1)

#----------------------------------------------------------------------------
# Devices.

def default_device(rank=0):
    """cuda:rank (modulo the number of GPUs) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device('cuda', rank % torch.cuda.device_count())
    return torch.device('cpu')

def parse_device(text):
    """A --device value: 'auto' -> default_device(); else a torch device name that exists here.

    :raises ValueError: one sentence saying what is wrong and what to pass instead.
    """
    if text == 'auto':
        return default_device()
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f'{text!r} is not a device; use auto, cpu, cuda or cuda:N.') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError('CUDA is not available on this machine; use --device=cpu (or auto).')
    return device

#----------------------------------------------------------------------------
