"""nnU-Net-style dataset checker: every problem found before training, one line each, naming the file."""

from dataclasses import dataclass, replace
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from surrogate_supervision.datasets.errors import DatasetError
from surrogate_supervision.datasets.images import read_image
from surrogate_supervision.datasets.labeled import LabeledDataset
from surrogate_supervision.datasets.masks import IGNORE_ID, invalid_ids, read_mask
from surrogate_supervision.datasets.rle import RLE_SEPARATOR


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    stem: str | None = None  # the pair it invalidates; None for dataset-level problems

    def __str__(self):
        return f"{self.path}: {self.message}"


def _problem(error: DatasetError, path, stem) -> Problem:
    text, prefix = str(error), f"{path}: "
    return Problem(Path(path), text[len(prefix):] if text.startswith(prefix) else text, stem)


def _scan_pair(ds: LabeledDataset, stem: str):
    """(problems, image shape or None, per-id pixel counts or None) for one stem."""
    image_path, problems = ds.image_paths[stem], []
    try:
        shape = read_image(image_path).shape[:2]
    except DatasetError as error:
        problems.append(_problem(error, image_path, stem))
        shape = None
    mask_path = ds.mask_paths.get(stem)
    if mask_path is None:
        expected = ds.root / "masks" / f"{stem}.png"
        return problems + [Problem(expected, f"missing (no mask for {image_path.name})", stem)], shape, None
    if shape is None and RLE_SEPARATOR in str(mask_path):
        return problems, shape, None
    try:
        mask = read_mask(mask_path, ds.palette, binary=ds.binary, shape=shape)
    except DatasetError as error:
        return problems + [_problem(error, mask_path, stem)], shape, None
    if shape is not None and mask.shape != shape:
        problems.append(Problem(Path(mask_path), f"mask is {mask.shape[0]}x{mask.shape[1]} but image is "
                                                 f"{shape[0]}x{shape[1]} (HxW)", stem))
    bad = invalid_ids(mask, ds.num_classes) if ds.num_classes else []
    if bad:
        problems.append(Problem(Path(mask_path), f"label ids {bad} outside 0..{ds.num_classes - 1} "
                                                 f"(255 = ignore)", stem))
    return problems, shape, np.bincount(mask.ravel(), minlength=256)


def scan_labeled(ds: LabeledDataset, stems=None, *, progress=False, workers=8):
    """Read every pair once: (problems, summary). check_labeled and summarize_labeled are views of this."""
    stems = list(ds.stems if stems is None else stems)
    problems, shapes, counts, present = [], [], np.zeros(256, np.int64), np.zeros(256, np.int64)
    if not stems:
        problems.append(Problem(ds.root / "images", "no images found"))
    if not ds.class_names:
        problems.append(Problem(ds.root, "no classes.txt and no readable mask to infer classes from"))
    orphans = sorted(set(ds.mask_paths) - set(ds.image_paths))
    problems += [Problem(Path(ds.mask_paths[stem]), "no matching image in images/") for stem in orphans]
    with ThreadPool(workers) as pool, tqdm(total=len(stems), desc="checking", unit="pair",
                                           disable=not progress) as bar:
        for pair_problems, shape, pixel_counts in pool.imap(lambda s: _scan_pair(ds, s), stems, chunksize=4):
            problems += pair_problems
            shapes += [shape] if shape is not None else []
            if pixel_counts is not None:
                counts += pixel_counts
                present += pixel_counts > 0
            bar.update()
    total = max(int(counts.sum()), 1)
    heights, widths = [s[0] for s in shapes], [s[1] for s in shapes]
    summary = {
        "root": str(ds.root),
        "n_images": len(stems),
        "n_masks": sum(stem in ds.mask_paths for stem in stems),
        "n_bad_pairs": len({p.stem for p in problems if p.stem is not None}),
        "n_problems": len(problems),
        "height": [min(heights, default=0), max(heights, default=0)],
        "width": [min(widths, default=0), max(widths, default=0)],
        "classes": [
            {"id": i, "name": name, "pixel_fraction": counts[i] / total, "n_images": int(present[i])}
            for i, name in enumerate(ds.class_names)
        ],
        "ignore_fraction": counts[IGNORE_ID] / total,
    }
    return problems, summary


def check_labeled(ds: LabeledDataset, stems=None, *, progress=False) -> list[Problem]:
    """Unreadable or truncated images, missing masks, size mismatches, out-of-range ids, an empty dataset."""
    return scan_labeled(ds, stems, progress=progress)[0]


def summarize_labeled(ds: LabeledDataset, stems=None, *, progress=False) -> dict:
    """Counts, image size range and per-class pixel fractions (and how many images hold each class)."""
    return scan_labeled(ds, stems, progress=progress)[1]


def drop_bad(ds: LabeledDataset, problems) -> LabeledDataset:
    """The dataset without the pairs named in `problems` (for --skip-bad); they stay in `dropped` so the
    seeded split is drawn over the same stems as without them."""
    bad = {problem.stem for problem in problems if problem.stem is not None}
    keep = [stem for stem in ds.stems if stem not in bad]
    return replace(ds, stems=keep, dropped=sorted(set(ds.dropped) | (set(ds.stems) - set(keep))))
