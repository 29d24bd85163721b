"""The atrous depthwise layer: Keras' DepthwiseConv2D's results, gradients and weights, minus the dead taps."""

import surrogate_supervision.models.deeplab as deeplab
from surrogate_supervision.models import build_deeplabv3plus
from surrogate_supervision.models.atrous import Conv2D, DepthwiseConv2D, reachable_taps

import keras
import numpy as np
import pytest
import tensorflow as tf

KINDS = {"depthwise": (keras.layers.DepthwiseConv2D, DepthwiseConv2D, {}),
         "regular": (keras.layers.Conv2D, Conv2D, {"filters": 5})}


def _pair(rate, channels, seed=0, kind="depthwise"):
    """Keras' layer and ours, built with the same random kernel."""
    keras_class, our_class, kwargs = KINDS[kind]
    ref = keras_class(kernel_size=3, padding="same", dilation_rate=rate, use_bias=False, **kwargs)
    new = our_class(kernel_size=3, padding="same", dilation_rate=rate, use_bias=False, **kwargs)
    ref.build((None, None, None, channels))
    new.build((None, None, None, channels))
    ref.kernel.assign(np.random.default_rng(seed).normal(size=ref.kernel.shape).astype("float32"))
    new.set_weights(ref.get_weights())
    return ref, new


def _output_and_gradients(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) * upstream)
    return [layer(x), *tape.gradient(loss, [x, layer.kernel])]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rate", [6, 12, 18, 24, 36])
@pytest.mark.parametrize("shape", [(16, 16), (17, 17), (33, 33), (9, 9), (16, 40), (5, 33)])
def test_equal_to_keras_layer_with_the_same_weights(kind, rate, shape):
    ref, new = _pair(rate, channels=6, kind=kind)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, *shape, 6)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(2, *shape, ref.compute_output_shape(x.shape)[-1])).astype("float32"))
    for a, b in zip(_output_and_gradients(ref, x, upstream), _output_and_gradients(new, x, upstream)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)  # sums in another order


def test_traced_with_unknown_size_runs_the_full_convolution():
    ref, new = _pair(18, channels=4)
    spec = tf.TensorSpec((None, None, None, 4), tf.float32)
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 16, 16, 4)).astype("float32"))
    np.testing.assert_allclose(tf.function(new, input_signature=[spec])(x), ref(x), rtol=1e-5, atol=1e-5)


def test_only_reachable_taps_are_kept():
    assert reachable_taps(3, 18, 16) == (1, 1)  # OS16 on a 256 crop: rate 18 reads only padding off-centre
    assert reachable_taps(3, 12, 16) == (0, 2) and reachable_taps(3, 18, 33) == (0, 2)  # 513 crop: all taps
    assert reachable_taps(3, 17, 17) == (1, 1) and reachable_taps(3, 16, 17) == (0, 2)
    assert reachable_taps(3, 6, None) == (0, 2)
    assert DepthwiseConv2D(3, padding="same", dilation_rate=18)._trimmed((None, 16, 16, 8)) == [(1, 1), (1, 1)]
    assert DepthwiseConv2D(3, padding="same", dilation_rate=6)._trimmed((None, 16, 16, 8)) is None
    assert DepthwiseConv2D(3, padding="valid", dilation_rate=18)._trimmed((None, 16, 16, 8)) is None


def test_bfloat16_policy_computes_in_bfloat16():
    layer = DepthwiseConv2D(3, padding="same", dilation_rate=18, use_bias=False, dtype="mixed_bfloat16")
    y = layer(tf.ones((1, 16, 16, 4)))
    assert y.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"


def test_serializes_and_keeps_keras_weight_layout():
    layer = DepthwiseConv2D(3, padding="same", dilation_rate=12, use_bias=False, name="aspp_r12_depthwise")
    layer.build((None, None, None, 8))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is DepthwiseConv2D and clone.dilation_rate == (12, 12)
    assert [(w.path, tuple(w.shape)) for w in layer.weights] == [("aspp_r12_depthwise/kernel", (3, 3, 8, 1))]


@pytest.mark.parametrize("separable", [True, False])
def test_weight_files_from_keras_layers_load_both_ways(tmp_path, monkeypatch, separable):
    """A network saved before these layers existed (Keras' own) loads into today's, and back."""
    with monkeypatch.context() as m:
        m.setattr(deeplab, "DepthwiseConv2D", keras.layers.DepthwiseConv2D)
        m.setattr(deeplab, "Conv2D", keras.layers.Conv2D)
        old = build_deeplabv3plus(3, width=0.125, separable=separable)
    new = build_deeplabv3plus(3, width=0.125, separable=separable)
    ours = DepthwiseConv2D if separable else Conv2D
    assert not any(type(layer) in (DepthwiseConv2D, Conv2D) for layer in old.layers)
    assert type(new.get_layer("aspp_r18_depthwise" if separable else "aspp_r18_conv")) is ours
    rng = np.random.default_rng(3)
    for variable in old.weights:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype(variable.dtype))
    old.save_weights(tmp_path / "old.weights.h5")
    new.load_weights(tmp_path / "old.weights.h5")
    for a, b in zip(old.weights, new.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = rng.uniform(-1, 1, (1, 129, 129, 3)).astype("float32")  # ASPP map 9×9: rates 12 and 18 trimmed
    np.testing.assert_allclose(new(x, training=False), old(x, training=False), rtol=1e-4, atol=1e-4)
    new.save_weights(tmp_path / "new.weights.h5")
    old.load_weights(tmp_path / "new.weights.h5")
