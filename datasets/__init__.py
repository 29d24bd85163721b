"""Everything that turns files into tensors: readers, checks, splits, tf.data pipelines, synthetic data."""

from surrogate_supervision.datasets.checks import Problem, check_labeled, drop_bad, summarize_labeled
from surrogate_supervision.datasets.errors import DatasetError, FileError, FlagError, ToolkitError, read_text
from surrogate_supervision.datasets.evaluation import pad_to_grid
from surrogate_supervision.datasets.images import read_image
from surrogate_supervision.datasets.labeled import LabeledDataset, load_labeled
from surrogate_supervision.datasets.masks import IGNORE_ID, load_palette, read_mask
from surrogate_supervision.datasets.rle import read_rle_csv, rle_decode, rle_encode, write_rle_csv
from surrogate_supervision.datasets.splits import load_or_make_splits, select_count, select_fraction
from surrogate_supervision.datasets.unlabeled import Source, list_unlabeled

# Loaded on first use: pipeline imports TensorFlow (seconds), which the checker CLI does not need, and importing
# synthetic here would make `python -m surrogate_supervision.datasets.synthetic` warn that it was imported twice.
_LAZY = {
    "SkipCounter": "pipeline", "colorization_dataset": "pipeline", "segmentation_dataset": "pipeline",
    "unwrap_dataset_error": "pipeline", "default_synthetic_root": "synthetic", "ensure_synthetic": "synthetic",
    "make_synthetic": "synthetic",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'datasets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "IGNORE_ID", "DatasetError", "FileError", "FlagError", "LabeledDataset", "Problem", "SkipCounter", "Source",
    "ToolkitError", "check_labeled", "colorization_dataset", "default_synthetic_root", "drop_bad", "ensure_synthetic",
    "list_unlabeled", "load_labeled", "load_or_make_splits", "load_palette", "make_synthetic",
    "pad_to_grid", "read_image", "read_mask", "read_rle_csv", "read_text", "rle_decode", "rle_encode",
    "segmentation_dataset", "select_count", "select_fraction", "summarize_labeled", "unwrap_dataset_error",
    "write_rle_csv",
]
