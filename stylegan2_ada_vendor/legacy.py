"""Loading networks: snapshot pickles, bare network pickles, and weights-only files.

Two file formats hold trained networks:

- Network pickles (`network-snapshot-*.pkl`): `dict(G, D, G_ema, augment_pipe,
  training_set_kwargs, ...)` pickled with torch_utils.persistence, readable by every
  StyleGAN2-ADA checkout. LOADING ONE RUNS THE PYTHON CODE STORED IN IT: load only pickles you
  trust.
- Weights-only files (`save_network_weights`): one torch.save zip of plain tensors (each
  network's state_dict) plus, as JSON text, the importable class name and constructor arguments
  of each network. `load_network_weights` reads it with torch.load(weights_only=True) and builds
  the networks from the code installed here: nothing stored in the file is executed.

`load_network_pkl` tells the two apart by their first bytes and returns the same dict for both.
Anything else (a truncated or corrupt file, a text file, a pickle of something else) raises
NetworkLoadError with one sentence saying what the file is not.

    python legacy.py --source=network-snapshot-000200.pkl --dest=network-000200-weights.pt
"""

import copy
import io
import json
import os
import pickle
import tempfile
import warnings

import click
import numpy as np
import torch

import dnnlib
from torch_utils import misc
from torch_utils import persistence

#----------------------------------------------------------------------------

WEIGHTS_FORMAT = 'stylegan2-ada-weights'    # Marker of the weights-only format.
WEIGHTS_VERSION = 1
NETWORK_KEYS = ('G', 'D', 'G_ema')          # What a snapshot dict holds networks under.
_ZIP_MAGIC = b'PK\x03\x04'                  # torch.save's zip container.

class NetworkLoadError(Exception):
    """A file is not a network pickle or weights file (or cannot be turned into networks here);
    the message is one sentence naming the file."""

def _describe(f):
    """Name of a path or file object, for messages."""
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    name = getattr(f, 'name', None)
    return name if isinstance(name, str) else 'the network file'

def _first_line(err):
    """'Type: first sentence of the message' (torch's messages run on for several sentences)."""
    text = str(err).strip()
    line = text.splitlines()[0].strip() if text else ''
    line = line.split('. ')[0].rstrip('.: ')
    return f'{type(err).__name__}: {line}' if line else type(err).__name__

def _read_bytes(f):
    if isinstance(f, (str, os.PathLike)):
        with open(f, 'rb') as file:
            return file.read()
    data = f.read()
    if isinstance(data, str):
        raise NetworkLoadError(f'{_describe(f)} was opened in text mode; open network files with "rb".')
    return data

#----------------------------------------------------------------------------
# Network pickles.

class _Unpickler(pickle.Unpickler):
    """Unpickler that recognises TensorFlow-era pickles by their dnnlib.tflib classes."""
    def find_class(self, module, name):
        if module.startswith('dnnlib.tflib'):
            raise _TensorFlowPickle()
        return super().find_class(module, name)

class _TensorFlowPickle(Exception):
    pass

def load_network_pkl(f, force_fp16=False):
    """Load the networks of a snapshot pickle, a bare network pickle or a weights-only file.

    :param f: binary file object (e.g. from dnnlib.util.open_url) or path.
    :param force_fp16: rebuild G, D and G_ema with FP16 for the 4 highest resolutions and
        conv_clamp=256 (as upstream's flag; the weights are copied over).
    :return: dict with G, D, G_ema, augment_pipe, training_set_kwargs (None where the file has
        none; G_ema is G when only G is stored) plus any other entries the file holds.
    """
    where = _describe(f)
    data = _read_bytes(f)
    if data[:4] == _ZIP_MAGIC:
        result = load_network_weights(io.BytesIO(data), where=where)
    else:
        result = _unpickle(data, where)
    if isinstance(result, torch.nn.Module):
        result = _bare_network_dict(result)
    if not isinstance(result, dict) or not any(isinstance(result.get(k), torch.nn.Module) for k in NETWORK_KEYS):
        what = f'a dict with keys {sorted(map(str, result))[:6]}' if isinstance(result, dict) else f'a {type(result).__name__}'
        raise NetworkLoadError(f'{where} is not a network pickle or weights file: it holds {what} but no G, D or G_ema network.')
    result = dict(result)
    for key in NETWORK_KEYS + ('augment_pipe', 'training_set_kwargs'):
        result.setdefault(key, None)
    for key in NETWORK_KEYS:
        if isinstance(result[key], torch.nn.Module):
            upgrade_filter_buffers(result[key])
    if result['G_ema'] is None and isinstance(result['G'], torch.nn.Module):
        result['G_ema'] = result['G']
    if force_fp16:
        for key in NETWORK_KEYS:
            if isinstance(result[key], torch.nn.Module):
                result[key] = _with_fp16(result[key], is_generator=(key != 'D'))
    return result

