"""Kaggle/HuBMAP run-length encoding: column-major (Fortran order), 1-indexed "start length" pairs."""

import csv
import functools
import io
import os
from pathlib import Path

import numpy as np

from surrogate_supervision.datasets.errors import DatasetError, read_text
from surrogate_supervision.datasets.images import IMAGE_EXTENSIONS, read_image

RLE_SEPARATOR = "#rle="
_ID_COLUMNS = ("id", "ImageId", "image_id")
_RLE_COLUMNS = ("rle", "encoding", "EncodedPixels", "predicted")


def rle_encode(mask) -> str:
    """Encode the nonzero pixels of a 2-D mask; an empty mask gives ""."""
    pixels = np.asarray(mask).astype(bool).ravel(order="F")
    padded = np.concatenate([[False], pixels, [False]])
    runs = np.flatnonzero(padded[1:] != padded[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs))


def rle_decode(rle: str, shape) -> np.ndarray:
    """Decode to a uint8 {0, 1} mask of `shape` (H, W); malformed or out-of-range runs raise DatasetError."""
    height, width = int(shape[0]), int(shape[1])
    try:
        numbers = np.array((rle or "").split(), dtype=np.int64)
    except ValueError:
        raise DatasetError(f"RLE contains a non-integer: {rle[:40]!r}") from None
    if len(numbers) % 2:
        raise DatasetError(f"RLE has an odd number of values ({len(numbers)})")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    ends = starts + lengths
    if len(numbers) and (starts.min() < 0 or lengths.min() < 0 or ends.max() > height * width):
        raise DatasetError(f"RLE runs fall outside a {height}x{width} mask")
    delta = np.zeros(height * width + 1, np.int32)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    flat = (np.cumsum(delta[:-1]) > 0).astype(np.uint8)
    return flat.reshape((height, width), order="F")


def _pick_column(fieldnames, candidates, csv_path, what):
    for name in candidates:
        if name in (fieldnames or ()):
            return name
    raise DatasetError(f"{csv_path}: no {what} column (expected one of {', '.join(candidates)})")


def read_rle_table(csv_path) -> dict[str, list[str]]:
    """{id: [rle, ...]}: several rows per id (one per instance) are merged when decoded."""
    try:
        reader = csv.DictReader(io.StringIO(read_text(csv_path, DatasetError), newline=""))
        id_column = _pick_column(reader.fieldnames, _ID_COLUMNS, csv_path, "id")
        rle_column = _pick_column(reader.fieldnames, _RLE_COLUMNS, csv_path, "rle")
        table = {}
        for row in reader:
            table.setdefault(row[id_column], []).append(row[rle_column] or "")
    except OSError as error:
        raise DatasetError(f"{csv_path}: cannot read ({error.strerror or error})") from None
    return table


@functools.lru_cache(maxsize=8)
def _cached_table(csv_path: str, mtime_ns: int) -> dict[str, list[str]]:
    return read_rle_table(csv_path)


def decode_rows(rles, shape, where) -> np.ndarray:
    mask = np.zeros(tuple(shape[:2]), np.uint8)
    for rle in rles:
        try:
            mask |= rle_decode(rle, shape)
        except DatasetError as error:
            raise DatasetError(f"{where}: {error}") from None
    return mask


def read_rle_reference(reference: str, shape) -> np.ndarray:
    """Decode "table.csv#rle=ID" (the form LabeledDataset.mask_paths uses for RLE datasets)."""
    csv_path, _, key = os.fspath(reference).rpartition(RLE_SEPARATOR)
    try:
        table = _cached_table(csv_path, os.stat(csv_path).st_mtime_ns)
    except OSError:
        raise DatasetError(f"{csv_path}: RLE table not found") from None
    if key not in table:
        raise DatasetError(f"{csv_path}: no row for id {key!r}")
    return decode_rows(table[key], shape, reference)


def read_rle_csv(csv_path, shapes) -> dict[str, np.ndarray]:
    """Decode every id of an RLE CSV.

    Args:
        shapes: {id: (H, W)}, or a folder holding an image named after each id (its size is used).
    """
    table = read_rle_table(csv_path)
    if not isinstance(shapes, dict):
        folder = Path(shapes)
        by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
        missing = [key for key in table if key not in by_stem]
        if missing:
            raise DatasetError(f"{folder}: no image for id {missing[0]!r} of {csv_path}")
        shapes = {key: read_image(by_stem[key]).shape[:2] for key in table}
    masks = {}
    for key, rles in table.items():
        if key not in shapes:
            raise DatasetError(f"{csv_path}: no shape given for id {key!r}")
        masks[key] = decode_rows(rles, shapes[key], f"{csv_path} (id {key})")
    return masks


def write_rle_csv(path, masks: dict) -> Path:
    """Write {id: mask} as an "id,rle" CSV (e.g. predictions for a Kaggle-style submission)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "rle"])
        for key, mask in masks.items():
            writer.writerow([key, rle_encode(mask)])
    return path
