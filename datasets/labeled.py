"""Labeled datasets on disk: ROOT/images + ROOT/masks (or an RLE CSV), classes.txt, palette.txt."""

import os
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np

from surrogate_supervision.datasets.errors import DatasetError, read_text
from surrogate_supervision.datasets.images import IMAGE_EXTENSIONS, has_extension
from surrogate_supervision.datasets.masks import IGNORE_ID, load_palette, looks_like_0_255, read_mask, read_pair
from surrogate_supervision.datasets.rle import RLE_SEPARATOR, read_rle_table

RLE_TABLE_NAMES = ("masks.csv", "train.csv")


@dataclass
class LabeledDataset:
    """File lists of a labeled dataset; nothing is decoded until asked.

    Example:
        ds = load_labeled("data/kvasir_seg")
        image, mask = ds.read_pair(ds.stems[0])
    """

    root: Path
    stems: list[str]
    image_paths: dict[str, Path]
    mask_paths: dict[str, Path]
    class_names: list[str]
    palette: dict | None = None
    dropped: list[str] = field(default_factory=list)  # stems removed by drop_bad, still part of the split draw

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary(self) -> bool:
        """Two classes: 0/255 masks are thresholded to {0, 1}."""
        return self.num_classes == 2

    def read_pair(self, stem: str):
        """(image uint8 HxWx3 RGB, mask uint8 HxW) for one stem, with size and label-id checks."""
        if stem not in self.mask_paths:
            raise DatasetError(f"{self.image_paths[stem]}: no mask")
        return read_pair(
            self.image_paths[stem], self.mask_paths[stem], palette=self.palette,
            binary=self.binary, num_classes=self.num_classes or None,
        )


def list_files_by_stem(folder: Path, extensions=IMAGE_EXTENSIONS) -> dict[str, Path]:
    """{stem: path} of one folder (not recursive, hidden files skipped); two files with one stem is an error."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not has_extension(entry.name, extensions) or not entry.is_file():
                continue
            stem = os.path.splitext(entry.name)[0]
            if stem in found:
                raise DatasetError(f"{entry.path}: same stem as {found[stem].name}; stems must be unique")
            found[stem] = Path(entry.path)
    return found


def find_rle_masks(root: Path) -> dict[str, Path]:
    for name in RLE_TABLE_NAMES:
        table_path = root / name
        if table_path.is_file():
            return {key: Path(f"{table_path}{RLE_SEPARATOR}{key}") for key in read_rle_table(table_path)}
    return {}


def infer_num_classes(mask_paths, palette=None, workers=8) -> int:
    """Largest id found in the masks + 1 (255 = ignore excluded); 0/255 masks count as two classes."""

    def classes_in(path):
        try:
            mask = read_mask(path, palette)
        except DatasetError:
            return 0  # the checker reports unreadable masks
        if looks_like_0_255(mask):
            return 2
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        present = present[present != IGNORE_ID]
        return int(present.max()) + 1 if len(present) else 1

    with ThreadPool(workers) as pool:
        return max(pool.imap_unordered(classes_in, list(mask_paths), chunksize=16), default=0)


def read_class_names(path: Path) -> list[str]:
    names = [line.strip() for line in read_text(path, DatasetError).splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: no class names")
    if len(names) > IGNORE_ID:
        raise DatasetError(f"{path}: {len(names)} classes; at most 255 (255 is the ignore id)")
    return names


def load_labeled(root, *, palette=None) -> LabeledDataset:
    """Index a labeled dataset root.

    Args:
        root: folder with images/ and masks/ (matched by stem), or images/ and an RLE table
            masks.csv / train.csv (columns id, rle).
        palette: {(r, g, b): id} or a palette file for colour-coded masks; ROOT/palette.txt if present.

    Class names come from classes.txt, else class_0..class_K where K is the largest id in the masks.
    Images without masks are kept (check_labeled reports them).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: no images/ folder")
    image_paths = list_files_by_stem(root / "images")
    if (root / "masks").is_dir():
        mask_paths = list_files_by_stem(root / "masks")
    else:
        mask_paths = find_rle_masks(root)
        if not mask_paths:
            raise DatasetError(f"{root}: no masks/ folder and no {' or '.join(RLE_TABLE_NAMES)}")
    if palette is None and (root / "palette.txt").is_file():
        palette = root / "palette.txt"
    if palette is not None and not isinstance(palette, dict):
        palette = load_palette(palette)
    stems = sorted(image_paths)
    paired = [mask_paths[stem] for stem in stems if stem in mask_paths]
    if (root / "classes.txt").is_file():
        class_names = read_class_names(root / "classes.txt")
    elif palette:
        ids = [class_id for class_id in palette.values() if class_id != IGNORE_ID]
        class_names = [f"class_{i}" for i in range(max(ids, default=-1) + 1)]
    elif any(RLE_SEPARATOR in str(path) for path in paired[:1]):
        class_names = ["class_0", "class_1"]
    else:
        class_names = [f"class_{i}" for i in range(infer_num_classes(paired))]
    return LabeledDataset(root, stems, image_paths, mask_paths, class_names, palette)
