"""finetune/export.py: each format loads back and agrees with Keras; the agreement gate and errors.

Uses the tiny trained run of tests/test_predict.py (same directory: whichever module runs first trains it).
ONNX needs the optional packages tf2onnx and onnxruntime; without them its test is skipped.
"""

import importlib.util
import json

from surrogate_supervision.models.runner.cli import run
from surrogate_supervision.models.runner.inference import labels_from_logits
from surrogate_supervision.models.runner.runs import load_run

import numpy as np
import pytest
import tensorflow as tf
from test_predict import CROP, error_lines, trained_run  # noqa: F401 (a fixture)

import surrogate_supervision.finetune.export as export

ONNX_MISSING = [name for name in export.ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def export_args(run_dir, *extra):
    return export.parse_args([str(run_dir), "--samples", "2", "--repeats", "1", *extra])


@pytest.fixture(scope="module")
def keras_model(trained_run):  # noqa: F811
    return load_run(trained_run).model


@pytest.mark.parametrize("fmt, name, check_shape", [
    ("savedmodel", "saved_model", (2, 48, 80, 3)),  # any batch and size
    ("tflite", "model.tflite", (1, CROP, CROP, 3)),  # static: 1 x crop x crop
    pytest.param("onnx", "model.onnx", (2, 48, 80, 3), marks=pytest.mark.skipif(
        bool(ONNX_MISSING), reason=f"optional packages not installed: {' '.join(ONNX_MISSING)} "
                                   "(pip install tf2onnx onnxruntime)")),
])
def test_exported_model_loads_and_agrees_with_keras(trained_run, keras_model, tmp_path, capsys,  # noqa: F811
                                                     fmt, name, check_shape):
    out = tmp_path / name

    assert run(export.main, export_args(trained_run, "--format", fmt, "--out", str(out))) == 0

    report = json.loads(out.with_name(f"{name}.json").read_text())
    assert report["format"] == fmt and report["size"] == CROP and report["label_agreement"] >= 0.999
    assert set(report["latency_s_per_image"]) == {"keras", fmt}
    assert all(seconds > 0 for seconds in report["latency_s_per_image"].values())
    table = capsys.readouterr().out
    assert "labels agree" in table and f"1x{CROP}x{CROP}x3" in table
    # An independent check on new inputs, loaded by the script's own loader and compared here
    x = np.random.default_rng(1).uniform(-1, 1, check_shape).astype(np.float32)
    exported = np.asarray(export.FORMATS[fmt][1](out)(x))
    expected = keras_model(tf.constant(x), training=False).numpy()
    assert exported.shape == expected.shape
    np.testing.assert_allclose(exported, expected, atol=1e-3)
    assert (labels_from_logits(exported) == labels_from_logits(expected)).mean() >= 0.999


def test_disagreeing_export_exits_1_with_the_agreement(trained_run, keras_model, tmp_path, monkeypatch,  # noqa: F811
                                                       capsys):
    """A stand-in 'export' whose logits are negated: the argmax moves, so the gate must stop it."""
    negated = lambda path: lambda x: -keras_model(tf.constant(x), training=False).numpy()  # noqa: E731
    monkeypatch.setitem(export.FORMATS, "savedmodel", (lambda model, out, size: None, negated))

    assert run(export.main, export_args(trained_run, "--format", "savedmodel", "--out", str(tmp_path / "m"))) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "labels agree with Keras on" in errors[0] and "required 99.9 %" in errors[0]
    assert json.loads((tmp_path / "m.json").read_text())["label_agreement"] < 0.999


def test_onnx_without_its_packages_exits_1_saying_what_to_install(trained_run, tmp_path, monkeypatch,  # noqa: F811
                                                                  capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)

    assert run(export.main, export_args(trained_run, "--format", "onnx", "--out", str(tmp_path / "m.onnx"))) == 1

    assert error_lines(capsys.readouterr().err) == [
        "error: --format onnx needs tf2onnx and onnxruntime: pip install tf2onnx onnxruntime"]


def test_run_without_weights_exits_1_in_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "resnet50", "width": 0.125, "output_stride": 16,
                                                      "regular_conv": False, "loss": "ce", "classes": ["a", "b"]}))

    assert run(export.main, export_args(tmp_path, "--format", "tflite")) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "no best.weights.h5" in errors[0]


def test_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        export.parse_args(["run", "--format", "coreml"])
    assert stop.value.code == 2
    assert "invalid choice: 'coreml'" in capsys.readouterr().err


@pytest.mark.parametrize("fmt, out", [("tflite", "exported"), ("onnx", "model.tflite")])
def test_a_file_format_with_a_folder_like_out_is_refused_naming_the_flag(capsys, fmt, out):
    with pytest.raises(SystemExit) as stop:
        export.parse_args(["run", "--format", fmt, "--out", out])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--out {out}: a {fmt} export is one file ending in .{fmt}" in last and ".tmp" not in last
