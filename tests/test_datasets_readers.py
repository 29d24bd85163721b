"""Image and mask decoding, palettes and RLE, on small files written by the tests."""

import struct

import cv2
import numpy as np
import pytest

from surrogate_supervision.datasets import (
    DatasetError,
    load_palette,
    read_image,
    read_mask,
    read_rle_csv,
    rle_decode,
    rle_encode,
    write_rle_csv,
)

RED_RGB = (255, 0, 0)


def write(path, array, params=()):
    assert cv2.imwrite(str(path), array, list(params))
    return path


def jpeg_with_exif_orientation(bgr, orientation: int) -> bytes:
    """A JPEG with a minimal APP1 Exif segment holding only the orientation tag (cv2 cannot write EXIF)."""
    jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + entry + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_png_is_rgb_not_bgr(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    image = read_image(write(tmp_path / "red.png", bgr))
    assert image.dtype == np.uint8 and image.shape == (4, 5, 3)
    assert tuple(image[0, 0]) == RED_RGB


def test_jpeg_red_pixel(tmp_path):
    bgr = np.zeros((16, 16, 3), np.uint8)
    bgr[..., 2] = 255
    r, g, b = read_image(write(tmp_path / "red.jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, 100)))[8, 8]
    assert r > 240 and g < 15 and b < 15


def test_16bit_png_scaled_to_8bit(tmp_path):
    gray16 = np.array([[0, 257, 65535, 32896]], np.uint16)
    image = read_image(write(tmp_path / "deep.png", gray16))
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[..., 0], [[0, 1, 255, 128]])


def test_gray_repeated_to_three_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    image = read_image(write(tmp_path / "gray.png", gray))
    assert image.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_alpha_dropped(tmp_path):
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2], bgra[..., 3] = 255, 0  # red, fully transparent: alpha is dropped, not composited
    image = read_image(write(tmp_path / "rgba.png", bgra))
    assert image.shape == (2, 2, 3) and tuple(image[0, 0]) == RED_RGB


@pytest.mark.parametrize("orientation, corner", [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation_applied(tmp_path, orientation, corner):
    bgr = np.zeros((20, 40, 3), np.uint8)
    bgr[:8, :8] = (0, 0, 255)  # red block in the top-left corner of the stored pixels
    path = tmp_path / f"exif{orientation}.jpg"
    path.write_bytes(jpeg_with_exif_orientation(bgr, orientation))
    image = read_image(path)
    assert image.shape[:2] == ((20, 40) if orientation in (1, 3) else (40, 20))
    y, x = (3 if corner[0] == 0 else image.shape[0] - 4), (3 if corner[1] == 0 else image.shape[1] - 4)
    assert image[y, x, 0] > 200 and image[y, x, 1] < 40


def test_truncated_jpeg_names_file(tmp_path):
    path = write(tmp_path / "cut.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(DatasetError, match="cut.jpg: truncated JPEG"):
        read_image(path)


def test_truncated_png_and_garbage_name_file(tmp_path):
    path = write(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DatasetError, match="cut.png"):
        read_image(path)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.jpg"):
        read_image(tmp_path / "junk.jpg")
    with pytest.raises(DatasetError, match="absent.png"):
        read_image(tmp_path / "absent.png")


def test_mask_ids_kept(tmp_path):
    ids = np.array([[0, 1, 2], [5, 255, 3]], np.uint8)
    np.testing.assert_array_equal(read_mask(write(tmp_path / "m.png", ids)), ids)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", binary=True), ids)  # not 0/255-like


def test_binary_jpeg_mask_thresholded(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    path = write(tmp_path / "polyp.jpg", mask, (cv2.IMWRITE_JPEG_QUALITY, 75))
    raw = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(raw)) > 2  # JPEG noise really is there
    np.testing.assert_array_equal(read_mask(path, binary=True), (mask > 127).astype(np.uint8))


def test_binary_png_0_255_and_0_1_255(tmp_path):
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(read_mask(write(tmp_path / "a.png", mask), binary=True), mask // 255)
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), mask)  # only when the caller says binary
    ids = np.array([[0, 1], [255, 0]], np.uint8)  # ids with ignore stay ids
    np.testing.assert_array_equal(read_mask(write(tmp_path / "b.png", ids), binary=True), ids)


def test_palette_mask(tmp_path):
    (tmp_path / "palette.txt").write_text("0 0 0\n255 0 0\n0 255 0\n224 224 192 255\n")
    palette = load_palette(tmp_path / "palette.txt")
    assert palette == {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2, (224, 224, 192): 255}
    rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [224, 224, 192]]], np.uint8)
    path = write(tmp_path / "colour.png", rgb[..., ::-1])
    np.testing.assert_array_equal(read_mask(path, palette), [[0, 1], [2, 255]])
    with pytest.raises(DatasetError, match=r"colour.png: colour \(0, 255, 0\) is not in the palette"):
        read_mask(path, {(0, 0, 0): 0, (255, 0, 0): 1, (224, 224, 192): 255})
    with pytest.raises(DatasetError, match="colour.png: colour mask without a palette"):
        read_mask(path)


