"""Trivial baselines a trained segmenter must beat, scored exactly like `finetune/segment.py` scores it.

    python experiments/baselines.py --data ROOT [--group SPEC] [--out baselines.json]

- all-background: every pixel predicted as class 0.
- skin colour threshold (when a class is named "skin"): the classical YCrCb rule of Chai & Ngan
  (IEEE TCSVT 1999), 133 ≤ Cr ≤ 173 and 77 ≤ Cb ≤ 127, everything else background.
Scored on the test split of the same seeded draw the training scripts use (`--split-seed`).
"""

import sys
import tempfile
from pathlib import Path

from surrogate_supervision.models.io import write_json
from surrogate_supervision.models.metrics import confusion_matrix, parse_groups, segmentation_metrics
from surrogate_supervision.models.runner.cli import add_flags, parser, run

import cv2
import numpy as np

from surrogate_supervision import datasets


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


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="labeled dataset root")
    add_flags(p, "group", "split_seed")
    p.add_argument("--out", type=Path, default=None, help="write the scores here as JSON")
    return p.parse_args(argv)


def main(args):
    ds = datasets.load_labeled(args.data)
    with tempfile.TemporaryDirectory() as scratch:
        test = datasets.load_or_make_splits(ds, scratch, seed=args.split_seed)["test"]
    scores = score_baselines(ds, test, parse_groups(args.group, ds.class_names))
    for name, m in scores.items():
        per_class = ", ".join(f"{c} {v:.4f}" for c, v in m["dice_per_class"].items() if v is not None)
        print(f"{name}: dice_mean {m['dice_mean']:.4f}, dice_grouped {m['dice_grouped']:.4f} ({per_class}); "
              f"{len(test)} test images")
    if args.out:
        write_json(args.out, {"data": str(args.data), "n_test_images": len(test), **scores})
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
