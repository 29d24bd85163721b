"""FusedAdam: TensorFlow's fused kernel gives Keras' Adam update, with interchangeable checkpoints."""

from surrogate_supervision.models.optimizers import POLY_POWER, FusedAdam, learning_rate, make_adam

import keras
import numpy as np
import pytest
import tensorflow as tf


def train(optimizer, steps=3):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    x = tf.random.stateless_normal((8, 4), [1, 2])
    y = tf.random.stateless_normal((8, 1), [3, 4])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - y) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for _ in range(steps):
        step()
    return [v.numpy() for v in model.trainable_variables], [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("beta_1", [0.5, 0.9])
def test_fused_adam_matches_keras_adam(beta_1):
    fused, fused_slots = train(FusedAdam(1e-2, beta_1=beta_1, beta_2=0.999))
    reference, reference_slots = train(keras.optimizers.Adam(1e-2, beta_1=beta_1, beta_2=0.999))
    for a, b in zip(fused + fused_slots, reference + reference_slots):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(fused[0], train(FusedAdam(1e-2), steps=0)[0][0])  # it did move the weights


def test_fused_adam_slots_have_keras_names():
    optimizer = FusedAdam(1e-3)
    optimizer.build([keras.Variable(np.zeros(2, "float32"), name="w")])
    assert [v.name for v in optimizer.variables] == [v.name for v in _keras_slots()]


def _keras_slots():
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build([keras.Variable(np.zeros(2, "float32"), name="w")])
    return optimizer.variables


def test_poly_schedule_decays_to_zero_at_the_last_step():
    schedule = learning_rate(1e-3, "poly", steps=100)
    assert [float(schedule(s)) for s in (0, 50, 100, 150)] == pytest.approx(
        [1e-3, 1e-3 * 0.5**POLY_POWER, 0.0, 0.0], abs=1e-9)
    assert learning_rate(1e-3, "constant", steps=100) == 1e-3
    with pytest.raises(ValueError, match="cosine"):
        learning_rate(1e-3, "cosine", steps=100)


def test_the_fused_kernel_follows_the_schedule_step_by_step():
    # With a constant gradient Adam's step is lr_t · m̂/(√v̂ + ε) ≈ lr_t: the variable walks the schedule's sum.
    variable = tf.Variable(np.zeros(3, np.float32))
    optimizer = make_adam(learning_rate(0.1, "poly", steps=4), beta_1=0.5)
    for _ in range(6):
        optimizer.apply([tf.ones(3)], [variable])
    expected = -sum(0.1 * (1 - t / 4) ** POLY_POWER for t in range(4))  # steps 5 and 6: rate 0
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-4)
