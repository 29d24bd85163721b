"""One compiled training step on random data, as the scripts run it: what the benchmarks time."""

from surrogate_supervision.models import (
    ColorizationGAN,
    build_deeplabv3plus,
    build_discriminator,
    build_generator,
    make_loss,
)
from surrogate_supervision.models.deeplab import stride4_size
from surrogate_supervision.models.optimizers import make_adam
from surrogate_supervision.models.resnet import scaled

import tensorflow as tf


def build_traced_step(task, size, batch, width, xla):
    """The training step as the scripts build it (same models, losses, optimizers): its `tf.function`, a random
    batch of the given size to call it on, and its model."""
    def adam(lr):
        return make_adam(lr, 0.5, 0.999)  # as the scripts build it

    if task == "segment":
        model = build_deeplabv3plus(9, width=width)
        model.compile(optimizer=adam(1e-4), loss=make_loss("ce", 9))
        data = (tf.random.uniform((batch, size, size, 3), -1, 1),
                tf.random.uniform((batch, size, size), 0, 9, tf.int32))
        model.optimizer.build(model.trainable_variables)
    else:
        generator, discriminator = build_generator(width=width), build_discriminator(filters=scaled(64, width))
        model = ColorizationGAN(generator, discriminator)
        model.compile(adam(2e-4), adam(2e-4))
        model.g_optimizer.build(generator.trainable_variables)
        model.d_optimizer.build(discriminator.trainable_variables)
        small = stride4_size(size)
        data = {"gray": tf.random.uniform((batch, size, size, 3), -1, 1),
                "gray_small": tf.random.uniform((batch, small, small, 3), -1, 1),
                "rgb_small": tf.random.uniform((batch, small, small, 3), -1, 1)}
    return tf.function(model.train_step, jit_compile=xla or None), data, model


def build_step(task, size, batch, width, xla):
    """A compiled training step on random data: a function that runs one step, and the model."""
    step, data, model = build_traced_step(task, size, batch, width, xla)
    return lambda: {k: float(v) for k, v in step(data).items()}, model
