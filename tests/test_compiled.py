"""The compiled path (training/compiled.py): compiled and eager networks agree, a training run
compiles a bounded number of graphs, and the --compile flags decide as documented."""
import shutil

import numpy as np
import pytest
import torch

from mspe_plugin import networks as pe_networks
from mspe_plugin.encoding import Canvas
from training import compiled
from training import networks
from training.loss import StyleGAN2Loss

torch.set_num_threads(1)
CPU = torch.device('cpu')
ATOL = 2e-4     # float32: compiled kernels sum in another order than the eager reference

def tiny_G(pe=None, res=16, seed=0):
    torch.manual_seed(seed)
    synthesis = dict(channel_base=16 * res, channel_max=16)
    if pe is None:
        return networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=synthesis)
    return pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3,
                                 mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(synthesis, pe=pe))

def tiny_D(res=16, seed=1):
    torch.manual_seed(seed)
    return networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=16 * res, channel_max=16)

def _outputs_and_grads(fn, inputs, params):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    for p in params:
        p.grad = None
    out = fn(*inputs)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return [out.detach()] + [x.grad.clone() for x in inputs] + [p.grad.clone() for p in params]

def _assert_close(a, b):
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert torch.allclose(x, y, atol=ATOL, rtol=1e-4), float((x - y).abs().max())

#----------------------------------------------------------------------------
# Compiled == eager (TorchInductor), outputs and gradients.

needs_compiler = pytest.mark.skipif(compiled.available(CPU) is not None, reason=str(compiled.available(CPU)))

@needs_compiler
def test_compiled_G_and_D_match_eager_outputs_and_gradients():
    G, D = tiny_G(res=8).requires_grad_(True), tiny_D(res=8).requires_grad_(True)    # 8 px: fewer kernels to compile
    ws = G.mapping(torch.randn([4, 8]), None).detach()
    img = torch.randn([4, 3, 8, 8])
    G_params, D_params = list(G.synthesis.parameters()), list(D.parameters())
    fG = lambda w: G.synthesis(w, noise_mode='const')
    fD = lambda x: D(x, None)
    eager = _outputs_and_grads(fG, [ws], G_params), _outputs_and_grads(fD, [img], D_params)
    cG = compiled._Compiled(G.synthesis, 'G.synthesis', fn=G.synthesis.forward, log=None)
    cD = compiled._Compiled(D, 'D', log=None)
    fast = _outputs_and_grads(lambda w: cG(w, noise_mode='const'), [ws], G_params), _outputs_and_grads(lambda x: cD(x, None), [img], D_params)
    _assert_close(eager[0], fast[0])
    _assert_close(eager[1], fast[1])
    # The layout is switched only during compiled calls: the modules are as they were.
    assert not any(m.channels_last for m in compiled._layout_modules(G.synthesis))

@needs_compiler
def test_compiled_mspe_G_on_a_moved_zoomed_canvas_matches_eager():
    G = tiny_G(pe='mspe', res=8).eval()
    ws = G.mapping(torch.randn([2, 8]), None).detach()
    canvas = Canvas(origin=(3.0, -5.0), size=(10, 12), zoom=1.0)
    params = list(G.synthesis.parameters())
    for p in params:
        p.requires_grad_(True)
    f = lambda w: G.synthesis(w, canvas=canvas, noise_mode='const')
    eager = _outputs_and_grads(f, [ws], params)
    assert eager[0].shape == (2, 3, 10, 12)
    compiled.compile_forward(G.synthesis, 'on', CPU, 1, log=None)
    fast = _outputs_and_grads(f, [ws], params)
    _assert_close(eager, fast)

#----------------------------------------------------------------------------
# Compilations per training run (a counting backend stands in for inductor: same graphs).

class CountingBackend:
    def __init__(self):
        self.graphs = 0
    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward

