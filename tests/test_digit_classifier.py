"""The committed digit classifier: small, loads on CPU, and reads held-out MNIST digits wherever
they sit on the canvas, in grey or colour, uint8 or [-1, 1] floats."""

import os

import numpy as np
import pytest
import torch

from conftest import MNIST_DIR
from scripts.experiments import digit_classifier as dc
from scripts.experiments import digits as dg

@pytest.fixture(scope='module')
def model():
    torch.set_num_threads(1)
    return dg.load_classifier(device='cpu')

@pytest.fixture(scope='module')
def heldout():
    digits, labels = dg.load_mnist(MNIST_DIR)
    return digits[8000:8200], labels[8000:8200]

def test_committed_classifier_is_small_and_loads(model):
    assert os.path.getsize(dg.CLASSIFIER_PATH) < 2 * 2**20
    assert not model.training and next(model.parameters()).device.type == 'cpu'

@pytest.mark.parametrize('place,res,colour', [('upper-left', 64, True), ('bottom-left', 32, False),
                                              ('random', 64, False)])
def test_classifier_reads_heldout_digits_wherever_placed(model, heldout, place, res, colour):
    digits, labels = heldout
    images = dc.place_digits(digits, res, place, 0.5, colour, np.random.default_rng(7))
    assert images.shape == (200, 3 if colour else 1, res, res)
    pred, probs = dg.classify(model, images)
    assert probs.shape == (200, 10) and torch.allclose(probs.sum(1), torch.ones(200))
    assert (pred.numpy() == labels).mean() >= 0.93

def test_same_digit_gets_same_label_in_two_corners(model, heldout):
    digits, _ = heldout
    rng = np.random.default_rng(0)
    upper = dc.place_digits(digits, 64, 'upper-left', 0.5, True, rng)
    lower = dc.place_digits(digits, 64, 'bottom-left', 0.5, True, rng)
    assert (dg.classify(model, upper)[0] == dg.classify(model, lower)[0]).float().mean() >= 0.93

def test_float_images_in_minus_one_to_one_read_like_uint8(model, heldout):
    digits, _ = heldout
    images = dc.place_digits(digits[:32], 32, 'center', 0.5, True, np.random.default_rng(1))
    as_float = torch.from_numpy(images).float() / 127.5 - 1
    nhwc = images.transpose(0, 2, 3, 1)
    p_uint8 = dg.classify(model, images)[1]
    assert torch.allclose(dg.classify(model, as_float)[1], p_uint8, atol=1e-4)
    assert torch.allclose(dg.classify(model, nhwc)[1], p_uint8, atol=1e-6)

def test_features_are_penultimate_vectors_for_any_canvas_size(model, heldout):
    digits, _ = heldout
    for res in (28, 48, 96):
        images = dc.place_digits(digits[:8], res, 'center', 0.6, False, np.random.default_rng(2))
        feats = dg.features(model, images)
        assert feats.shape == (8, model.config['feature_dim']) and torch.isfinite(feats).all()

def test_too_small_images_are_refused_in_one_sentence(model):
    with pytest.raises(ValueError, match='at least 28 px'):
        dg.classify(model, np.zeros([2, 1, 16, 16], dtype=np.uint8))

def test_missing_classifier_file_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match='--train'):
        dg.load_classifier(str(tmp_path / 'none.pt'))
