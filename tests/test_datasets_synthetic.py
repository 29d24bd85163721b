"""Synthetic demo data: files, classes, size variation, determinism per seed, colour-vs-gray cues, CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from surrogate_supervision.datasets import (
    DatasetError,
    check_labeled,
    default_synthetic_root,
    ensure_synthetic,
    load_labeled,
    make_synthetic,
)
from surrogate_supervision.datasets.synthetic import CLASS_NAMES

REPO = Path(__file__).resolve().parents[1]


def test_layout_and_classes(synthetic_root):
    assert len(list((synthetic_root / "images").glob("*.jpg"))) == 24
    assert len(list((synthetic_root / "masks").glob("*.png"))) == 24
    assert len(list((synthetic_root / "unlabeled").glob("*.png"))) == 12
    assert (synthetic_root / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert "seed=0" in (synthetic_root / "SOURCE.md").read_text()
    assert not list(synthetic_root.parent.glob(".*tmp*"))  # the temporary folder was renamed away
    ds = load_labeled(synthetic_root)
    assert ds.num_classes == 5 and check_labeled(ds) == []
    shapes, present = set(), set()
    for stem in ds.stems:
        image, mask = ds.read_pair(stem)
        shapes.add(image.shape[:2])
        present |= set(np.unique(mask).tolist())
    assert present == set(range(5))
    assert len(shapes) > 5 and all(56 <= side <= 72 for shape in shapes for side in shape)


def test_colour_separates_classes_but_gray_does_not(synthetic_root):
    ds = load_labeled(synthetic_root)
    pixels, labels = zip(*(ds.read_pair(stem) for stem in ds.stems))
    rgb = np.concatenate([p.reshape(-1, 3) for p in pixels]).astype(np.float64)
    labels = np.concatenate([m.ravel() for m in labels])

    def nearest_centroid_accuracy(features):
        centroids = np.stack([features[labels == c].mean(0) for c in range(5)])
        predicted = np.argmin(((features[:, None] - centroids[None]) ** 2).sum(-1), 1)
        return np.mean([np.mean(predicted[labels == c] == c) for c in range(5)])

    gray = rgb @ np.array([[0.299], [0.587], [0.114]])
    chroma = rgb / (rgb.sum(1, keepdims=True) + 1)
    assert nearest_centroid_accuracy(gray) < 0.45 < 0.8 < nearest_centroid_accuracy(chroma)


def test_deterministic_per_seed_and_prefix_stable(tmp_path):
    a = make_synthetic(tmp_path / "a", n_labeled=4, n_unlabeled=2, size=32, seed=1)
    b = make_synthetic(tmp_path / "b", n_labeled=6, n_unlabeled=1, size=32, seed=1)
    c = make_synthetic(tmp_path / "c", n_labeled=4, n_unlabeled=2, size=32, seed=2)
    for name in ("images/synth_00003.jpg", "masks/synth_00003.png", "unlabeled/synth_u00000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "masks/synth_00000.png").read_bytes() != (c / "masks/synth_00000.png").read_bytes()


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="already exists"):
        make_synthetic(tmp_path / "full", n_labeled=1, n_unlabeled=0)


def test_default_root_and_ensure(tmp_path, monkeypatch):
    monkeypatch.setenv("SURROGATE_DATA_HOME", str(tmp_path))
    assert default_synthetic_root() == tmp_path / "synthetic-64px"
    monkeypatch.delenv("SURROGATE_DATA_HOME")
    assert default_synthetic_root() == Path.home() / ".cache" / "surrogate-supervision" / "synthetic-64px"
    root = make_synthetic(tmp_path / "made", n_labeled=2, n_unlabeled=1, size=32)
    before = (root / "SOURCE.md").stat().st_mtime_ns
    assert ensure_synthetic(root) == root and (root / "SOURCE.md").stat().st_mtime_ns == before


@pytest.mark.slow
def test_ensure_generates_default_dataset_once(tmp_path, monkeypatch):
    monkeypatch.setenv("SURROGATE_DATA_HOME", str(tmp_path))
    root = ensure_synthetic()
    assert root == tmp_path / "synthetic-64px" and len(list((root / "images").iterdir())) == 200
    assert len(list((root / "unlabeled").iterdir())) == 400


def test_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "surrogate_supervision.datasets.synthetic",
                             "--out", str(tmp_path / "cli"), "--n-labeled", "3", "--n-unlabeled", "2", "--size", "32"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "cli")
    assert len(list((tmp_path / "cli" / "images").iterdir())) == 3