def _unpickle(data, where):
    """pickle.loads with every failure turned into one NetworkLoadError sentence."""
    try:
        return _Unpickler(io.BytesIO(data)).load()
    except _TensorFlowPickle:
        raise NetworkLoadError(f'{where} is a TensorFlow-era StyleGAN pickle, which this host does not convert; '
                               f'convert it with NVlabs stylegan2-ada-pytorch legacy.py first.') from None
    except ModuleNotFoundError as err:
        raise NetworkLoadError(f'{where} needs the module {err.name!r} to load ({_first_line(err)}); '
                               f'install it or run from a checkout that has it.') from err
    except Exception as err:    # garbage bytes make pickle raise almost any type
        detail = 'the file is empty' if not data else (
            'the pickle ends early (truncated file?)' if isinstance(err, EOFError) else _first_line(err))
        raise NetworkLoadError(f'{where} is not a network pickle or weights file: {detail}.') from err

def _bare_network_dict(net):
    """A pickled single network: a generator (it has z_dim) becomes G and G_ema, else D."""
    if hasattr(net, 'z_dim') and hasattr(net, 'synthesis'):
        return dict(G=net, G_ema=net)
    return dict(D=net)

def _with_fp16(net, is_generator):
    """`net` rebuilt with num_fp16_res=4, conv_clamp=256 (same weights); `net` itself when it
    already has them or has no recorded constructor arguments."""
    if not persistence.is_persistent(net):
        return net
    kwargs = net.init_kwargs
    if is_generator:
        kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
        target = kwargs.synthesis_kwargs
    else:
        target = kwargs
    if target.get('num_fp16_res') == 4 and target.get('conv_clamp') == 256:
        return net
    target.num_fp16_res = 4
    target.conv_clamp = 256
    device = next(net.parameters()).device
    new = type(net)(*net.init_args, **kwargs).train(net.training).requires_grad_(False)
    misc.copy_params_and_buffers(net, new, require_all=True)
    return new.to(device)

#----------------------------------------------------------------------------
# Filter layout of older files.

FILTER_BUFFER = 'resample_filter'   # Name of the resampling filter buffers in every network.

def _filter_as_upstream(f):
    """A stored filter in upstream's layout: a 1-D filter of fewer than 8 taps (meaning the
    separable f x f, as this host stored [1,3,3,1] before it matched upstream) becomes its 2-D
    outer product, which is what upfirdn2d.setup_filter stores now; anything else is kept."""
    if isinstance(f, torch.Tensor) and f.ndim == 1 and f.numel() < 8:
        return f.ger(f)
    return f

def upgrade_filter_buffers(net):
    """Turn `net`'s resampling filters, in place, into the layout upstream and this host store
    (see _filter_as_upstream). The filter is the same, so the network computes the same images;
    its state_dict then matches a network built by the current code, so copying, resuming and
    canvas rendering see one layout for old and new files.

    :return: names of the buffers that changed.
    """
    changed = []
    for module_name, module in net.named_modules():
        f = module._buffers.get(FILTER_BUFFER)
        new = _filter_as_upstream(f)
        if new is not f:
            module._buffers[FILTER_BUFFER] = new
            changed.append(f'{module_name}.{FILTER_BUFFER}' if module_name else FILTER_BUFFER)
    return changed

#----------------------------------------------------------------------------
# Weights-only files.

def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    raise TypeError(f'{type(obj).__name__} values cannot be stored as JSON')

def _to_json(value, what):
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{what} cannot be stored in a weights file ({err}).') from None

def _network_record(name, net):
    """The weights-file entry of one network: class, constructor arguments, tensors."""
    if not persistence.is_persistent(net):
        raise ValueError(f'Network {name!r} ({type(net).__name__}) was not built by a persistent class, '
                         f'so its constructor arguments are unknown; decorate its class with @persistence.persistent_class.')
    state = net.state_dict()
    bad = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(f'Network {name!r} has non-tensor state {bad[0]!r}, which a weights file cannot hold.')
    return dict(
        class_name  = _class_name_for_weights(name, net),
        init_args   = _to_json(list(net.init_args), f'A positional constructor argument of network {name!r}'),
        init_kwargs = _to_json(net.init_kwargs, f'A constructor argument of network {name!r}'),
        state_dict  = {key: value.detach().cpu().clone() for key, value in state.items()},
        training    = bool(net.training),
        frozen      = json.dumps([key for key, param in net.named_parameters() if not param.requires_grad]),
    )

HOST_MODULES = ('training.networks', 'training.augment')   # Where upstream pickles' classes live here.

def _class_name_for_weights(name, net):
    """Importable 'module.Class' of `net`. A class rebuilt from a pickle that does not record
    its module (pickles written by upstream checkouts) is looked up by name in HOST_MODULES;
    load_state_dict(strict=True) checks the match when the file is read."""
    class_name = persistence.importable_class_name(net)
    module_name, _, short_name = class_name.rpartition('.')
    if not module_name.startswith('_imported_module_'):
        return class_name
    for candidate in HOST_MODULES:
        if hasattr(dnnlib.util.get_obj_by_name(candidate), short_name):
            return f'{candidate}.{short_name}'
    raise ValueError(f'Network {name!r} ({short_name}) was loaded from a pickle that does not say which module defines it, '
                     f'and no module of this host ({", ".join(HOST_MODULES)}) has that class.')