def test_bad_palette_file(tmp_path):
    (tmp_path / "palette.txt").write_text("0 0 0\n1 2\n")
    with pytest.raises(DatasetError, match="palette.txt:2"):
        load_palette(tmp_path / "palette.txt")


def test_rle_hand_checked_3x3():
    mask = np.array([[0, 1, 0],
                     [1, 1, 0],
                     [0, 0, 1]], np.uint8)
    # column-major pixel numbers: column 0 is 1..3, column 1 is 4..6, column 2 is 7..9
    assert rle_encode(mask) == "2 1 4 2 9 1"
    np.testing.assert_array_equal(rle_decode("2 1 4 2 9 1", (3, 3)), mask)
    assert rle_encode(np.zeros((3, 3))) == ""
    np.testing.assert_array_equal(rle_decode("", (2, 2)), np.zeros((2, 2)))


def test_rle_round_trip_exact():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = (rng.random(shape) < 0.4).astype(np.uint8)
        mask[0, 0] = mask[-1, -1] = 1  # runs touching both ends
        decoded = rle_decode(rle_encode(mask), shape)
        assert decoded.dtype == np.uint8
        np.testing.assert_array_equal(decoded, mask)


def test_rle_malformed():
    with pytest.raises(DatasetError, match="odd"):
        rle_decode("1 2 3", (3, 3))
    with pytest.raises(DatasetError, match="outside"):
        rle_decode("8 5", (3, 3))


def test_rle_csv_round_trip(tmp_path):
    masks = {"a": np.eye(4, dtype=np.uint8), "b": np.zeros((2, 3), np.uint8)}
    write_rle_csv(tmp_path / "pred.csv", masks)
    assert (tmp_path / "pred.csv").read_text().splitlines()[0] == "id,rle"
    decoded = read_rle_csv(tmp_path / "pred.csv", {"a": (4, 4), "b": (2, 3)})
    for key, mask in masks.items():
        np.testing.assert_array_equal(decoded[key], mask)
    (tmp_path / "images").mkdir()
    write(tmp_path / "images" / "a.png", np.zeros((4, 4), np.uint8))
    write(tmp_path / "images" / "b.png", np.zeros((2, 3), np.uint8))
    np.testing.assert_array_equal(read_rle_csv(tmp_path / "pred.csv", tmp_path / "images")["a"], masks["a"])


def test_indexed_png_mask_uses_its_own_palette(tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow writes indexed PNGs; OpenCV cannot")
    ids = np.array([[0, 1], [2, 1]], np.uint8)
    indexed = image_module.fromarray(ids, "P")
    indexed.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 253)  # VOC-like colours
    indexed.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png"), ids)


def test_gray_mask_saved_as_rgb_jpeg(tmp_path):
    mask = np.zeros((24, 24), np.uint8)
    mask[6:18, 6:18] = 255
    path = write(tmp_path / "rgbmask.jpg", cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))
    np.testing.assert_array_equal(read_mask(path, binary=True), mask // 255)


def test_video_frame_source_errors(tmp_path):
    with pytest.raises(DatasetError, match="clip.mp4: video file not found"):
        read_image(f"{tmp_path / 'clip.mp4'}#frame=3")
    with pytest.raises(DatasetError, match="frame number"):
        read_image(f"{tmp_path / 'clip.mp4'}#frame=x")
