"""Conditional PatchGAN and the colorization GAN: shapes, losses against NumPy, one training step."""

from surrogate_supervision.models import ColorizationGAN, build_discriminator, build_generator
from surrogate_supervision.models.deeplab import stride4_size
from surrogate_supervision.models.gan import discriminator_loss, generator_adversarial_loss

import keras
import numpy as np
import pytest
import tensorflow as tf

RNG = np.random.default_rng(0)
REAL = RNG.normal(0, 2, (3, 4, 5, 1)).astype("float32")  # patch-logit maps (B, h, w, 1)
FAKE = RNG.normal(0, 2, (3, 4, 5, 1)).astype("float32")


def _softplus(x):
    return np.logaddexp(0.0, x)


@pytest.mark.parametrize("input_size", [None, 129])
def test_discriminator_patch_map_for_129(input_size):
    disc = build_discriminator(input_size=input_size, filters=16)
    images = [np.zeros((2, 129, 129, 3), "float32")] * 2
    logits = disc(images)
    assert tuple(logits.shape) == (2, 17, 17, 1)
    assert logits.dtype == "float32"
    if input_size:
        assert tuple(disc.output.shape) == (None, 17, 17, 1)


def test_discriminator_is_pix2pix_70x70_patchgan():
    disc = build_discriminator()
    convs = [disc.get_layer(f"disc_conv{i}") for i in range(1, 5)] + [disc.get_layer("disc_logits")]
    assert [c.filters for c in convs] == [64, 128, 256, 512, 1]
    assert [c.strides[0] for c in convs] == [2, 2, 2, 1, 1]
    field = 1
    for conv in reversed(convs):  # receptive field of one logit, back through the 4×4 convolutions
        field = (field - 1) * conv.strides[0] + conv.kernel_size[0]
    assert field == 70


def _per_image(patches):
    return patches.mean(axis=(1, 2, 3))


def test_lsgan_losses_match_numpy_per_patch():
    d = discriminator_loss(tf.constant(REAL), tf.constant(FAKE), "lsgan")
    g = generator_adversarial_loss(tf.constant(FAKE), "lsgan")
    np.testing.assert_allclose(d, _per_image(0.5 * ((REAL - 1.0) ** 2 + FAKE**2)), rtol=1e-6)
    np.testing.assert_allclose(g, _per_image((FAKE - 1.0) ** 2), rtol=1e-6)


def test_vanilla_losses_match_numpy_per_patch():
    d = discriminator_loss(tf.constant(REAL), tf.constant(FAKE), "vanilla")
    g = generator_adversarial_loss(tf.constant(FAKE), "vanilla")
    # BCE with logits: −log σ(r) = softplus(−r), −log(1 − σ(f)) = softplus(f), per patch, then per image.
    np.testing.assert_allclose(d, _per_image(_softplus(-REAL) + _softplus(FAKE)), rtol=1e-5)
    np.testing.assert_allclose(g, _per_image(_softplus(-FAKE)), rtol=1e-5)


def test_a_fake_map_half_at_plus_one_half_at_minus_one_is_not_scored_perfect():
    """The loss of the mean logit, (mean_p d_p)², would call this fake map perfect (0); pix2pix's per-patch
    mean_p d_p² is 1 for it."""
    real = tf.ones((1, 4, 4, 1))
    fake = tf.constant(np.repeat([[1.0, 1.0, -1.0, -1.0]], 4, axis=0)[None, ..., None], tf.float32)
    assert float(discriminator_loss(real, fake, "lsgan")[0]) == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["lsgan", "vanilla"])
def test_losses_prefer_the_right_scores(kind):
    confident, fooled = tf.fill([1, 2, 2, 1], 5.0), tf.fill([1, 2, 2, 1], -5.0)
    # D is happiest with real scored high and fake low; G with its fakes scored as real
    assert float(discriminator_loss(confident, fooled, kind)[0]) < float(discriminator_loss(fooled, confident, kind)[0])
    assert float(generator_adversarial_loss(tf.fill([1, 2, 2, 1], 1.0), kind)[0]) < float(
        generator_adversarial_loss(tf.fill([1, 2, 2, 1], -3.0), kind)[0]
    )


def _optimizers():
    return keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5)


def test_compile_rejects_unknown_gan_loss():
    gan = ColorizationGAN(build_generator(width=0.125), build_discriminator(filters=8))
    with pytest.raises(ValueError, match="lsgan, vanilla"):
        gan.compile(*_optimizers(), gan_loss="bogus")


def test_train_step_updates_both_networks():
    crop, small = 65, stride4_size(65)
    assert small == 17
    generator, discriminator = build_generator(width=0.125), build_discriminator(filters=16)
    gan = ColorizationGAN(generator, discriminator)
    gan.compile(*_optimizers(), gan_loss="lsgan")
    rng = np.random.default_rng(0)
    batch = {
        "gray": tf.constant(rng.uniform(-1, 1, (2, crop, crop, 3)), tf.float32),
        "gray_small": tf.constant(rng.uniform(-1, 1, (2, small, small, 3)), tf.float32),
        "rgb_small": tf.constant(rng.uniform(-1, 1, (2, small, small, 3)), tf.float32),
    }
    g_before = [w.numpy() for w in generator.trainable_weights]
    d_before = [w.numpy() for w in discriminator.trainable_weights]

    logs = {name: float(value) for name, value in gan.train_step(batch).items()}

    assert set(logs) == {"d_loss", "g_adv", "g_l1"}
    assert all(np.isfinite(value) for value in logs.values()), logs
    assert logs["d_loss"] > 0 and logs["g_adv"] > 0
    assert 0 < logs["g_l1"] <= 2  # both images lie in [-1, 1]
    d_changed = [not np.array_equal(a, w.numpy()) for a, w in zip(d_before, discriminator.trainable_weights)]
    g_changed = {w.path: not np.array_equal(a, w.numpy()) for a, w in zip(g_before, generator.trainable_weights)}
    assert all(d_changed), "every discriminator weight should move"
    for path in ("conv1_conv/kernel", "aspp_proj_conv/kernel", "decoder_conv2_pointwise/kernel", "logits/kernel"):
        assert g_changed[path], path
    # conv biases in front of BatchNorm get (almost) no gradient; the rest must all move
    assert sum(g_changed.values()) > 0.9 * len(g_changed)
