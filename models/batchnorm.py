"""BatchNorm for this project's networks: TensorFlow's fused kernel on one device, synchronised across replicas.

Keras 3 computes BatchNorm as separate moments / normalise / scale ops: about six passes over every
activation, forward and backward, in a ResNet50 where BatchNorm follows each of 53 convolutions. The fused
kernel (what Keras 2 used, oneDNN-accelerated on CPU, cuDNN on GPU) does it in one. Under a multi-replica
strategy the statistics must span the global batch, which Keras' `synchronized=True` path provides.
"""

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
        if mask is not None or self.renorm or self.axis not in (-1, len(inputs.shape) - 1):
            return super().call(inputs, training=training, mask=mask)
        dtype = inputs.dtype if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.float32
        x = tf.cast(inputs, dtype)
        channels = inputs.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels], tf.float32)
        shape = tf.shape(x)
        x4 = tf.reshape(x, [-1, 1, 1, channels]) if len(inputs.shape) != 4 else x
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x4, gamma, beta, epsilon=self.epsilon, is_training=True)
            count = tf.cast(tf.reduce_prod(tf.shape(x4)[:-1]), tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 2.0)  # kernel returns Bessel-corrected
            for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
                # TensorFlow ops on the value: Keras-variable arithmetic costs ~10× more Python while tracing
                moving.assign(tf.convert_to_tensor(moving) * self.momentum + batch * (1.0 - self.momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x4, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon, is_training=False)
        if len(inputs.shape) != 4:
            y = tf.reshape(y, shape)
        return tf.cast(y, self.compute_dtype)


def batch_norm(name, epsilon):
    """The BatchNorm layer every network here uses (fused on one device, synchronised across replicas)."""
    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return layers.BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, synchronized=True, name=name)
    return BatchNormalization(epsilon=epsilon, momentum=BN_MOMENTUM, name=name)