def save_network_weights(path, networks, extra=None):
    """Write `networks` (dict name -> persistent module, or None) and `extra` (dict of
    JSON-serialisable values, e.g. training_set_kwargs) to the weights-only file `path`.

    The file holds only tensors and strings: it is read with torch.load(weights_only=True) and
    executes no stored code. The write is atomic (an existing `path` is replaced only when the
    new file is complete).
    """
    records = {}
    extra = dict(extra or {})
    for name, net in networks.items():
        if net is None:
            extra[name] = None
        else:
            records[name] = _network_record(name, net)
    payload = dict(format=WEIGHTS_FORMAT, version=WEIGHTS_VERSION, networks=records,
                   extra=_to_json(extra, 'The extra data'))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise

def load_network_weights(path, device='cpu', where=None):
    """Read a file written by save_network_weights and rebuild its networks from the classes
    installed here (no code from the file runs).

    :param path: path or binary file object.
    :param device: device of the returned networks.
    :param where: name of the file in messages (default: the path).
    :return: dict name -> network, plus the extra entries.
    """
    where = where or _describe(path)
    try:
        payload = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:    # torch raises many types for damaged or foreign zips
        raise NetworkLoadError(f'{where} is not a network pickle or weights file: {_first_line(err)}.') from err
    if not isinstance(payload, dict) or payload.get('format') != WEIGHTS_FORMAT:
        raise NetworkLoadError(f'{where} is not a network pickle or weights file: it is a PyTorch file but was not '
                               f'written by legacy.save_network_weights.')
    if payload.get('version') != WEIGHTS_VERSION:
        raise NetworkLoadError(f'{where} is a weights file of version {payload.get("version")}, '
                               f'and this host reads version {WEIGHTS_VERSION}.')
    result = json.loads(payload['extra'], object_hook=dnnlib.EasyDict)
    for name, record in payload['networks'].items():
        result[name] = _build_network(name, record, where).to(device)
    return result

def _build_network(name, record, where):
    class_name = record['class_name']
    args = json.loads(record['init_args'], object_hook=dnnlib.EasyDict)
    kwargs = json.loads(record['init_kwargs'], object_hook=dnnlib.EasyDict)
    try:
        net = dnnlib.util.construct_class_by_name(*args, class_name=class_name, **kwargs)
    except ImportError as err:
        raise NetworkLoadError(f'{where} needs {class_name} for network {name!r}, which cannot be imported here '
                               f'({_first_line(err)}); install the package that defines it.') from err
    except Exception as err:
        raise NetworkLoadError(f'{where}: {class_name} refused the stored arguments of network {name!r} '
                               f'({_first_line(err)}).') from err
    state = record['state_dict']
    expected = net.state_dict()
    state = {key: _filter_as_upstream(value) if key.split('.')[-1] == FILTER_BUFFER and key in expected
             and expected[key].ndim == 2 else value for key, value in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise NetworkLoadError(f'{where}: the stored weights of network {name!r} do not fit {class_name} '
                               f'({_first_line(err)}).') from err
    frozen = set(json.loads(record['frozen']))
    for key, param in net.named_parameters():
        param.requires_grad_(key not in frozen)
    return net.train(record['training'])

def convert_pkl_to_weights(pkl_path, out_path):
    """Convert a network pickle (path or URL; loading it runs its stored code, so trust it) to
    a weights-only file. Entries that are not networks are kept when JSON-serialisable
    (training_set_kwargs, progress, ...) and dropped with a warning otherwise.

    :return: the names of the networks written.
    """
    with dnnlib.util.open_url(pkl_path, verbose=False) as f:
        data = load_network_pkl(f)
    networks = {key: value for key, value in data.items() if isinstance(value, torch.nn.Module)}
    extra = {}
    for key, value in data.items():
        if key in networks:
            continue
        try:
            json.dumps(value, default=_json_default)
            extra[key] = copy.deepcopy(value)
        except (TypeError, ValueError):
            warnings.warn(f'{pkl_path}: entry {key!r} ({type(value).__name__}) is not JSON-serialisable and is left out of {out_path}.')
    save_network_weights(out_path, networks, extra)
    return sorted(networks)

#----------------------------------------------------------------------------

@click.command()
@click.option('--source', help='Network pickle (path or URL) to convert', required=True, metavar='PKL')
@click.option('--dest', help='Weights-only file to write', required=True, metavar='FILE')
def convert_network_pickle(source, dest):
    """Convert a network pickle into a weights-only file that loads without running stored code.

    Example: python legacy.py --source=network-snapshot-000200.pkl --dest=network-000200-weights.pt
    """
    try:
        names = convert_pkl_to_weights(source, dest)
    except (NetworkLoadError, OSError, ValueError) as err:
        raise click.ClickException(str(err))
    print(f'Wrote {", ".join(names)} to {dest}.')

if __name__ == '__main__':
    convert_network_pickle()  # pylint: disable=no-value-for-parameter
