"""Predicts segmentation masks for folders or files of images with a trained run's best checkpoint.

    python finetune/predict.py RUN --images photos/ extra.jpg --out predictions [--rle submission.csv]

Writes OUT/masks/<stem>.png (single-channel class ids, as in a dataset's masks/), OUT/overlays/<stem>.png
(the prediction drawn over the image) and OUT/config.json; with --rle also a Kaggle-style "id,rle" CSV
(column-major, 1-indexed runs) of the pixels predicted as --rle-class: the foreground (label 1) of a
two-class or --loss bce run, or any one class of a multi-class run.

Images are predicted exactly as the run's validation and test metrics were computed: through
`models.runner.inference.Predictor` with the inference scheme recorded in RUN/metrics.json (whole images padded to
the network's grid, overlapping blended tiles only above --max-side, untrained dilated taps set to zero; see
models/runner/inference.py), so a mask here equals the one the metrics scored. --tile, --max-side, --overlap and
--untrained-taps change that scheme; the one used is saved in OUT/config.json.
"""

import sys
from pathlib import Path

from surrogate_supervision.models.io import write_atomic
from surrogate_supervision.models.runner.cli import add_flags, check_writable, parser, run, run_config, save_config
from surrogate_supervision.models.runner.inference import UNTRAINED_TAPS, run_predictor
from surrogate_supervision.models.runner.runs import list_images, load_run
from surrogate_supervision.models.runner.visualize import overlay, write_png

import cv2
import numpy as np
from tqdm import tqdm

from surrogate_supervision.datasets import DatasetError, FlagError, read_image, rle_decode, rle_encode, write_rle_csv


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finetune/segment.py run directory (config.json and best.weights.h5)")
    p.add_argument("--images", nargs="+", type=Path, required=True,
                   help="image files and/or folders of images (not recursive); outputs are named by file stem")
    p.add_argument("--out", type=Path, required=True, help="output folder for masks/, overlays/ and config.json")
    p.add_argument("--rle", type=Path, default=None,
                   help="also write this id,rle CSV (Kaggle/HuBMAP run-length encoding) of --rle-class")
    p.add_argument("--rle-class", type=int, default=1,
                   help="class id whose pixels --rle encodes (1 = the foreground of a two-class or bce run)")
    p.add_argument("--tile", type=int, default=None,
                   help="predict by overlapping tiles of this side; None: the run's scheme (whole images)")
    p.add_argument("--max-side", type=int, default=None,
                   help="whole images with a longer side are tiled at (max-side + 1) / 2; None: the run's scheme")
    p.add_argument("--overlap", type=float, default=None,
                   help="fraction of a tile shared with its neighbour; None: the run's scheme")
    p.add_argument("--untrained-taps", choices=UNTRAINED_TAPS, default=None,
                   help="dilated taps that could not reach the training crop's feature map: set to zero or keep "
                        "their initial values; None: the run's scheme")
    add_flags(p, "skip_bad")
    args = p.parse_args(argv)
    if args.tile is not None and args.tile < 1:
        p.error(f"--tile must be positive, got {args.tile}")
    if args.max_side is not None and args.max_side < 1:
        p.error(f"--max-side must be positive, got {args.max_side}")
    if args.overlap is not None and not 0 <= args.overlap < 1:
        p.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.rle_class < 0:
        p.error(f"--rle-class must be a class id (>= 0), got {args.rle_class}")
    return args


def write_mask(path, labels):
    """Writes class ids as a single-channel 8-bit PNG, atomically."""
    ok, data = cv2.imencode(".png", np.ascontiguousarray(labels, np.uint8))
    if not ok:
        raise OSError(f"could not encode {path}")
    return write_atomic(path, data.tobytes())


class EncodedMasks:
    """{stem: mask} for `write_rle_csv`, kept run-length encoded and decoded one at a time, so a folder of
    large images never holds more than one full-size mask in memory."""

    def __init__(self):
        self.rles = {}

    def add(self, stem, mask):
        self.rles[stem] = (rle_encode(mask), mask.shape)

    def items(self):
        return ((stem, rle_decode(rle, shape)) for stem, (rle, shape) in self.rles.items())


def main(args):
    images = list_images(args.images)
    trained = load_run(args.run)
    if args.rle and args.rle_class >= trained.num_classes:
        raise FlagError(f"--rle-class {args.rle_class}: the run has {trained.num_classes} classes "
                         f"({', '.join(trained.class_names)}); use 0..{trained.num_classes - 1}")
    if Path(args.out).resolve() == Path(args.run).resolve():
        raise FlagError(f"--out {args.out} is the run directory; its config.json would be overwritten")
    predictor = run_predictor(trained, tile=args.tile, max_side=args.max_side, overlap=args.overlap,
                              untrained_taps=args.untrained_taps)
    check_writable(args.out)
    save_config(run_config(args), args.out, classes=trained.class_names, inference=predictor.scheme.as_dict(),
                n_images=len(images))
    encoded, bad, tiled = EncodedMasks(), [], 0
    for stem, path in tqdm(images.items(), desc="predict", unit="image", dynamic_ncols=True):
        try:
            image = read_image(path)
        except DatasetError as error:
            if not args.skip_bad:
                raise DatasetError(f"{error}; pass --skip-bad to skip such files") from None
            bad.append(str(error))
            continue
        labels = predictor.labels(image)
        tiled += predictor.tile_for(image.shape) is not None
        write_mask(args.out / "masks" / f"{stem}.png", labels)
        write_png(args.out / "overlays" / f"{stem}.png", overlay(image, labels, trained.num_classes))
        if args.rle:
            encoded.add(stem, labels == args.rle_class)
    for line in bad:
        print(f"skipped: {line}", file=sys.stderr)
    if args.rle:
        write_rle_csv(args.rle, encoded)
    summary = f"{len(images) - len(bad)} masks in {args.out / 'masks'} ({predictor.scheme.describe()}; " \
              f"{tiled} tiled), overlays in {args.out / 'overlays'}"
    if args.rle:
        summary += f", RLE of class {args.rle_class} ({trained.class_names[args.rle_class]}) in {args.rle}"
    if bad:
        summary += f"; skipped {len(bad)} unreadable images (--skip-bad)"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
