"""Image decoding: the one decoder every reader and pipeline uses.

OpenCV's defaults are traps (BGR order, IMREAD_UNCHANGED ignoring EXIF orientation, JPEGs that decode
"successfully" when truncated), so each case is handled here once, explicitly.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from surrogate_supervision.datasets.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
FRAME_SEPARATOR = "#frame="

# IMREAD_COLOR applies EXIF orientation, expands gray and drops alpha; ANYDEPTH keeps 16-bit data
# so that we scale it ourselves instead of OpenCV's truncating >> 8.
_COLOR_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH


def read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from None


def check_complete(data: bytes, path) -> None:
    """Raise for a JPEG without its end-of-image marker or a PNG without IEND.

    libjpeg only warns on a truncated file and returns grey rows, so truncation must be caught before
    decoding. The JPEG marker walk skips APPn segments so an EXIF thumbnail's own end marker is not
    mistaken for the main image's, and stops at the first scan: an end marker cannot occur inside
    entropy-coded data, so any FF D9 after it is the real one (extra bytes after it are allowed).
    """
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker == 0xDA:  # start of scan
                break
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data.find(b"\xff\xd9", pos) < 0:
            raise DatasetError(f"{path}: truncated JPEG (no end-of-image marker)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        raise DatasetError(f"{path}: truncated PNG (no IEND chunk)")


def decode(data: bytes, path, flags: int) -> np.ndarray:
    check_complete(data, path)
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    except cv2.error:
        array = None
    if array is None:
        raise DatasetError(f"{path}: not a readable image")
    return array


def to_uint8(array: np.ndarray, path) -> np.ndarray:
    """16-bit to 8-bit by rounding x / 257 (so 65535 -> 255 exactly); other depths are refused."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise DatasetError(f"{path}: unsupported pixel type {array.dtype} (expected 8- or 16-bit)")


def read_image(path) -> np.ndarray:
    """Decode an image file (or a video frame "movie.mp4#frame=N") to uint8 (H, W, 3) RGB.

    EXIF orientation is applied, 16-bit data is scaled to 8-bit, gray is repeated to three channels and
    alpha is dropped (not composited). Raises DatasetError naming the file if it is unreadable or truncated.
    """
    path = os.fspath(path)
    if FRAME_SEPARATOR in path:
        return read_video_frame(path)
    bgr = to_uint8(decode(read_bytes(path), path, _COLOR_FLAGS), path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_video_frame(source: str) -> np.ndarray:
    """Decode one frame of "video#frame=N" in memory (frames are never written to disk)."""
    video, _, index = source.rpartition(FRAME_SEPARATOR)
    if not index.isdigit():
        raise DatasetError(f"{source}: the frame number must be a non-negative integer")
    if not Path(video).is_file():
        raise DatasetError(f"{video}: video file not found")
    capture = cv2.VideoCapture(video)
    try:
        if int(index) > 0:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, bgr = capture.read()
    finally:
        capture.release()
    if not ok or bgr is None:
        raise DatasetError(f"{source}: cannot decode video frame")
    return cv2.cvtColor(to_uint8(bgr, source), cv2.COLOR_BGR2RGB)


def count_video_frames(path) -> int:
    """Frame count from the container, or by grabbing every frame when the container does not say."""
    capture = cv2.VideoCapture(os.fspath(path))
    try:
        if not capture.isOpened():
            raise DatasetError(f"{path}: not a readable video")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    return count


def has_extension(name: str, extensions) -> bool:
    return name.lower().endswith(extensions)
