"""The fused BatchNorm must be Keras' BatchNormalization in all but speed: values, statistics, gradients, files."""

import models.batchnorm
from models import build_generator
from models.batchnorm import BatchNormalization

import keras
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture
def pair():
    x = tf.random.stateless_normal((4, 9, 9, 5), [1, 2]) * 3 + 1
    layers = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5), BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in layers:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    return x, layers


def test_training_outputs_statistics_and_gradients_match_keras(pair):
    x, (reference, fused) = pair
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = [layer(x, training=True) for layer in (reference, fused)]
        losses = [tf.reduce_sum(y ** 3) for y in outputs]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)
    np.testing.assert_allclose(reference.moving_mean.numpy(), fused.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(reference.moving_variance.numpy(), fused.moving_variance.numpy(), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(losses[0], x), tape.gradient(losses[1], x), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(tape.gradient(losses[0], reference.gamma), tape.gradient(losses[1], fused.gamma),
                               rtol=1e-4)


def test_inference_uses_moving_statistics_like_keras(pair):
    x, (reference, fused) = pair
    for layer in (reference, fused):
        layer.moving_mean.assign(np.arange(5, dtype=np.float32))
        layer.moving_variance.assign(np.full(5, 4.0, np.float32))
    np.testing.assert_allclose(reference(x, training=False), fused(x, training=False), atol=1e-5)


def test_weights_files_are_interchangeable_with_keras_batchnorm(tmp_path, monkeypatch):
    """A distributed run builds Keras' own layer; its weights must load into a single-device network."""
    fused = build_generator(width=0.125)
    for variable in fused.weights:
        variable.assign(np.random.default_rng(0).uniform(0.5, 1.0, variable.shape).astype(variable.dtype))
    fused.save_weights(tmp_path / "fused.weights.h5")
    monkeypatch.setattr(models.batchnorm, "BatchNormalization", keras.layers.BatchNormalization)
    plain = build_generator(width=0.125)
    assert type(plain.get_layer("conv1_bn")) is keras.layers.BatchNormalization
    plain.load_weights(tmp_path / "fused.weights.h5")
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
