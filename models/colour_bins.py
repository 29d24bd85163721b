"""Colour as classes: chroma quantised into bins, soft-encoded targets, a rebalanced prior, annealed-mean decoding.

Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016 (§2.1–2.2), in this project's chroma space:
ITU-R 601 Cb and Cr of RGB in [-1, 1] (each in [-1, 1]; gray is (0, 0)), the space `LumaChromaToRGB` and
`pretrain/evaluate.py` use. Zhang et al. quantise Lab's a/b with grid size 10 over about ±110; here a
21 × 21 grid of step 0.1 over [-1, 1]² plays that part (the same bins per unit of range). Only bins that occur in
the training images are used (Zhang et al.'s 313 in-gamut bins); the others are masked out.

- soft encoding: a pixel's target is a Gaussian (σ = half a bin, Zhang et al.'s σ = 5 for step 10) over its
  5 nearest used bins;
- class rebalancing: w ∝ ((1 − λ)·p̃ + λ/Q)⁻¹ with p̃ the bins' empirical distribution smoothed by a Gaussian
  (σ = half a bin), Q the number of used bins and λ = ½, normalised so that E_p̃[w] = 1;
- decoding: the annealed mean, the mean of the bin centres under softmax(logits / T) with T = 0.38.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

GRID_STEP = 0.1
GRID = np.round(np.arange(-1.0, 1.0 + GRID_STEP / 2, GRID_STEP), 6).astype(np.float32)  # 21 values
CENTRES = np.stack(np.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2)  # (441, 2): (Cb, Cr)
NUM_BINS = len(CENTRES)
NEIGHBOURS = 5
SIGMA = GRID_STEP / 2
PRIOR_SIGMA_BINS = 0.5
PRIOR_MIX = 0.5
TEMPERATURE = 0.38
MASKED = -1e9  # logit of an unused bin (finite, so 0 · MASKED stays 0)
# ITU-R BT.601 chroma rows (RGB → Cb, Cr); gray pixels (R = G = B) have Cb = Cr = 0.
CHROMA = np.array([[-0.168736, 0.5], [-0.331264, -0.418688], [0.5, -0.081312]], np.float32)


def rgb_to_chroma(rgb):
    """(…, 3) RGB in [-1, 1] → (…, 2) Cb, Cr in [-1, 1]."""
    return tf.tensordot(tf.cast(rgb, tf.float32), tf.constant(CHROMA), axes=[[-1], [0]])


def nearest_bins(chroma):
    """Index of the nearest bin centre for (N, 2) chroma values (NumPy; the grid is regular)."""
    index = np.clip(np.rint((np.asarray(chroma, np.float64) + 1.0) / GRID_STEP), 0, len(GRID) - 1).astype(np.int64)
    return index[:, 0] * len(GRID) + index[:, 1]


def soft_encode(chroma, used=None):
    """(…, 2) chroma → (…, NUM_BINS) targets: a Gaussian of σ = SIGMA over the NEIGHBOURS nearest used bins.

    Bins at exactly the 5th-nearest distance all count (a tie adds a bin, symmetrically)."""
    chroma = tf.cast(chroma, tf.float32)
    d2 = tf.reduce_sum(tf.square(chroma[..., None, :] - tf.constant(CENTRES)), axis=-1)
    if used is not None:
        d2 = tf.where(tf.cast(used, tf.bool), d2, tf.fill(tf.shape(d2), np.float32(1e9)))
    nearest = -tf.math.top_k(-d2, NEIGHBOURS).values  # ascending
    kernel = tf.exp(-(d2 - nearest[..., :1]) / (2 * SIGMA**2))  # shifted by the nearest: never all zero
    kernel = tf.where(d2 <= nearest[..., -1:] * (1 + 1e-6), kernel, 0.0)
    return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)


def masked_logits(logits, used):
    return tf.where(tf.cast(used, tf.bool), tf.cast(logits, tf.float32), MASKED)


def annealed_mean(logits, used=None, temperature=TEMPERATURE):
    """(…, NUM_BINS) logits → (…, 2) chroma: Σ_q softmax(logits / T)_q · centre_q over the used bins."""
    logits = tf.cast(logits, tf.float32) if used is None else masked_logits(logits, used)
    probabilities = tf.nn.softmax(logits / temperature, axis=-1)
    return tf.tensordot(probabilities, tf.constant(CENTRES), axes=[[-1], [0]])


def _smooth_grid(histogram, sigma_bins):
    """Separable Gaussian blur of a (21, 21) histogram (zero outside the grid)."""
    radius = int(np.ceil(3 * sigma_bins))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets**2 / (2 * sigma_bins**2))
    kernel /= kernel.sum()
    blur = lambda row: np.convolve(row, kernel, mode="same")
    return np.apply_along_axis(blur, 1, np.apply_along_axis(blur, 0, histogram))


def estimate_prior(counts, sigma_bins=PRIOR_SIGMA_BINS):
    """Bin counts (NUM_BINS,) of the training pixels → (prior p̃ over the used bins, used mask).

    Used bins are those with at least one pixel; p̃ is the count distribution blurred by a Gaussian of
    `sigma_bins` on the grid, restricted to the used bins and renormalised."""
    counts = np.asarray(counts, np.float64)
    if counts.shape != (NUM_BINS,) or counts.sum() <= 0:
        raise ValueError(f"colour prior: need {NUM_BINS} bin counts with at least one pixel")
    used = counts > 0
    side = len(GRID)
    smoothed = _smooth_grid((counts / counts.sum()).reshape(side, side), sigma_bins).reshape(-1)
    prior = np.where(used, smoothed, 0.0)
    return prior / prior.sum(), used


def rebalancing_weights(prior, used, mix=PRIOR_MIX):
    """Zhang et al.'s weights w_q ∝ ((1 − λ)·p̃_q + λ/Q)⁻¹ on the used bins (0 elsewhere), Σ_q p̃_q·w_q = 1."""
    prior, used = np.asarray(prior, np.float64), np.asarray(used, bool)
    weights = np.where(used, 1.0 / ((1 - mix) * prior + mix / used.sum()), 0.0)
    return weights / np.sum(prior * weights)


