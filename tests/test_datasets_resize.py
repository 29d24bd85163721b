"""datasets/resize.py: a downscaled copy of a labeled dataset that splits, reads and scores like the original."""

import numpy as np
import pytest

from surrogate_supervision.datasets import DatasetError
from surrogate_supervision.datasets.labeled import load_labeled
from surrogate_supervision.datasets.resize import downscaled_size, main, parse_args, resize_dataset, resize_pair
from surrogate_supervision.datasets.splits import load_or_make_splits


def test_sizes_keep_the_aspect_ratio_and_never_grow():
    assert downscaled_size(326, 384, 192) == (163, 192)
    assert downscaled_size(384, 254, 192) == (192, 127)
    assert downscaled_size(100, 80, 192) == (100, 80)  # already small: kept
    assert downscaled_size(1000, 2, 10) == (10, 1)  # a side never reaches 0


def test_masks_take_no_id_that_was_not_there():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), np.uint8)
    mask[50:250, 100:300], mask[0:10] = 3, 255  # one class, an ignore band: averaging would invent ids between
    small_image, small_mask = resize_pair(image, mask, 100)
    assert small_image.shape == (75, 100, 3) and small_mask.shape == (75, 100)
    assert set(np.unique(small_mask)) == {0, 3, 255}
    assert abs((small_mask == 3).mean() - (mask == 3).mean()) < 0.02


def test_the_copy_has_every_pair_downscaled_and_splits_like_the_original(synthetic_root, tmp_path):
    out = tmp_path / "small"
    assert main(parse_args([str(synthetic_root), "--max-side", "32", "--out", str(out)])) == 0
    original, copy = load_labeled(synthetic_root), load_labeled(out)
    assert copy.stems == original.stems and copy.class_names == original.class_names
    for stem in original.stems:
        image, mask = copy.read_pair(stem)
        big_image, big_mask = original.read_pair(stem)
        assert max(mask.shape) == 32 and image.shape[:2] == mask.shape
        assert set(np.unique(mask)) <= set(np.unique(big_mask))
    splits = [load_or_make_splits(ds, tmp_path / name) for ds, name in ((original, "a"), (copy, "b"))]
    assert splits[0] == splits[1]
    assert "longest side at most 32" in (out / "RESIZED.md").read_text()
    with pytest.raises(DatasetError, match="already exists"):  # never written over a finished or half copy
        resize_dataset(synthetic_root, out, 32)
