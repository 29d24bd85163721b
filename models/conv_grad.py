"""Convolutions whose weight gradient is one matrix multiply, on the CPUs where oneDNN's own kernel is slow.

Below AVX-512, oneDNN's weight-gradient kernels for TensorFlow's NHWC tensors (`jit_1x1:avx2`, `jit:avx2`)
cost more than twice the blocked-layout ones PyTorch gets for the same network (experiments/results/cpu_kernels.md).
The gradient of a convolution's kernel is a matrix product: the input's pixels as rows (for a k×k kernel, the k²
shifted views of the input side by side: im2col) against the output gradient's pixels. As one `tf.matmul` it
runs on oneDNN's sgemm instead, which has no layout problem. The forward pass and the input gradient stay
TensorFlow's own, and the result equals Keras' layer to float rounding.

Applied where `models.cpu.slow_onednn_kernels()` says so (oneDNN below AVX-512, no GPU), to 1×1 kernels at any
stride and to odd k×k kernels at stride 1 with "same" padding (every backbone convolution but the strided
stem ones); everywhere else this is `keras.layers.Conv2D` exactly. im2col holds k² copies of the layer's input
for the backward pass: 9 × 4×64×64×64 floats (38 MB) for the largest 3×3 of a 256², batch-4 step.

The class keeps Keras' name because `.weights.h5` files key layers by class name: weight files written with
`keras.layers.Conv2D` load into it unchanged, and transfers copy it by layer name and shape.
"""

from surrogate_supervision.models.cpu import slow_onednn_kernels

import keras
import tensorflow as tf
from keras import layers


def shifted_views(x, kernel_size, rate):
    """The kernel_size² views of NHWC `x` that each tap of a stride-1, "same"-padded kernel reads, in the
    kernel's row-major tap order: view (i, j)[n, h, w] = x[n, h + (i − c)·rate, w + (j − c)·rate], zero outside."""
    pad = rate * (kernel_size // 2)
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return [x[:, i * rate:i * rate + height, j * rate:j * rate + width, :]
            for i in range(kernel_size) for j in range(kernel_size)]


def matmul_weight_gradient(x, dy, kernel_shape, stride, rate):
    """d(loss)/d(kernel) of a convolution of `x` with output gradient `dy`, as one matrix multiply."""
    kernel_size, channels = kernel_shape[0], kernel_shape[2]
    if kernel_size == 1:
        columns = x[:, ::stride, ::stride, :]
    else:
        columns = tf.concat(shifted_views(x, kernel_size, rate), axis=-1)
    columns = tf.reshape(columns, [-1, kernel_size * kernel_size * channels])
    gradient = tf.matmul(columns, tf.reshape(dy, [-1, kernel_shape[3]]), transpose_a=True)
    return tf.reshape(gradient, kernel_shape)


@keras.saving.register_keras_serializable(package="surrogate", name="MatmulGradientConv2D")
class Conv2D(layers.Conv2D):
    """`keras.layers.Conv2D` (same weights, names and results) with its weight gradient as one matmul where
    oneDNN's kernel for it is slow (see the module's docstring)."""

    def _matmul_gradient_applies(self, kernel):
        square_odd = self.kernel_size[0] == self.kernel_size[1] and self.kernel_size[0] % 2 == 1
        one_by_one = self.kernel_size == (1, 1) and self.dilation_rate == (1, 1)
        stride_one_same = self.strides == (1, 1) and self.padding == "same"
        return (self.data_format == "channels_last" and self.groups == 1 and square_odd
                and self.strides[0] == self.strides[1] and self.dilation_rate[0] == self.dilation_rate[1]
                and (one_by_one or stride_one_same) and kernel.dtype in (tf.float32, tf.bfloat16)
                and slow_onednn_kernels())

    def convolution_op(self, inputs, kernel):
        kernel = tf.convert_to_tensor(kernel)  # a tensor, so that the custom gradient sees no variable
        if not self._matmul_gradient_applies(kernel):
            return super().convolution_op(inputs, kernel)
        stride, rate, padding = self.strides[0], self.dilation_rate[0], self.padding.upper()

        @tf.custom_gradient
        def convolve(x, w):
            def gradient(dy):
                dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy,
                                                    strides=[1, stride, stride, 1], padding=padding,
                                                    dilations=[1, rate, rate, 1])
                return dx, matmul_weight_gradient(x, dy, w.shape, stride, rate)

            return tf.nn.conv2d(x, w, stride, padding, dilations=rate), gradient

        return convolve(inputs, kernel)