def count_bins(rgb_batches):
    """Nearest-bin pixel counts (NUM_BINS,) over an iterable of RGB arrays in [-1, 1]."""
    counts = np.zeros(NUM_BINS, np.int64)
    for rgb in rgb_batches:
        chroma = np.asarray(rgb, np.float32).reshape(-1, 3) @ CHROMA
        counts += np.bincount(nearest_bins(chroma), minlength=NUM_BINS)
    return counts


def rebalanced_cross_entropy(logits, targets, weights, used):
    """Per-image −mean_pixels w[argmax Z] Σ_q Z_q log softmax(logits)_q (Zhang et al., Eq. 2 and 3)."""
    log_p = tf.nn.log_softmax(masked_logits(logits, used), axis=-1)
    pixel_weight = tf.gather(tf.cast(weights, tf.float32), tf.argmax(targets, axis=-1))
    cross_entropy = -tf.reduce_sum(targets * log_p, axis=-1)
    return tf.reduce_mean(pixel_weight * cross_entropy, axis=[1, 2])


@keras.saving.register_keras_serializable(package="surrogate")
class AnnealedMeanChroma(layers.Layer):
    """Bin logits → chroma by the annealed mean; `used` (saved with the weights) masks bins never seen in
    training. All bins are used until `colorize.py` sets the mask from the training images."""

    def __init__(self, temperature=TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def build(self, input_shape):
        self.used = self.add_weight(name="used", shape=(NUM_BINS,), initializer="ones", trainable=False)

    def call(self, logits):
        return annealed_mean(logits, self.used, self.temperature)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
