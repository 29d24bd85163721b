"""How sure the grid is: paired bootstrap confidence intervals from every cell's per-image confusion counts.

A difference between two arms (say surrogate − scratch) at one label fraction is the mean over seeds of the
difference in test mean Dice, the two arms matched by fine-tuning seed (same labeled subset, same data order)
and by test image. The bootstrap redraws seeds and test images together, with replacement; each draw recomputes
every seed's Dice from the summed counts of the drawn images, exactly as metrics.json computes Dice over a split,
so the interval covers both what another seed (and pretraining run) and what another test set would change. The
95 % interval is the 2.5th to 97.5th percentile of the redrawn differences.

A verdict (higher, lower, no measurable difference) is the sign of a bound, and a bound is itself estimated from
a finite number of draws: with too few, a bound near zero lands on either side of it depending on the RNG seed,
and the verdict is a coin toss. RESAMPLES is sized so that a bound's spread over RNG seeds is a fraction of MARGIN
in every row of the committed grids, and no verdict of theirs changes with the seed
(experiments/results/bootstrap_draws.md). A bound within MARGIN of zero is too close to call whatever the draws:
such a row is `borderline`, reported with its bound, instead of carrying a verdict that another seed could reverse.
"""

import csv
import functools
import io
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from surrogate_supervision.models.io import read_json, write_atomic
from surrogate_supervision.models.rundir import TEST_COUNTS_FILE

import numpy as np

from surrogate_supervision.experiments.records import Count, axis_order, axis_point

# Draws for a paired difference, whose verdict hangs on its bounds' sign (see above). An arm's band carries no
# verdict, so it takes a tenth as many, which keeps a report quick: each band is drawn twice (plot and table).
RESAMPLES = 200_000
BAND_RESAMPLES = 20_000
RNG_SEED = 0
CHUNK = 10_000  # draws per matrix product
# A bound this close to zero is reported as borderline rather than given a sign.
MARGIN = 0.001
# The views of a cell's scores: all K classes, the grouped view (--group), and foreground against background.
VIEWS = ("dice_mean", "dice_grouped", "dice_foreground")


class Pair(NamedTuple):
    """Two arms compared: the difference `arm` − `baseline`."""
    arm: str
    baseline: str


class Estimate(NamedTuple):
    """What bootstrap() returns: the mean over seeds of Dice (or of a difference), its 95 % interval [low, high],
    and the per-seed values on the whole test set."""
    value: float
    low: float
    high: float
    per_seed: np.ndarray


class ArmMean(NamedTuple):
    """One arm's mean Dice over `n_seeds` seeds at one axis `point` (its fraction, or its label Count), with its
    95 % interval [low, high] (both None where there is none)."""
    point: float
    mean: float
    low: float | None
    high: float | None
    n_seeds: int


# Pairs reported when both arms have finished cells with a common seed. positive − scratch says whether the grid
# could see an init effect at all (the positive arm starts from scratch's all-labels cell).
PAIRS = (Pair("surrogate", "scratch"), Pair("surrogate", "control"), Pair("control", "scratch"),
         Pair("imagenet", "scratch"), Pair("imagenet+surrogate", "imagenet"), Pair("imagenet+surrogate", "surrogate"),
         Pair("positive", "scratch"))
# Do labels bind at a point: scratch on all labels − scratch at that point. Where more labels buy nothing, no
# initialisation can buy anything either, and a null result for the pretexts says nothing about them.
ALL_LABELS = 1.0
BINDING = Pair("scratch_all_labels", "scratch")
STATISTICS_FILE = "statistics.csv"
STAT_COLUMNS = ("view", "frac", "arm", "baseline", "n_seeds", "n_images", "difference", "ci_low", "ci_high",
                "seeds_positive", "verdict")
