"""Segmentation scores over a whole split: Dice per class from summed counts, grouped Dice, IoU, accuracy.

Dice per class is 2·ΣTP / (2·ΣTP + ΣFP + ΣFN) over every pixel of the split (not a mean of per-image
Dice), the mean is over classes present in the split's ground truth, and the ignore id never counts.
Foreground Dice merges every class but background (id 0) into one: the grouped mean Dice averages in the
background's own Dice, which is high and nearly constant, so it hides differences the foreground shows.
"""

import re

import numpy as np

from surrogate_supervision.datasets import IGNORE_ID, ToolkitError


def confusion_matrix(truth, prediction, num_classes):
    """(num_classes × num_classes) counts, rows = truth, columns = prediction; ignore pixels excluded."""
    truth = np.asarray(truth).ravel()
    prediction = np.asarray(prediction).ravel()
    keep = truth != IGNORE_ID
    index = truth[keep].astype(np.int64) * num_classes + np.clip(prediction[keep], 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def parse_groups(spec, class_names):
    """'background:0;skin:1-8' → [(name, [ids])]; every class must fall in exactly one group (else a
    ToolkitError with param "group" says which part of `spec` is at fault)."""
    num_classes = len(class_names)
    if not spec:
        if num_classes <= 2:
            return [(class_names[i], [i]) for i in range(num_classes)]
        return [(class_names[0], [0]), ("foreground", list(range(1, num_classes)))]
    groups, seen = [], {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        match = re.fullmatch(r"([^:]+):([\d,\s-]+)", part)
        if not match:
            raise ToolkitError(f"{spec!r}: cannot read {part!r}; expected e.g. 'background:0;skin:1-8'", param="group")
        ids = []
        for item in match.group(2).split(","):
            low, _, high = item.strip().partition("-")
            if not low.strip().isdigit() or not (high or low).strip().isdigit():
                raise ToolkitError(f"{spec!r}: cannot read {item.strip()!r} in {part!r}; expected ids like 1,3-5",
                                  param="group")
            ids.extend(range(int(low), int(high or low) + 1))
        for i in ids:
            if not 0 <= i < num_classes:
                raise ToolkitError(f"{spec!r}: class id {i} outside 0..{num_classes - 1}", param="group")
            if i in seen:
                raise ToolkitError(f"{spec!r}: class id {i} is in both {seen[i]!r} and {match.group(1)!r}",
                                  param="group")
            seen[i] = match.group(1).strip()
        groups.append((match.group(1).strip(), ids))
    missing = [i for i in range(num_classes) if i not in seen]
    if missing:
        raise ToolkitError(f"{spec!r}: classes {missing} belong to no group", param="group")
    return groups


def group_confusion(matrix, groups):
    """Sums a class confusion matrix into a group confusion matrix."""
    lookup = np.zeros(len(matrix), np.int64)
    for g, (_, ids) in enumerate(groups):
        lookup[ids] = g
    merged = np.zeros((len(groups), len(groups)), matrix.dtype)
    np.add.at(merged, (lookup[:, None], lookup[None, :]), matrix)
    return merged


def foreground_dice(matrix):
    """Dice of every class but background (id 0) merged into one class, background pixels excluded."""
    merged = group_confusion(matrix, [("background", [0]), ("foreground", list(range(1, len(matrix))))])
    return scores_from_confusion(merged, ["background", "foreground"])[0]["foreground"] or 0.0


def scores_from_confusion(matrix, names):
    """Dice and IoU per class (None where a class is absent from both truth and prediction)."""
    tp = np.diag(matrix).astype(np.float64)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    present = matrix.sum(axis=1) > 0
    dice, iou = {}, {}
    for i, name in enumerate(names):
        denominator = 2 * tp[i] + fp[i] + fn[i]
        dice[name] = float(2 * tp[i] / denominator) if denominator else None
        iou[name] = float(tp[i] / (tp[i] + fp[i] + fn[i])) if denominator else None
    mean = lambda values: float(np.mean([values[n] for n, p in zip(names, present) if p])) if present.any() else 0.0
    return dice, iou, mean(dice), mean(iou)


def segmentation_metrics(matrix, class_names, groups):
    """The metrics.json fields computed from a split's confusion matrix."""
    dice, iou, dice_mean, miou = scores_from_confusion(matrix, class_names)
    group_dice, _, dice_grouped, _ = scores_from_confusion(group_confusion(matrix, groups), [g for g, _ in groups])
    total = matrix.sum()
    return {
        "dice_per_class": dice,
        "dice_mean": dice_mean,
        "dice_per_group": group_dice,
        "dice_grouped": dice_grouped,
        "dice_foreground": foreground_dice(matrix),
        "groups": {name: ids for name, ids in groups},
        "iou_per_class": iou,
        "miou": miou,
        "pixel_accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "n_pixels": int(total),
    }
