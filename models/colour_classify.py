"""The colorization GAN with colour as classification (`colorize.py --colour-loss classify`).

Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016: the generator predicts a distribution over
quantised chroma bins and is trained with the class-rebalanced cross-entropy against soft-encoded targets
(`models/colour_bins.py`), instead of an L1/L2 regression that averages uncertain colours to gray. The GAN term
of the recipe stays, on the decoded (annealed-mean) colours the discriminator sees:
    G: μ·adversarial(D(G(g), g)) + CE_w(logits(g), soft_encode(chroma(x)))
The training view shares every layer with the generator, so what is saved and transferred is unchanged.
A `classify_gray` generator, the matched no-colour control, is trained by the same class on luma bins.
"""

import json
from pathlib import Path

from surrogate_supervision.models.colour_bins import (
    CHROMA_SPACE,
    LUMA_SPACE,
    TEMPERATURE,
    annealed_mean,
    count_bins,
    estimate_prior,
    masked_logits,
    rebalanced_cross_entropy,
    rebalancing_weights,
    rgb_to_chroma,
    soft_encode,
)
from surrogate_supervision.models.deeplab import HEAD_LAYER
from surrogate_supervision.models.gan import ColorizationGAN
from surrogate_supervision.models.io import read_json, write_atomic

import keras
import numpy as np
import tensorflow as tf

COLOUR_LOSSES = ("l1", "classify")
# What each binned generator classifies, and its AnnealedMeanChroma layer (holding the used-bins mask).
BIN_SPACES = {"classify": CHROMA_SPACE, "classify_gray": LUMA_SPACE}
DECODER_LAYERS = {"classify": "chroma", "classify_gray": "luma"}


def bin_decoder(generator):
    """The layer of a binned generator that decodes its bins and holds their `used` mask."""
    return generator.get_layer(DECODER_LAYERS[generator.architecture.output])


class ClassifyColorizationGAN(ColorizationGAN):
    """`ColorizationGAN` whose colour term is Zhang et al.'s rebalanced cross-entropy over chroma bins.

    Args:
        generator: a `build_generator(output="classify")` network, or "classify_gray" (the target's luma in bins:
            the batch's `rgb_small` is then the gray image, `colorization_dataset(target="gray")`).
        discriminator: the conditional PatchGAN.
        weights: (NUM_BINS,) rebalancing weights (`rebalancing_weights`), 0 on unused bins.

    The L1 of the decoded colours is still logged (`g_l1`), with the cross-entropy as `g_ce`.
    """

    def __init__(self, generator, discriminator, weights, **kwargs):
        super().__init__(generator, discriminator, **kwargs)
        self.views = keras.Model(generator.input, [generator.get_layer(HEAD_LAYER).output, generator.output],
                                 name="generator_logits_and_colours")
        self.bin_weights = tf.constant(np.asarray(weights, np.float32))
        self.g_ce_tracker = keras.metrics.Mean(name="g_ce")

    @property
    def metrics(self):
        return super().metrics + [self.g_ce_tracker]

    def generate(self, batch):
        """The annealed-mean colorization and the per-image rebalanced cross-entropy of its bin logits."""
        logits, fake = self.views(batch["gray"], training=True)
        used = bin_decoder(self.generator).used
        space = BIN_SPACES[self.generator.architecture.output]
        targets = soft_encode(space.of_rgb(batch["rgb_small"]), used, space)
        cross_entropy = rebalanced_cross_entropy(logits, targets, self.bin_weights, used)
        self.g_ce_tracker.update_state(tf.reduce_mean(cross_entropy))
        return fake, cross_entropy


def colour_bins_from_images(rgb_batches, space=CHROMA_SPACE):
    """Bin statistics of training images in `space`: {counts, prior, used, weights} as NumPy arrays."""
    counts = count_bins(rgb_batches, space)
    prior, used = estimate_prior(counts, space=space)
    return {"counts": counts, "prior": prior, "used": used, "weights": rebalancing_weights(prior, used)}


def save_colour_bins(bins, path, space=CHROMA_SPACE, **extra):
    """Writes the bin statistics (and the grid, for the record) as JSON."""
    centres = "centres_cb_cr" if space is CHROMA_SPACE else f"centres_{space.name}"
    record = {"space": space.name, centres: space.centres.tolist(), "temperature": TEMPERATURE, **extra,
              **{k: np.asarray(v).tolist() for k, v in bins.items()}}
    write_atomic(path, json.dumps(record) + "\n")


def load_colour_bins(path):
    """The bin statistics `save_colour_bins` wrote, or None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    record = read_json(path)  # a damaged file is named
    return {"counts": np.asarray(record["counts"], np.int64), "prior": np.asarray(record["prior"]),
            "used": np.asarray(record["used"], bool), "weights": np.asarray(record["weights"])}


def start_at_blind_guess(generator, prior=None):
    """Sets a colour head so that the untrained generator answers the best guess that ignores the image: zero
    chroma (the gray input itself) for `output="chroma"`, the training prior over bins for `"classify"` and
    `"classify_gray"` (its `prior`). A random head starts far worse than gray (random tints), and at CPU scale the
    run spends its first thousands of steps unlearning them. Other outputs are left as built. Returns whether it
    changed."""
    output = generator.architecture.output
    if output not in ("chroma", "classify", "classify_gray"):
        return False
    head = generator.get_layer(HEAD_LAYER)
    kernel, bias = head.get_weights()
    bias = np.zeros_like(bias) if output == "chroma" else np.log(np.maximum(np.asarray(prior, np.float32), 1e-8))
    head.set_weights([np.zeros_like(kernel), bias.astype(kernel.dtype)])
    return True


def set_used_bins(generator, used):
    """Restricts a binned generator's softmax to the bins that occur in the training images."""
    bin_decoder(generator).used.assign(np.asarray(used, np.float32))


def bin_cross_entropies(generator, gray, rgb_small, prior, chunk=4):
    """Held-out mean cross-entropy (nats per pixel, unweighted) of soft-encoded real colours under the generator's
    bin distribution and under the training prior p̃, the best guess that ignores the image: the classification
    counterpart of comparing the colorization's L1 with the gray input's. Also the chroma L1 of the plain mean
    (T = 1) of the distribution, to tell what the annealed mean's sharpening (T = 0.38) costs in L1."""
    logits_of = keras.Model(generator.input, generator.get_layer(HEAD_LAYER).output)
    used = bin_decoder(generator).used
    log_prior = tf.math.log(tf.maximum(tf.constant(np.asarray(prior, np.float32)), 1e-30))
    model, baseline, mean_l1 = [], [], []
    for i in range(0, len(gray), chunk):
        real = rgb_to_chroma(rgb_small[i:i + chunk])
        targets = soft_encode(real, used)
        logits = logits_of(gray[i:i + chunk], training=False)
        log_p = tf.nn.log_softmax(masked_logits(logits, used), axis=-1)
        model.append(-tf.reduce_sum(targets * log_p, axis=-1))
        baseline.append(-tf.reduce_sum(targets * log_prior, axis=-1))
        mean_l1.append(tf.abs(annealed_mean(logits, used, temperature=1.0) - real))
    mean = lambda parts: float(tf.reduce_mean(tf.concat(parts, 0)))
    return {"bin_ce_colorized": mean(model), "bin_ce_prior": mean(baseline), "chroma_l1_mean_decode": mean(mean_l1)}