def _train(loss, G, D, steps=6, batch=4):
    optG = torch.optim.Adam(G.parameters(), lr=1e-3)
    optD = torch.optim.Adam(D.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(steps):
        real = torch.randn([batch, 3, 16, 16], generator=gen)
        for phase, module, opt, interval in [('Gmain', G, optG, 1), ('Greg', G, optG, 2), ('Dmain', D, optD, 1), ('Dreg', D, optD, 2)]:
            if step % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            z = torch.randn([batch, 8], generator=gen)
            loss.accumulate_gradients(phase=phase, real_img=real, real_c=torch.zeros([batch, 0]), gen_z=z,
                                      gen_c=torch.zeros([batch, 0]), sync=True, gain=interval)
            module.requires_grad_(False)
            opt.step()

def _run(pe=None, wrap=True, **G_kwargs):
    torch._dynamo.reset()
    G, D = tiny_G(pe=pe), tiny_D()
    if pe is not None and G_kwargs:
        for key, value in G_kwargs.items():
            setattr(G.synthesis, key, value)
    G.requires_grad_(False)
    D.requires_grad_(False)
    loss = StyleGAN2Loss(device=CPU, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, r1_gamma=1, pl_batch_shrink=2)
    backend = CountingBackend()
    if wrap:
        loss = compiled.CompiledLoss(loss, backend=backend, log=None)
    torch.manual_seed(0)
    np.random.seed(0)
    _train(loss, G, D)
    return backend, G, D

MAX_GRAPHS = 4      # G.synthesis and D, each with trainable and with frozen parameters

def test_a_training_run_compiles_at_most_four_graphs_and_trains_like_eager():
    backend, G, D = _run()
    assert 0 < backend.graphs <= MAX_GRAPHS, backend.graphs
    _, G_ref, D_ref = _run(wrap=False)
    for a, b in zip(list(G.parameters()) + list(D.parameters()), list(G_ref.parameters()) + list(D_ref.parameters())):
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())

def test_a_random_canvas_generator_stays_eager_and_D_alone_compiles():
    backend, G, _D = _run(pe='mspe', pe_margin=2)
    assert G.synthesis.random_canvas
    assert 0 < backend.graphs <= 2, backend.graphs

#----------------------------------------------------------------------------
# Deciding.

def test_resolve_modes(monkeypatch):
    assert compiled.resolve('off', CPU, 10 ** 6, 10)[0] is False
    if compiled.available(CPU) is None:
        assert compiled.resolve('on', CPU, 1, 10)[0] is True
        assert compiled.resolve('auto', CPU, 9, 10)[0] is False
        assert compiled.resolve('auto', CPU, 10, 10)[0] is True
    with pytest.raises(ValueError, match='--compile must be one of'):
        compiled.resolve('fast', CPU, 1, 10)
    monkeypatch.setattr(shutil, 'which', lambda name: None)
    assert 'C++ compiler' in compiled.available(CPU)
    assert compiled.resolve('auto', CPU, 10 ** 6, 10) == (False, 'off (no C++ compiler (g++, c++ or clang++) on PATH)')
    with pytest.raises(ValueError, match='--compile=on cannot compile here'):
        compiled.resolve('on', CPU, 1, 10)

def test_compiled_loss_finds_the_networks_of_a_wrapping_loss():
    G, D = tiny_G(), tiny_D()
    inner = StyleGAN2Loss(device=CPU, G_mapping=G.mapping, G_synthesis=G.synthesis, D=D)
    class Wrapper:
        def __init__(self, inner):
            self.inner = inner
        def __getattr__(self, name):
            return getattr(self.inner, name)
    wrapped = compiled.CompiledLoss(Wrapper(inner), backend=CountingBackend(), log=None)
    assert [owner for owner, *_ in wrapped.swaps] == [inner, inner]
    assert wrapped.pl_mean is inner.pl_mean

#----------------------------------------------------------------------------
# bfloat16 FP16 blocks on CPU (train.py --cpu-bf16).

@pytest.mark.skipif(not compiled.cpu_bf16_supported(), reason='this CPU has no native bfloat16 under oneDNN')
def test_cpu_bf16_runs_the_fp16_blocks_in_bfloat16_within_its_rounding():
    torch.manual_seed(0)
    kw = dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256)
    G = networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kw)
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, **kw)
    ws = G.mapping(torch.randn([4, 8]), None).detach()
    ref_img = G.synthesis(ws, noise_mode='const').detach()
    ref_logits = D(ref_img, None).detach()
    dtypes = []
    G.synthesis.b16.conv1.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    assert compiled.use_cpu_bf16(G, D) == 4     # b8, b16 of G; b16, b8 of D
    img = G.synthesis(ws, noise_mode='const')
    logits = D(img, None)
    assert dtypes[-1] == torch.bfloat16 and img.dtype == torch.float32 and logits.dtype == torch.float32
    assert (img - ref_img).abs().max() < 0.05 * ref_img.abs().max()
    assert (logits - ref_logits).abs().max() < 0.05 * ref_logits.abs().max() + 0.05
    # Gradients reach the float32 weights; force_fp32 renders in float32 exactly as before.
    logits.sum().backward()
    assert all(p.grad is None or (p.grad.dtype == torch.float32 and p.grad.isfinite().all()) for p in G.parameters())
    assert torch.equal(G.synthesis(ws, noise_mode='const', force_fp32=True), ref_img)
