"""Paired bootstrap intervals (experiments/stats.py) on synthetic per-image counts with a known effect.

Each synthetic image has as many background as foreground pixels; an arm finds a fraction p of the
foreground (the rest is called background) and never calls background foreground. Summed over images, the
foreground Dice is then 2m / (1 + m) and the background Dice 2 / (3 − m), with m the mean of p: the true
difference between two arms follows from their mean rates alone.
"""

from surrogate_supervision.models.metrics import parse_groups, segmentation_metrics

import numpy as np
import pytest

from surrogate_supervision.experiments.report import budget_section, statistics_section
from surrogate_supervision.experiments.stats import (
    BORDERLINE,
    MARGIN,
    NO_DIFFERENCE,
    bootstrap,
    class_counts,
    dice_from_counts,
    pair_statistics,
    verdict,
)

PIXELS = 200
NAMES = ["background", "thing"]


def confusion(rates):
    """(..., 2, 2) confusion counts (rows truth) of images where a fraction `rates` of the foreground is found."""
    found = rates * PIXELS
    matrix = np.zeros(rates.shape + (2, 2))
    matrix[..., 0, 0], matrix[..., 1, 1], matrix[..., 1, 0] = PIXELS, found, PIXELS - found
    return matrix


def true_dice(m, view):
    foreground, background = 2 * m / (1 + m), 2 / (3 - m)
    return foreground if view == "dice_foreground" else (foreground + background) / 2


def two_arms(rng, effect, seeds=5, images=80):
    """Image difficulty shared by both arms, a seed offset shared by the pair (the same labels and data order),
    and noise of each arm's own per seed and per image."""
    difficulty = rng.uniform(0.5, 0.9, images)
    shared = rng.normal(0, 0.02, (seeds, 1))

    def arm(shift):
        own = rng.normal(0, 0.01, (seeds, 1)) + rng.normal(0, 0.03, (seeds, images))
        return confusion(np.clip(difficulty + shift + shared + own, 0, 1))

    return arm(effect), arm(0.0)


def paired(effect, view, replicate, resamples=2000, **kwargs):
    """The bootstrap of a synthetic pair. Coverage and width are properties of the interval, not of how precisely
    the draws pin its bounds, so these tests take few draws and stay quick; the verdict tests take the default."""
    a, b = two_arms(np.random.default_rng(replicate), effect, **kwargs)
    return bootstrap(class_counts(a, view, None), view, baseline=class_counts(b, view, None), resamples=resamples)


@pytest.mark.parametrize("view", ["dice_mean", "dice_foreground"])
@pytest.mark.parametrize("effect", [0.0, 0.05])
def test_interval_covers_the_true_difference(effect, view):
    truth = true_dice(0.7 + effect, view) - true_dice(0.7, view)
    covered = [low <= truth <= high for _, low, high, _ in (paired(effect, view, r) for r in range(20))]
    assert sum(covered) >= 17, covered  # nominal 95 %: 19 of 20


def test_large_effect_excludes_zero_and_no_effect_includes_it():
    for replicate in range(10):
        estimate, low, high, per_seed = paired(0.1, "dice_mean", replicate)
        assert 0 < low <= estimate <= high and (per_seed > 0).all()
        _, low, high, _ = paired(0.0, "dice_mean", replicate)
        assert low < 0 < high


def test_more_images_and_seeds_narrow_the_interval():
    _, low_few, high_few, _ = paired(0.05, "dice_mean", 0, seeds=2, images=20)
    _, low_many, high_many, _ = paired(0.05, "dice_mean", 0, seeds=8, images=200)
    assert high_many - low_many < (high_few - low_few) / 2


def test_counts_give_the_same_dice_as_metrics_json():
    """Dice from summed per-image counts, for every view, equals what models/metrics.py writes."""
    rng = np.random.default_rng(0)
    names = ["background", "a", "b", "c"]
    matrices = rng.integers(0, 50, (7, 4, 4)).astype(np.float64)
    matrices[:, 3, :] = 0  # class c never in the truth: left out of the mean, as metrics.json does
    groups = parse_groups("bg:0;ab:1-2;c:3", names)
    expected = segmentation_metrics(matrices.sum(axis=0).astype(np.int64), names, groups)
    for view in ("dice_mean", "dice_grouped", "dice_foreground"):
        counts = class_counts(matrices, view, [ids for _, ids in groups]).sum(axis=0)
        assert dice_from_counts(counts, view) == pytest.approx(expected[view]), view


def test_estimate_is_the_mean_over_seeds_of_the_whole_test_set_difference():
    a, b = two_arms(np.random.default_rng(3), 0.05, seeds=3, images=30)
    estimate, _, _, per_seed = bootstrap(class_counts(a, "dice_mean", None), "dice_mean",
                                         baseline=class_counts(b, "dice_mean", None))
    def dice(matrices):
        counts = matrices.sum(0).round().astype(np.int64)
        return segmentation_metrics(counts, NAMES, parse_groups(None, NAMES))["dice_mean"]

    by_hand = [dice(a[s]) - dice(b[s]) for s in range(3)]
    assert per_seed == pytest.approx(by_hand, abs=1e-3) and estimate == pytest.approx(np.mean(by_hand), abs=1e-3)


