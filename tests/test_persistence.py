"""Persistent classes: pickles carry their module source, load where the code changed or is gone."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import uuid

import pytest
import torch

from torch_utils import persistence

HOST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'stylegan2_ada_vendor')

NET_SOURCE = '''
import torch
from torch_utils import persistence

SCALE = 2.0

@persistence.persistent_class
class Net(torch.nn.Module):
    def __init__(self, channels, hidden=4, extra=None):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(channels, hidden)
        self.fc2 = torch.nn.Linear(hidden, channels)
        self.register_buffer('offset', torch.linspace(-1, 1, channels))

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x))) * SCALE + self.offset
'''

def _write_module(folder, source):
    """Write `source` as a uniquely named module in `folder`; return its name."""
    name = f'tmpmod_{uuid.uuid4().hex[:10]}'
    with open(os.path.join(folder, name + '.py'), 'w') as f:
        f.write(textwrap.dedent(source))
    return name

def _run(script, cwd):
    """Run `script` in a fresh Python with the host and `cwd` on sys.path; return its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HOST, str(cwd)]))
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)], cwd=str(cwd), env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout

@pytest.fixture
def tmp_module(tmp_path, monkeypatch):
    """Import a module written from source in tmp_path (removed from sys.modules afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []
    def make(source):
        name = _write_module(str(tmp_path), source)
        names.append(name)
        return __import__(name)
    yield make
    for name in names:
        sys.modules.pop(name, None)

#----------------------------------------------------------------------------

def test_persistent_instance_records_its_constructor_arguments(tmp_module):
    mod = tmp_module(NET_SOURCE)
    kwargs = dict(hidden=3, extra=dict(a=[1, 2]))
    net = mod.Net(5, **kwargs)
    kwargs['extra']['a'].append(3)      # later edits by the caller do not leak in
    assert net.init_args == (5,)
    assert net.init_kwargs == dict(hidden=3, extra=dict(a=[1, 2])) and net.init_kwargs.hidden == 3
    net.init_kwargs['hidden'] = 99      # the properties hand out copies
    assert net.init_kwargs.hidden == 3

def test_decorated_class_keeps_its_name_and_module(tmp_module):
    mod = tmp_module(NET_SOURCE)
    assert mod.Net.__name__ == 'Net' and mod.Net.__module__ == mod.__name__
    assert persistence.is_persistent(mod.Net) and persistence.is_persistent(mod.Net(2))
    assert not persistence.is_persistent(torch.nn.Linear(1, 1)) and not persistence.is_persistent([])
    assert persistence.persistent_class(mod.Net) is mod.Net
    assert persistence.importable_class_name(mod.Net(2)) == f'{mod.__name__}.Net'
    with pytest.raises(TypeError):
        persistence.persistent_class(lambda: None)

def test_pickle_round_trip_in_process_keeps_the_class(tmp_module):
    mod = tmp_module(NET_SOURCE)
    net = mod.Net(4)
    clone = pickle.loads(pickle.dumps(net))
    twin = copy.deepcopy(net)
    x = torch.randn(3, 4)
    for other in (clone, twin):
        assert type(other) is mod.Net     # same source: the imported module is reused
        assert torch.equal(other(x), net(x))
        assert other.init_args == (4,)

def test_pickle_stores_the_module_source(tmp_module):
    mod = tmp_module(NET_SOURCE)
    data = pickle.dumps(mod.Net(2))
    assert b'SCALE = 2.0' in data and b'_reconstruct_persistent_obj' in data and mod.__name__.encode() in data

def test_pickle_loads_where_the_module_was_edited_or_deleted(tmp_path):
    name = _write_module(str(tmp_path), NET_SOURCE)
    _run(f'''
        import pickle, torch, {name}
        net = {name}.Net(6, hidden=5)
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
        torch.save(dict(x=x, y=net(x).detach()), 'expected.pt')
        with open('net.pkl', 'wb') as f:
            pickle.dump(dict(G=net, note='snapshot'), f)
        ''', tmp_path)
    check = f'''
        import pickle, sys, torch
        from torch_utils import persistence
        with open('net.pkl', 'rb') as f:
            data = pickle.load(f)
        net, expected = data['G'], torch.load('expected.pt')
        assert data['note'] == 'snapshot'
        assert torch.equal(net(expected['x']), expected['y']), 'outputs differ'
        assert net.init_args == (6,) and net.init_kwargs == dict(hidden=5)
        assert type(net).__module__.startswith('_imported_module_'), type(net).__module__
        assert persistence.importable_class_name(net) == '{name}.Net'
        assert '{name}' not in sys.modules
        again = pickle.loads(pickle.dumps(net))    # a rebuilt object pickles again
        assert torch.equal(again(expected['x']), expected['y'])
        print('ok')
        '''
    module_file = tmp_path / f'{name}.py'
    module_file.write_text(NET_SOURCE.replace('SCALE = 2.0', 'SCALE = -7.0').replace('class Net', 'class Renamed'))
    assert _run(check, tmp_path).strip() == 'ok'
    module_file.unlink()
    assert _run(check, tmp_path).strip() == 'ok'

def test_decorated_subclass_pickles_as_the_subclass(tmp_path):
    base = _write_module(str(tmp_path), NET_SOURCE)
    sub = _write_module(str(tmp_path), f'''
        import torch
        from torch_utils import persistence
        import {base}

        @persistence.persistent_class
        class Wider({base}.Net):
            def __init__(self, channels, bias=1.5, **kwargs):
                super().__init__(channels, hidden=7, **kwargs)
                self.bias = bias
            def forward(self, x):
                return super().forward(x) + self.bias
        ''')
    _run(f'''
        import pickle, torch, {sub}
        net = {sub}.Wider(3, bias=0.25)
        assert net.init_args == (3,) and net.init_kwargs == dict(bias=0.25), (net.init_args, net.init_kwargs)
        x = torch.randn(2, 3)
        torch.save(dict(x=x, y=net(x).detach()), 'expected.pt')
        with open('net.pkl', 'wb') as f:
            pickle.dump(net, f)
        ''', tmp_path)
    (tmp_path / f'{sub}.py').unlink()
    out = _run(f'''
        import pickle, torch
        from torch_utils import persistence
        with open('net.pkl', 'rb') as f:
            net = pickle.load(f)
        expected = torch.load('expected.pt')
        assert type(net).__name__ == 'Wider' and net.fc1.out_features == 7
        assert torch.equal(net(expected['x']), expected['y'])
        assert net.init_kwargs == dict(bias=0.25)
        assert persistence.importable_class_name(net) == '{sub}.Wider'
        print('ok')
        ''', tmp_path)
    assert out.strip() == 'ok'

def test_undecorated_subclass_pickles_by_reference(tmp_module):
    mod = tmp_module(NET_SOURCE + '''
class Plain(Net):
    pass
''')
    data = pickle.dumps(mod.Plain(2))
    assert b'_reconstruct_persistent_obj' not in data
    assert type(pickle.loads(data)) is mod.Plain
    assert not persistence.is_persistent(mod.Plain(2))

def test_import_hook_can_rewrite_the_stored_source(tmp_module, monkeypatch):
    monkeypatch.setattr(persistence, '_import_hooks', [])
    mod = tmp_module(NET_SOURCE)
    net = mod.Net(3)
    seen = []
    def hook(meta):
        seen.append((meta.class_name, meta.module_name, 'fc1' in meta.state['_modules']))
        meta.module_src = meta.module_src.replace('SCALE = 2.0', 'SCALE = 0.0')
        return meta
    persistence.import_hook(hook)
    clone = pickle.loads(pickle.dumps(net))
    x = torch.randn(2, 3)
    assert seen == [('Net', mod.__name__, True)]
    assert type(clone) is not mod.Net and type(clone).__name__ == 'Net'
    assert torch.equal(clone(x), net.offset.expand(2, 3))       # SCALE = 0 leaves only the offset

def test_unknown_format_version_is_refused(tmp_module, monkeypatch):
    monkeypatch.setattr(persistence, '_import_hooks', [])
    mod = tmp_module(NET_SOURCE)
    def future(meta):
        meta.version = 99
        return meta
    persistence.import_hook(future)
    with pytest.raises(ValueError, match='version 99'):
        pickle.loads(pickle.dumps(mod.Net(2)))

def test_module_docstring_warns_that_loading_runs_code():
    doc = persistence.__doc__
    assert 'RUNS THE PYTHON CODE STORED INSIDE IT' in doc and 'load_network_weights' in doc

def test_pickle_written_by_an_upstream_checkout_loads(tmp_module):
    """Upstream's meta has no module_name; such pickles load (the source is all that is needed)."""
    mod = tmp_module(NET_SOURCE)
    net = mod.Net(3)
    class UpstreamStyle:
        def __reduce__(self):
            meta = dict(type='class', version=6, module_src=NET_SOURCE.replace('SCALE = 2.0', 'SCALE = 2.5'),
                        class_name='Net', state=dict(net.__dict__))
            return (persistence._reconstruct_persistent_obj, (meta,))
    clone = pickle.loads(pickle.dumps(UpstreamStyle()))
    x = torch.randn(2, 3)
    assert type(clone).__name__ == 'Net' and persistence.is_persistent(clone)
    assert torch.allclose(clone(x) - net.offset, (net(x) - net.offset) * 1.25)
