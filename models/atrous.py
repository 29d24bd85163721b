"""Atrous (dilated) convolutions that skip the taps that can never touch the feature map.

With "same" padding, a 3×3 tap at offset ±rate reads only padding when rate ≥ the map's side: at output
stride 16 on a 256 crop the ASPP map is 16×16, so the rate-18 branch is a per-channel scale by the centre
tap, and TensorFlow's dilated path (SpaceToBatchND, a convolution over a 48×48 padded grid, BatchToSpaceND,
and their gradients) computes nothing but zeros around it. This layer drops those taps, per axis, from the
static shape it is traced with; the result and every gradient are those of the full convolution (the
dropped taps multiply zeros), and where the shape is not known it runs the full convolution.

`Conv2D` does the same for the regular atrous 3×3 convolutions (`--regular-conv`), where the rate-18 branch
on a 16×16 map becomes a 1×1 convolution: 1/9 of its multiply-adds.

The weights are Keras' own (one ``kernel`` of the full 3×3 shape), and the classes keep Keras' names because
`.weights.h5` files key layers by class name: weight files written with `keras.layers.DepthwiseConv2D` load
into it unchanged and the other way round, and transfers copy it by layer name and shape.
"""

import keras
import tensorflow as tf
from keras import layers


def reachable_taps(kernel_size, rate, size):
    """(first, last) tap index along one axis whose input can lie inside a map of `size` ("same" padding).

    Tap t reads offset (t - (kernel_size - 1) / 2) · rate from each output position; it can touch the map
    only if that offset is smaller than the map's side. None when the side is unknown.
    """
    if size is None:
        return 0, kernel_size - 1
    centre = (kernel_size - 1) // 2
    reach = min(centre, (size - 1) // rate) if rate > 0 else centre
    return centre - reach, centre + reach


def trimmed_taps(layer, shape):
    """Per axis (first, last) taps of `layer`'s kernel to keep for an input of `shape`, or None to keep all.

    Trims only for stride 1, "same" padding, channels_last and odd kernels.
    """
    if (layer.padding != "same" or layer.data_format != "channels_last" or any(s != 1 for s in layer.strides)
            or any(k % 2 == 0 for k in layer.kernel_size)):
        return None
    taps = [reachable_taps(k, r, s) for k, r, s in zip(layer.kernel_size, layer.dilation_rate, shape[1:3])]
    if all(last - first + 1 == k for (first, last), k in zip(taps, layer.kernel_size)):
        return None
    return taps


def _rates(taps, dilation_rate):
    return [rate if last > first else 1 for (first, last), rate in zip(taps, dilation_rate)]


@keras.saving.register_keras_serializable(package="surrogate", name="AtrousConv2D")
class Conv2D(layers.Conv2D):
    """`keras.layers.Conv2D` (same weights, names and results) without the taps that read only padding."""

    def _trimmed(self, shape):
        return trimmed_taps(self, shape)

    def convolution_op(self, inputs, kernel):
        taps = self._trimmed(inputs.shape)
        if taps is None:
            return super().convolution_op(inputs, kernel)
        (top, bottom), (left, right) = taps
        return keras.ops.conv(inputs, kernel[top:bottom + 1, left:right + 1], strides=1, padding="same",
                              dilation_rate=_rates(taps, self.dilation_rate), data_format=self.data_format)


@keras.saving.register_keras_serializable(package="surrogate", name="AtrousDepthwiseConv2D")
class DepthwiseConv2D(layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` (same weights, names and results) without the taps that read only padding."""

    def _trimmed(self, shape):
        return trimmed_taps(self, shape)

    def call(self, inputs):
        taps = self._trimmed(inputs.shape)
        if taps is None:
            return super().call(inputs)
        (top, bottom), (left, right) = taps
        kernel = tf.convert_to_tensor(self.kernel)[top:bottom + 1, left:right + 1]
        if top == bottom and left == right and self.depth_multiplier == 1:
            outputs = inputs * tf.reshape(kernel, [-1])  # only the centre tap: a per-channel scale
        else:
            outputs = tf.nn.depthwise_conv2d(inputs, kernel, [1, 1, 1, 1], "SAME",
                                             dilations=_rates(taps, self.dilation_rate))
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
