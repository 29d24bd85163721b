"""Unlabeled sources for colorization: image folders, videos, and labeled roots minus their test split.

A source is a string: an image path, or "video.mp4#frame=N" for one video frame (decoded in memory by
read_image). Listing uses os.scandir, so a 330,000-file folder is listed in seconds without decoding.
"""

import os
from pathlib import Path

from surrogate_supervision.datasets.errors import DatasetError
from surrogate_supervision.datasets.images import (
    FRAME_SEPARATOR,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    count_video_frames,
    has_extension,
)
from surrogate_supervision.datasets.labeled import list_files_by_stem
from surrogate_supervision.datasets.splits import assign_splits, read_split_folder

Source = str


def walk_files(folder: str, extensions) -> list[str]:
    """Sorted paths under `folder` (recursive, hidden entries skipped) whose names end in `extensions`."""
    found, pending = [], [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif has_extension(entry.name, extensions):
                    found.append(entry.path)
    return sorted(found)


def video_frames(path: str, every: int) -> list[Source]:
    return [f"{path}{FRAME_SEPARATOR}{index}" for index in range(0, count_video_frames(path), every)]


def is_labeled_root(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def labeled_root_sources(root: Path, *, seed: int, test: float) -> list[Source]:
    """images/ minus the test split (ROOT/splits/test.txt, or the draw load_or_make_splits makes with this
    seed and test fraction), plus ROOT/unlabeled/ if present: test images must never be pretrained on."""
    images = list_files_by_stem(root / "images")
    given = read_split_folder(root / "splits", set(images), require_all=False) \
        if (root / "splits").is_dir() else {}
    test_stems = assign_splits(images, given, seed=seed, val=0, test=test)["test"] if len(images) > 1 else []
    excluded = set(test_stems)
    sources = [str(path) for stem, path in sorted(images.items()) if stem not in excluded]
    if (root / "unlabeled").is_dir():
        sources += walk_files(str(root / "unlabeled"), IMAGE_EXTENSIONS)
    return sources


def list_unlabeled(paths, *, video_every=30, seed=0, test=0.1) -> list[Source]:
    """Every image (and every `video_every`-th video frame) under `paths`, in a deterministic order.

    Args:
        paths: folders (searched recursively), image files, video files (mp4 avi mov mkv) and labeled
            dataset roots (folders with images/ and masks/) in any mix.
        seed, test: must match the fine-tuning split, so the labeled test images are left out.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if video_every < 1:
        raise DatasetError(f"must be at least 1, got {video_every}", param="video_every")
    sources = []
    for path in map(Path, paths):
        if not path.exists():
            raise DatasetError(f"{path}: not found")
        if path.is_dir() and is_labeled_root(path):
            found = labeled_root_sources(path, seed=seed, test=test)
        elif path.is_dir():
            found = []
            for file in walk_files(str(path), IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
                found += video_frames(file, video_every) if has_extension(file, VIDEO_EXTENSIONS) else [file]
        elif has_extension(path.name, VIDEO_EXTENSIONS):
            found = video_frames(str(path), video_every)
        elif has_extension(path.name, IMAGE_EXTENSIONS):
            found = [str(path)]
        else:
            raise DatasetError(f"{path}: not an image, video or folder")
        if not found:
            raise DatasetError(f"{path}: no images or video frames found")
        sources += found
    return list(dict.fromkeys(sources))
