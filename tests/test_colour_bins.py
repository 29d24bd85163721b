"""Colour as classes (models/colour_bins.py, models/colour_classify.py) against NumPy references of Zhang et al."""

from surrogate_supervision.models import build_discriminator, build_generator
from surrogate_supervision.models.colour_bins import (
    CENTRES,
    CHROMA,
    GRID_STEP,
    NUM_BINS,
    annealed_mean,
    count_bins,
    estimate_prior,
    masked_logits,
    rebalanced_cross_entropy,
    rebalancing_weights,
    rgb_to_chroma,
    soft_encode,
)
from surrogate_supervision.models.colour_classify import ClassifyColorizationGAN, set_used_bins, start_at_blind_guess
from surrogate_supervision.models.deeplab import LumaChromaToRGB
from surrogate_supervision.models.rundir import save_weights
from surrogate_supervision.models.transfer import load_generator

import numpy as np
import pytest
import tensorflow as tf

# Known colours as RGB in [-1, 1]: gray, red, a skin tone, sky blue, grass green.
KNOWN = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, -1.0], [0.7, 0.2, -0.1], [-0.3, 0.2, 0.8], [-0.4, 0.3, -0.6]],
                 np.float32)


def soft_encode_reference(chroma, used, k=5, sigma=GRID_STEP / 2, centres=CENTRES):
    """Zhang et al.'s soft encoding, written directly: Gaussian weights on the k nearest used centres."""
    out = np.zeros((len(chroma), NUM_BINS))
    candidates = np.flatnonzero(used)
    for i, c in enumerate(chroma):
        d2 = ((centres[candidates] - c) ** 2).sum(-1)
        nearest = candidates[np.argsort(d2)[:k]]
        w = np.exp(-((centres[nearest] - c) ** 2).sum(-1) / (2 * sigma**2))
        out[i, nearest] = w / w.sum()
    return out


def test_grid_is_21_by_21_over_the_chroma_range():
    assert NUM_BINS == 441 and CENTRES.min() == pytest.approx(-1) and CENTRES.max() == pytest.approx(1)
    np.testing.assert_allclose(np.unique(np.diff(np.unique(CENTRES[:, 0]))), GRID_STEP, atol=1e-6)


@pytest.mark.parametrize("all_used", [True, False], ids=["all bins", "some bins"])
def test_soft_encoding_matches_the_reference(all_used):
    rng = np.random.default_rng(0)
    chroma = rng.uniform(-0.6, 0.6, (50, 2)).astype(np.float32)
    used = np.ones(NUM_BINS, bool) if all_used else rng.uniform(size=NUM_BINS) < 0.5

    targets = soft_encode(chroma, None if all_used else used.astype(np.float32)).numpy()

    np.testing.assert_allclose(targets, soft_encode_reference(chroma, used), atol=1e-5)
    assert (np.count_nonzero(targets, axis=1) == 5).all() and (targets[:, ~used] == 0).all()


def test_known_colours_round_trip_through_bins():
    chroma = rgb_to_chroma(KNOWN).numpy()
    np.testing.assert_allclose(chroma, KNOWN @ CHROMA, atol=1e-6)
    np.testing.assert_allclose(chroma[0], [0, 0], atol=1e-7)  # gray has no chroma
    # Encoded, then decoded by the mean (T = 1) of the soft target: within a fifth of a bin of the colour.
    decoded = annealed_mean(np.log(soft_encode(chroma).numpy() + 1e-30), temperature=1.0).numpy()
    np.testing.assert_allclose(decoded, chroma, atol=GRID_STEP / 5)
    # A colour on a bin centre comes back exactly (its 4 neighbours are symmetric), at any temperature.
    on_centre = CENTRES[[220, 221, 250]]
    for temperature in (1.0, 0.38):
        decoded = annealed_mean(np.log(soft_encode(on_centre).numpy() + 1e-30), temperature=temperature).numpy()
        np.testing.assert_allclose(decoded, on_centre, atol=1e-5)
    # Back to RGB with the gray input's luma: the known colours themselves.
    luma = KNOWN @ np.array([0.299, 0.587, 0.114], np.float32)
    image = np.zeros((1, 1, 17, 3), np.float32)  # a gray image whose every 4th pixel (the chroma's grid) is known
    image[0, 0, ::4] = luma[:, None]
    rgb = LumaChromaToRGB()(tf.constant(chroma[None, None]), tf.constant(image)).numpy()[0, 0]
    np.testing.assert_allclose(rgb, KNOWN, atol=1e-4)


