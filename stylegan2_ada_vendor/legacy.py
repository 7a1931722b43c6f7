"""Loading networks: snapshot pickles, bare network pickles, and weights-only files.

Two file formats hold trained networks:

- Network pickles (`network-snapshot-*.pkl`): `dict(G, D, G_ema, augment_pipe,
  training_set_kwargs, ...)` pickled with torch_utils.persistence, readable by every
  StyleGAN2-ADA checkout. LOADING ONE RUNS THE PYTHON CODE STORED IN IT: load only pickles you
  trust.
- Weights-only files (`save_network_weights`): one torch.save zip of plain tensors (each
  network's state_dict) plus, as JSON text, the importable class name and constructor arguments
  of each network. `load_network_weights` reads it with torch.load(weights_only=True) and builds
  the networks from the code installed here: nothing stored in the file is executed. It builds
  only classes declared to be networks (NETWORK_CLASSES: the host's training.networks and
  training.augment classes and mspe_plugin.networks; more through `register_network_class` or
  the `stylegan2_ada.networks` entry-point group), and refuses any other name before importing
  anything. Constructor arguments are JSON data; a `class_name` inside them (or inside the
  extra entries, e.g. training_set_kwargs) must also name a declared class.

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
    with dnnlib.util.atomic_write(path) as f:
        torch.save(payload, f)

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
    networks = payload.get('networks')
    if not isinstance(networks, dict) or not all(isinstance(key, str) for key in networks):
        raise NetworkLoadError(f'{where} is a damaged weights file: its network table is not a dict of named records.')
    result = _parse_json(payload.get('extra'), where, 'the extra entries')
    if not isinstance(result, dict):
        raise NetworkLoadError(f'{where} is a damaged weights file: its extra entries are not a JSON object.')
    _check_class_references(result, where, 'the extra entries')
    for name, record in networks.items():
        result[name] = _build_network(name, record, where).to(device)
    return result

# Which classes a weights file may name. Only names are compared: a name that is not declared
# here is refused before any module is imported, so a file cannot reach os.system & co.
NETWORK_CLASSES = {
    'training.networks.Generator', 'training.networks.Discriminator', 'training.networks.MappingNetwork',
    'training.networks.SynthesisNetwork', 'training.networks.SynthesisBlock', 'training.networks.SynthesisLayer',
    'training.networks.ToRGBLayer', 'training.networks.FullyConnectedLayer', 'training.networks.Conv2dLayer',
    'training.networks.DiscriminatorBlock', 'training.networks.DiscriminatorEpilogue',
    'training.networks.MinibatchStdLayer', 'training.augment.AugmentPipe',
    'mspe_plugin.networks.Generator', 'mspe_plugin.networks.SynthesisNetwork',
    'training.self_conditioning.SelfConditionedGenerator', 'training.self_conditioning.LabelSampler',
}
DATA_CLASSES = {'training.dataset.ImageFolderDataset'}     # May appear in training_set_kwargs.
ENTRY_POINT_GROUP = 'stylegan2_ada.networks'                 # Installed packages may declare networks here.
_CLASS_KEYS = ('class_name', 'func_name')                   # Argument keys that name something to build.

def register_network_class(cls_or_name):
    """Declare a network class that weights-only files may construct here, e.g. for a fork's
    own generator: `legacy.register_network_class('mymodels.nets.Generator')` (or pass the class).

    An installed package can declare the same without code through an entry point in the group
    `stylegan2_ada.networks` whose value is the class (`pkg.mod:Class`); those are read when a
    weights file is loaded. Register only classes whose constructor does nothing but build a
    torch.nn.Module: the file chooses their arguments (JSON data).
    """
    if isinstance(cls_or_name, type):
        name = f'{cls_or_name.__module__}.{cls_or_name.__qualname__}'
    else:
        name = str(cls_or_name)
    if not all(part.isidentifier() for part in name.split('.')) or '.' not in name:
        raise ValueError(f'{name!r} is not a dotted class name (package.module.Class).')
    NETWORK_CLASSES.add(name)
    return name

def _entry_point_classes():
    """Class names declared by installed packages in ENTRY_POINT_GROUP (nothing is imported)."""
    try:
        from importlib.metadata import entry_points
        found = entry_points(group=ENTRY_POINT_GROUP)
    except Exception:   # a broken distribution's metadata must not break loading
        return set()
    return {ep.value.replace(':', '.').strip() for ep in found}

def _declared(class_name, allowed):
    return isinstance(class_name, str) and (class_name in allowed or class_name in _entry_point_classes())

class _NotANetwork(Exception):
    pass

def _network_class(class_name):
    """The declared class `class_name`, imported; anything but a torch.nn.Module subclass is refused."""
    cls = dnnlib.util.get_obj_by_name(class_name)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise _NotANetwork(f'is declared as a network but is a {type(cls).__name__}, not a torch.nn.Module class')
    return cls

def _parse_json(text, where, what):
    if not isinstance(text, str):
        raise NetworkLoadError(f'{where} is a damaged weights file: {what} are not JSON text.')
    try:
        return json.loads(text, object_hook=dnnlib.EasyDict)
    except ValueError as err:
        raise NetworkLoadError(f'{where} is a damaged weights file: {what} are not valid JSON ({_first_line(err)}).') from None

def _check_record(name, record, where):
    """Refuse a network record unless it has the fields save_network_weights writes, with their
    types, and names a declared network class."""
    if not isinstance(record, dict) or not isinstance(record.get('class_name'), str):
        raise NetworkLoadError(f'{where} is a damaged weights file: network {name!r} has no class name.')
    class_name = record['class_name']
    if not _declared(class_name, NETWORK_CLASSES):
        raise NetworkLoadError(f'{where} names the class {class_name!r} for network {name!r}, which this installation does not '
                               f'declare to be a network, so the file is refused (if you trust it, call '
                               f'legacy.register_network_class({class_name!r}) first).')
    state = record.get('state_dict')
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise NetworkLoadError(f'{where} is a damaged weights file: the weights of network {name!r} are not a dict of named tensors.')
    if not isinstance(record.get('training'), bool) or not isinstance(record.get('frozen'), str):
        raise NetworkLoadError(f'{where} is a damaged weights file: network {name!r} lacks its training mode or frozen list.')

def _check_class_references(value, where, what):
    """Refuse `class_name` / `func_name` entries anywhere in JSON data unless they name a declared
    class: hosts build such configs with construct_class_by_name (e.g. calc_metrics builds the
    recorded training_set_kwargs)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _CLASS_KEYS and not _declared(item, NETWORK_CLASSES | DATA_CLASSES):
                raise NetworkLoadError(f'{where}: {what} refers to {item!r} as its {key}, which is not a class this installation '
                                       f'declares, so the file is refused.')
            _check_class_references(item, where, what)
    elif isinstance(value, list):
        for item in value:
            _check_class_references(item, where, what)

def _build_network(name, record, where):
    _check_record(name, record, where)
    class_name = record['class_name']
    args = _parse_json(record['init_args'], where, f'the constructor arguments of network {name!r}')
    kwargs = _parse_json(record['init_kwargs'], where, f'the constructor arguments of network {name!r}')
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise NetworkLoadError(f'{where}: the constructor arguments of network {name!r} are not a JSON list and object.')
    _check_class_references(args, where, f'network {name!r}')
    _check_class_references(kwargs, where, f'network {name!r}')
    try:
        net = _network_class(class_name)(*args, **kwargs)
    except ImportError as err:
        raise NetworkLoadError(f'{where} needs {class_name} for network {name!r}, which cannot be imported here '
                               f'({_first_line(err)}); install the package that defines it.') from err
    except _NotANetwork as err:
        raise NetworkLoadError(f'{where}: {class_name} (network {name!r}) {err}, so it is not built.') from None
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
    frozen = _parse_json(record['frozen'], where, f'the frozen parameters of network {name!r}')
    frozen = set(frozen) if isinstance(frozen, list) and all(isinstance(key, str) for key in frozen) else set()
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