# A grid over label counts (--labels) adds the count; a fraction grid's table keeps the columns it always had.
COUNT_STAT_COLUMNS = STAT_COLUMNS[:2] + ("labels",) + STAT_COLUMNS[2:]
NO_DIFFERENCE = "no measurable difference"
BORDERLINE = "borderline"


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
        an Estimate: the value, its interval's low and high bounds, and the per-seed values on the whole test set.
    """
    counts = np.asarray(counts, np.float64)
    n_seeds, n_images = counts.shape[:2]
    arms = [counts] if baseline is None else [counts, np.asarray(baseline, np.float64)]
    # (images, 3·seeds·C): a draw's summed counts per seed are then one matrix product, each of the 3 counts a
    # contiguous block
    flat = [arm.transpose(1, 3, 0, 2).reshape(n_images, -1) for arm in arms]

    def per_seed(weights, dtype=np.float64):
        """(draws, images) image weights → (draws, seeds) Dice, or difference to the baseline."""
        shape = (len(weights), 3, n_seeds, counts.shape[2])
        dice = [dice_from_counts(np.moveaxis((weights @ f.astype(dtype)).reshape(shape), 1, -1), view) for f in flat]
        return dice[0] - dice[1] if baseline is not None else dice[0]

    values = per_seed(np.ones((1, n_images)))[0]
    # The draws in float32, which halves the products' memory: its rounding (about 1e-7 of a Dice) is far below the
    # bounds' spread over RNG seeds.
    means = [(seed_weights * per_seed(image_weights, np.float32)).sum(axis=1) / n_seeds
             for image_weights, seed_weights in draws(n_images, n_seeds, resamples, seed)]
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return Estimate(float(values.mean()), float(low), float(high), values)


@functools.lru_cache(maxsize=2)
def draws(n_images, n_seeds, resamples, seed):
    """The bootstrap's draws in chunks of (image weights (size, n_images), seed weights (size, n_seeds)), each
    entry how often that image or seed is drawn. Chunks keep the products small however many draws; and since
    every row of a grid redraws the same images and seeds from the same RNG seed, the draws are made once."""
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        chunks.append((redraw(rng, n_images, size), redraw(rng, n_seeds, size)))
    return tuple(chunks)


def redraw(rng, n, size):
    """(size, n): how often each of n items is drawn in each of `size` draws of n with replacement."""
    drawn = rng.integers(0, n, (size, n)) + n * np.arange(size)[:, None]
    weights = np.bincount(drawn.ravel(), minlength=size * n).reshape(size, n).astype(np.float32)
    weights.flags.writeable = False  # shared between calls
    return weights


def verdict(low, high):
    """higher or lower when the interval excludes zero, no measurable difference when it includes it, and
    borderline when a bound lies within MARGIN of zero."""
    if min(abs(low), abs(high)) <= MARGIN:
        return BORDERLINE
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return NO_DIFFERENCE


def load_counts(experiment, rows):
    """{(init, point): {seed: (stems, confusion (N, K, K))}} and the groups, from each finished cell's
    test_counts.json, `point` its fraction or label Count (records.axis_point); cells without one (runs older than
    the file) are left out."""
    cells, groups = defaultdict(dict), None
    for row in rows:
        if row["status"] != "done":
            continue
        counts = read_json(Path(experiment) / row["run_dir"] / TEST_COUNTS_FILE)
        if counts is None:
            continue
        groups = groups or list(counts["groups"].values())
        stems = list(counts["confusion"])
        cells[row["init"], axis_point(row)][row["seed"]] = (stems, np.array([counts["confusion"][s] for s in stems]))
    return cells, groups


def matched(cells, arms, frac, view, groups):
    """Each arm's (seeds, images, C, 3) counts over the seeds all `arms` finished at `frac` and the test images
    they all scored, in one order; None when they share no seed or image."""
    return matched_keys(cells, [(arm, frac) for arm in arms], view, groups)


def matched_keys(cells, keys, view, groups):
    """matched() for cells at any (init, point) `keys`, say scratch at all labels and scratch at 8: each key's
    (seeds, images, C, 3) counts over their common seeds and test images, or None."""
    by_key = [cells.get(key, {}) for key in keys]
    seeds = sorted(set.intersection(*(set(b) for b in by_key)))
    if not seeds:
        return None
    first_stems, _ = by_key[0][seeds[0]]
    scored = [set(stems) for b in by_key for stems, _ in (b[seed] for seed in seeds)]
    common = [s for s in first_stems if all(s in stems for stems in scored)]
    if not common:
        return None
    out = []
    for b in by_key:
        stacked = []
        for seed in seeds:
            stems, confusion = b[seed]
            index = {s: i for i, s in enumerate(stems)}
            stacked.append(confusion[[index[s] for s in common]])
        out.append(class_counts(np.stack(stacked), view, groups))
    return out


def arm_intervals(cells, groups, view):
    """{init: [ArmMean]}: each arm's mean Dice over seeds with its 95 % interval, by axis point."""
    result = defaultdict(list)
    for (init, frac) in sorted(cells, key=lambda key: (key[0], axis_order(key[1]))):
        (counts,) = matched(cells, [init], frac, view, groups) or (None,)
        if counts is not None:
            estimate = bootstrap(counts, view, resamples=BAND_RESAMPLES)
            result[init].append(ArmMean(frac, estimate.value, estimate.low, estimate.high, counts.shape[0]))
    return dict(result)


def pair_statistics(cells, groups, views=VIEWS):
    """One row per view of `views`, fraction (or label count) and pair of arms present: the paired difference and
    its interval; and, at every point below all labels, whether labels bind there (BINDING: scratch on all labels −
    scratch at the point, matched by seed and test image)."""
    rows = []
    points = sorted({point for _, point in cells}, key=axis_order)
    for view in views:
        for point in points:
            for pair in PAIRS:
                rows += difference_row(cells, groups, view, point, pair, [(arm, point) for arm in pair])
            if point != ALL_LABELS:
                rows += difference_row(cells, groups, view, point, BINDING,
                                       [(BINDING.baseline, ALL_LABELS), (BINDING.baseline, point)])
    return rows


def difference_row(cells, groups, view, point, pair, keys):
    """[the statistics row of `pair` at `point`: the difference between the cells at `keys` (arm's, baseline's)],
    or [] when they share no seed or test image."""
    counts = matched_keys(cells, keys, view, groups)
    if counts is None:
        return []
    arm_counts, baseline_counts = counts
    ci = bootstrap(arm_counts, view, baseline=baseline_counts)
    count = int(point) if isinstance(point, Count) else None
    return [dict(view=view, frac=point if count is None else None, labels=count, arm=pair.arm,
                 baseline=pair.baseline, n_seeds=len(ci.per_seed), n_images=arm_counts.shape[1],
                 difference=round(ci.value, 6), ci_low=round(ci.low, 6), ci_high=round(ci.high, 6),
                 seeds_positive=int((ci.per_seed > 0).sum()), verdict=verdict(ci.low, ci.high))]


def write_statistics(experiment, rows):
    """EXP/statistics.csv, one row per view, fraction (or count) and pair (written atomically)."""
    counts = any(row.get("labels") is not None for row in rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COUNT_STAT_COLUMNS if counts else STAT_COLUMNS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(experiment) / STATISTICS_FILE, buffer.getvalue())
