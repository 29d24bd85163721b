"""pretrain/colour_by_class.py: chroma L1 per class on a labeled root's test split."""

import json

from surrogate_supervision.models.colour_bins import CHROMA, NUM_BINS

import numpy as np
import pytest

import surrogate_supervision.pretrain.evaluate as evaluate
from surrogate_supervision import datasets
from surrogate_supervision.pretrain.colour_accuracy import auc_from_bin_sums
from surrogate_supervision.pretrain.colour_by_class import (
    REFERENCES,
    accumulate,
    class_colour_scores,
    covering_crop,
    describe_by_class,
)


def rgb_with_chroma(cb, cr):
    """An RGB pixel whose chroma is (cb, cr)."""
    return np.linalg.lstsq(CHROMA.T, np.array([cb, cr], np.float32), rcond=None)[0]


def _share(distance):
    """The share of the 151 thresholds (0, 0.01, …, 1.5) at or above `distance`."""
    return sum(1 for t in range(151) if t / 100 >= distance - 1e-9) / 151


def test_accumulate_sums_the_error_per_class_and_leaves_out_ignored_pixels():
    red, blue = rgb_with_chroma(-0.1, 0.3), rgb_with_chroma(0.2, -0.1)
    real = np.stack([red, red, blue, blue])[None, None]   # (1, 1, 4, 3)
    fake = np.stack([red, blue, blue, red])[None, None]
    gray = np.zeros_like(real)
    mask = np.array([[[0, 0, 1, 255]]])                    # the last pixel is padding / ignore
    totals, accuracy = np.zeros((2, 4)), np.zeros((2, len(REFERENCES), NUM_BINS, 2))
    accumulate(totals, accuracy, real, fake, gray, mask, medians=[np.array([-0.1, 0.3]), np.zeros(2)])
    # class 0: two red pixels, the fake gets one right and one blue; gray is |chroma(red)| away from each
    np.testing.assert_allclose(totals[0], [2 * 0.4, 0.3 + 0.4, 0.0, 4], atol=1e-5)
    # class 1: one blue pixel, the fake right, the class median (zero) as far as gray
    np.testing.assert_allclose(totals[1], [0.3, 0.0, 0.3, 2], atol=1e-5)
    # colour accuracy: the class median (red) is exact on class 0, the fake on class 1, each pixel counted once
    (gray0, fake0, median0), (gray1, fake1, median1) = ([auc_from_bin_sums(a)["auc"] for a in c] for c in accuracy)
    assert median0 == 1.0 and fake1 == 1.0 and accuracy[:, 0, :, 1].sum() == 3
    # gray is |(-0.1, 0.3)| = 0.316 from red: within the thresholds 0.32 … 1.50, 119 of 151; the fake's blue
    # pixel is 0.5 from red
    assert _share(0.316) == 119 / 151 and gray0 == pytest.approx(119 / 151)
    assert fake0 == pytest.approx((1 + _share(0.5)) / 2) and gray1 == pytest.approx(_share(np.hypot(0.2, 0.1)))


def test_scores_the_segmentation_test_split_and_an_identity_colorizer_equals_gray(synthetic_root, tmp_path):
    gray_out = lambda x, training: x[:, ::4, ::4]  # noqa: E731 (a generator that returns its gray input)
    result = class_colour_scores(gray_out, synthetic_root, split_seed=0)
    ds = datasets.load_labeled(synthetic_root)
    assert result["n_test_images"] == len(datasets.load_or_make_splits(ds, tmp_path, seed=0)["test"])
    assert result["crop"] == covering_crop(ds, ds.stems) and (result["crop"] - 1) % 16 == 0
    scored = {name: s for name, s in result["classes"].items() if s}
    assert scored and abs(sum(s["pixel_share"] for s in scored.values()) - 1) < 1e-9
    for s in [*scored.values(), result["all"]]:
        assert s["chroma_l1_colorized"] == s["chroma_l1_gray"]
        assert s["auc_rebalanced_colorized"] == s["auc_rebalanced_gray"] and s["auc_colorized"] == s["auc_gray"]
    # the synthetic scenes paint each class in its own colour family: the class median beats gray somewhere
    assert any(s["chroma_l1_class_median"] < 0.8 * s["chroma_l1_gray"] for s in scored.values())
    assert "vs gray" in describe_by_class(result)


def test_evaluate_by_class_writes_the_json(synthetic_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"split_seed": 0}))
    monkeypatch.setattr(evaluate, "evaluate_run", lambda run, generator: None)
    monkeypatch.setattr(evaluate, "describe", lambda scores: "")
    monkeypatch.setattr(evaluate, "load_generator", lambda run: (lambda x, training: x[:, ::4, ::4]))
    assert evaluate.main(evaluate.parse_args([str(run), "--by-class", str(synthetic_root)])) == 0
    written = json.loads((run / "colour_by_class.json").read_text())
    assert written["root"] == str(synthetic_root) and set(written["classes"]) == set(
        datasets.load_labeled(synthetic_root).class_names)
