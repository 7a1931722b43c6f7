"""The experiment scripts' instruments and plumbing, on tiny models: the reference translation is
exact for whole pixels, the similarity scores behave, the shift-consistency script runs end to
end on all variants through one Canvas call, the DDPM trainer resumes, and the reconstruction
script finds where a digit is."""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import click
import pytest
import torch
from click.testing import CliRunner

from conftest import HOST, ROOT
from scripts.experiments import digits as dm

torch.set_num_threads(1)

def tiny_G(pe, seed=0, resolution=32):
    from mspe_plugin import networks as pe_networks
    torch.manual_seed(seed)
    return pe_networks.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=resolution, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, pe=pe)).eval()

def test_reference_translation_is_exact_for_whole_pixels():
    img = torch.randn(2, 3, 16, 16)
    moved, mask = dm.translate_image(img, 0, 3)
    # Sampling at (i, j + 3): output column j holds input column j + 3 where that exists.
    assert torch.allclose(moved[:, :, :, :13], img[:, :, :, 3:], atol=1e-5)
    assert mask[:, :13].all() and not mask[:, 13:].any()
    half, half_mask = dm.translate_image(img, 0.5, 0)
    assert half_mask.sum() < 16 * 16     # fractional taps need a margin

def test_rolled_reference_is_torch_roll_for_whole_pixels_and_composes_for_fractions():
    img = torch.randn(2, 3, 16, 16)
    assert torch.equal(dm.roll_image(img, 3, -2), torch.roll(img, shifts=(3, -2), dims=(2, 3)))
    spec = torch.fft.fft2(img)
    spec[:, :, 8, :] = 0
    spec[:, :, :, 8] = 0                  # band-limited: no Nyquist term, where half-pixel shifts lose information
    smooth = torch.fft.ifft2(spec).real
    twice = dm.roll_image(dm.roll_image(smooth, 0.5, 0.25), 0.5, 0.75)
    assert torch.allclose(twice, torch.roll(smooth, shifts=(1, 1), dims=(2, 3)), atol=1e-5)
    # A half-pixel roll moves a smooth blob's centre of mass by half a pixel.
    ys = torch.arange(16.0)[:, None]
    blob = torch.exp(-((ys - 7) ** 2 + (ys.t() - 7) ** 2) / 8)[None, None]
    mass = lambda t: (t * ys).sum() / t.sum()
    assert float(mass(dm.roll_image(blob, 0.5, 0)) - mass(blob)) == pytest.approx(0.5, abs=1e-3)

def test_psnr_and_ssim_rank_identical_above_noisy_images():
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    noisy = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    assert (dm.psnr(a, a) > 90).all() and (dm.psnr(a, noisy) < 30).all()
    assert torch.allclose(dm.ssim(a, a), torch.ones(2), atol=1e-4)
    assert (dm.ssim(a, noisy) < 0.9).all()

def test_shift_consistency_runs_on_every_variant(tmp_path, monkeypatch):
    from scripts.experiments import shift_consistency
    models = tmp_path / 'models'
    models.mkdir()
    for name, pe in [('baseline', 'none'), ('sspe', 'sspe'), ('mspe', 'mspe')]:
        with open(models / f'{name}.pkl', 'wb') as f:
            pickle.dump(dict(G_ema=tiny_G(pe)), f)
    out = tmp_path / 'sc'
    result = CliRunner().invoke(shift_consistency.main, ['--models-dir', str(models), '--num', '2', '--step', '2',
                                                         '--out', str(out)])
    assert result.exit_code == 0, result.output
    data = json.load(open(f'{out}.json'))
    assert sorted(data['models']) == ['baseline', 'mspe', 'sspe']
    for rows in data['models'].values():
        assert [r['shift'] for r in rows] == [0, 2, 4, 6, 8, 10, 12, 14, 16]     # 0 .. R/2
        assert rows[0]['psnr'] > 90 and rows[0]['class_agreement'] == 1.0     # d = 0 compares G with itself
        assert rows[0]['moved'] in (None, pytest.approx(0.0)) and all('ink' in r for r in rows)
    assert sorted(data['enlarged']) == ['baseline', 'mspe', 'sspe']
    assert all(e['if_encoding'] == 16 and e['if_border'] == 0 and 0 <= e['ink'] <= 1 for e in data['enlarged'].values())
    assert os.path.getsize(f'{out}.png') > 1000

    # --wrap: the rolled reference over the whole image; d = 0 still compares G with itself.
    wrapped = tmp_path / 'scw'
    result = CliRunner().invoke(shift_consistency.main, ['--models-dir', str(models), '--num', '2', '--step', '2.5',
                                                         '--max-shift', '5', '--wrap', '--out', str(wrapped)])
    assert result.exit_code == 0, result.output
    data = json.load(open(f'{wrapped}.json'))
    assert data['reference'].startswith('G(0) rolled')
    for rows in data['models'].values():
        assert [r['shift'] for r in rows] == [0, 2.5, 5] and rows[0]['psnr'] > 90
    assert 'fractional' in result.output

