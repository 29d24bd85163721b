"""Pictures of what a network does: sample grids for colorization and overlays for segmentation."""

from surrogate_supervision.models.io import write_atomic

import cv2
import numpy as np

from surrogate_supervision.datasets import IGNORE_ID


def to_uint8(image):
    """[-1, 1] float (H, W, 3) → uint8 RGB."""
    return np.clip((np.asarray(image, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def class_palette(num_classes):
    """Distinct, stable colours per class id (0 = black background); 255 (ignore) is drawn white."""
    rng = np.random.default_rng(1234)
    palette = rng.integers(40, 256, size=(max(num_classes, 1), 3), dtype=np.uint8)
    palette[0] = 0
    base = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
    for i, colour in enumerate(base[: num_classes - 1]):
        palette[i + 1] = colour
    return palette


def colorize_mask(mask, num_classes):
    """Class ids (H, W) → RGB; ignore (255) white."""
    palette = class_palette(num_classes)
    mask = np.asarray(mask)
    out = palette[np.clip(mask, 0, num_classes - 1)]
    out[mask == IGNORE_ID] = 255
    return out


def overlay(image, mask, num_classes, alpha=0.5):
    """Blends a class-id mask over a uint8 RGB image (background left as is)."""
    colours = colorize_mask(mask, num_classes).astype(np.float32)
    blend = np.where((np.asarray(mask) > 0)[..., None], (1 - alpha) * image + alpha * colours, image)
    return blend.astype(np.uint8)


def tile(rows, gap=2):
    """Grid from a list of rows, each a list of equally sized uint8 RGB images."""
    lines = []
    for row in rows:
        h = row[0].shape[0]
        spacer = np.full((h, gap, 3), 255, np.uint8)
        lines.append(np.concatenate([x for image in row for x in (image, spacer)][:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    return np.concatenate(lines, axis=0)[:-gap]


def write_png(path, rgb):
    """Writes an RGB uint8 image atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    return write_atomic(path, data.tobytes())
