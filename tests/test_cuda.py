"""The CUDA paths of the host, the plugin and the experiment scripts.

Skipped unless MSPE_TEST_CUDA=1 on a machine with a GPU (otherwise conftest.py hides the GPU and the
whole suite runs on the CPU): `MSPE_TEST_CUDA=1 python -m pytest tests/test_cuda.py`. CI has no GPU
and skips this module. Several checks reuse a CPU test's body, which then runs where the code picks
its device by itself (CUDA here); float32 results on the GPU are compared with the CPU's within
tolerances, never bit for bit.
"""

import json
import os

import numpy as np
import pytest
import torch

from conftest import HOST, TEST_CUDA

pytestmark = pytest.mark.skipif(not (TEST_CUDA and torch.cuda.is_available()),
                                reason='CUDA checks run with MSPE_TEST_CUDA=1 on a machine with a GPU')

@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 on the GPU for the comparisons with the CPU (what train.py does unless --allow-tf32)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

#----------------------------------------------------------------------------

def test_r1_differentiates_twice_through_the_augment_pipeline_on_cuda():
    """R1 differentiates D(augment(x)) twice; CUDA's grid_sample kernel has no second derivative of
    its own (torch_utils.ops.grid_sample_gradfix supplies it)."""
    from training.augment import AUGPIPE_SPECS, AugmentPipe
    results = []
    for device in ('cpu', 'cuda'):
        pipe = AugmentPipe(**AUGPIPE_SPECS['bgc']).to(device)
        x = (torch.rand([4, 3, 16, 16], generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device).requires_grad_(True)
        weight = torch.randn([3, 16, 16], generator=torch.Generator().manual_seed(1)).to(device).requires_grad_(True)
        logits = (pipe(x, debug_percentile=0.3) * weight).sum(dim=[1, 2, 3]) ** 2
        grads, = torch.autograd.grad(logits.sum(), x, create_graph=True)
        grads.square().sum().backward()
        results.append(weight.grad.cpu())
    assert results[1].abs().sum() > 0
    torch.testing.assert_close(results[1], results[0], rtol=1e-3, atol=1e-3)

def test_border_recipe_trains_with_augmentation_on_cuda(tmp_path):
    """--cfg=mspe (random canvases) with the augment pipeline and R1, on the GPU: a snapshot that renders."""
    from test_train import load_snapshot, make_digits_zip, only_run_dir, run_train, snapshots
    data = make_digits_zip(tmp_path / 'digits16.zip')
    result = run_train(tmp_path / 'runs', f'--data={data}', '--cfg=mspe', '--cmax=32', '--metrics=none', '--batch=16',
                       '--tick=0.032', '--snap=1', '--kimg=0.064', '--aug=fixed', '--p=0.5', '--augpipe=bgc')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Number of GPUs:     1\n' in result.stdout      # not "(CPU processes)"
    run_dir = only_run_dir(tmp_path / 'runs')
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        assert json.load(f)['cudnn_benchmark'] is False
    G = load_snapshot(snapshots(run_dir)[-1])['G_ema'].cuda()
    images = G(torch.randn([2, G.z_dim], device='cuda'), torch.zeros([2, G.c_dim], device='cuda'), noise_mode='const')
    assert images.shape == (2, 3, 16, 16) and torch.isfinite(images).all()

def test_a_run_trained_on_cuda_resumes_on_a_machine_without_one(tmp_path):
    """--resume-run on the CPU continues a GPU run: its optimizer state file holds CPU tensors."""
    from test_train import make_digits_zip, only_run_dir, read_stats, run_train
    data = make_digits_zip(tmp_path / 'digits16.zip')
    flags = (f'--data={data}', '--cfg=mspe', '--cmax=32', '--metrics=none', '--batch=16', '--tick=0.032', '--snap=1', '--aug=noaug')
    result = run_train(tmp_path / 'runs', *flags, '--kimg=0.032')
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / 'runs')
    result = run_train(tmp_path / 'runs', f'--resume-run={run_dir}', '--kimg=0.064', env={'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Adam moments start from zero' not in result.stdout
    assert read_stats(run_dir)[-1]['Progress/kimg']['mean'] == pytest.approx(0.064)

def test_generate_on_cuda_matches_the_cpu_within_rounding(tmp_path):
    from test_generate import expected_image, read_png, run_cli, tiny_generator, write_snapshot
    G = tiny_generator()
    pkl = tmp_path / 'net.pkl'
    write_snapshot(G, pkl)
    images = {}
    for device in ('cpu', 'cuda'):
        outdir = tmp_path / device
        result = run_cli(['generate.py', f'--network={pkl}', '--seeds=3', f'--outdir={outdir}', f'--device={device}'], cwd=HOST)
        assert result.returncode == 0, result.stderr[-3000:]
        images[device] = read_png(outdir / 'seed0003.png').astype(np.int64)
    assert np.array_equal(images['cpu'], expected_image(G, 3))
    assert np.abs(images['cuda'] - images['cpu']).max() <= 2

def test_projector_fits_a_canvas_on_cuda(tmp_path, network_files):
    _projector_cli_case(network_files, tmp_path)      # projector.py picks CUDA by itself

def test_fit_canvas_in_process_on_cuda():
    _fit_plain_case()

def test_ddpm_trains_and_resumes_on_cuda(tmp_path):
    _ddpm_resume_case(tmp_path)

def test_ddpm_extended_canvases_on_cuda(tmp_path):
    _ddpm_margin_case(tmp_path)

def test_digit_diversity_instrument_on_cuda():
    _diversity_case()

#----------------------------------------------------------------------------
# The CPU tests whose bodies run again here (imported under names pytest does not collect).

from test_experiments import test_ddpm_extended_canvas_moves_the_border_and_keeps_the_encoding_on_the_content as _ddpm_margin_case  # noqa: E402
from test_experiments import test_ddpm_training_resumes_where_its_checkpoint_left as _ddpm_resume_case  # noqa: E402
from test_experiments import test_diversity_instrument_tells_collapse_from_the_data as _diversity_case  # noqa: E402
from test_fit import test_fit_canvas_of_a_plain_host_generator_uses_its_constant as _fit_plain_case  # noqa: E402
from test_projector import network_files  # noqa: E402,F401  (the fixture)
from test_projector import test_cli_projects_a_plain_generator_on_a_canvas as _projector_cli_case  # noqa: E402
