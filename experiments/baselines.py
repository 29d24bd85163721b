"""Trivial baselines a trained segmenter must beat, scored exactly like `finetune/segment.py` scores it.

    python experiments/baselines.py --data ROOT [--group SPEC] [--out baselines.json]

- all-background: every pixel predicted as class 0.
- skin colour threshold (when a class is named "skin"): the classical YCrCb rule of Chai & Ngan
  (IEEE TCSVT 1999), 133 ≤ Cr ≤ 173 and 77 ≤ Cb ≤ 127, everything else background.
Scored on the test split of the same seeded draw the training scripts use (`--split-seed`).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

import datasets
from finetune.metrics import confusion_matrix, parse_groups, segmentation_metrics


def skin_by_colour(image_rgb):
    """Chai & Ngan's YCrCb skin rule: a boolean mask."""
    ycrcb = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def score_baselines(ds, stems, groups):
    k = ds.num_classes
    skin = ds.class_names.index("skin") if "skin" in ds.class_names else None
    matrices = {"all_background": np.zeros((k, k), np.int64)}
    if skin is not None:
        matrices["skin_colour_threshold"] = np.zeros((k, k), np.int64)
    for stem in stems:
        image, mask = ds.read_pair(stem)
        matrices["all_background"] += confusion_matrix(mask, np.zeros_like(mask), k)
        if skin is not None:
            prediction = np.where(skin_by_colour(image), skin, 0).astype(np.uint8)
            matrices["skin_colour_threshold"] += confusion_matrix(mask, prediction, k)
    return {name: segmentation_metrics(m, ds.class_names, groups) for name, m in matrices.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="labeled dataset root")
    p.add_argument("--group", default=None, help="class grouping for grouped Dice, as in segment.py")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the scores here as JSON")
    args = p.parse_args(argv)
    try:
        ds = datasets.load_labeled(args.data)
        with tempfile.TemporaryDirectory() as scratch:
            test = datasets.load_or_make_splits(ds, scratch, seed=args.split_seed)["test"]
        scores = score_baselines(ds, test, parse_groups(args.group, ds.class_names))
    except (datasets.DatasetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, m in scores.items():
        per_class = ", ".join(f"{c} {v:.4f}" for c, v in m["dice_per_class"].items() if v is not None)
        print(f"{name}: dice_mean {m['dice_mean']:.4f}, dice_grouped {m['dice_grouped']:.4f} ({per_class}); "
              f"{len(test)} test images")
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "n_test_images": len(test), **scores}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
