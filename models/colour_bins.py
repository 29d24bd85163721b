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

The same machinery runs on luma (`LUMA_SPACE`): as many bins, evenly over [-1, 1], soft-encoded, rebalanced and
decoded alike. That is the matched no-colour control (`colorize.py --colour-loss classify --predict gray`): its
target is the gray image instead of the colours, with the colour arm's loss, rebalancing and head size.
"""

import dataclasses

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


@dataclasses.dataclass(frozen=True, eq=False)
class BinSpace:
    """What the bins quantise: `rows` map RGB in [-1, 1] linearly into the space, `centres` (NUM_BINS, dims) lie on
    a regular grid of `shape` and `step` from -1 in every dimension (which `nearest` and the prior's smoothing
    read)."""

    name: str
    rows: np.ndarray
    centres: np.ndarray
    shape: tuple
    step: float

    def of_rgb(self, rgb):
        """(…, 3) RGB in [-1, 1] → (…, dims) values in the space."""
        return tf.tensordot(tf.cast(rgb, tf.float32), tf.constant(self.rows), axes=[[-1], [0]])

    def nearest(self, values):
        """Index of the nearest bin centre for (N, dims) values (NumPy; the grid is regular)."""
        index = np.rint((np.asarray(values, np.float64).reshape(-1, len(self.shape)) + 1.0) / self.step)
        index = np.clip(index, 0, np.array(self.shape) - 1).astype(np.int64)
        return np.ravel_multi_index(tuple(index.T), self.shape)


LUMA_STEP = 2.0 / (NUM_BINS - 1)
CHROMA_SPACE = BinSpace("chroma", CHROMA, CENTRES, (len(GRID), len(GRID)), GRID_STEP)
LUMA_SPACE = BinSpace("luma", np.array([[0.299], [0.587], [0.114]], np.float32),  # ITU-R BT.601 luma
                      np.linspace(-1.0, 1.0, NUM_BINS, dtype=np.float32)[:, None], (NUM_BINS,), LUMA_STEP)
SPACES = {space.name: space for space in (CHROMA_SPACE, LUMA_SPACE)}


def rgb_to_chroma(rgb):
    """(…, 3) RGB in [-1, 1] → (…, 2) Cb, Cr in [-1, 1]."""
    return CHROMA_SPACE.of_rgb(rgb)


def nearest_bins(chroma):
    """Index of the nearest bin centre for (N, 2) chroma values (NumPy; the grid is regular)."""
    return CHROMA_SPACE.nearest(chroma)


def soft_encode(chroma, used=None, space=CHROMA_SPACE):
    """(…, dims) values → (…, NUM_BINS) targets: a Gaussian of σ = half a bin (SIGMA for chroma) over the
    NEIGHBOURS nearest used bins of `space`.

    Bins at exactly the 5th-nearest distance all count (a tie adds a bin, symmetrically)."""
    chroma = tf.cast(chroma, tf.float32)
    d2 = tf.reduce_sum(tf.square(chroma[..., None, :] - tf.constant(space.centres)), axis=-1)
    if used is not None:
        d2 = tf.where(tf.cast(used, tf.bool), d2, tf.fill(tf.shape(d2), np.float32(1e9)))
    nearest = -tf.math.top_k(-d2, NEIGHBOURS).values  # ascending
    sigma = space.step / 2
    kernel = tf.exp(-(d2 - nearest[..., :1]) / (2 * sigma**2))  # shifted by the nearest: never all zero
    kernel = tf.where(d2 <= nearest[..., -1:] * (1 + 1e-6), kernel, 0.0)
    return kernel / tf.reduce_sum(kernel, axis=-1, keepdims=True)


def masked_logits(logits, used):
    return tf.where(tf.cast(used, tf.bool), tf.cast(logits, tf.float32), MASKED)


def annealed_mean(logits, used=None, temperature=TEMPERATURE, space=CHROMA_SPACE):
    """(…, NUM_BINS) logits → (…, dims) values: Σ_q softmax(logits / T)_q · centre_q over the used bins."""
    logits = tf.cast(logits, tf.float32) if used is None else masked_logits(logits, used)
    probabilities = tf.nn.softmax(logits / temperature, axis=-1)
    return tf.tensordot(probabilities, tf.constant(space.centres), axes=[[-1], [0]])


def _smooth_grid(histogram, sigma_bins):
    """Separable Gaussian blur of a histogram on its grid, (21, 21) or (NUM_BINS,) (zero outside the grid)."""
    radius = int(np.ceil(3 * sigma_bins))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-offsets**2 / (2 * sigma_bins**2))
    kernel /= kernel.sum()
    blur = lambda row: np.convolve(row, kernel, mode="same")
    for axis in range(histogram.ndim):
        histogram = np.apply_along_axis(blur, axis, histogram)
    return histogram


def estimate_prior(counts, sigma_bins=PRIOR_SIGMA_BINS, space=CHROMA_SPACE):
    """Bin counts (NUM_BINS,) of the training pixels → (prior p̃ over the used bins, used mask).

    Used bins are those with at least one pixel; p̃ is the count distribution blurred by a Gaussian of
    `sigma_bins` on the grid of `space`, restricted to the used bins and renormalised."""
    counts = np.asarray(counts, np.float64)
    if counts.shape != (NUM_BINS,) or counts.sum() <= 0:
        raise ValueError(f"colour prior: need {NUM_BINS} bin counts with at least one pixel")
    used = counts > 0
    smoothed = _smooth_grid((counts / counts.sum()).reshape(space.shape), sigma_bins).reshape(-1)
    prior = np.where(used, smoothed, 0.0)
    return prior / prior.sum(), used


def rebalancing_weights(prior, used, mix=PRIOR_MIX):
    """Zhang et al.'s weights w_q ∝ ((1 − λ)·p̃_q + λ/Q)⁻¹ on the used bins (0 elsewhere), Σ_q p̃_q·w_q = 1."""
    prior, used = np.asarray(prior, np.float64), np.asarray(used, bool)
    weights = np.where(used, 1.0 / ((1 - mix) * prior + mix / used.sum()), 0.0)
    return weights / np.sum(prior * weights)