def test_pairs_are_matched_by_seed_and_image_and_unmatched_ones_left_out():
    rng = np.random.default_rng(1)
    a, b = two_arms(rng, 0.1, seeds=3, images=12)
    stems = [f"img{i:02d}" for i in range(12)]
    cells = {("surrogate", 0.5): {s + 1: (stems, a[s]) for s in range(3)},
             # scratch: seeds 1 and 2 only, images listed in another order
             ("scratch", 0.5): {s + 1: (stems[::-1], b[s][::-1]) for s in range(2)}}
    (row,) = [r for r in pair_statistics(cells, [[0], [1]]) if r["view"] == "dice_mean"]
    assert (row["arm"], row["baseline"], row["n_seeds"], row["n_images"]) == ("surrogate", "scratch", 2, 12)
    expected, low, high, _ = bootstrap(class_counts(a[:2], "dice_mean", None), "dice_mean",
                                       baseline=class_counts(b[:2], "dice_mean", None))
    assert row["difference"] == pytest.approx(expected, abs=1e-6) and row["seeds_positive"] == 2
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-6)
    assert row["verdict"] == ("higher" if low > 0 else NO_DIFFERENCE)


def test_a_verdict_does_not_depend_on_the_bootstrap_seed():
    """A lower bound a couple of thousandths above zero stays there for every RNG seed, its spread over seeds well
    inside MARGIN (at 2,000 draws it spread over most of MARGIN); a lower bound on zero, whose side the seed
    decides, is borderline for every seed."""
    pairs = [[class_counts(arm, "dice_mean", None) for arm in two_arms(np.random.default_rng(0), effect)]
             for effect in (0.022, 0.018)]
    clear, edge = np.array([[bootstrap(a, "dice_mean", baseline=b, seed=seed)[1:3] for a, b in pairs]
                            for seed in range(20)]).transpose(1, 0, 2)  # both pairs per seed: one set of draws
    assert MARGIN < clear[:, 0].min() < 5 * MARGIN and np.ptp(clear[:, 0]) < MARGIN / 4
    assert {verdict(low, high) for low, high in clear} == {"higher"}
    assert np.abs(edge[:, 0]).max() < MARGIN
    assert {verdict(low, high) for low, high in edge} == {BORDERLINE}


def test_verdicts_and_the_borderline_margin():
    assert verdict(0.0011, 0.02) == "higher" and verdict(-0.03, -0.0011) == "lower"
    assert verdict(-0.0011, 0.0011) == NO_DIFFERENCE
    # the Kvasir-SEG row: -0.0119 [-0.0236, +0.0001], which 2,000 draws called lower for half the seeds
    assert verdict(-0.0236, 0.0001) == verdict(0.0005, 0.02) == verdict(-0.02, -MARGIN) == BORDERLINE


def test_report_shows_a_borderline_row_with_its_bound():
    a, b = two_arms(np.random.default_rng(0), 0.018)
    stems = [f"img{i:02d}" for i in range(a.shape[1])]
    cells = {("surrogate", 0.1): {s: (stems, a[s]) for s in range(5)},
             ("scratch", 0.1): {s: (stems, b[s]) for s in range(5)}}
    (row,) = [r for r in pair_statistics(cells, [[0], [1]]) if r["view"] == "dice_mean"]
    assert row["verdict"] == BORDERLINE and abs(row["ci_low"]) < MARGIN
    line = next(line for line in statistics_section([row]) if line.startswith("| 10 % |"))
    assert f"| {BORDERLINE}: lower bound {row['ci_low']:+.4f} |" in line


def test_report_counts_cells_whose_best_step_is_in_the_last_tenth_of_their_schedule():
    def row(init, frac, best, stopped=1000, min_steps=1000, status="done"):
        return dict(init=init, frac=frac, seed=1, status=status, steps=1000, best_step=best, stopped_step=stopped,
                    min_steps=min_steps, lr_schedule="poly")

    rows = [row("scratch", 0.1, 1000), row("scratch", 1.0, 950), row("surrogate", 0.1, 901),
            row("surrogate", 1.0, 900),  # step 900 is the last of the first 90 %: not late
            row("control", 0.1, 400, stopped=700, min_steps=0),  # stopped by --patience
            row("control", 1.0, None, stopped=None, status="failed")]
    text = "\n".join(budget_section(rows))
    assert ("**3 of 5 cells had their best validation step in the last 10 % of their schedule** (by arm: scratch 2, "
            "surrogate 1; by label fraction: 10 % 2, 100 % 1)") in text
    assert "may still have been improving" in text and "settled" not in text
    assert "For all 4 of them --min-steps equals the step cap, so --patience could not stop them" in text
    assert "1 of 5 cells were stopped by --patience" in text
