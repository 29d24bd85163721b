"""The fused BatchNorm must be Keras' BatchNormalization in all but speed: values, statistics, gradients, files."""

from surrogate_supervision.models import batchnorm, build_generator
from surrogate_supervision.models import cpu as models_cpu
from surrogate_supervision.models.batchnorm import BatchNormalization

import keras
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(params=["fused", "plain-forward"])
def pair(request, monkeypatch):
    """Keras' layer and ours, ours on the fused kernel or on the plain-ops forward pass used below AVX-512."""
    monkeypatch.setattr(batchnorm, "slow_onednn_kernels", lambda: request.param == "plain-forward")
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
    monkeypatch.setattr(batchnorm, "BatchNormalization", keras.layers.BatchNormalization)
    plain = build_generator(width=0.125)
    assert type(plain.get_layer("conv1_bn")) is keras.layers.BatchNormalization
    plain.load_weights(tmp_path / "fused.weights.h5")
    for a, b in zip(fused.weights, plain.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_below_avx512_the_forward_pass_leaves_onednn_batchnorm_and_the_gradient_keeps_it(monkeypatch):
    """oneDNN's forward BatchNorm kernel is ~8x slower below AVX-512; its gradient kernel is not."""
    layer = BatchNormalization()
    layer.build((2, 4, 4, 3))
    x = tf.random.stateless_normal((2, 4, 4, 3), [3, 4])

    def op_types(slow, training):
        monkeypatch.setattr(batchnorm, "slow_onednn_kernels", lambda: slow)

        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x, training=training) ** 2)
            return tape.gradient(loss, x)

        return {op.type for op in tf.function(step).get_concrete_function(x).graph.get_operations()}

    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= op_types(False, True)
    plain = op_types(True, True)
    assert "FusedBatchNormV3" not in plain and "FusedBatchNormGradV3" in plain
    assert not {"FusedBatchNormV3", "FusedBatchNormGradV3"} & op_types(True, False)


@pytest.mark.parametrize("reason, gpus, slow", [("this CPU has no AVX-512", [], True),
                                                ("this CPU has no AVX-512", ["GPU:0"], False), (None, [], False)])
def test_plain_forward_only_on_cpu_only_machines_below_avx512(monkeypatch, reason, gpus, slow):
    monkeypatch.setattr(models_cpu, "onednn_below_avx512_reason", lambda: reason)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    assert models_cpu.slow_onednn_kernels.__wrapped__() is slow