def count_bins(rgb_batches, space=CHROMA_SPACE):
    """Nearest-bin pixel counts (NUM_BINS,) in `space` over an iterable of RGB arrays in [-1, 1]."""
    counts = np.zeros(NUM_BINS, np.int64)
    for rgb in rgb_batches:
        values = np.asarray(rgb, np.float32).reshape(-1, 3) @ space.rows
        counts += np.bincount(space.nearest(values), minlength=NUM_BINS)
    return counts


def rebalanced_cross_entropy(logits, targets, weights, used):
    """Per-image −mean_pixels w[argmax Z] Σ_q Z_q log softmax(logits)_q (Zhang et al., Eq. 2 and 3)."""
    log_p = tf.nn.log_softmax(masked_logits(logits, used), axis=-1)
    pixel_weight = tf.gather(tf.cast(weights, tf.float32), tf.argmax(targets, axis=-1))
    cross_entropy = -tf.reduce_sum(targets * log_p, axis=-1)
    return tf.reduce_mean(pixel_weight * cross_entropy, axis=[1, 2])


@keras.saving.register_keras_serializable(package="surrogate")
class AnnealedMeanChroma(layers.Layer):
    """Bin logits → chroma (or, with space="luma", luma) by the annealed mean; `used` (saved with the weights)
    masks bins never seen in training. All bins are used until `colorize.py` sets the mask from the training
    images."""

    def __init__(self, temperature=TEMPERATURE, space="chroma", **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.space = SPACES[space]

    def build(self, input_shape):
        self.used = self.add_weight(name="used", shape=(NUM_BINS,), initializer="ones", trainable=False)

    def call(self, logits):
        return annealed_mean(logits, self.used, self.temperature, self.space)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.space.centres.shape[1],)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "space": self.space.name}
