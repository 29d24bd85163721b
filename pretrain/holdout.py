"""Held-out colorization: the images a run never trains on, and how well a generator colorizes them.

Shared by pretrain/colorize.py (samples, the final score) and pretrain/evaluate.py (re-scoring a finished run).
"""

from pathlib import Path

from surrogate_supervision.models.colour_bins import rgb_to_chroma
from surrogate_supervision.models.colour_classify import bin_cross_entropies, load_colour_bins
from surrogate_supervision.models.io import read_json, write_json
from surrogate_supervision.models.rundir import BINS_FILE, CONFIG_FILE, PRETRAIN_METRICS_FILE
from surrogate_supervision.models.runner.runs import RunError
from surrogate_supervision.models.transfer import load_generator

import keras
import numpy as np
import tensorflow as tf

from surrogate_supervision import datasets
from surrogate_supervision.pretrain.colour_accuracy import accuracy_auc


def split_holdout(sources, n, seed):
    """A seeded handful of images never trained on, for samples and the colorization score."""
    order = np.random.default_rng(seed).permutation(len(sources))
    n = min(n, len(sources) // 10)
    held = {int(i) for i in order[:n]}
    return [s for i, s in enumerate(sources) if i not in held], [sources[i] for i in sorted(held)]


def holdout_batch(sources, crop, seed):
    """Fixed held-out crops (no flips) for sample grids and the final score."""
    if not sources:
        return None
    ds = datasets.colorization_dataset(sources, crop=crop, batch=len(sources), seed=seed, flip=False)
    return next(iter(ds))


def colorization_scores(generator, batch, chunk=4, bins=None):
    """RGB and chroma L1 of the colorization (moving-average and batch BatchNorm statistics) and of the gray
    input, to the real image, and the colour accuracy AuC, raw and rebalanced (`pretrain.colour_accuracy`); for a
    classify generator with its `bins`, the bin cross-entropies too."""
    real, gray = batch["rgb_small"], batch["gray_small"]
    real_chroma, gray_chroma = rgb_to_chroma(real), rgb_to_chroma(gray)
    l1 = lambda a, b: float(tf.reduce_mean(tf.abs(a - b)))
    scores = {"l1_gray": l1(gray, real), "chroma_l1_gray": l1(gray_chroma, real_chroma),
              "n_images": int(gray.shape[0])}
    scores.update({f"{k}_gray": v for k, v in accuracy_auc(gray_chroma, real_chroma).items()})
    for suffix, fake in (("", colorize(generator, batch["gray"], chunk, batch_stats=False)),
                         ("_batch_stats", colorize(generator, batch["gray"], chunk, batch_stats=True))):
        fake_chroma = rgb_to_chroma(fake)
        scores[f"l1_colorized{suffix}"] = l1(fake, real)
        scores[f"chroma_l1_colorized{suffix}"] = l1(fake_chroma, real_chroma)
        scores.update({f"{k}_colorized{suffix}": v for k, v in accuracy_auc(fake_chroma, real_chroma).items()})
    if bins is not None and generator.architecture.output == "classify":
        scores.update(bin_cross_entropies(generator, batch["gray"], real, bins["prior"], chunk))
    return scores


def colorize(generator, gray, chunk, batch_stats):
    """The generator's output in chunks; `batch_stats` normalises with each chunk's own statistics, with
    dropout off and the moving averages (which training mode would update) restored afterwards."""
    if not batch_stats:
        return tf.concat([generator(gray[i:i + chunk], training=False) for i in range(0, len(gray), chunk)], 0)
    saved = [v.numpy() for v in generator.non_trainable_variables]
    dropouts = [layer for layer in generator.layers if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    for layer in dropouts:
        layer.rate = 0.0
    try:
        return tf.concat([generator(gray[i:i + chunk], training=True) for i in range(0, len(gray), chunk)], 0)
    finally:
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate
        for variable, value in zip(generator.non_trainable_variables, saved):
            variable.assign(value)


def run_holdout(config):
    """The held-out sources of a run, from its saved configuration."""
    data = config.get("data") or [str(datasets.ensure_synthetic())]
    sources = datasets.list_unlabeled(data, video_every=config["video_every"], seed=config["split_seed"])
    return split_holdout(sources, config["holdout"], config["seed"])[1]


def colorization_config(run_dir):
    """RUN/config.json of a colorization run; a one-line RunError naming the folder when it has none."""
    config = read_json(Path(run_dir) / CONFIG_FILE)
    if config is None:
        raise RunError(f"{run_dir}: no {CONFIG_FILE} (not a colorization run directory)")
    return config


def evaluate_run(run_dir, generator=None):
    """Scores a finished colorization run on its held-out images (its generator, unless one is given: the run's,
    already loaded); updates RUN/pretrain_metrics.json."""
    run_dir = Path(run_dir)
    config = colorization_config(run_dir)
    batch = holdout_batch(run_holdout(config), config["crop"], config["seed"])
    if batch is None:
        raise RunError(f"{run_dir}: no held-out images (--holdout 0 or a tiny dataset)")
    generator = load_generator(run_dir) if generator is None else generator
    scores = colorization_scores(generator, batch, bins=load_colour_bins(run_dir / BINS_FILE))
    summary = {**read_json(run_dir / PRETRAIN_METRICS_FILE, {}), **scores}
    write_json(run_dir / PRETRAIN_METRICS_FILE, summary)
    return summary


def describe(scores):
    text = (f"held-out L1 to the real image: colorized {scores['l1_colorized']:.4f} vs gray {scores['l1_gray']:.4f}; "
            f"chroma L1: colorized {scores['chroma_l1_colorized']:.4f} vs gray {scores['chroma_l1_gray']:.4f} "
            f"({scores['n_images']} images)")
    if "auc_rebalanced_gray" in scores:  # runs scored before it existed lack it
        text += (f"; colour accuracy AuC raw / rebalanced: colorized {scores['auc_colorized']:.3f} / "
                 f"{scores['auc_rebalanced_colorized']:.3f} vs gray {scores['auc_gray']:.3f} / "
                 f"{scores['auc_rebalanced_gray']:.3f}")
    if "bin_ce_colorized" in scores:
        text += (f"; colour-bin cross-entropy: generator {scores['bin_ce_colorized']:.3f} vs training prior "
                 f"{scores['bin_ce_prior']:.3f} nats/pixel, chroma L1 of its plain mean (T = 1) "
                 f"{scores['chroma_l1_mean_decode']:.4f}")
    if "l1_colorized_batch_stats" in scores:
        text += (f"; with batch statistics: {scores['l1_colorized_batch_stats']:.4f}, "
                 f"chroma {scores['chroma_l1_colorized_batch_stats']:.4f}")
    return text