def test_annealed_mean_matches_the_reference_and_ignores_unused_bins():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4, NUM_BINS)).astype(np.float32)
    used = rng.uniform(size=NUM_BINS) < 0.3
    z = np.exp(logits - logits.max(-1, keepdims=True)) * used
    z /= z.sum(-1, keepdims=True)  # the predicted distribution over used bins
    annealed = np.where(used, z, 0) ** (1 / 0.38)  # f_T(z) = exp(log z / T) / Σ exp(log z / T)
    annealed /= annealed.sum(-1, keepdims=True)

    decoded = annealed_mean(logits, used.astype(np.float32)).numpy()

    np.testing.assert_allclose(decoded, annealed @ CENTRES, atol=1e-5)
    # T → 0 gives the mode, T = 1 the mean
    np.testing.assert_allclose(annealed_mean(logits, used.astype(np.float32), 1e-3).numpy(),
                               CENTRES[np.argmax(np.where(used, logits, -np.inf), -1)], atol=1e-4)


def test_prior_is_smoothed_on_used_bins_and_weights_rebalance_it():
    counts = np.zeros(NUM_BINS)
    counts[220], counts[221], counts[0] = 900, 90, 10  # gray, a faint tint, a rare saturated corner
    prior, used = estimate_prior(counts)
    assert used.sum() == 3 and prior.sum() == pytest.approx(1) and (prior[~used] == 0).all()
    # Reference: a 2-D Gaussian (σ = ½ bin) blur of the normalised counts, kept on the used bins.
    side = 21
    yy, xx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    kernel_1d = np.exp(-np.arange(-2, 3) ** 2 / (2 * 0.5**2))
    kernel_1d /= kernel_1d.sum()
    p = (counts / counts.sum()).reshape(side, side)
    blurred = np.zeros_like(p)
    for (i, j), value in np.ndenumerate(p):
        for di in range(-2, 3):
            for dj in range(-2, 3):
                if 0 <= i + di < side and 0 <= j + dj < side:
                    blurred[i + di, j + dj] += value * kernel_1d[di + 2] * kernel_1d[dj + 2]
    expected = np.where(used, blurred.reshape(-1), 0)
    np.testing.assert_allclose(prior, expected / expected.sum(), rtol=1e-9)

    weights = rebalancing_weights(prior, used)
    q = used.sum()
    raw = 1 / (0.5 * prior[used] + 0.5 / q)
    np.testing.assert_allclose(weights[used], raw / np.sum(prior[used] * raw), rtol=1e-9)
    assert np.sum(prior * weights) == pytest.approx(1)  # expected weight under the prior is 1
    assert weights[0] > weights[221] > weights[220] and (weights[~used] == 0).all()  # rare colours up-weighted


def test_count_bins_assigns_each_pixel_to_its_nearest_bin():
    rgb = np.concatenate([np.zeros((3, 3)), KNOWN[1:2]]).astype(np.float32)  # 3 gray pixels and 1 red
    counts = count_bins([rgb.reshape(1, 2, 2, 3)])
    assert counts.sum() == 4 and counts[220] == 3
    red = np.argmin(((CENTRES - KNOWN[1] @ CHROMA) ** 2).sum(-1))
    assert counts[red] == 1


