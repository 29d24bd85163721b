"""Loading labeled roots, the checker (every problem kind, named with its file), summary, drop_bad, inspect CLI."""

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from surrogate_supervision.datasets import (
    DatasetError,
    check_labeled,
    drop_bad,
    load_labeled,
    rle_encode,
    summarize_labeled,
)

REPO = Path(__file__).resolve().parents[1]


def make_pairs(root: Path, sizes, classes=("background", "thing", "other"), mask_value=None, write_classes=True):
    """Write images/<stem>.png and masks/<stem>.png with ids cycling over the classes (and classes.txt)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (height, width) in enumerate(sizes):
        stem = f"img{i:02d}"
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((height, width, 3), 40 * i, np.uint8))
        mask = (np.arange(height * width).reshape(height, width) % len(classes)).astype(np.uint8)
        if mask_value is not None:
            mask = np.where(mask > 0, mask_value, 0).astype(np.uint8)
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)
    if write_classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_load_labeled_basic(tmp_path):
    ds = load_labeled(make_pairs(tmp_path, [(8, 10), (12, 6)]))
    assert ds.stems == ["img00", "img01"] and ds.num_classes == 3
    assert ds.class_names == ["background", "thing", "other"]
    assert ds.image_paths["img01"].name == "img01.png" and ds.mask_paths["img00"].parent.name == "masks"
    image, mask = ds.read_pair("img01")
    assert image.shape == (12, 6, 3) and mask.shape == (12, 6)
    assert check_labeled(ds) == []


def test_classes_inferred_from_masks(tmp_path):
    ds = load_labeled(make_pairs(tmp_path, [(8, 8)] * 2, classes=("a", "b", "c", "d")))
    (tmp_path / "classes.txt").unlink()
    assert load_labeled(tmp_path).class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert ds.num_classes == 4


def test_0_255_masks_give_two_classes_and_are_thresholded(tmp_path):
    make_pairs(tmp_path, [(8, 8)], classes=("a", "b"), mask_value=255, write_classes=False)
    ds = load_labeled(tmp_path)
    assert ds.class_names == ["class_0", "class_1"] and ds.binary
    assert set(np.unique(ds.read_pair("img00")[1])) == {0, 1}
    assert check_labeled(ds) == []


def test_palette_dataset(tmp_path):
    make_pairs(tmp_path, [(4, 4)], write_classes=False)
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    ids = np.arange(16).reshape(4, 4) % 3
    cv2.imwrite(str(tmp_path / "masks" / "img00.png"), colours[ids][..., ::-1])
    (tmp_path / "palette.txt").write_text("0 0 0\n255 0 0\n0 0 255\n")
    ds = load_labeled(tmp_path)
    assert ds.num_classes == 3
    np.testing.assert_array_equal(ds.read_pair("img00")[1], ids)


def test_rle_csv_dataset(tmp_path):
    make_pairs(tmp_path, [(6, 7), (5, 5)], write_classes=False)
    shutil.rmtree(tmp_path / "masks")
    masks = {"img00": np.eye(6, 7, dtype=np.uint8), "img01": np.ones((5, 5), np.uint8)}
    (tmp_path / "train.csv").write_text("id,rle\n" + "".join(f"{k},{rle_encode(m)}\n" for k, m in masks.items()))
    ds = load_labeled(tmp_path)
    assert ds.num_classes == 2 and check_labeled(ds) == []
    np.testing.assert_array_equal(ds.read_pair("img00")[1], masks["img00"])


def test_load_errors(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: dataset folder not found"):
        load_labeled(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no images/ folder"):
        load_labeled(tmp_path)
    make_pairs(tmp_path / "dup", [(4, 4)])
    cv2.imwrite(str(tmp_path / "dup" / "images" / "img00.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="same stem"):
        load_labeled(tmp_path / "dup")


def test_every_problem_kind_named_with_its_file(tmp_path):
    root = make_pairs(tmp_path, [(8, 8)] * 6)
    images, masks = root / "images", root / "masks"
    (images / "img00.png").write_bytes((images / "img00.png").read_bytes()[:60])  # truncated image
    (masks / "img01.png").unlink()  # missing mask
    cv2.imwrite(str(masks / "img02.png"), np.zeros((8, 9), np.uint8))  # size mismatch
    cv2.imwrite(str(masks / "img03.png"), np.full((8, 8), 7, np.uint8))  # id outside 0..2
    (masks / "img04.png").write_bytes(b"garbage")  # unreadable mask
    cv2.imwrite(str(masks / "orphan.png"), np.zeros((8, 8), np.uint8))  # mask without image
    problems = {str(problem) for problem in check_labeled(load_labeled(root))}
    expected = {
        f"{images / 'img00.png'}: truncated PNG",
        f"{masks / 'img01.png'}: missing",
        f"{masks / 'img02.png'}: mask is 8x9 but image is 8x8 (HxW)",
        f"{masks / 'img03.png'}: label ids [7] outside 0..2 (255 = ignore)",
        f"{masks / 'img04.png'}: not a readable image",
        f"{masks / 'orphan.png'}: no matching image",
    }
    assert len(problems) == len(expected)
    for start in expected:
        assert any(problem.startswith(start) for problem in problems), (start, problems)


def test_empty_dataset_is_a_problem(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    problems = check_labeled(load_labeled(tmp_path))
    assert any(str(p) == f"{tmp_path / 'images'}: no images found" for p in problems)


def test_summary_and_drop_bad(tmp_path):
    root = make_pairs(tmp_path, [(8, 10), (12, 6), (9, 9)])
    (root / "masks" / "img01.png").unlink()
    ds = load_labeled(root)
    summary = summarize_labeled(ds)
    assert summary["n_images"] == 3 and summary["n_masks"] == 2 and summary["n_bad_pairs"] == 1
    assert summary["height"] == [8, 12] and summary["width"] == [6, 10]
    fractions = [entry["pixel_fraction"] for entry in summary["classes"]]
    assert abs(sum(fractions) + summary["ignore_fraction"] - 1) < 1e-9
    assert [entry["n_images"] for entry in summary["classes"]] == [2, 2, 2]
    clean = drop_bad(ds, check_labeled(ds))
    assert clean.stems == ["img00", "img02"] and clean.dropped == ["img01"]
    assert check_labeled(clean) == []


def run_inspect(*args):
    return subprocess.run([sys.executable, str(REPO / "datasets" / "describe.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_inspect_cli_clean_corrupt_and_missing(synthetic_root, tmp_path):
    clean = run_inspect(synthetic_root)
    assert clean.returncode == 0, clean.stderr
    assert "images    24" in clean.stdout and "no problems found" in clean.stdout
    assert "skin" in clean.stdout and "checking" in clean.stderr  # progress bar goes to stderr

    corrupt = shutil.copytree(synthetic_root, tmp_path / "corrupt")
    jpg = corrupt / "images" / "synth_00003.jpg"
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    (corrupt / "masks" / "synth_00005.png").unlink()
    result = run_inspect(corrupt)
    assert result.returncode == 1
    assert f"{jpg}: truncated JPEG" in result.stdout
    assert "synth_00005.png: missing" in result.stdout

    missing = run_inspect(tmp_path / "absent")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'absent'}: dataset folder not found"
