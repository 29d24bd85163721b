"""The colour accuracy AuC (Zhang et al.'s raw and rebalanced scores) on colours whose answer is known by hand."""

import numpy as np
import pytest

from surrogate_supervision.pretrain.colour_accuracy import THRESHOLDS, accuracy_auc


def test_thresholds_span_zero_to_fifteen_bins():
    assert len(THRESHOLDS) == 151 and THRESHOLDS[0] == 0 and THRESHOLDS[-1] == pytest.approx(1.5)


def test_exact_colours_score_one_and_a_pixel_counts_the_thresholds_it_is_within():
    real = np.array([[0.5, 0.0], [0.0, -0.3], [0.2, 0.2]])
    assert accuracy_auc(real, real) == {"auc": 1.0, "auc_rebalanced": 1.0}
    # gray against a colour at distance 0.5: within thresholds 0.50 … 1.50, 101 of 151
    assert accuracy_auc(np.zeros((1, 2)), [[0.5, 0.0]])["auc"] == pytest.approx(101 / 151)
    # beyond the last threshold: never within
    assert accuracy_auc(np.zeros((1, 2)), [[1.2, 1.2]])["auc"] == 0.0  # distance 1.70


def test_rebalancing_weights_each_true_colour_bin_equally():
    # 99 gray pixels answered exactly, 1 red pixel (distance 1.5) answered gray
    real = np.concatenate([np.zeros((99, 2)), [[0.9, 1.2]]])  # |(0.9, 1.2)| = 1.5: the last threshold
    fake = np.zeros_like(real)
    scores = accuracy_auc(fake, real)
    assert scores["auc"] == pytest.approx((99 + 1 / 151) / 100)  # raw: the gray pixels dominate
    assert scores["auc_rebalanced"] == pytest.approx((1 + 1 / 151) / 2)  # rebalanced: one bin, one vote
    # the gray answer falls under rebalancing, a colourful one that is right about the rare bin does not
    assert accuracy_auc(real, real)["auc_rebalanced"] == 1.0


def test_shape_is_free_and_only_the_last_axis_is_colour():
    rng = np.random.default_rng(0)
    real, fake = rng.uniform(-0.5, 0.5, (2, 4, 5, 2)), rng.uniform(-0.5, 0.5, (2, 4, 5, 2))
    assert accuracy_auc(fake, real) == accuracy_auc(fake.reshape(-1, 2), real.reshape(-1, 2))
