"""Procedural demo dataset: the built-in default data for the README command and the tests.

Five classes, each with a characteristic colour AND texture or shape: smooth green-teal background, smooth
peach ellipses ("skin"), purple striped blobs ("hair"), blue checked patches ("cloth"), gold rings. Every
class's brightness is drawn from one overlapping range, so a grayscale image is ambiguous (skin and background
differ only in colour and shape) while texture still helps (stripes vs checks): colorization has to learn
features that separate them.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

from surrogate_supervision.datasets.errors import DatasetError

CLASS_NAMES = ("background", "skin", "hair", "cloth", "accessory")
CHROMA = {  # RGB ratios; the brightness is set separately
    "background": (0.45, 0.66, 0.56), "skin": (0.86, 0.60, 0.47), "hair": (0.62, 0.32, 0.72),
    "cloth": (0.33, 0.40, 0.88), "accessory": (0.92, 0.76, 0.18),
}


def _colour(rng, name: str, low=60, high=200) -> np.ndarray:
    chroma = np.clip(np.array(CHROMA[name]) + rng.normal(0, 0.04, 3), 0.05, 1.0)
    return chroma / (chroma @ (0.299, 0.587, 0.114)) * rng.uniform(low, high)


def _wave(yy, xx, rng, period_range):
    angle, period = rng.uniform(0, np.pi), rng.uniform(*period_range)
    return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + rng.uniform(0, 2 * np.pi))


def _shape(height, width, draw, *args) -> np.ndarray:
    """Boolean region drawn by an OpenCV function, e.g. _shape(h, w, cv2.circle, centre, radius, 1, -1)."""
    canvas = np.zeros((height, width), np.uint8)
    draw(canvas, *args)
    return canvas.astype(bool)


def make_scene(rng, size: int):
    """One (image uint8 HxWx3 RGB, mask uint8 HxW) pair; side lengths vary by +-size/8 around `size`."""
    height, width = rng.integers(size - size // 8, size + size // 8 + 1, 2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = 1 + 0.15 * ((yy / height - 0.5) * rng.normal() + (xx / width - 0.5) * rng.normal())
    image = gradient[..., None] * _colour(rng, "background", 50, 210).astype(np.float32)
    mask = np.zeros((height, width), np.uint8)
    span = min(height, width)

    def paint(region, class_id, name, texture, low=60, high=200):
        image[region] = texture[region][:, None] * _colour(rng, name, low, high).astype(np.float32)
        mask[region] = class_id

    for _ in range(rng.integers(1, 3)):
        centre, box = rng.uniform(0, 1, 2) * (width, height), rng.uniform(0.3, 0.6, 2) * span
        corners = cv2.boxPoints((tuple(centre), tuple(box), rng.uniform(0, 180))).astype(np.int32)
        checks = np.sign(_wave(yy, xx, rng, (6, 10)) * _wave(yy, xx, rng, (6, 10)))
        paint(_shape(height, width, cv2.fillPoly, [corners], 1), 3, "cloth", 1 + 0.25 * checks)
    for _ in range(rng.integers(1, 4)):
        centre = tuple(int(v) for v in rng.uniform(0, 1, 2) * (width, height))
        axes = tuple(int(v) for v in rng.uniform(0.08, 0.2, 2) * span)
        angle = rng.uniform(0, 180)
        shading = 1 - 0.2 * np.hypot((xx - centre[0]) / max(axes[0], 1), (yy - centre[1]) / max(axes[1], 1))
        paint(_shape(height, width, cv2.ellipse, centre, axes, angle, 0, 360, 1, -1), 1, "skin",
              np.clip(shading, 0.7, 1))
    for _ in range(rng.integers(0, 3)):
        centre = tuple(int(v) for v in rng.uniform(0, 1, 2) * (width, height))
        axes = tuple(int(v) for v in rng.uniform(0.1, 0.2, 2) * span)
        angle = rng.uniform(0, 180)
        paint(_shape(height, width, cv2.ellipse, centre, axes, angle, 0, 360, 1, -1), 2, "hair",
              1 + 0.35 * _wave(yy, xx, rng, (3, 5)), 40, 180)
    for _ in range(rng.integers(0, 3)):
        centre = tuple(int(v) for v in rng.uniform(0, 1, 2) * (width, height))
        radius, thickness = int(rng.integers(4, 11)), int(rng.integers(2, 4))
        paint(_shape(height, width, cv2.circle, centre, radius, 1, thickness), 4, "accessory",
              np.ones_like(yy), 90, 220)
    image += 3 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _write(path: Path, rgb_or_mask: np.ndarray, params=()) -> None:
    array = cv2.cvtColor(rgb_or_mask, cv2.COLOR_RGB2BGR) if rgb_or_mask.ndim == 3 else rgb_or_mask
    if not cv2.imwrite(str(path), array, list(params)):
        raise DatasetError(f"{path}: cannot write")


# The built-in set's side: small scenes, so that the demo grid (crop 65) runs in minutes on two cores
# (experiments/results/demo.md). Its folder is named after it, so a set cached at another size is not reused.
BUILTIN_SIZE = 64


def make_synthetic(root, *, n_labeled=200, n_unlabeled=400, size=BUILTIN_SIZE, seed=0) -> Path:
    """Write a synthetic dataset to ROOT (images/*.jpg, masks/*.png, unlabeled/*.png, classes.txt, SOURCE.md).

    Scene i depends only on (seed, i), so a bigger dataset extends a smaller one. Files are written to a
    temporary folder that is renamed at the end: an interrupted run never leaves a half dataset.

    Example:
        root = make_synthetic("/tmp/synthetic", n_labeled=50, n_unlabeled=100)
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root}: already exists and is not empty")
    for name, value, low in (("n_labeled", n_labeled, 0), ("n_unlabeled", n_unlabeled, 0), ("size", size, 16)):
        if value < low:
            raise DatasetError(f"must be >= {low}, got {value}", param=name)
    temporary = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    for folder in ("images", "masks", "unlabeled"):
        (temporary / folder).mkdir(parents=True)
    for i in range(n_labeled):
        image, mask = make_scene(np.random.default_rng([seed, 0, i]), size)
        _write(temporary / "images" / f"synth_{i:05d}.jpg", image, (cv2.IMWRITE_JPEG_QUALITY, 95))
        _write(temporary / "masks" / f"synth_{i:05d}.png", mask)
    for i in range(n_unlabeled):
        image, _ = make_scene(np.random.default_rng([seed, 1, i]), size)
        _write(temporary / "unlabeled" / f"synth_u{i:05d}.png", image)
    (temporary / "classes.txt").write_text("".join(f"{name}\n" for name in CLASS_NAMES))
    (temporary / "SOURCE.md").write_text(
        f"# Synthetic scenes\n\nGenerated by `datasets/synthetic.py` (make_synthetic) with seed={seed}, "
        f"n_labeled={n_labeled}, n_unlabeled={n_unlabeled}, size={size}. Not real data: procedural scenes whose "
        f"classes ({', '.join(CLASS_NAMES)}) each have a characteristic colour and texture.\n")
    try:
        os.rename(temporary, root)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (root / "SOURCE.md").is_file():  # not another process finishing the same dataset first
            raise
    return root


def default_synthetic_root() -> Path:
    """$SURROGATE_DATA_HOME/synthetic-64px, or ~/.cache/surrogate-supervision/synthetic-64px."""
    home = os.environ.get("SURROGATE_DATA_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "surrogate-supervision") / f"synthetic-{BUILTIN_SIZE}px"


def ensure_synthetic(root=None) -> Path:
    """The default synthetic dataset, generated on first use."""
    root = Path(root) if root is not None else default_synthetic_root()
    if not (root / "SOURCE.md").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        make_synthetic(root)
    return root


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Generate the synthetic demo dataset.")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: %(default)s -> "
                        "$SURROGATE_DATA_HOME/synthetic-64px or ~/.cache/surrogate-supervision/synthetic-64px)")
    parser.add_argument("--n-labeled", type=int, default=200)
    parser.add_argument("--n-unlabeled", type=int, default=400)
    parser.add_argument("--size", type=int, default=BUILTIN_SIZE, help="typical side length in pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(args) -> int:
    try:
        root = make_synthetic(args.out or default_synthetic_root(), n_labeled=args.n_labeled,
                              n_unlabeled=args.n_unlabeled, size=args.size, seed=args.seed)
    except DatasetError as error:
        flag = error.param and "--" + error.param.replace("_", "-")  # make_synthetic's parameters are the flags
        print(f"error: {error.named(flag)}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
