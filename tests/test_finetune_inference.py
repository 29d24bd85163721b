"""Whole-image prediction: padding to the stride, cropping back, and blended overlapping tiles."""

from models import build_deeplabv3plus
from models.runner import runtime

import keras
import numpy as np
import pytest
import tensorflow as tf

from finetune.inference import Predictor, _starts


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pixelwise_model(num_outputs, seed=0):
    """A 1×1 convolution: each output pixel depends on its input pixel only, so tiling must be exact."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(num_outputs, 1, kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                                  bias_initializer=keras.initializers.RandomNormal(seed=seed + 1))(inputs)
    return keras.Model(inputs, outputs)


class PatchSpy:
    """Records the patch sizes a Predictor sends through the network."""

    def __init__(self, predictor):
        self.shapes, self.whole = [], predictor._whole
        predictor._whole = self

    def __call__(self, image):
        self.shapes.append(image.shape[:2])
        return self.whole(image)


@pytest.fixture(scope="module")
def deeplab():
    return build_deeplabv3plus(3, width=0.125)


@pytest.mark.parametrize("length, tile, stride", [(90, 33, 24), (70, 33, 24), (81, 33, 24), (34, 33, 24),
                                                  (33, 33, 24), (20, 33, 24), (100, 33, 1)])
def test_starts_cover_the_range_with_the_last_tile_flush(length, tile, stride):
    starts = _starts(length, tile, stride)

    assert starts[0] == 0
    assert starts[-1] == max(length - tile, 0)
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all()


def test_whole_image_logits_have_the_image_size(deeplab):
    predictor = Predictor(deeplab)
    image = random_image(37, 50)

    logits = predictor.logits(image)
    labels = predictor.labels(image)

    assert logits.shape == (37, 50, 3)
    assert np.isfinite(logits).all()
    assert labels.shape == (37, 50) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, logits.argmax(-1))


def test_tiled_deeplab_logits_have_the_image_size(deeplab):
    predictor = Predictor(deeplab, max_side=40, tile=33, overlap=0.25)
    spy = PatchSpy(predictor)

    logits = predictor.logits(random_image(90, 70))

    assert logits.shape == (90, 70, 3)
    assert np.isfinite(logits).all()
    assert len(spy.shapes) == 4 * 3 and max(max(s) for s in spy.shapes) <= 33


def test_tiles_blend_to_exactly_the_whole_image_prediction():
    model = pixelwise_model(4)
    image = random_image(90, 70, seed=3)
    tiled = Predictor(model, max_side=40, tile=33, overlap=0.25)
    spy = PatchSpy(tiled)

    expected = Predictor(model).logits(image)
    actual = tiled.logits(image)

    assert len(spy.shapes) > 1  # the tiled path ran
    assert actual.shape == expected.shape == (90, 70, 4)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_one_output_model_labels_are_sigmoid_above_half():
    model = pixelwise_model(1, seed=5)
    predictor = Predictor(model)
    image = random_image(21, 30, seed=4)

    logits = predictor.logits(image)

    assert 0 < (logits > 0).mean() < 1  # both labels occur, so the threshold is tested
    np.testing.assert_array_equal(predictor.labels(image), (logits[..., 0] > 0).astype(np.uint8))


@pytest.mark.parametrize("side, padded", [(193, 193), (200, 209), (208, 209), (37, 49)])
def test_whole_images_go_in_on_the_training_grid(deeplab, side, padded):
    """Sides are padded to 16k + 1, as training crops (513, 193) are, never to a multiple of 16."""
    predictor = Predictor(deeplab)
    forward, seen = predictor._forward, []
    predictor._forward = lambda x: seen.append(tuple(x.shape[1:3])) or forward(x)

    assert predictor.logits(random_image(side, 50)).shape == (side, 50, 3)
    assert seen == [(padded, 65)]


def test_a_predictor_switches_the_slow_remapper_off_and_predicts_the_same(deeplab, monkeypatch):
    """On a CPU where the fused convolutions are slow the Predictor runs unfused: same logits, 10× faster there."""
    image = random_image(40, 56)
    toolkit_choice = runtime.slow_fused_inference_reason() is None  # what later tests should run with
    tf.config.optimizer.set_experimental_options({"remapping": True})  # TensorFlow's default, made explicit
    fused = Predictor(deeplab).logits(image)
    remapper_setting = tf.config.optimizer.get_experimental_options
    monkeypatch.setattr(runtime, "slow_fused_inference_reason", lambda: "this CPU has no AVX-512")
    monkeypatch.setattr(runtime.tf.config.optimizer, "get_experimental_options", dict)  # as if the user set none
    try:
        unfused = Predictor(deeplab)
        assert remapper_setting()["remapping"] is False
        np.testing.assert_allclose(unfused.logits(image), fused, rtol=1e-5, atol=1e-5)
    finally:  # the option cannot be unset: leave this CPU's own choice, not the fused path, to later tests
        tf.config.optimizer.set_experimental_options({"remapping": toolkit_choice})
