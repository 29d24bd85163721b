"""conv_grad: the weight gradient as one matmul, equal to Keras' Conv2D, only where it applies."""

from surrogate_supervision.models import build_deeplabv3plus, conv_grad
from surrogate_supervision.models.conv_grad import Conv2D

import keras
import numpy as np
import pytest
import tensorflow as tf

# (kernel, stride, dilation, padding, input height, width): every backbone case, odd and non-square maps, and
# a dilation whose off-centre taps read only padding.
CASES = [(1, 1, 1, "same", 16, 16), (1, 2, 1, "valid", 16, 16), (1, 2, 1, "same", 15, 15), (3, 1, 1, "same", 9, 13),
         (3, 1, 2, "same", 16, 16), (3, 1, 4, "same", 4, 6), (5, 1, 1, "same", 7, 7)]


def outputs_and_gradients(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.sin(y))
    return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]


def twin_layers(kernel, stride, dilation, padding, use_bias, shape):
    ours = Conv2D(6, kernel, strides=stride, dilation_rate=dilation, padding=padding, use_bias=use_bias)
    keras_layer = keras.layers.Conv2D(6, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                                      use_bias=use_bias)
    ours.build(shape)
    keras_layer.build(shape)
    keras_layer.set_weights([w + 0.1 * i for i, w in enumerate(keras_layer.get_weights())])
    ours.set_weights(keras_layer.get_weights())
    return ours, keras_layer


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("kernel, stride, dilation, padding, height, width", CASES)
def test_matmul_weight_gradient_equals_keras(monkeypatch, kernel, stride, dilation, padding, height, width, use_bias):
    monkeypatch.setattr(conv_grad, "slow_onednn_kernels", lambda: True)
    shape = (2, height, width, 8)  # 8 channels: oneDNN's AVX2 1×1 stride-2 weight gradient is wrong for 5 (below)
    ours, keras_layer = twin_layers(kernel, stride, dilation, padding, use_bias, shape)
    x = tf.random.stateless_normal(shape, [1, 2])
    for name, a, b in zip(("output", "input gradient", "kernel gradient", "bias gradient"),
                          outputs_and_gradients(ours, x), outputs_and_gradients(keras_layer, x)):
        scale = float(tf.reduce_max(tf.abs(b)))
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("kernel, stride, dilation", [(1, 2, 1), (1, 1, 1), (3, 1, 1), (3, 1, 2)])
def test_matmul_weight_gradient_against_float64_numpy(kernel, stride, dilation):
    """Against an independent reference: on an AVX2 CPU (AMD EPYC Zen 3) TensorFlow's own oneDNN kernel gets the
    1×1 stride-2 case wrong for 5 input channels (74 % relative error; right for multiples of 8)."""
    x = tf.random.stateless_normal((2, 9, 11, 5), [1, 2])
    height, width = -(-9 // stride), -(-11 // stride)
    dy = tf.random.stateless_normal((2, height, width, 3), [3, 4])
    got = conv_grad.matmul_weight_gradient(x, dy, (kernel, kernel, 5, 3), stride, dilation).numpy()
    pad = dilation * (kernel // 2)
    padded = np.pad(x.numpy().astype(np.float64), [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    expected = np.zeros((kernel, kernel, 5, 3))
    for i in range(kernel):
        for j in range(kernel):
            view = padded[:, i * dilation:, j * dilation:][:, :9:stride, :11:stride][:, :height, :width]
            expected[i, j] = np.einsum("nhwc,nhwo->co", view, dy.numpy().astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def gradient_op_types(layer, x):
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, layer.kernel)

    return {op.type for op in tf.function(step).get_concrete_function(x).graph.get_operations()}


@pytest.mark.parametrize("slow, kernel, stride, matmul", [(True, 1, 2, True), (True, 3, 1, True),
                                                          (False, 3, 1, False), (True, 3, 2, False)])
def test_matmul_only_where_onednn_is_slow_and_the_shape_allows(monkeypatch, slow, kernel, stride, matmul):
    """Below AVX-512 with no GPU (`slow_onednn_kernels`), 1×1 at any stride and k×k at stride 1 ("same")."""
    monkeypatch.setattr(conv_grad, "slow_onednn_kernels", lambda: slow)
    padding = "same" if stride == 1 else "valid"
    layer, _ = twin_layers(kernel, stride, 1, padding, False, (2, 8, 8, 4))
    ops = gradient_op_types(layer, tf.zeros((2, 8, 8, 4)))
    assert ("MatMul" in ops) is matmul
    assert ("Conv2DBackpropFilter" in ops) is not matmul


def test_weight_files_written_with_keras_conv2d_load_both_ways(tmp_path):
    """The class keeps Keras' name: `.weights.h5` files key layers by it."""
    def model(conv):
        x = keras.Input((8, 8, 3))
        return keras.Model(x, conv(4, 3, padding="same", use_bias=False, name="block_conv")(x))

    ours, theirs = model(Conv2D), model(keras.layers.Conv2D)
    assert type(ours.get_layer("block_conv")).__name__ == "Conv2D"
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_array_equal(ours.get_weights()[0], theirs.get_weights()[0])
    ours.get_layer("block_conv").kernel.assign(tf.ones((3, 3, 3, 4)))
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_array_equal(theirs.get_weights()[0], np.ones((3, 3, 3, 4)))


def test_the_backbone_convolutions_use_it():
    model = build_deeplabv3plus(3, input_shape=(65, 65, 3), width=0.125)
    assert isinstance(model.get_layer("conv2_block1_2_conv"), Conv2D)
    assert isinstance(model.get_layer("conv4_block1_0_conv"), Conv2D)