def test_rebalanced_cross_entropy_matches_the_reference():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (2, 3, 3, NUM_BINS)).astype(np.float32)
    used = rng.uniform(size=NUM_BINS) < 0.5
    targets = soft_encode(rng.uniform(-0.5, 0.5, (2, 3, 3, 2)), used.astype(np.float32)).numpy()
    weights = np.where(used, rng.uniform(0.5, 3, NUM_BINS), 0)

    loss = rebalanced_cross_entropy(logits, targets, weights, used.astype(np.float32)).numpy()

    masked = np.where(used, logits, -np.inf)
    log_p = masked - np.log(np.exp(masked - masked.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - masked.max(-1, keepdims=True)
    log_p = np.where(used, log_p, 0.0)  # unused bins have zero target
    per_pixel = -(targets * log_p).sum(-1) * weights[targets.argmax(-1)]
    np.testing.assert_allclose(loss, per_pixel.mean(axis=(1, 2)), rtol=1e-5)


def test_classify_generator_decodes_to_rgb_keeps_luma_and_saves_its_bins(tmp_path):
    generator = build_generator(output="classify", width=0.125)
    used = np.zeros(NUM_BINS, bool)
    used[[200, 220, 240]] = True
    set_used_bins(generator, used)
    assert generator.get_layer("logits").filters == NUM_BINS
    save_weights(generator, tmp_path / "generator.weights.h5")

    restored = load_generator(tmp_path)  # rebuilt from architecture.json: output "classify", used bins included
    gray = np.repeat(np.random.default_rng(0).uniform(-0.3, 0.3, (1, 65, 65, 1)).astype("float32"), 3, -1)
    rgb = restored(gray, training=False).numpy()

    assert rgb.shape == (1, 17, 17, 3)
    chroma = rgb @ CHROMA  # a mix of the used bins' centres (−0.1, 0.1), (0, 0), (0.1, −0.1) only
    np.testing.assert_allclose(chroma[..., 0], -chroma[..., 1], atol=2e-3)
    assert np.abs(chroma).max() <= 0.1 + 2e-3
    np.testing.assert_allclose(rgb @ np.array([0.299, 0.587, 0.114], np.float32), gray[:, ::4, ::4, 0], atol=2e-3)
    np.testing.assert_array_equal(restored.get_layer("chroma").used.numpy(), used.astype(np.float32))


@pytest.mark.parametrize("gan_weight", [1.0, 0.0])
def test_classify_gan_step_trains_cross_entropy_and_gan_weight_scales_the_adversarial_term(gan_weight):
    """With μ = 0 the generator's update is that of the cross-entropy alone (the adversarial term is off)."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    rgb = rng.uniform(-1, 1, (2, 65, 65, 3)).astype(np.float32)
    small = rgb[:, ::4, ::4]
    gray = lambda x: np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, -1)
    batch = {"gray": gray(rgb), "rgb_small": small, "gray_small": gray(small)}
    used = np.ones(NUM_BINS, np.float32)

    def one_step(seed):
        tf.keras.utils.set_random_seed(seed)
        generator = build_generator(output="classify", width=0.125)
        discriminator = build_discriminator(filters=8)
        before = [w.numpy() for w in discriminator.weights]
        gan = ClassifyColorizationGAN(generator, discriminator, used)
        gan.compile(tf.keras.optimizers.SGD(0.1), tf.keras.optimizers.SGD(0.1), gan_weight=gan_weight)
        logs = gan.train_step({k: tf.constant(v) for k, v in batch.items()})
        moved = max(np.abs(w.numpy() - b).max() for w, b in zip(discriminator.weights, before))
        return generator, logs, moved

    generator, logs, discriminator_moved = one_step(0)
    assert {"g_ce", "g_l1", "g_adv", "d_loss"} <= set(logs) and np.isfinite(float(logs["g_ce"]))
    # μ = 0: the discriminator is not trained (nor run: its losses read 0); μ > 0: it is
    assert (discriminator_moved == 0 and float(logs["d_loss"]) == 0) if gan_weight == 0 else discriminator_moved > 0
    # reference: the same network's SGD step on the cross-entropy alone
    tf.keras.utils.set_random_seed(0)
    reference = build_generator(output="classify", width=0.125)
    build_discriminator(filters=8)  # same draws as in one_step
    views = tf.keras.Model(reference.input, reference.get_layer("logits").output)
    with tf.GradientTape() as tape:
        targets = soft_encode(rgb_to_chroma(small), used)
        loss = tf.reduce_mean(rebalanced_cross_entropy(views(batch["gray"], training=True), targets, used, used))
    gradient = tape.gradient(loss, reference.get_layer("logits").kernel)
    expected = reference.get_layer("logits").kernel.numpy() - 0.1 * gradient.numpy()
    actual = generator.get_layer("logits").kernel.numpy()
    if gan_weight == 0:
        np.testing.assert_allclose(actual, expected, atol=1e-5)
    else:
        assert np.abs(actual - expected).max() > 1e-6


def test_bin_cross_entropies_score_the_generator_and_the_prior_like_the_reference():
    from surrogate_supervision.models.colour_classify import bin_cross_entropies

    rng = np.random.default_rng(3)
    generator = build_generator(output="classify", width=0.125)
    used = rng.uniform(size=NUM_BINS) < 0.6
    set_used_bins(generator, used)
    prior = np.where(used, rng.uniform(0.1, 1, NUM_BINS), 0)
    prior /= prior.sum()
    rgb = rng.uniform(-0.5, 0.5, (3, 65, 65, 3)).astype(np.float32)
    gray = np.repeat((rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, -1)
    small = rgb[:, ::4, ::4]

    scores = bin_cross_entropies(generator, gray, small, prior, chunk=2)

    logits = tf.keras.Model(generator.input, generator.get_layer("logits").output)(gray, training=False).numpy()
    targets = soft_encode_reference((small @ CHROMA).reshape(-1, 2), used)
    masked = np.where(used, logits.reshape(-1, NUM_BINS), -np.inf)
    log_p = masked - masked.max(-1, keepdims=True)
    log_p = np.where(used, log_p - np.log(np.exp(log_p).sum(-1, keepdims=True)), 0)
    assert scores["bin_ce_colorized"] == pytest.approx(-(targets * log_p).sum(-1).mean(), rel=1e-4)
    log_prior = np.where(used, np.log(np.where(used, prior, 1)), 0)
    assert scores["bin_ce_prior"] == pytest.approx(-(targets * log_prior).sum(-1).mean(), rel=1e-4)
    p = np.exp(log_p) * used  # T = 1: the plain mean of the distribution
    mean_decode = np.abs(p @ CENTRES - (small @ CHROMA).reshape(-1, 2)).mean()
    assert scores["chroma_l1_mean_decode"] == pytest.approx(mean_decode, rel=1e-4)


def test_colour_heads_start_at_the_blind_guess():
    """A chroma generator starts by giving back its gray input (zero chroma); a classify generator by answering
    the training prior everywhere; the reference rgb head is left as built."""
    rng = np.random.default_rng(4)
    gray = np.repeat(rng.uniform(-1, 1, (2, 65, 65, 1)).astype(np.float32), 3, -1)
    chroma = build_generator(output="chroma", width=0.125)
    assert start_at_blind_guess(chroma)
    np.testing.assert_allclose(chroma(gray).numpy(), gray[:, ::4, ::4], atol=1e-6)

    used = rng.uniform(size=NUM_BINS) < 0.4
    prior = np.where(used, rng.uniform(0.1, 1, NUM_BINS), 0)
    prior /= prior.sum()
    classify = build_generator(output="classify", width=0.125)
    set_used_bins(classify, used)
    assert start_at_blind_guess(classify, prior)
    logits = tf.keras.Model(classify.input, classify.get_layer("logits").output)(gray)
    predicted = tf.nn.softmax(masked_logits(logits, used.astype(np.float32)), -1).numpy()
    np.testing.assert_allclose(predicted, np.broadcast_to(prior, predicted.shape), atol=1e-6)

    rgb = build_generator(output="rgb", width=0.125)
    before = rgb.get_layer("logits").get_weights()
    assert not start_at_blind_guess(rgb)
    for a, b in zip(before, rgb.get_layer("logits").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_matched_control_bins_the_gray_target_with_the_colour_arms_head_loss_and_rebalancing():
    """`--colour-loss classify --predict gray`: as many bins as the colour arm's head, over the luma of the gray
    target (what the L1 control gives back) instead of chroma, soft-encoded, rebalanced and trained alike."""
    from surrogate_supervision.models.colour_bins import LUMA_SPACE, LUMA_STEP
    from surrogate_supervision.models.colour_classify import colour_bins_from_images

    colour = build_generator(output="classify", width=0.125)
    control = build_generator(output="classify_gray", width=0.125)
    assert control.get_layer("logits").filters == colour.get_layer("logits").filters == NUM_BINS
    assert control.architecture.output == "classify_gray"
    rng = np.random.default_rng(5)
    gray = np.repeat(rng.uniform(-0.9, 0.9, (2, 65, 65, 1)).astype(np.float32), 3, -1)
    out = control(gray, training=False).numpy()
    assert out.shape == (2, 17, 17, 3) and np.ptp(out, axis=-1).max() == 0  # a gray image: no colour at all

    # the target: the gray image's own luma, on NUM_BINS luma bins of step 2 / (NUM_BINS − 1), σ half a bin
    small = gray[:, ::4, ::4]
    values = LUMA_SPACE.of_rgb(small).numpy()
    np.testing.assert_allclose(values[..., 0], small[..., 0], atol=1e-6)
    used = np.ones(NUM_BINS, bool)
    targets = soft_encode(values, used.astype(np.float32), LUMA_SPACE).numpy()
    centres = np.linspace(-1, 1, NUM_BINS)[:, None]
    reference = soft_encode_reference(values.reshape(-1, 1), used, sigma=LUMA_STEP / 2, centres=centres)
    np.testing.assert_allclose(targets.reshape(-1, NUM_BINS), reference, atol=1e-5)

    # rebalancing: the same prior estimate (blurred by half a bin, on the 1-D grid) and weights, E_p̃[w] = 1
    bins = colour_bins_from_images([small], LUMA_SPACE)
    counts = np.bincount(np.rint((small[..., 0].reshape(-1) + 1) / LUMA_STEP).astype(int), minlength=NUM_BINS)
    np.testing.assert_array_equal(bins["counts"], counts)
    assert np.sum(bins["prior"] * bins["weights"]) == pytest.approx(1)
    assert (bins["weights"][~bins["used"]] == 0).all() and (bins["prior"][~bins["used"]] == 0).all()

    # the loss: one SGD step (μ = 0) is the step of the rebalanced cross-entropy of the luma targets
    batch = {"gray": gray, "gray_small": small, "rgb_small": small}  # colorization_dataset(target="gray")
    set_used_bins(control, bins["used"])
    for layer in control.layers:  # the same forward pass twice: no random dropout masks
        if isinstance(layer, tf.keras.layers.Dropout):
            layer.rate = 0.0
    before = control.get_layer("logits").kernel.numpy()
    views = tf.keras.Model(control.input, control.get_layer("logits").output)
    with tf.GradientTape() as tape:
        luma_targets = soft_encode(LUMA_SPACE.of_rgb(small), bins["used"], LUMA_SPACE)
        loss = tf.reduce_mean(rebalanced_cross_entropy(views(gray, training=True), luma_targets, bins["weights"],
                                                       bins["used"]))
    expected = before - 0.1 * tape.gradient(loss, control.get_layer("logits").kernel).numpy()
    control.get_layer("logits").kernel.assign(before)
    gan = ClassifyColorizationGAN(control, build_discriminator(filters=8), bins["weights"])
    gan.compile(tf.keras.optimizers.SGD(0.1), tf.keras.optimizers.SGD(0.1), gan_weight=0.0)
    logs = gan.train_step({k: tf.constant(v) for k, v in batch.items()})
    assert np.isfinite(float(logs["g_ce"]))
    np.testing.assert_allclose(control.get_layer("logits").kernel.numpy(), expected, atol=1e-5)
