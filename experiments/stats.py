"""How sure the grid is: paired bootstrap confidence intervals from every cell's per-image confusion counts.

A difference between two arms (say surrogate − scratch) at one label fraction is the mean over seeds of the
difference in test mean Dice, the two arms matched by fine-tuning seed (same labeled subset, same data order)
and by test image. The bootstrap redraws seeds and test images together, with replacement, 2,000 times; each
draw recomputes every seed's Dice from the summed counts of the drawn images, exactly as metrics.json computes
Dice over a split, so the interval covers both what another seed (and pretraining run) and what another test
set would change. The 95 % interval is the 2.5th to 97.5th percentile of the redrawn differences.
"""

import csv
import io
from collections import defaultdict
from pathlib import Path

from models.io import read_json, write_atomic

import numpy as np

RESAMPLES = 2000
RNG_SEED = 0
# The views of a cell's scores: all K classes, the grouped view (--group), and foreground against background.
VIEWS = ("dice_mean", "dice_grouped", "dice_foreground")
# (arm, baseline) pairs reported when both arms have finished cells with a common seed.
PAIRS = (("surrogate", "scratch"), ("surrogate", "control"), ("control", "scratch"), ("imagenet", "scratch"),
         ("imagenet+surrogate", "imagenet"), ("imagenet+surrogate", "surrogate"))
STATISTICS_FILE = "statistics.csv"
STAT_COLUMNS = ("view", "frac", "arm", "baseline", "n_seeds", "n_images", "difference", "ci_low", "ci_high",
                "seeds_positive", "verdict")
NO_DIFFERENCE = "no measurable difference"


def class_counts(confusion, view, groups):
    """(..., K, K) confusion counts (rows truth) → (..., C, 3) [true positives, truth, predicted] per class of
    the view: every class, each group of `groups` ([[ids], ...]), or background (id 0) against the rest."""
    confusion = np.asarray(confusion, np.float64)
    k = confusion.shape[-1]
    if view == "dice_grouped":
        groups = [list(ids) for ids in groups]
    elif view == "dice_foreground":
        groups = [[0], list(range(1, k))]
    else:
        groups = [[i] for i in range(k)]
    member = np.zeros((k, len(groups)))
    for g, ids in enumerate(groups):
        member[ids, g] = 1.0
    merged = np.einsum("ki,...kl,lj->...ij", member, confusion, member)
    diagonal = np.einsum("...ii->...i", merged)
    return np.stack([diagonal, merged.sum(axis=-1), merged.sum(axis=-2)], axis=-1)


def dice_from_counts(counts, view):
    """Dice of summed (..., C, 3) counts: the mean over classes present in the truth (0 when none is), or for
    the foreground view the foreground class alone, as models/metrics.py scores a split."""
    tp, truth, predicted = counts[..., 0], counts[..., 1], counts[..., 2]
    total = truth + predicted
    dice = np.divide(2 * tp, total, out=np.zeros_like(tp), where=total > 0)
    if view == "dice_foreground":
        return dice[..., 1]
    present = truth > 0
    return (dice * present).sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def bootstrap(counts, view, baseline=None, resamples=RESAMPLES, seed=RNG_SEED):
    """Mean over seeds of Dice (or of the difference to `baseline`), and its 95 % paired-bootstrap interval.

    Args:
        counts: (seeds, images, C, 3) class counts of one arm; `baseline` the same shape, matched row by row
            (seed) and column by column (image).
    Returns:
        (estimate, low, high, per-seed values on the whole test set).
    """
    counts = np.asarray(counts, np.float64)
    n_seeds, n_images = counts.shape[:2]
    rng = np.random.default_rng(seed)
    image_weights = rng.multinomial(n_images, np.full(n_images, 1 / n_images), size=resamples).astype(np.float64)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples).astype(np.float64)

    def per_seed(c, weights):
        return dice_from_counts(np.einsum("rn,snck->rsck", weights, c), view)

    values = per_seed(counts, np.ones((1, n_images)))[0]
    redrawn = per_seed(counts, image_weights)
    if baseline is not None:
        baseline = np.asarray(baseline, np.float64)
        values = values - per_seed(baseline, np.ones((1, n_images)))[0]
        redrawn = redrawn - per_seed(baseline, image_weights)
    means = (seed_weights * redrawn).sum(axis=1) / n_seeds
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high), values


def verdict(low, high):
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return NO_DIFFERENCE


def load_counts(experiment, rows):
    """{(init, frac): {seed: (stems, confusion (N, K, K))}} and the groups, from each finished cell's
    test_counts.json; cells without one (runs older than the file) are left out."""
    cells, groups = defaultdict(dict), None
    for row in rows:
        if row["status"] != "done":
            continue
        counts = read_json(Path(experiment) / row["run_dir"] / "test_counts.json")
        if counts is None:
            continue
        groups = groups or list(counts["groups"].values())
        stems = list(counts["confusion"])
        cells[row["init"], row["frac"]][row["seed"]] = (stems, np.array([counts["confusion"][s] for s in stems]))
    return cells, groups


def matched(cells, arms, frac, view, groups):
    """Each arm's (seeds, images, C, 3) counts over the seeds all `arms` finished at `frac` and the test images
    they all scored, in one order; None when they share no seed or image."""
    by_arm = [cells.get((arm, frac), {}) for arm in arms]
    seeds = sorted(set.intersection(*(set(b) for b in by_arm)))
    if not seeds:
        return None
    stems = [s for s in by_arm[0][seeds[0]][0] if all(s in set(b[seed][0]) for b in by_arm for seed in seeds)]
    if not stems:
        return None
    out = []
    for b in by_arm:
        stacked = []
        for seed in seeds:
            index = {s: i for i, s in enumerate(b[seed][0])}
            stacked.append(b[seed][1][[index[s] for s in stems]])
        out.append(class_counts(np.stack(stacked), view, groups))
    return out


def arm_intervals(cells, groups, view):
    """{init: [(frac, mean, low, high, n_seeds)]}: each arm's mean Dice over seeds with its 95 % interval."""
    result = defaultdict(list)
    for (init, frac) in sorted(cells, key=lambda key: (key[0], key[1])):
        (counts,) = matched(cells, [init], frac, view, groups) or (None,)
        if counts is not None:
            mean, low, high, _ = bootstrap(counts, view)
            result[init].append((frac, mean, low, high, counts.shape[0]))
    return dict(result)


def pair_statistics(cells, groups):
    """One row per view, fraction and pair of arms present: the paired difference and its interval."""
    rows = []
    fracs = sorted({frac for _, frac in cells})
    for view in VIEWS:
        for frac in fracs:
            for arm, baseline in PAIRS:
                pair = matched(cells, [arm, baseline], frac, view, groups)
                if pair is None:
                    continue
                difference, low, high, per_seed = bootstrap(pair[0], view, baseline=pair[1])
                rows.append(dict(view=view, frac=frac, arm=arm, baseline=baseline, n_seeds=len(per_seed),
                                 n_images=pair[0].shape[1], difference=round(difference, 6), ci_low=round(low, 6),
                                 ci_high=round(high, 6), seeds_positive=int((per_seed > 0).sum()),
                                 verdict=verdict(low, high)))
    return rows


def write_statistics(experiment, rows):
    """EXP/statistics.csv, one row per view, fraction and pair (written atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=STAT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(experiment) / STATISTICS_FILE, buffer.getvalue())