def test_inference_margin_of_the_experiments_hides_the_edge_and_zero_is_the_plain_render(tmp_path):
    """dg.render(margin=N) renders every canvas, the training grid too, N pixels wider and crops:
    with N = the receptive radius, a canvas moved by a whole coarse pixel (8 px at 32 px) is G(0)
    translated over every pixel it covers; margin 0 is the plain call bit for bit."""
    from scripts.experiments import eqt
    G = tiny_G('mspe')
    ws = dm.latents(G, 2, seed=0)
    assert torch.equal(dm.render(G, ws), G.synthesis(ws, noise_mode='const').clamp(-1, 1))
    radius = G.synthesis.receptive_radius()
    for margin, exact in ((radius, True), (0, False)):
        base = dm.render(G, ws, margin=margin)
        moved = dm.render(G, ws, dm.shifted_canvas(G, 8, -8), margin=margin)
        ref, mask = dm.translate_image(base, 8, -8)
        assert int(mask.sum()) == 24 * 24
        diff = float((moved - ref)[:, :, mask].abs().max())
        assert (diff < 1e-4) == exact, (margin, diff)
    models = tmp_path / 'models'
    models.mkdir()
    with open(models / 'mspe.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=G), f)
    out = tmp_path / 'eqt.json'
    result = CliRunner().invoke(eqt.main, ['--models-dir', str(models), '--num', '2', '--margin', str(radius), '--out', str(out)])
    assert result.exit_code == 0, result.output
    data = json.load(open(out))
    assert data['margin'] == radius and set(data['models']['mspe']) == {'eqt_int', 'eqt_frac'}

def test_shift_consistency_tells_a_digit_that_follows_the_canvas_from_one_that_stays():
    """`moved` is d for a digit translated with the canvas, 0 for one drawn in place, and None
    when the moved rendering has no ink (a baseline whose digit vanished)."""
    from scripts.experiments import shift_consistency as sc
    base = -torch.ones(3, 3, 32, 32)
    base[:, 1, 4:12, 5:9] = 1        # a green bar in the upper-left
    follows = torch.roll(base, shifts=(6, 6), dims=(2, 3))
    move, ink = sc.displacement(base, follows)
    assert move == pytest.approx(6.0) and ink == 1.0
    move, ink = sc.displacement(base, base.clone())
    assert move == pytest.approx(0.0) and ink == 1.0
    empty = -torch.ones_like(base)
    assert sc.displacement(base, empty) == (None, 0.0)

class _StubGenerator(torch.nn.Module):
    """A 'generator' that draws a bar at content coordinates [4, 12) x [5, 9) (it follows the
    canvas), or always at those image pixels (the image border anchors it); with `period`, again
    every `period` px of content in both axes (copies where an encoding repeats)."""
    img_resolution, z_dim, c_dim, num_ws, w_dim = 32, 4, 0, 1, 4
    def __init__(self, follows, period=None):
        super().__init__()
        self.follows = follows
        self.period = period
        self.scale = torch.nn.Parameter(torch.ones([]))
        self.synthesis = self._draw
    def mapping(self, z, c, truncation_psi=1):
        return z[:, None, :]
    def _draw(self, ws, canvas=None, noise_mode='const'):
        from mspe_plugin.encoding import Canvas
        canvas = canvas or Canvas()
        H, W = canvas.output_size(32)
        origin, zoom = (canvas.origin, canvas.zoom) if self.follows else ((0.0, 0.0), 1.0)
        ys = origin[0] + torch.arange(H) / zoom
        xs = origin[1] + torch.arange(W) / zoom
        if self.period:
            ys, xs = torch.remainder(ys, self.period), torch.remainder(xs, self.period)
        bar = ((ys >= 4) & (ys < 12))[:, None] & ((xs >= 5) & (xs < 9))[None, :]
        img = torch.where(bar, 1.0, -1.0).expand(len(ws), 3, H, W).clone()
        img[:, 0] = -1
        return img

def test_canvas_follow_tells_content_placed_by_the_canvas_from_content_placed_by_the_frame():
    from scripts.experiments import canvas_follow as cf
    clf = dm.load_classifier(device='cpu')
    row = cf.follow(_StubGenerator(follows=True), clf, num=4)
    assert all(row[f'move_{d}'] == pytest.approx(1.0) for d in cf.SHIFTS)
    assert row['enlarged'] == pytest.approx(1.0) and row['zoom2'] == pytest.approx(2.0, rel=0.1)
    assert row['agreement'] == 1.0 and row['ink'] == 1.0
    assert row['stray'] == 0.0
    row = cf.follow(_StubGenerator(follows=True, period=25), clf, num=4)
    assert row['stray'] > 3      # copies every 25 px: several bars' worth of ink outside per bar inside
    row = cf.follow(_StubGenerator(follows=False), clf, num=4)
    assert all(row[f'move_{d}'] == pytest.approx(0.0) for d in cf.SHIFTS)
    assert row['enlarged'] == pytest.approx(0.0) and row['zoom2'] == pytest.approx(1.0)

def write_zip(path, images, labels):
    with zipfile.ZipFile(path, 'w') as zf:
        entries = []
        for i, (img, label) in enumerate(zip(images, labels)):
            buf = io.BytesIO()
            PIL.Image.fromarray(img).save(buf, format='png')
            name = f'00000/img{i:08d}.png'
            zf.writestr(name, buf.getvalue())
            entries.append([name, int(label)])
        zf.writestr('dataset.json', json.dumps(dict(labels=entries)))
    return str(path)

def test_ddpm_training_resumes_where_its_checkpoint_left(tmp_path):
    from scripts.experiments import ddpm_train
    rnd = np.random.RandomState(0)
    images = np.zeros([8, 16, 16, 3], dtype=np.uint8)
    images[:, 2:7, 2:7] = rnd.randint(100, 255, size=[8, 1, 1, 3])
    data = write_zip(tmp_path / 'blocks.zip', images, range(8))
    outdir = tmp_path / 'run'
    common = ['--data', data, '--pe', 'mspe', '--outdir', str(outdir), '--batch', '4', '--channels', '8,16', '--snap', '1']
    first = CliRunner().invoke(ddpm_train.main, common + ['--steps', '2'])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(ddpm_train.main, common + ['--steps', '3', '--export', str(tmp_path / 'final.pt')])
    assert second.exit_code == 0, second.output
    assert 'Resumed from' in second.output and 'at step 2' in second.output
    unet, config, step = ddpm_train.load_model(str(tmp_path / 'final.pt'))
    assert step == 3 and config['pe'] == 'mspe' and unet.mspe.gamma.numel() > 0
    other = CliRunner().invoke(ddpm_train.main, ['--data', data, '--pe', 'mspe', '--outdir', str(outdir), '--batch', '8',
                                                 '--channels', '8,16', '--steps', '4'])
    assert other.exit_code != 0 and 'other options' in other.output

def test_ddpm_extended_canvas_moves_the_border_and_keeps_the_encoding_on_the_content(tmp_path):
    """Fig. 9's training on randomly extended canvases: the image lands at the drawn offset on its
    own background, and the MS-PE encoding at the pasted pixels is the plain image's encoding
    (coordinates follow the content), whatever the offset; a margin the UNet cannot downsample is refused."""
    from scripts.experiments import ddpm_train
    torch.manual_seed(0)
    x = -torch.ones(2, 3, 16, 16)
    x[:, :, 2:7, 3:8] = torch.rand(2, 3, 1, 1)
    x[1, :, 0, 0] = 0.5                        # one odd ring pixel: the median still says black
    unet = ddpm_train.build_unet(dict(resolution=16, channels=[8, 16], layers=1, pe='mspe', gamma_init=1.0, pe_base=10000.0))
    plain = [unet.mspe.encoding(i, 8, 16 // s, 16 // s, 'cpu') for i, s in [(0, 1), (len(unet.mspe.points) - 1, 2)]]
    for offset in [(0, 0), (4, 2), (8, 8)]:
        ext, canvas = ddpm_train.extend_canvas(x, offset, 8)
        top, left = offset
        assert ext.shape == (2, 3, 24, 24)
        assert torch.equal(ext[:, :, top:top + 16, left:left + 16], x)
        outside = torch.ones(24, 24, dtype=torch.bool)
        outside[top:top + 16, left:left + 16] = False
        assert (ext[:, :, outside] == -1).all()
        unet.mspe._input_size = (24, 24)
        with unet.mspe.canvas(canvas):
            fine = unet.mspe.encoding(0, 8, 24, 24, 'cpu')
            coarse = unet.mspe.encoding(len(unet.mspe.points) - 1, 8, 12, 12, 'cpu')
        assert torch.allclose(fine[:, top:top + 16, left:left + 16], plain[0], atol=1e-5)
        if top % 2 == 0 and left % 2 == 0:
            assert torch.allclose(coarse[:, top // 2:top // 2 + 8, left // 2:left // 2 + 8], plain[1], atol=1e-5)
    with pytest.raises(ValueError, match='must lie in'):
        ddpm_train.extend_canvas(x, (9, 0), 8)
    data = write_zip(tmp_path / 'blocks.zip', ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8), range(2))
    bad = CliRunner().invoke(ddpm_train.main, ['--data', data, '--pe', 'none', '--outdir', str(tmp_path / 'r'),
                                               '--channels', '8,16', '--margin', '3', '--steps', '1'])
    assert bad.exit_code != 0 and 'multiple of 2' in bad.output
    run = CliRunner().invoke(ddpm_train.main, ['--data', data, '--pe', 'mspe', '--outdir', str(tmp_path / 'r'), '--batch', '2',
                                               '--channels', '8,16', '--margin', '8', '--steps', '2'])
    assert run.exit_code == 0, run.output
    unet, config, _ = ddpm_train.load_model(str(tmp_path / 'r' / 'final.pt'))
    assert config['margin'] == 8 and unet.mspe.current_canvas is None
    run = CliRunner().invoke(ddpm_train.main, ['--data', data, '--pe', 'mspe', '--outdir', str(tmp_path / 'c'), '--batch', '2',
                                               '--channels', '8,16', '--margin', '8', '--margin-pe', 'canvas', '--steps', '1'])
    assert run.exit_code == 0, run.output
    from scripts.experiments import ddpm_reconstruct as rec
    _, config, _ = ddpm_train.load_model(str(tmp_path / 'c' / 'final.pt'))
    assert rec.model_name(config) == 'mspe-margin8-pe-on-canvas'

def test_ddpm_random_windows_spread_the_content_over_the_whole_window(tmp_path):
    """--window: every image lands at its own offset on its background, cut at the window's edge,
    and over many draws the content's place is spread over the whole window (no position is where
    digits belong); the model decodes its window with the encoding on the window's grid."""
    from scripts.experiments import ddpm_train
    from scripts.experiments import ddpm_reconstruct as rec
    x = -torch.ones(400, 3, 16, 16)
    x[:, :, 2:4, 2:4] = 1                              # content in the upper-left corner, as in the biased data
    out = ddpm_train.place_in_window(x, 32, torch.Generator().manual_seed(0))
    assert out.shape == (400, 3, 32, 32)
    mass = (out[:, 0] > 0).float()
    counts = mass.sum(dim=(1, 2))
    assert set(counts.tolist()) <= {0.0, 1.0, 2.0, 4.0}  # whole, cut at an edge, or outside the window
    assert (counts == 4).float().mean() > 0.6
    rows = torch.arange(32.0)
    com_y = (mass.sum(dim=2) * rows).sum(dim=1)[counts == 4] / 4
    com_x = (mass.sum(dim=1) * rows).sum(dim=1)[counts == 4] / 4
    for com in (com_y, com_x):                         # spread over the window, not kept in the corner
        assert com.min() < 4 and com.max() > 26 and 11 < float(com.mean()) < 19
    assert (out[:, 1:][(mass == 0)[:, None].expand(-1, 2, -1, -1)] == -1).all()   # the rest is the background
    data = write_zip(tmp_path / 'blocks.zip', ((x[:4].permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8), range(4))
    common = ['--data', data, '--pe', 'mspe', '--batch', '2', '--channels', '8,16', '--steps', '1']
    for bad, message in [(['--window', '8'], 'whole 16 px image'), (['--window', '25'], 'multiple of 2'),
                         (['--window', '32', '--margin', '8'], 'replaces --margin')]:
        result = CliRunner().invoke(ddpm_train.main, common + ['--outdir', str(tmp_path / 'bad')] + bad)
        assert result.exit_code != 0 and message in result.output, result.output
    run = CliRunner().invoke(ddpm_train.main, common + ['--outdir', str(tmp_path / 'w'), '--window', '32'])
    assert run.exit_code == 0, run.output
    _, config, _ = ddpm_train.load_model(str(tmp_path / 'w' / 'final.pt'))
    assert config['window'] == 32 and rec.model_name(config) == 'mspe-window32'
    assert rec.inference_margin(config, 'model') == 16 and rec.pe_on_canvas(config)
    assert not rec.pe_on_canvas(dict(config, window=0, margin=8))

def test_ddpm_whole_windows_keep_every_image_whole_and_spread_it_over_the_window(tmp_path):
    """--window-place=whole: every image lies whole inside its window (no window without its
    content), at offsets spread over [0, W - R]; the flag needs --window and names the model."""
    from scripts.experiments import ddpm_train
    from scripts.experiments import ddpm_reconstruct as rec
    x = -torch.ones(400, 3, 16, 16)
    x[:, :, 0, 0] = 1                                  # content at the image's very corner
    x[:, :, 15, 15] = 1                                # ... and at the opposite one
    out = ddpm_train.place_in_window(x, 32, torch.Generator().manual_seed(0), place='whole')
    mass = (out[:, 0] > 0).float()
    assert (mass.sum(dim=(1, 2)) == 2).all()          # both corners inside, every time
    tops = mass.sum(dim=2).argmax(dim=1).float()       # the first corner's row = the image's offset
    assert tops.min() == 0 and tops.max() == 16 and 6 < float(tops.mean()) < 10
    data = write_zip(tmp_path / 'blocks.zip', ((x[:4].permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8), range(4))
    common = ['--data', data, '--pe', 'mspe', '--batch', '2', '--channels', '8,16', '--steps', '1']
    result = CliRunner().invoke(ddpm_train.main, common + ['--outdir', str(tmp_path / 'bad'), '--window-place', 'whole'])
    assert result.exit_code != 0 and 'give --window=W too' in result.output, result.output
    run = CliRunner().invoke(ddpm_train.main, common + ['--outdir', str(tmp_path / 'w'), '--window', '32', '--window-place', 'whole'])
    assert run.exit_code == 0, run.output
    _, config, _ = ddpm_train.load_model(str(tmp_path / 'w' / 'final.pt'))
    assert config['window_place'] == 'whole' and rec.model_name(config) == 'mspe-window32whole'
    assert rec.inference_margin(config, 'model') == 16

def test_ddpm_reconstruction_with_a_margin_decodes_the_extended_canvas_and_crops_the_input_back():
    """Fig. 9 for margin-trained models: the input is decoded on the canvas extended by the margin
    (split evenly), with the encoding on the content (or on the canvas, as trained), and the crop
    lands back on the input: at t = 1 the reconstruction is the input up to the tiny noise."""
    from scripts.experiments import ddpm_train
    from scripts.experiments import ddpm_reconstruct as rec
    torch.manual_seed(0)
    config = dict(resolution=16, channels=[8, 16], layers=1, pe='mspe', gamma_init=1.0, pe_base=10000.0, margin=8)
    unet = ddpm_train.build_unet(config).eval()
    x = -torch.ones(2, 3, 16, 16)
    x[:, :, 9:14, 2:7] = torch.rand(2, 3, 1, 1)
    seen = []
    unet.register_forward_pre_hook(lambda m, args: seen.append((tuple(args[0].shape[-2:]), m.mspe.current_canvas)))
    for margin, on_canvas in [(8, False), (8, True), (0, False)]:
        seen.clear()
        out = rec.reconstruct(unet, x, 1, 1, seed=0, margin=margin, pe_on_canvas=on_canvas)
        assert out.shape == x.shape
        assert (out - x).abs().max() < 0.1            # a crop one pixel off would miss the digit's edges by 1
        size, canvas = seen[0]
        assert size == (16 + margin,) * 2
        if margin and not on_canvas:
            assert canvas.origin == (-4, -4) and canvas.size == (24, 24)
        else:
            assert canvas is None
    assert unet.mspe.current_canvas is None               # the canvas is restored after decoding
    for margin, on_canvas, origin in [(8, False, (-20, -6)), (8, True, (-16, -2)), (0, False, (-16, -2))]:
        seen.clear()                                      # --pe-shift=16,2: coordinates move, pixels do not
        out = rec.reconstruct(unet, x, 1, 1, seed=0, margin=margin, pe_on_canvas=on_canvas, pe_shift=(16, 2))
        assert (out - x).abs().max() < 0.1
        assert seen[0][1].origin == origin and seen[0][1].size == (16 + margin,) * 2
    assert rec.inference_margin(config, 'model') == 8 and rec.inference_margin(dict(config, margin=0), 'model') == 0
    assert rec.inference_margin(config, '16') == 16
    deeper = dict(config, channels=[8, 16, 32])           # downsamples twice: 16 + M must be a multiple of 4
    assert rec.inference_margin(deeper, '4') == 4
    for bad in ['3', '6', '-4', 'wide']:
        with pytest.raises(click.BadParameter):
            rec.inference_margin(deeper, bad)

def test_centre_of_mass_finds_the_digit_quadrant():
    from scripts.experiments import ddpm_reconstruct as rec
    x = -torch.ones(3, 3, 32, 32)
    x[0, 1, 20:28, 4:10] = 1        # bottom-left
    x[1, 0, 3:9, 4:10] = 0.8        # upper-left
    com = rec.centre_of_mass(x)
    assert torch.allclose(com[0], torch.tensor([23.5, 6.5]), atol=1e-4)
    assert rec.in_bottom_left(com, 32).tolist() == [True, False, False]
    assert torch.isnan(com[2]).all()       # an empty image has no centre
    tinted = x.clone()
    tinted[tinted == -1] = -0.2            # a grey background: still the digit's centre
    assert torch.allclose(rec.centre_of_mass(tinted)[:2], com[:2], atol=1e-4)

def test_missing_mnist_files_are_named_in_one_sentence(tmp_path):
    """Every experiment reads MNIST through digits.load_mnist: a folder without the files says
    which of MNIST's standard files it lacks and how to point at them."""
    with pytest.raises(SystemExit, match=r'lacks train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz: MNIST\'s standard train files'):
        dm.load_mnist(str(tmp_path), split='train')
    (tmp_path / 't10k-images-idx3-ubyte.gz').write_bytes(b'')
    with pytest.raises(SystemExit, match='lacks t10k-labels-idx1-ubyte.gz: .* pass --mnist DIR'):
        dm.load_mnist(str(tmp_path))

def test_conditional_models_get_one_digit_class_per_seed():
    """Seed i asks a class-conditional G for digit i % 10 (ten seeds cover every digit once), the
    same seeds give the same ws, and an unconditional G gets an empty label."""
    from mspe_plugin import networks as pe_networks
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, pe='mspe')).eval()
    assert dm.requested_classes(G, 12, seed=3).tolist() == [3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    c = dm.conditioning(G, 20, seed=0)
    assert c.shape == (20, 10) and (c.sum(dim=1) == 1).all() and (c.sum(dim=0) == 2).all()
    ws = dm.latents(G, 4, seed=5)
    assert torch.equal(ws, dm.latents(G, 4, seed=5)) and not torch.equal(ws[0], dm.latents(G, 4, seed=6)[0])
    plain = tiny_G('none')
    assert dm.requested_classes(plain, 4) is None and dm.conditioning(plain, 4).shape == (4, 0)

def test_diversity_instrument_tells_collapse_from_the_data():
    """digit_diversity.py's numbers: real colour digits cover ~10 classes; one digit repeated
    (a mode-collapsed generator) covers 1 class, has zero pixel spread and a larger Frechet
    distance to the data."""
    from conftest import MNIST_DIR
    from scripts.experiments import digit_classifier as dc
    from scripts.experiments import digit_diversity
    clf = dm.load_classifier(device='cpu')
    digits, labels = dm.load_mnist(MNIST_DIR)
    rng = np.random.default_rng(0)
    to_float = lambda u8: torch.from_numpy(u8).float() / 127.5 - 1
    ref = dm.features(clf, to_float(dc.place_digits(digits[9000:9200], 32, 'upper-left', 0.5, True, rng))).double().numpy()
    real = to_float(dc.place_digits(digits[9200:9400], 32, 'upper-left', 0.5, True, rng))
    collapsed = real[:1].repeat(200, 1, 1, 1)
    true = torch.from_numpy(np.asarray(labels[9200:9400])).long()
    good, bad = digit_diversity.verdict(real, clf, ref, requested=true), digit_diversity.verdict(collapsed, clf, ref)
    assert good['classes'] > 8 and good['confident'] > 0.9 and good['classes_confident'] > 8
    # A conditional G that draws the digit it was asked for agrees with its labels; one that
    # draws another digit does not; an unconditional G has no agreement to report.
    assert good['label_agreement'] > 0.9 and bad['label_agreement'] is None
    assert digit_diversity.verdict(real, clf, ref, requested=(true + 1) % 10)['label_agreement'] < 0.1
    assert bad['classes'] == pytest.approx(1.0) and bad['pixel_std'] == 0
    assert bad['classes_confident'] in (0.0, pytest.approx(1.0))
    # One shape per class (each digit replaced by the first real one of its class): every class
    # and label is right, but the shapes within a class do not vary.
    first = {int(k): int((true == k).nonzero()[0]) for k in true.unique()}
    per_class = torch.stack([real[first[int(k)]] for k in true])
    one_shape = digit_diversity.verdict(per_class, clf, ref, requested=true)
    assert one_shape['label_agreement'] > 0.9 and one_shape['classes'] > 8
    assert one_shape['shape_std'] < 1e-6 < 0.03 < good['shape_std']
    assert bad['frechet'] > 5 * good['frechet']
    assert len(good['histogram']) == 10 and sum(good['histogram']) == pytest.approx(1.0, abs=1e-3)

def test_compare_upstream_finds_a_changed_network_and_nothing_in_an_identical_one(tmp_path):
    """The checker against two stand-in checkouts: a copy of the host gives zero differences and
    a gradient for every parameter; the copy with one changed line (the epsilon of G's latent
    normalisation) shows up in the image and G's gradients, and not in D's R1 gradient on reals,
    which G does not touch; a folder without training/networks.py is refused in one sentence."""
    def checkout(name, edit=None):
        root = tmp_path / name
        for part in ('dnnlib', 'torch_utils', 'training'):
            shutil.copytree(os.path.join(HOST, part), root / part, ignore=shutil.ignore_patterns('__pycache__'))
        if edit is not None:
            path = root / 'training' / 'networks.py'
            text = path.read_text()
            assert edit[0] in text
            path.write_text(text.replace(edit[0], edit[1], 1))
        return str(root)
    def compare(upstream):
        out = tmp_path / 'cmp.json'
        run = subprocess.run([sys.executable, '-m', 'scripts.tools.compare_upstream', '--upstream', upstream, '--cmax', '16',
                              '--json', str(out)], cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        assert run.returncode == 0, run.stderr
        return json.load(open(out))
    same = compare(checkout('same'))
    assert max(same[k] for k in ('image', 'logits', 'G_grads', 'D_grads', 'r1_grad')) == 0 and same['missing_grads'] == []
    changed = compare(checkout('changed', ('def normalize_2nd_moment(x, dim=1, eps=1e-8):', 'def normalize_2nd_moment(x, dim=1, eps=10.0):')))
    assert changed['image'] > 1e-3 and changed['G_grads'] > 1e-3 and changed['r1_grad'] == 0
    bad = subprocess.run([sys.executable, '-m', 'scripts.tools.compare_upstream', '--upstream', str(tmp_path / 'same' / 'training')],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and 'is not a stylegan2-ada-pytorch checkout' in bad.stderr and 'Traceback' not in bad.stderr

def test_collect_digit_models_writes_another_model_set_with_its_width(tmp_path, monkeypatch):
    """--out puts a model set of its own (pickles and models.json) elsewhere; its record gives the
    train_digits.sh line with that folder, the width, the compile flags and each model's plugin flags."""
    from scripts.experiments import collect_digit_models as cdm
    run_dir = tmp_path / 'runs' / 'default' / '00000-w'
    run_dir.mkdir(parents=True)
    (run_dir / 'training_options.json').write_text(json.dumps(dict(
        G_kwargs=dict(synthesis_kwargs=dict(channel_base=1024, channel_max=128, pe='mspe', pe_resize=[0.75, 1.5], pe_margin=8)), batch_size=4,
        loss_kwargs=dict(class_name='mspe_plugin.outside.PlainOutsideLoss', outside_weight=30.0),
        compile_mode='on', cpu_bf16=True, training_set_kwargs=dict(use_labels=True))))
    with open(run_dir / 'network-snapshot-000004.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=tiny_G('mspe'), training_set_kwargs={}, progress=dict(cur_nimg=4000)), f)
    monkeypatch.setattr(cdm, 'OUT', str(tmp_path / 'models'))
    monkeypatch.chdir(tmp_path)
    cdm.main([], runs_dir=str(tmp_path / 'runs'), out=str(tmp_path / 'models' / 'wide'))
    assert not (tmp_path / 'models' / 'models.json').exists()
    record = json.load(open(tmp_path / 'models' / 'wide' / 'models.json'))
    assert (tmp_path / 'models' / 'wide' / 'default.pkl').is_file()
    assert 'MODELS=' in record['command'] and 'CMAX=128 CBASE=1024' in record['command']
    assert '--compile=on --cpu-bf16=1' in record['command']
    assert '--cmax=128 --cbase=1024' in record['settings']
    assert 'default --pe=mspe --pe-resize=0.75,1.5 --pe-margin=8 --pe-outside=30' in record['settings']    # read from the run's options

def test_collect_digit_models_takes_the_snapshot_at_the_asked_kimg(tmp_path, monkeypatch):
    """--kimg picks one common training length for every model; a missing length says so."""
    from scripts.experiments import collect_digit_models as cdm
    run_dir = tmp_path / 'runs' / 'mspe' / '00000-x'
    run_dir.mkdir(parents=True)
    (run_dir / 'training_options.json').write_text(json.dumps(dict(G_kwargs={}, batch_size=4, loss_kwargs={})))
    for kimg in (8, 16):
        with open(run_dir / f'network-snapshot-{kimg:06d}.pkl', 'wb') as f:
            pickle.dump(dict(G=tiny_G('mspe'), D=None, G_ema=tiny_G('mspe', seed=kimg), training_set_kwargs={},
                             progress=dict(cur_nimg=kimg * 1000)), f)
    monkeypatch.setattr(cdm, 'RUNS', str(tmp_path / 'runs'))
    monkeypatch.setattr(cdm, 'OUT', str(tmp_path / 'models'))
    cdm.main(['mspe'], kimg=8)
    info = json.load(open(tmp_path / 'models' / 'models.json'))['models']['mspe']
    assert info['kimg'] == 8 and info['snapshot'].endswith('network-snapshot-000008.pkl')
    cdm.main(['mspe'])
    assert json.load(open(tmp_path / 'models' / 'models.json'))['models']['mspe']['kimg'] == 16
    assert cdm.collect('mspe', kimg=12) is None
    # Runs of a class-conditional schedule live in another folder (--runs); the record says so.
    cond_dir = tmp_path / 'cond' / 'mspe' / '00000-y'
    cond_dir.mkdir(parents=True)
    (cond_dir / 'training_options.json').write_text(json.dumps(dict(G_kwargs={}, batch_size=4, loss_kwargs={},
                                                                    training_set_kwargs=dict(use_labels=True))))
    with open(cond_dir / 'network-snapshot-000004.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=tiny_G('mspe'), training_set_kwargs={}, progress=dict(cur_nimg=4000)), f)
    cdm.main([], runs_dir=str(tmp_path / 'cond'))
    record = json.load(open(tmp_path / 'models' / 'models.json'))
    assert record['models']['mspe']['kimg'] == 4 and record['models']['mspe']['conditional'] is True
    assert 'COND=1 ' in record['command'] and '--cond=1' in record['settings']
    assert 'LR=' not in record['command'] and '--glr' not in record['settings']
    # Another learning rate (LR=0.01 train_digits.sh) and folder: the record gives the line that trains them.
    lr_dir = tmp_path / 'lr' / 'mspe' / '00000-z'
    lr_dir.mkdir(parents=True)
    (lr_dir / 'training_options.json').write_text(json.dumps(dict(
        G_kwargs={}, batch_size=4, loss_kwargs={}, G_opt_kwargs=dict(lr=0.01), D_opt_kwargs=dict(lr=0.01))))
    with open(lr_dir / 'network-snapshot-000048.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=tiny_G('mspe'), training_set_kwargs={}, progress=dict(cur_nimg=48000)), f)
    cdm.main([], runs_dir=str(lr_dir.parent.parent))
    record = json.load(open(tmp_path / 'models' / 'models.json'))
    assert record['models']['mspe']['glr'] == 0.01 and record['models']['mspe']['dlr'] == 0.01
    assert 'LR=0.01 KIMG=48 bash scripts/experiments/train_digits.sh' in record['command'] and 'RUNS=' in record['command']
    assert '--glr=0.01 --dlr=0.01' in record['settings'] and 'COND=1' not in record['command']
    # Our flags against mode collapse (train_digits.sh's EXTRA) come back from training_options.json.
    ce_dir = tmp_path / 'ce' / 'baseline' / '00000-z'
    ce_dir.mkdir(parents=True)
    (ce_dir / 'training_options.json').write_text(json.dumps(dict(
        G_kwargs={}, batch_size=4, loss_kwargs=dict(r1_gamma=0.0064, label_ce_weight=10.0),
        D_kwargs=dict(mapping_kwargs=dict(num_layers=1, lr_multiplier=1.0)),
        training_set_kwargs=dict(use_labels=True), G_opt_kwargs=dict(lr=0.0025), D_opt_kwargs=dict(lr=0.0025))))
    with open(ce_dir / 'network-snapshot-000008.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=tiny_G('none'), training_set_kwargs={}, progress=dict(cur_nimg=8000)), f)
    os.remove(tmp_path / 'models' / 'models.json')
    cdm.main([], runs_dir=str(ce_dir.parent.parent))
    record = json.load(open(tmp_path / 'models' / 'models.json'))
    assert record['models']['baseline']['extra_flags'] == '--label-ce=10 --dmap=1 --dmap-lr=1'
    assert 'COND=1 KIMG=8 EXTRA="--label-ce=10 --dmap=1 --dmap-lr=1" bash scripts/experiments/train_digits.sh' in record['command']
    assert '--cond=1 --label-ce=10 --dmap=1 --dmap-lr=1' in record['settings']

def test_diversity_snapshots_expands_run_folders_in_training_order(tmp_path):
    """A run folder becomes its snapshots by kimg (not by name); --every keeps positive multiples and the newest."""
    from scripts.experiments import digit_diversity
    run = tmp_path / 'run'
    run.mkdir()
    for kimg in (0, 4, 8, 12, 16, 100):
        (run / f'network-snapshot-{kimg:06d}.pkl').write_bytes(b'')
    (run / 'training-state-000008.pkl').write_bytes(b'')
    names = lambda paths: [os.path.basename(p) for p in paths]
    assert names(digit_diversity.snapshots([str(run)])) == [f'network-snapshot-{k:06d}.pkl' for k in (0, 4, 8, 12, 16, 100)]
    assert names(digit_diversity.snapshots([str(run)], every=8)) == [f'network-snapshot-{k:06d}.pkl' for k in (8, 16, 100)]
    assert names(digit_diversity.snapshots([str(run)], every=7)) == ['network-snapshot-000100.pkl']    # the newest always
    start = tmp_path / 'start'
    start.mkdir()
    (start / 'network-snapshot-000000.pkl').write_bytes(b'')
    with pytest.raises(SystemExit, match='no snapshot past 0 kimg'):
        digit_diversity.snapshots([str(start)], every=8)
    with pytest.raises(SystemExit, match='does not exist'):
        digit_diversity.snapshots([str(tmp_path / 'missing')])

@pytest.mark.parametrize('pe', ['none', 'mspe'])
def test_style_spread_falls_when_the_styles_stop_depending_on_the_latent(pe):
    """At initialisation the latent moves every conv style; a G whose style biases dwarf the
    latent's part (what the collapsed digit models learned) scores near zero."""
    from scripts.experiments import digit_diversity
    G = tiny_G(pe)
    ws = dm.latents(G, 64, seed=0)
    fresh = digit_diversity.style_spread(G, ws)
    assert fresh > 0.3
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:
            for name in ('conv0', 'conv1'):
                layer = getattr(getattr(G.synthesis, f'b{res}'), name, None)
                if layer is not None:
                    layer.affine.bias.add_(100.0)
    assert digit_diversity.style_spread(G, ws) < 0.05 * fresh

def test_d_label_preference_tells_a_label_aware_discriminator_from_one_that_ignores_labels(tmp_path):
    """1.0 for a D that scores the true label highest, 0 for one that prefers any other label, and
    a clear message for data without labels."""
    from scripts.experiments import digit_diversity
    labels = np.arange(40) % 10
    images = np.repeat((labels * 20 + 10).astype(np.uint8)[:, None, None, None], 3, axis=3) * np.ones([1, 8, 8, 3], np.uint8)
    data = write_zip(tmp_path / 'coded.zip', images, labels)

    class Reader(torch.nn.Module):      # reads the class from the brightness the data encode it in
        def __init__(self, sign):
            super().__init__()
            self.sign = torch.nn.Parameter(torch.tensor(float(sign)))
        def forward(self, img, c):
            cls = ((img.mean(dim=[1, 2, 3]) + 1) * 127.5 - 10).div(20).round().long()
            return self.sign * (c.argmax(dim=1) == cls).float()[:, None]

    assert digit_diversity.d_label_preference(Reader(1), data, 40) == 1.0
    assert digit_diversity.d_label_preference(Reader(-1), data, 40) == 0.0
    with zipfile.ZipFile(tmp_path / 'plain.zip', 'w') as zf:
        zf.writestr('00000/img00000000.png', zipfile.ZipFile(data).read('00000/img00000000.png'))
    with pytest.raises(SystemExit, match='has no labels'):
        digit_diversity.d_label_preference(Reader(1), str(tmp_path / 'plain.zip'), 1)

def test_cluster_labels_group_digits_by_shape_not_colour_and_keep_the_images(tmp_path):
    """The labels of a self-conditioned GAN: k-means of colour-blind shapes. Two shapes in many
    colours give two clusters that follow the shape; the images are copied byte for byte."""
    from scripts.experiments import cluster_labels
    rnd = np.random.RandomState(0)
    images, shapes = [], []
    for i in range(16):
        img = np.zeros([16, 16, 3], dtype=np.uint8)
        colour = rnd.randint(60, 255, size=3)
        if i % 2:
            img[2:14, 6:9] = colour      # a vertical bar
        else:
            img[6:9, 2:14] = colour      # a horizontal bar
        images.append(img)
        shapes.append(i % 2)
    data = write_zip(tmp_path / 'bars.zip', images, [0] * 16)
    dest = tmp_path / 'bars-k2.zip'
    result = CliRunner().invoke(cluster_labels.main, ['--data', data, '--k', '2', '--dest', str(dest)])
    assert result.exit_code == 0, result.output
    assert '2 clusters of 16 images: sizes 8..8' in result.output
    with zipfile.ZipFile(data) as src, zipfile.ZipFile(dest) as out:
        names = sorted(n for n in src.namelist() if n.endswith('.png'))
        assert all(src.read(n) == out.read(n) for n in names)
        labels = dict(json.loads(out.read('dataset.json'))['labels'])
    clusters = [labels[n] for n in names]
    assert len(set(clusters)) == 2 and all((c == clusters[0]) == (s == shapes[0]) for c, s in zip(clusters, shapes))
    again = CliRunner().invoke(cluster_labels.main, ['--data', data, '--k', '2', '--dest', str(dest)])
    assert again.exit_code != 0 and 'exists already' in again.output
    too_many = CliRunner().invoke(cluster_labels.main, ['--data', data, '--k', '17', '--dest', str(tmp_path / 'x.zip')])
    assert too_many.exit_code != 0 and 'more than the 16 images' in too_many.output

def test_class_grid_puts_each_confident_fake_in_the_row_of_its_digit(tmp_path, monkeypatch):
    from scripts.experiments import class_grid
    G = tiny_G('mspe', resolution=16)
    images = dm.render(G, dm.latents(G, 30, seed=0))
    # A classifier stand-in: fake i reads as digit i % 10, sure except for the fakes 20..29.
    labels = torch.arange(30) % 10
    probs = torch.nn.functional.one_hot(labels, 10).float() * torch.where(torch.arange(30) < 20, 1.0, 0.5)[:, None]
    monkeypatch.setattr(class_grid.dg, 'classify', lambda clf, imgs: (labels, probs))
    rows, counts = class_grid.rows_by_class(G, None, 30, per_row=5)
    assert counts == [2] * 10
    pixels = dm.to_uint8(images)
    for digit, row in enumerate(rows):
        assert len(row) == 2 and all((im == pixels[i]).all() for im, i in zip(row, (digit, digit + 10)))

def test_latent_spread_is_zero_for_a_conditional_g_that_ignores_its_latent(tmp_path):
    """digit_diversity's latent_spread: a G whose mapping no longer reads z draws one image per label (0);
    the same G reading z varies within a label; a G without labels of the data's size is not scored."""
    from scripts.experiments import digit_diversity
    from test_train import make_digits_zip
    from mspe_plugin import networks as pe_networks
    data = make_digits_zip(tmp_path / 'digits16.zip', count=40, resolution=16, with_labels=True)
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, pe='mspe')).eval()
    assert digit_diversity.latent_spread(G, data, num_labels=4, per_label=4) > 0.01
    with torch.no_grad():
        G.mapping.fc0.weight[:, :G.z_dim] = 0     # the first layer's z columns: ws depend on the label alone
    assert digit_diversity.latent_spread(G, data, num_labels=4, per_label=4) == 0
    assert digit_diversity.latent_spread(tiny_G('mspe', resolution=16), data) is None

def test_diversity_with_a_prior_scores_a_snapshot_as_its_unconditional_pickle(tmp_path):
    """digit_diversity --prior: a cluster-conditional snapshot reads exactly like the pickle that
    self_condition.py writes of it (the training progress table of a self-conditioned run), with the
    conditional G's latent_spread; a prior of the wrong size or without labels is refused."""
    import pickle
    from click.testing import CliRunner
    from scripts.experiments import digit_diversity
    from test_train import make_digits_zip
    from mspe_plugin import networks as pe_networks
    from training.self_conditioning import label_prior, self_conditioned
    from training.dataset import ImageFolderDataset
    data = make_digits_zip(tmp_path / 'digits32.zip', count=40, resolution=32, with_labels=True)
    plain = make_digits_zip(tmp_path / 'plain32.zip', count=8, resolution=32)
    torch.manual_seed(0)
    G = pe_networks.Generator(z_dim=8, c_dim=10, w_dim=8, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=16, pe='mspe')).eval()
    with open(tmp_path / 'snap.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=G), f)
    with open(tmp_path / 'wrapped.pkl', 'wb') as f:
        pickle.dump(dict(G_ema=self_conditioned(G, label_prior(ImageFolderDataset(data, use_labels=True)))), f)
    rows = {}
    for name, extra in (('snap', ['--prior', data]), ('wrapped', [])):
        out = tmp_path / f'{name}.json'
        res = CliRunner().invoke(digit_diversity.main, [str(tmp_path / f'{name}.pkl'), '--num=12', '--data', data, '--json', str(out)] + extra)
        assert res.exit_code == 0, res.output
        rows[name] = json.loads(out.read_text())['rows'][str(tmp_path / f'{name}.pkl')]
    spread = rows['snap'].pop('latent_spread')
    assert spread == digit_diversity.latent_spread(G, data) and spread > 0.01
    assert rows['snap'] == rows['wrapped'] and rows['snap']['label_agreement'] is None
    # --margin: the same fakes drawn with an inference margin (a zero-padded G draws its edge differently).
    out = tmp_path / 'm8.json'
    res = CliRunner().invoke(digit_diversity.main, [str(tmp_path / 'wrapped.pkl'), '--num=12', '--data', data, '--margin=8', '--json', str(out)])
    assert res.exit_code == 0, res.output
    m8 = json.loads(out.read_text())
    assert m8['margin'] == 8 and m8['rows'][str(tmp_path / 'wrapped.pkl')]['frechet'] != rows['wrapped']['frechet']
    for prior, says in ((plain, 'has no labels'), (make_digits_zip(tmp_path / 'two.zip', count=2, resolution=32, with_labels=True), '--prior')):
        res = CliRunner().invoke(digit_diversity.main, [str(tmp_path / 'snap.pkl'), '--num=4', '--data', data, '--prior', prior])
        assert res.exit_code != 0 and says in res.output, res.output
