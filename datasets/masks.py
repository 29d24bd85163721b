"""Mask decoding: class-id PNGs, 0/255 binary masks (PNG or JPEG), colour-coded masks and RLE references."""

import os

import cv2
import numpy as np

from surrogate_supervision.datasets.errors import DatasetError, read_text
from surrogate_supervision.datasets.images import decode, read_bytes, read_image, to_uint8
from surrogate_supervision.datasets.rle import RLE_SEPARATOR, read_rle_reference

IGNORE_ID = 255


def load_palette(path) -> dict:
    """Read a palette file: line i is "r g b" for class i; an optional fourth number overrides the id
    (e.g. "224 224 192 255" for an ignore colour). Blank lines and lines starting with # are skipped."""
    palette, next_id = {}, 0
    for number, line in enumerate(read_text(path, DatasetError).splitlines(), start=1):
        fields = line.split("#")[0].split()
        if not fields:
            continue
        try:
            values = [int(field) for field in fields]
        except ValueError:
            values = []
        if len(values) not in (3, 4) or not all(0 <= value <= 255 for value in values):
            raise DatasetError(f"{path}:{number}: expected 'r g b' or 'r g b id' (0-255), got {line!r}")
        class_id = values[3] if len(values) == 4 else next_id
        palette[tuple(values[:3])] = class_id
        next_id = class_id + 1 if class_id != IGNORE_ID else next_id
    if not palette:
        raise DatasetError(f"{path}: empty palette file")
    return palette


def png_palette(data: bytes) -> dict | None:
    """The PLTE of an indexed PNG as {(r, g, b): index}, so VOC-style masks need no palette file.

    OpenCV expands indexed PNGs to colours; mapping each colour back to its first index recovers the ids.
    """
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[25] != 3:  # IHDR colour type 3 = indexed
        return None
    start = data.find(b"PLTE")
    if start < 0:
        return None
    length = int.from_bytes(data[start - 4 : start], "big")
    entries = np.frombuffer(data[start + 4 : start + 4 + length], np.uint8).reshape(-1, 3)
    palette = {}
    for index, colour in enumerate(map(tuple, entries.tolist())):
        palette.setdefault(colour, index)
    return palette


def apply_palette(rgb: np.ndarray, palette: dict, path) -> np.ndarray:
    """Map an (H, W, 3) RGB mask to ids; a colour missing from the palette is an error naming it."""
    keys = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    colours, inverse = np.unique(keys.ravel(), return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: class_id for (r, g, b), class_id in palette.items()}
    ids = np.empty(len(colours), np.uint8)
    for position, key in enumerate(colours.tolist()):
        if key not in lookup:
            colour = (key >> 16, (key >> 8) & 255, key & 255)
            raise DatasetError(f"{path}: colour {colour} is not in the palette")
        ids[position] = lookup[key]
    return ids[inverse].reshape(keys.shape)


def looks_like_0_255(mask: np.ndarray) -> bool:
    """True for a 0/255 binary mask (possibly with JPEG noise or resampled edges), False for class ids.

    Needs bright pixels and at most 5 % mid-grey ones. {0, 1} and {0, 1, 255} are ids (255 = ignore), and
    small values 2..31 count as noise only when the bright side is noisy too (224..254): JPEG ringing
    touches both sides of an edge, while an id mask with ignore pixels holds exact 255s only.
    """
    histogram = np.bincount(mask.ravel(), minlength=256)
    if histogram[2:255].sum() == 0 and (histogram[1] > 0 or histogram[255] == 0):
        return False
    if histogram[2:32].sum() > 0 and histogram[224:255].sum() == 0:
        return False
    return histogram[128:].sum() > 0 and histogram[32:224].sum() <= 0.05 * mask.size


def read_mask(path, palette=None, *, binary=False, shape=None) -> np.ndarray:
    """Decode a mask to uint8 (H, W) class ids (255 = ignore).

    Args:
        path: a mask image, or an RLE reference "masks.csv#rle=ID" (then `shape` is required).
        palette: {(r, g, b): id} for colour-coded masks; indexed PNGs use their own PLTE if None.
        binary: the dataset has two classes; a 0/255 mask (values only near 0 and 255) is then
            thresholded at 127 to {0, 1}.
        shape: (H, W) of the image, needed only for RLE references.
    """
    path = os.fspath(path)
    if RLE_SEPARATOR in path:
        if shape is None:
            raise DatasetError(f"{path}: an RLE mask needs the image shape")
        return read_rle_reference(path, shape)
    data = read_bytes(path)
    mask = decode(data, path, cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3 and mask.shape[2] == 4:
        mask = mask[..., :3]
    if mask.dtype == np.uint16 and mask.ndim == 2:
        if mask.max() > IGNORE_ID:
            raise DatasetError(f"{path}: 16-bit mask with ids above 255")
        mask = mask.astype(np.uint8)
    mask = to_uint8(mask, path)
    if mask.ndim == 3:
        rgb = np.ascontiguousarray(mask[..., ::-1])
        palette = palette or png_palette(data)
        if palette is not None:
            return apply_palette(rgb, palette, path)
        wide = rgb.astype(np.int16)
        if (wide.max(axis=2) - wide.min(axis=2)).max() > 8:  # gray saved as RGB (a little JPEG noise) is fine
            raise DatasetError(f"{path}: colour mask without a palette (add palette.txt)")
        mask = np.round(wide.mean(axis=2)).astype(np.uint8)
    elif palette is not None:
        raise DatasetError(f"{path}: single-channel mask but a palette was given")
    if binary and looks_like_0_255(mask):
        return (mask > 127).astype(np.uint8)
    return np.ascontiguousarray(mask)


def read_pair(image_path, mask_path, *, palette=None, binary=False, num_classes=None):
    """Image and mask together: the mask must match the image size and hold ids < num_classes or 255."""
    image = read_image(image_path)
    mask = read_mask(mask_path, palette, binary=binary, shape=image.shape[:2])
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but image is "
            f"{image.shape[0]}x{image.shape[1]} (HxW)"
        )
    if num_classes is not None:
        bad = invalid_ids(mask, num_classes)
        if bad:
            raise DatasetError(f"{mask_path}: label ids {bad} outside 0..{num_classes - 1} (255 = ignore)")
    return image, mask


def invalid_ids(mask: np.ndarray, num_classes: int) -> list[int]:
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return [int(v) for v in present if v >= num_classes and v != IGNORE_ID]
