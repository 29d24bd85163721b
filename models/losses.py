"""Segmentation losses (`--loss`), all ignoring the ignore id 255.

- ce: softmax cross-entropy (Keras' own, with `ignore_class`).
- dice: soft Dice over the batch (Milletari et al., "V-Net", 3DV 2016), mean over classes.
- ce+dice: their sum, a common choice for small structures (as in nnU-Net).
- bce: one sigmoid output for binary tasks; every id > 0 is foreground.
"""

import keras
import tensorflow as tf

from surrogate_supervision.datasets import IGNORE_ID, ToolkitError

LOSSES = ("ce", "dice", "ce+dice", "bce")


@keras.saving.register_keras_serializable(package="surrogate")
class SoftDiceLoss(keras.losses.Loss):
    """1 − mean over classes of 2·Σ p·y / (Σ p + Σ y), summed over the whole batch; ignore pixels masked."""

    def __init__(self, num_classes, smooth=1.0, name="soft_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.smooth = smooth

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        valid = tf.cast(y_true != IGNORE_ID, y_pred.dtype)[..., None]
        probs = tf.nn.softmax(y_pred) * valid
        onehot = tf.one_hot(tf.where(y_true == IGNORE_ID, 0, y_true), self.num_classes, dtype=y_pred.dtype) * valid
        axes = [0, 1, 2]
        intersection = tf.reduce_sum(probs * onehot, axes)
        total = tf.reduce_sum(probs, axes) + tf.reduce_sum(onehot, axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        # One value for the batch, broadcast per example so Keras' reduction keeps it unchanged.
        return tf.fill(tf.shape(y_true)[:1], 1.0 - tf.reduce_mean(dice))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="surrogate")
class CEDiceLoss(keras.losses.Loss):
    def __init__(self, num_classes, name="ce_dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_ID)
        self.dice = SoftDiceLoss(num_classes)

    def call(self, y_true, y_pred):
        return self.ce(y_true, y_pred) + self.dice(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="surrogate")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Sigmoid cross-entropy on one output channel; ids > 0 are foreground, 255 is ignored."""

    def __init__(self, name="masked_bce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        valid = tf.cast(y_true != IGNORE_ID, tf.float32)
        target = tf.cast((y_true > 0) & (y_true != IGNORE_ID), tf.float32)
        logits = tf.cast(y_pred[..., 0], tf.float32)
        per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits) * valid
        return tf.reduce_sum(per_pixel, [1, 2]) / tf.maximum(tf.reduce_sum(valid, [1, 2]), 1.0)


def make_loss(name, num_classes):
    """The Keras loss for `--loss`."""
    if name == "ce":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE_ID)
    if name == "dice":
        return SoftDiceLoss(num_classes)
    if name == "ce+dice":
        return CEDiceLoss(num_classes)
    if name == "bce":
        return MaskedBinaryCrossentropy()
    raise ToolkitError(f"{name!r} unknown, supported: {', '.join(LOSSES)}", param="loss")
