"""BatchNorm for this project's networks: TensorFlow's fused kernel on one device, synchronised across replicas.

Keras 3 computes BatchNorm as separate moments / normalise / scale ops: about six passes over every
activation, forward and backward, in a ResNet50 where BatchNorm follows each of 53 convolutions. The fused
kernel (what Keras 2 used, oneDNN-accelerated on CPU, cuDNN on GPU) does it in one. Where oneDNN runs below
AVX-512 its forward kernel is the slow one, and the forward pass is done in plain ops instead (same values).
Under a multi-replica strategy the statistics must span the global batch: Keras' `synchronized=True` path,
with the variance computed in two passes (see `BatchNormalization._moments`).
"""

from surrogate_supervision.models.cpu import slow_onednn_kernels

import keras
import tensorflow as tf
from keras import layers

# Moving statistics follow the batch statistics within ~50 steps (PyTorch's default), so short runs
# evaluate sensibly; DeepLab's 0.9997 needs its 300k steps before inference-mode BN is usable.
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="surrogate", name="FusedBatchNormalization")
class BatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` (same weights, names and semantics) on the fused kernel.

    The class keeps Keras' name on purpose: `.weights.h5` files key layers by class name, so weights saved
    from a distributed run (Keras' own layer) and from a single-device run (this one) are interchangeable.
    """

    def call(self, inputs, training=None, mask=None):
        if (mask is not None or self.renorm or self.synchronized or self.axis not in (-1, len(inputs.shape) - 1)
                or inputs.dtype not in (tf.float16, tf.bfloat16, tf.float32)):  # float64: no fused kernel
            return super().call(inputs, training=training, mask=mask)
        x = inputs
        channels = inputs.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        shape = tf.shape(x)
        x4 = tf.reshape(x, [-1, 1, 1, channels]) if len(inputs.shape) != 4 else x
        if training and self.trainable:
            if slow_onednn_kernels():
                y, mean, variance = normalize_by_batch_moments(x4, gamma, beta, self.epsilon)
            else:
                y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                    x4, gamma, beta, epsilon=self.epsilon, is_training=True)
                count = tf.cast(tf.reduce_prod(tf.shape(x4)[:-1]), tf.float32)
                variance = variance * (count - 1.0) / tf.maximum(count, 2.0)  # kernel returns Bessel-corrected
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                # TensorFlow ops on the value: Keras-variable arithmetic costs ~10× more Python while tracing
                moving.assign(tf.convert_to_tensor(moving) * self.momentum + batch * (1.0 - self.momentum))
        elif slow_onednn_kernels():
            scale = gamma * tf.math.rsqrt(tf.convert_to_tensor(self.moving_variance) + self.epsilon)
            y = tf.cast(x4, tf.float32) * scale + (beta - tf.convert_to_tensor(self.moving_mean) * scale)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x4, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon, is_training=False)
        if len(inputs.shape) != 4:
            y = tf.reshape(y, shape)
        return tf.cast(y, self.compute_dtype)


    def _moments(self, inputs, mask):
        """Global-batch mean, then the mean squared deviation from it: two all-reduces.

        Keras' synchronised moments take E[x²] − E[x]² from one all-reduce, which cancels catastrophically
        where a channel's mean is large against its spread: a normalisation error of 2.9e-4 at mean/std 30
        in float32, against 4.7e-6 in two passes (tests/test_scale.py).
        """
        replica = tf.distribute.get_replica_context()
        if mask is not None or not self.synchronized or replica is None or replica.num_replicas_in_sync == 1:
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        total = lambda x: replica.all_reduce(tf.distribute.ReduceOp.SUM, x)  # noqa: E731
        count = total(tf.cast(tf.reduce_prod(tf.gather(tf.shape(inputs), axes)), inputs.dtype))
        mean = total(tf.reduce_sum(inputs, axis=axes, keepdims=True)) / count
        variance = total(tf.reduce_sum(tf.square(inputs - mean), axis=axes, keepdims=True)) / count
        return tf.squeeze(mean, axes), tf.squeeze(variance, axes)


def normalize_by_batch_moments(x, gamma, beta, epsilon):
    """Training-mode BatchNorm of an NHWC tensor in plain TensorFlow ops: (y, batch mean, biased batch variance).

    The forward pass for CPUs where oneDNN's fused kernel is slow (`models.cpu.slow_onednn_kernels`); the
    gradient is still the fused kernel's (`FusedBatchNormGradV3`, fast there), given the same batch statistics
    it would have saved. Like the fused op's, it passes no gradient through the returned mean and variance,
    which only feed the moving averages.
    """
    @tf.custom_gradient
    def forward(x, gamma, beta):
        mean = tf.reduce_mean(x, [0, 1, 2])
        variance = tf.reduce_mean(tf.math.squared_difference(x, mean), [0, 1, 2])
        scale = gamma * tf.math.rsqrt(variance + epsilon)

        def gradient(dy, unused_dmean, unused_dvariance):
            # reserve_space_3 is read only after a forward pass with a fused activation; any tensor will do here
            dx, dgamma, dbeta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=dy, x=x, scale=gamma, reserve_space_1=mean, reserve_space_2=variance,
                reserve_space_3=variance, epsilon=epsilon, is_training=True)
            return dx, dgamma, dbeta

        return (x * scale + (beta - mean * scale), mean, variance), gradient

    return forward(tf.cast(x, tf.float32), gamma, beta)


def batch_norm(name, epsilon):
    """The BatchNorm layer every network here uses (fused on one device, synchronised across replicas)."""
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, synchronized=synchronized, name=name)
