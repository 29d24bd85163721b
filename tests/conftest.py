"""Shared test fixtures: a tiny synthetic dataset and the location of the real datasets (never copied)."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic labeled dataset (24 pairs, 12 unlabeled, ~64 px), generated once per session."""
    from surrogate_supervision.datasets import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("data") / "synthetic", n_labeled=24, n_unlabeled=12, size=64)


@pytest.fixture
def shared_dataset():
    """shared_dataset("kvasir_seg") -> its root, or skip when ../shared/data is not there."""

    def locate(name):
        root = SHARED_DATA / name
        if not root.is_dir():
            pytest.skip(f"real dataset not available: {root} is absent")
        return root

    return locate


# Quiet TensorFlow's C++ logging; conftest loads before any test module imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
