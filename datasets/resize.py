"""A copy of a labeled dataset at a lower resolution: python datasets/resize.py ROOT --max-side 192 --out DIR

Why: a network trained on small crops of large images sees parts of objects while it trains and whole images when it
is scored. Downscaled, a crop sees the object with its surroundings (the reference recipe's 513 crops of
full-resolution photos are 129 crops at a quarter of the resolution), and scoring a whole image costs a fraction.
Images are resized by area averaging, masks (class ids, 255 = ignore) by nearest neighbour, so no id appears that
was not there; an image whose longest side is already at most --max-side keeps its size. Every pair is read by the
toolkit's own reader (palettes, 0/255 masks, EXIF orientation) and written as PNG under its stem, so the copy
splits exactly as the original does (splits are drawn by stem). classes.txt, SOURCE.md and splits/ are copied, and
RESIZED.md says how the copy was made.
"""

import argparse
import shutil
import sys
from multiprocessing.pool import ThreadPool
from pathlib import Path

import cv2

from surrogate_supervision.datasets.errors import DatasetError
from surrogate_supervision.datasets.labeled import load_labeled

COPIED = ("classes.txt", "SOURCE.md")  # not palette.txt: the copy's masks are class ids
SPLITS = "splits"  # a dataset's own train/val/test lists (datasets/splits.py): the copy keeps them
RECORD = "RESIZED.md"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="dataset root with images/ and masks/ (or masks.csv)")
    parser.add_argument("--max-side", type=int, required=True, help="longest side of every image and mask after")
    parser.add_argument("--out", type=Path, required=True, help="the new dataset root (must not exist yet)")
    parser.add_argument("--workers", type=int, default=8, help="reader threads")
    args = parser.parse_args(argv)
    if args.max_side < 1:
        parser.error(f"--max-side must be at least 1, got {args.max_side}")
    return args


def downscaled_size(height, width, max_side):
    """(height, width) with the longest side at most `max_side`, the aspect ratio kept (each side at least 1)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_pair(image, mask, max_side):
    """The pair downscaled: the image by area averaging, the mask (class ids) by nearest neighbour."""
    height, width = downscaled_size(*mask.shape[:2], max_side)
    if (height, width) == mask.shape[:2]:
        return image, mask
    return (cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
            cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST))


def resize_dataset(root, out, max_side, workers=8):
    """Writes the downscaled copy of `root` to `out`; returns the number of pairs written. Refuses an existing
    `out` (a half-written copy must not be mistaken for a finished one: the record is written last)."""
    root, out = Path(root), Path(out)
    ds = load_labeled(root)
    if out.exists():
        raise DatasetError(f"{out}: already exists; the copy goes into a new folder")
    stems = [stem for stem in ds.stems if stem in ds.mask_paths]
    if not stems:
        raise DatasetError(f"{root}: no image has a mask")
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()

    def write(stem):
        image, mask = resize_pair(*ds.read_pair(stem), max_side)
        if not (cv2.imwrite(str(out / "images" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                and cv2.imwrite(str(out / "masks" / f"{stem}.png"), mask)):
            raise DatasetError(f"{out}: could not write {stem}.png")

    with ThreadPool(workers) as pool:
        pool.map(write, stems)
    for name in COPIED:
        if (root / name).is_file():
            shutil.copy(root / name, out / name)
    if (root / SPLITS).is_dir():
        shutil.copytree(root / SPLITS, out / SPLITS)
    (out / RECORD).write_text(f"Downscaled copy of `{root}`: every image and mask with its longest side at most "
                              f"{max_side} pixels (images by area averaging, masks by nearest neighbour), "
                              f"{len(stems)} pairs, written as PNG.\n")
    return len(stems)


def main(args) -> int:
    try:
        n = resize_dataset(args.root, args.out, args.max_side, args.workers)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.out}: {n} pairs, longest side at most {args.max_side}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
