"""Split-level segmentation scores: confusion matrix, pooled Dice, IoU, class groups — on hand-counted cases."""

from surrogate_supervision.models.metrics import (
    confusion_matrix,
    group_confusion,
    parse_groups,
    scores_from_confusion,
    segmentation_metrics,
)

import numpy as np
import pytest

from surrogate_supervision.datasets import IGNORE_ID as IGNORE

NAMES3 = ["background", "a", "b"]

# Two tiny images, three classes; 255 is ignore. Counted by hand below.
TRUTH_1 = np.array([[0, 0, 1], [1, 2, IGNORE]])
PRED_1 = np.array([[0, 1, 1], [1, 2, 0]])
TRUTH_2 = np.array([[2, 2], [0, IGNORE]])
PRED_2 = np.array([[2, 0], [0, 1]])
# rows = truth, columns = prediction, ignore pixels left out:
#   image 1: (0,0) (0,1) (1,1) (1,1) (2,2)      image 2: (2,2) (2,0) (0,0)
HAND_MATRIX = np.array([[2, 1, 0],
                        [0, 2, 0],
                        [1, 0, 2]])


def split_matrix():
    return confusion_matrix(TRUTH_1, PRED_1, 3) + confusion_matrix(TRUTH_2, PRED_2, 3)


def test_confusion_matrix_counts_by_hand():
    np.testing.assert_array_equal(split_matrix(), HAND_MATRIX)


def test_confusion_matrix_ignores_255_whatever_is_predicted_there():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (20, 30))
    truth[rng.random(truth.shape) < 0.3] = IGNORE
    prediction = rng.integers(0, 4, truth.shape)
    other = prediction.copy()
    other[truth == IGNORE] = (other[truth == IGNORE] + 1) % 4

    matrix = confusion_matrix(truth, prediction, 4)

    assert matrix.sum() == (truth != IGNORE).sum()
    np.testing.assert_array_equal(matrix, confusion_matrix(truth, other, 4))
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(truth[truth != IGNORE], minlength=4))


def test_dice_iou_accuracy_from_summed_counts():
    # class 0: TP 2, FP 1, FN 1 -> Dice 4/6, IoU 2/4
    # class a: TP 2, FP 1, FN 0 -> Dice 4/5, IoU 2/3
    # class b: TP 2, FP 0, FN 1 -> Dice 4/5, IoU 2/3  (per-image Dice would average 1 and 2/3 = 0.833)
    metrics = segmentation_metrics(split_matrix(), NAMES3, parse_groups(None, NAMES3))

    assert metrics["dice_per_class"] == pytest.approx({"background": 4 / 6, "a": 4 / 5, "b": 4 / 5})
    assert metrics["iou_per_class"] == pytest.approx({"background": 2 / 4, "a": 2 / 3, "b": 2 / 3})
    assert metrics["dice_mean"] == pytest.approx((4 / 6 + 4 / 5 + 4 / 5) / 3)
    assert metrics["miou"] == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(6 / 8)
    assert metrics["n_pixels"] == 8


def test_dice_mean_counts_only_classes_present_in_ground_truth():
    names = ["background", "one", "two", "three", "four"]
    truth = np.array([[0, 0, 1, 1]])
    prediction = np.array([[0, 3, 1, 1]])  # class 3 predicted but absent from truth; 2 and 4 absent from both

    dice, iou, dice_mean, miou = scores_from_confusion(confusion_matrix(truth, prediction, 5), names)

    assert dice == pytest.approx({"background": 2 / 3, "one": 1.0, "two": None, "three": 0.0, "four": None})
    assert iou["three"] == 0.0 and iou["two"] is None
    assert dice_mean == pytest.approx((2 / 3 + 1.0) / 2)
    assert miou == pytest.approx((1 / 2 + 1.0) / 2)


def test_parse_groups_ranges_commas_and_spaces():
    names = [f"c{i}" for i in range(9)]
    assert parse_groups("background:0;skin:1-8", names) == [("background", [0]), ("skin", list(range(1, 9)))]
    assert parse_groups("odd:1,3,5,7;even:0,2,4-4,6,8", names) == [("odd", [1, 3, 5, 7]), ("even", [0, 2, 4, 6, 8])]
    assert parse_groups(" bg : 0 ; fg: 1-3, 4 ,5-8 ", names) == [("bg", [0]), ("fg", list(range(1, 9)))]


def test_default_groups_background_against_foreground():
    assert parse_groups(None, ["background", "skin", "hair", "cloth"]) == [
        ("background", [0]), ("foreground", [1, 2, 3])]
    assert parse_groups("", ["background", "polyp"]) == [("background", [0]), ("polyp", [1])]


@pytest.mark.parametrize("spec, message", [
    ("a:0-1;b:1-2", "class id 1 is in both 'a' and 'b'"),
    ("a:0;b:1-3", "class id 3 outside 0..2"),
    ("a:0;b:1", r"classes \[2\] belong to no group"),
    ("a=0;b=1-2", "cannot read 'a=0'"),
    ("a:zero;b:1-2", "cannot read 'a:zero'"),
    ("a:0;b:-2", "group 'a:0;b:-2'"),
    ("a:0;b:1,,2", "group 'a:0;b:1,,2'"),
], ids=["overlap", "out_of_range", "missing", "no_colon", "not_a_number", "open_range", "empty_item"])
def test_parse_groups_errors_name_the_parameter(spec, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_groups(spec, NAMES3)
    assert error.value.param == "group" and str(error.value).startswith(f"group {spec!r}: ")


def test_grouped_dice_by_hand():
    groups = parse_groups("bg:0;fg:1-2", NAMES3)
    # merged matrix: [[2, 1], [1, 4]] -> bg: TP 2, FP 1, FN 1 -> 4/6; fg: TP 4, FP 1, FN 1 -> 8/10
    np.testing.assert_array_equal(group_confusion(split_matrix(), groups), [[2, 1], [1, 4]])

    metrics = segmentation_metrics(split_matrix(), NAMES3, groups)

    assert metrics["dice_per_group"] == pytest.approx({"bg": 4 / 6, "fg": 8 / 10})
    assert metrics["dice_grouped"] == pytest.approx((4 / 6 + 8 / 10) / 2)
    assert metrics["groups"] == {"bg": [0], "fg": [1, 2]}


def test_default_grouping_is_background_versus_foreground():
    metrics = segmentation_metrics(split_matrix(), NAMES3, parse_groups(None, NAMES3))
    assert metrics["dice_per_group"] == pytest.approx({"background": 4 / 6, "foreground": 8 / 10})


def test_foreground_dice_merges_every_class_but_background_whatever_the_grouping():
    # merged foreground: TP 4 (a→a twice, b→b twice; a→b would count too), FP 1 (bg→a), FN 1 (b→bg) -> 8/10,
    # while the grouped view here keeps b apart and averages in the background.
    metrics = segmentation_metrics(split_matrix(), NAMES3, parse_groups("bg:0;a:1;b:2", NAMES3))
    assert metrics["dice_foreground"] == pytest.approx(8 / 10)
    assert metrics["dice_grouped"] == pytest.approx((4 / 6 + 4 / 5 + 4 / 5) / 3)
    confused = np.array([[5, 0, 0], [0, 0, 3], [0, 0, 0]])  # every a predicted as b: still foreground
    assert segmentation_metrics(confused, NAMES3, parse_groups(None, NAMES3))["dice_foreground"] == 1.0
