"""tf.data pipelines: crop/pad geometry, gray values, shapes, determinism, resume, skip_bad, evaluation helpers."""

import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

import surrogate_supervision.datasets.pipeline as pipeline
from helpers import eval_examples
from surrogate_supervision.datasets import (
    SkipCounter,
    colorization_dataset,
    list_unlabeled,
    load_labeled,
    pad_to_grid,
    segmentation_dataset,
    unwrap_dataset_error,
)


def pairs(root, stems=None):
    ds = load_labeled(root)
    stems = ds.stems if stems is None else stems
    return [ds.image_paths[s] for s in stems], [ds.mask_paths[s] for s in stems]


def first_elements(dataset, count):
    return [tuple(np.asarray(t) for t in (x if isinstance(x, tuple) else (x,))) for x in dataset.take(count)]


@pytest.fixture
def position_pair(tmp_path):
    """A 20x30 image whose red/green channels encode row/column (always < 255), and a mask of 1s."""
    rows, cols = np.mgrid[0:20, 0:30]
    rgb = np.stack([rows * 10, cols * 8, np.full_like(rows, 7)], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "pos.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "pos_mask.png"), np.ones((20, 30), np.uint8))
    return tmp_path / "pos.png", tmp_path / "pos_mask.png"


def test_small_image_large_crop_keeps_every_pixel_and_pads_exactly(position_pair):
    image_path, mask_path = position_pair
    data = segmentation_dataset([image_path], [mask_path], crop=61, batch=1, seed=5)  # >= 2 * 30 - 1
    for images, masks in data.take(40):
        image, mask = images.numpy()[0], masks.numpy()[0]
        inside = mask == 1
        assert inside.sum() == 20 * 30  # the whole image is inside every crop
        assert np.all(mask[~inside] == 255) and np.all(image[~inside] == 1.0)
        rows, cols = np.nonzero(inside)
        block = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        red = np.round((block[..., 0] + 1) * 127.5) / 10
        assert np.array_equal(red, np.repeat(np.arange(20)[:, None], 30, 1))


def test_crop_centre_uniform_inside_image_and_flip(position_pair):
    image_path, mask_path = position_pair
    centres, flipped = set(), 0
    for images, masks in segmentation_dataset([image_path], [mask_path], crop=5, batch=1, seed=1).take(300):
        image, mask = np.round((images.numpy()[0] + 1) * 127.5), masks.numpy()[0]
        assert mask[2, 2] == 1  # the crop centre is always an image pixel
        centres.add((int(image[2, 2, 0]) // 10, int(image[2, 2, 1]) // 8))
        if mask[2, 1] == 1 and mask[2, 3] == 1:
            flipped += image[2, 1, 1] > image[2, 3, 1]
    assert {r for r, _ in centres} == set(range(20)) and {0, 29} <= {c for _, c in centres}
    assert 50 < flipped < 250


def test_no_flip_when_disabled(position_pair):
    image_path, mask_path = position_pair
    for images, masks in segmentation_dataset([image_path], [mask_path], crop=5, batch=1, flip=False).take(50):
        image, mask = np.round((images.numpy()[0] + 1) * 127.5), masks.numpy()[0]
        if mask[2, 1] == 1 and mask[2, 3] == 1:
            assert image[2, 1, 1] < image[2, 3, 1]


def test_gray_values_padding_and_stride4_views(tmp_path):
    cv2.imwrite(str(tmp_path / "solid.png"), np.full((6, 7, 3), (50, 100, 200), np.uint8))  # BGR of RGB 200,100,50
    batch = next(iter(colorization_dataset([tmp_path / "solid.png"], crop=33, batch=2, seed=0)))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "gray": (2, 33, 33, 3), "rgb": (2, 33, 33, 3), "gray_small": (2, 9, 9, 3), "rgb_small": (2, 9, 9, 3)}
    rgb, gray = batch["rgb"].numpy(), batch["gray"].numpy()
    image = np.any(rgb < 1.0, axis=-1)
    assert image.sum() == 2 * 6 * 7
    np.testing.assert_allclose(rgb[image], np.tile([200, 100, 50], (84, 1)) / 127.5 - 1, atol=1e-6)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 127.5 - 1
    np.testing.assert_allclose(gray[image], expected, atol=1e-5)
    np.testing.assert_allclose(gray[~image], 1.0, atol=1e-5)
    np.testing.assert_allclose(batch["rgb_small"].numpy(), rgb[:, ::4, ::4], atol=1e-6)  # the stride-4 grid
    np.testing.assert_allclose(batch["gray_small"].numpy(), gray[:, ::4, ::4], atol=1e-5)


def test_segmentation_shapes_dtypes_ranges(synthetic_root):
    images, masks = next(iter(segmentation_dataset(*pairs(synthetic_root), crop=48, batch=3, num_classes=5)))
    assert images.shape == (3, 48, 48, 3) and images.dtype == tf.float32
    assert masks.shape == (3, 48, 48) and masks.dtype == tf.int32
    assert -1 <= images.numpy().min() and images.numpy().max() <= 1
    assert set(np.unique(masks.numpy())) <= {0, 1, 2, 3, 4, 255}


def test_determinism_and_seed(synthetic_root):
    files = pairs(synthetic_root)
    a = first_elements(segmentation_dataset(*files, crop=32, batch=2, seed=3), 3)
    b = first_elements(segmentation_dataset(*files, crop=32, batch=2, seed=3), 3)
    c = first_elements(segmentation_dataset(*files, crop=32, batch=2, seed=4), 3)
    assert all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert not all(np.array_equal(x, y) for p, q in zip(a, c) for x, y in zip(p, q))


@pytest.mark.parametrize("k", [5, 30])  # within the first epoch and in the second (24 files)
def test_resume_matches_fresh_stream(synthetic_root, k):
    files = pairs(synthetic_root)
    fresh = first_elements(segmentation_dataset(*files, crop=32, batch=1, seed=2), k + 2)
    resumed = first_elements(segmentation_dataset(*files, crop=32, batch=1, seed=2, start_index=k), 2)
    for expected, got in zip(fresh[k:], resumed):
        assert all(np.array_equal(x, y) for x, y in zip(expected, got))
    sources = list_unlabeled([synthetic_root / "unlabeled"])
    fresh = [b["rgb"].numpy() for b in colorization_dataset(sources, crop=32, batch=1).take(k + 1)]
    resumed = next(iter(colorization_dataset(sources, crop=32, batch=1, start_index=k)))["rgb"].numpy()
    assert np.array_equal(fresh[k], resumed)


def test_resume_decodes_nothing_before_start(synthetic_root, monkeypatch):
    calls = []
    real = pipeline.read_pair
    monkeypatch.setattr(pipeline, "read_pair", lambda *a, **k: calls.append(1) or real(*a, **k))
    next(iter(segmentation_dataset(*pairs(synthetic_root), crop=32, batch=1, start_index=100_000)))
    assert 1 <= len(calls) < 40  # only the requested element and a bounded read-ahead


def test_bad_file_raises_naming_it_or_is_skipped_and_counted(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "copy")
    bad = root / "images" / "synth_00002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    files = pairs(root, [f"synth_{i:05d}" for i in range(5)])
    with pytest.raises(tf.errors.OpError, match="synth_00002.jpg") as raised:
        for _ in segmentation_dataset(*files, crop=16, batch=1).take(10):
            pass
    assert str(unwrap_dataset_error(raised.value)) == f"{bad}: truncated JPEG (no end-of-image marker)"
    counter = SkipCounter()
    kept = first_elements(segmentation_dataset(*files, crop=16, batch=1, skip_bad=True, counter=counter), 10)
    assert counter.count == 1 and str(bad) in counter.messages and counter.events >= 2
    again = first_elements(segmentation_dataset(*files, crop=16, batch=1, skip_bad=True, counter=SkipCounter()), 10)
    assert all(np.array_equal(x, y) for p, q in zip(kept, again) for x, y in zip(p, q))


def test_out_of_range_label_is_a_bad_file(synthetic_root):
    images, masks = pairs(synthetic_root, ["synth_00000"])
    with pytest.raises(tf.errors.OpError, match=r"synth_00000.png: label ids \[2, 3"):
        next(iter(segmentation_dataset(images, masks, crop=16, batch=1, num_classes=2)))


def test_evaluation_mode_single_ordered_pass(synthetic_root):
    batches = list(segmentation_dataset(*pairs(synthetic_root, [f"synth_{i:05d}" for i in range(5)]),
                                        crop=200, batch=2, training=False))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    ds = load_labeled(synthetic_root)
    image, mask = ds.read_pair("synth_00000")
    valid = batches[0][1].numpy()[0] != 255
    assert valid.sum() == mask.size  # a centred 200 crop holds the whole image


def test_eval_examples_and_padding(synthetic_root):
    ds = load_labeled(synthetic_root)
    stems = ds.stems[:3]
    examples = list(eval_examples(ds, stems))
    assert [stem for stem, _, _ in examples] == stems
    for _, image, mask in examples:
        assert image.dtype == np.uint8 and image.shape[:2] == mask.shape
    from_paths = list(eval_examples(pairs(synthetic_root, stems), stems, num_classes=5))
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(examples, from_paths))
    padded, (height, width) = pad_to_grid(np.zeros((18, 33, 3), np.float32), 16, 1.0)
    assert padded.shape == (33, 33, 3) and (height, width) == (18, 33)  # 16k + 1, like 513 and 193
    assert padded[18:].min() == 1.0 and padded[:18, :33].max() == 0.0
    batch, size = pad_to_grid(tf.zeros((2, 17, 5, 3)), 8)
    assert tuple(batch.shape) == (2, 17, 9, 3) and size == (17, 5)


def test_video_frames_through_colorization(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(12):
        writer.write(np.full((24, 32, 3), 20 * i, np.uint8))
    writer.release()
    sources = list_unlabeled([tmp_path / "clip.avi"], video_every=5)
    assert len(sources) == 3
    batch = next(iter(colorization_dataset(sources, crop=16, batch=3)))
    assert batch["rgb"].shape == (3, 16, 16, 3)
