"""Each `--loss` against a hand-written NumPy reference, on random logits with some ignore (255) pixels."""

from surrogate_supervision.models.losses import LOSSES, make_loss

import numpy as np
import pytest

from surrogate_supervision.datasets import IGNORE_ID as IGNORE

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2, (3, 6, 5, NUM_CLASSES)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (3, 6, 5)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.25] = IGNORE
    labels[1, :3] = IGNORE  # images with different numbers of valid pixels
    return logits, labels


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def ce_reference(logits, labels):
    """Mean over the non-ignored pixels of the batch of −log softmax(logits)[label]."""
    valid = labels != IGNORE
    picked = np.take_along_axis(log_softmax(logits), np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -picked[valid].mean()


def dice_reference(logits, labels, smooth=1.0):
    """1 − mean over classes of (2·Σ p·y + 1) / (Σ p + Σ y + 1), sums over the batch, ignore pixels masked."""
    valid = (labels != IGNORE)[..., None].astype(np.float64)
    probs = np.exp(log_softmax(logits.astype(np.float64))) * valid
    onehot = np.eye(NUM_CLASSES)[np.where(labels == IGNORE, 0, labels)] * valid
    intersection = (probs * onehot).sum((0, 1, 2))
    total = probs.sum((0, 1, 2)) + onehot.sum((0, 1, 2))
    return 1 - np.mean((2 * intersection + smooth) / (total + smooth))


def bce_reference(logit, labels):
    """Sigmoid cross-entropy, ids > 0 foreground, mean over each image's valid pixels, then over images."""
    x = logit[..., 0].astype(np.float64)
    valid = labels != IGNORE
    target = ((labels > 0) & valid).astype(np.float64)
    per_pixel = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
    return np.mean([per_pixel[i][valid[i]].mean() for i in range(len(labels))])


def loss_value(name, logits, labels):
    return float(make_loss(name, NUM_CLASSES)(labels, logits))


def test_ce_matches_reference(batch):
    logits, labels = batch
    assert loss_value("ce", logits, labels) == pytest.approx(ce_reference(logits, labels), rel=1e-5)


def test_dice_matches_reference(batch):
    logits, labels = batch
    assert loss_value("dice", logits, labels) == pytest.approx(dice_reference(logits, labels), rel=1e-5)


def test_ce_plus_dice_is_their_sum(batch):
    logits, labels = batch
    expected = ce_reference(logits, labels) + dice_reference(logits, labels)
    assert loss_value("ce+dice", logits, labels) == pytest.approx(expected, rel=1e-5)


def test_bce_matches_reference(batch):
    logits, labels = batch
    logit = logits[..., :1]
    assert loss_value("bce", logit, labels) == pytest.approx(bce_reference(logit, labels), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_logits_at_ignored_pixels_do_not_count(batch, name):
    logits, labels = batch
    logits = logits[..., :1] if name == "bce" else logits
    changed = logits.copy()
    changed[labels == IGNORE] = np.random.default_rng(1).normal(0, 50, changed[labels == IGNORE].shape)

    assert loss_value(name, changed, labels) == pytest.approx(loss_value(name, logits, labels), rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_perfect_prediction_scores_near_zero(batch, name):
    """The losses are minimised by confident correct logits (guards against sign or label mix-ups)."""
    _, labels = batch
    ids = np.where(labels == IGNORE, 0, labels)
    logits = (np.eye(NUM_CLASSES)[ids] * 40 - 20).astype(np.float32)
    if name == "bce":
        logits = np.where(ids > 0, 20.0, -20.0)[..., None].astype(np.float32)
    assert loss_value(name, logits, labels) < 1e-3
    assert loss_value(name, -logits, labels) > 0.5  # confidently wrong


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match=r"^loss 'bogus' unknown, supported: ce, dice, ce\+dice, bce$") as error:
        make_loss("bogus", NUM_CLASSES)
    assert error.value.param == "loss"
