"""finetune/segment.py on tiny CPU runs: every --init, nested fractions, frozen encoders, outputs and errors.

Three one-step runs (scratch, surrogate with a frozen encoder, imagenet+surrogate on a dataset with a
truncated image and --skip-bad) are shared by the module; runs call `main` in-process at width 0.125.
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from surrogate_supervision.models import build_deeplabv3plus, build_generator, build_segmenter
from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.losses import make_loss
from surrogate_supervision.models.resnet import is_backbone_layer
from surrogate_supervision.models.rundir import ARCHITECTURE_FILE, GENERATOR_FILE, save_weights
from surrogate_supervision.models.runner import runsetup
from surrogate_supervision.models.runner.cli import architecture_from_flags, run
from surrogate_supervision.models.transfer import load_generator

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import surrogate_supervision.finetune.segment as segment
import surrogate_supervision.pretrain.colorize as colorize
from surrogate_supervision.datasets import load_labeled

REPO = Path(__file__).resolve().parents[1]
WIDTH = 0.125
FLAGS = ["--width", str(WIDTH), "--crop", "65", "--batch", "2", "--steps", "1", "--eval-every", "1",
         "--checkpoint-every", "1"]
METRIC_FIELDS = {"dice_per_class", "dice_mean", "dice_grouped", "dice_foreground", "iou_per_class", "miou",
                 "pixel_accuracy", "n_test_images", "n_train_images", "init", "frac", "seed", "steps", "best_step",
                 "stopped_step", "labels", "source_run"}
RUNS = {"scratch_run": ("scratch", 0.5), "surrogate_run": ("surrogate", 0.25),
        "skip_bad_run": ("imagenet+surrogate", 1.0)}


def segment_args(root, out, *extra):
    return segment.parse_args(["--data", str(root), "--out", str(out), *FLAGS, *extra])


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def read_lines(path):
    return path.read_text().split()


@pytest.fixture(scope="module")
def surrogate(synthetic_root, tmp_path_factory):
    """The generator of a two-step colorization run, copied so later runs in the session cannot change it.

    Same directory and flags as tests/test_pretrain.py: when both modules run, the second finds it finished.
    """
    run_dir = tmp_path_factory.getbasetemp() / "colorize_w0.125_c65"
    args = colorize.parse_args(["--data", str(synthetic_root), "--out", str(run_dir), "--width", str(WIDTH),
                                "--crop", "65", "--batch", "2", "--checkpoint-every", "2", "--sample-every", "2",
                                "--steps", "2"])
    assert colorize.main(args) == 0
    copy = tmp_path_factory.mktemp("surrogate")
    for name in (GENERATOR_FILE, ARCHITECTURE_FILE):
        shutil.copy(run_dir / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def corrupt_root(synthetic_root, tmp_path_factory):
    """A copy of the synthetic set with one image cut in half; returns (root, truncated file)."""
    root = tmp_path_factory.mktemp("corrupt") / "synthetic"
    shutil.copytree(synthetic_root, root)
    bad = sorted((root / "images").iterdir())[3]
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return root, bad


@pytest.fixture(scope="module")
def scratch_run(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch")
    assert segment.main(segment_args(synthetic_root, out, "--init", "scratch", "--frac", "0.5",
                                     "--group", "bg:0;people:1-2;things:3-4", "--lr-schedule", "poly")) == 0
    return out


@pytest.fixture(scope="module")
def surrogate_run(synthetic_root, surrogate, tmp_path_factory):
    out = tmp_path_factory.mktemp("surrogate_frozen")
    assert segment.main(segment_args(synthetic_root, out, "--init", "surrogate", "--surrogate", str(surrogate),
                                     "--frac", "0.25", "--freeze-encoder")) == 0
    return out


@pytest.fixture(scope="module")
def skip_bad_run(corrupt_root, surrogate, tmp_path_factory):
    """imagenet+surrogate (the mechanics only: this generator started from scratch) with --skip-bad."""
    out = tmp_path_factory.mktemp("skip_bad")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert segment.main(segment_args(corrupt_root[0], out, "--init", "imagenet+surrogate", "--surrogate",
                                         str(surrogate / GENERATOR_FILE), "--skip-bad")) == 0
    (out / "stderr.txt").write_text(stderr.getvalue())
    return out


@pytest.mark.parametrize("fixture", RUNS)
def test_each_init_trains_and_reports_test_metrics(request, fixture):
    out = request.getfixturevalue(fixture)
    init, frac = RUNS[fixture]
    metrics = json.loads((out / "metrics.json").read_text())
    train = read_lines(out / "train_stems.txt")
    test = read_lines(out / "splits" / "test.txt")

    assert METRIC_FIELDS <= set(metrics)
    assert (metrics["init"], metrics["frac"], metrics["seed"], metrics["steps"]) == (init, frac, 0, 1)
    assert metrics["n_train_images"] == metrics["labels"] == len(train) and metrics["n_test_images"] == len(test) > 0
    assert list(metrics["dice_per_class"]) == ["background", "skin", "hair", "cloth", "accessory"]
    per_class = [*metrics["dice_per_class"].values(), *metrics["iou_per_class"].values()]
    assert all(v is None or 0 <= v <= 1 for v in per_class)
    assert all(0 <= metrics[k] <= 1 for k in ("dice_mean", "dice_grouped", "miou", "pixel_accuracy"))
    assert (out / "best.weights.h5").is_file()
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((out / "logs").glob("events.out.tfevents.*"))
    assert json.loads((out / "config.json").read_text())["init"] == init

    report = json.loads((out / "init.json").read_text())
    assert report["init"] == init
    if init == "scratch":
        assert report["copied"] == []
    else:
        assert report["skipped"] == ["logits"] and len(report["copied"]) > 100
        assert report["source"].endswith(GENERATOR_FILE)


def test_metrics_are_computed_on_the_test_split(scratch_run, synthetic_root):
    """Every non-ignored pixel of the test masks, and no other, is counted; --group is applied."""
    metrics = json.loads((scratch_run / "metrics.json").read_text())
    ds = load_labeled(synthetic_root)
    test_stems = read_lines(scratch_run / "splits" / "test.txt")
    test_pixels = sum(int((ds.read_pair(stem)[1] != 255).sum()) for stem in test_stems)

    assert metrics["n_pixels"] == test_pixels
    assert (metrics["best_step"], metrics["stopped_step"], metrics["patience"]) == (1, 1, None)
    assert metrics["groups"] == {"bg": [0], "people": [1, 2], "things": [3, 4]}
    assert set(metrics["dice_per_group"]) == {"bg", "people", "things"}
    assert metrics["best_step"] == 1


def test_fractions_are_nested_and_splits_shared_across_inits(scratch_run, surrogate_run, skip_bad_run, corrupt_root):
    splits = {name: read_lines(scratch_run / "splits" / f"{name}.txt") for name in ("train", "val", "test")}
    n_train = len(splits["train"])
    half, quarter = read_lines(scratch_run / "train_stems.txt"), read_lines(surrogate_run / "train_stems.txt")

    assert len(half) == math.ceil(0.5 * n_train) and len(quarter) == math.ceil(0.25 * n_train)
    assert set(quarter) < set(half) < set(splits["train"])
    for name, stems in splits.items():
        assert read_lines(surrogate_run / "splits" / f"{name}.txt") == stems
        # --skip-bad drops the bad pair from the same draw instead of drawing again
        assert read_lines(skip_bad_run / "splits" / f"{name}.txt") == [s for s in stems if s != corrupt_root[1].stem]


def test_surrogate_init_with_frozen_encoder_keeps_the_generator_backbone(surrogate_run, surrogate):
    model = build_deeplabv3plus(5, width=WIDTH)
    model.load_weights(surrogate_run / "best.weights.h5")
    trained = {layer.name: layer for layer in model.layers if layer.weights}
    generator = {layer.name: layer for layer in load_generator(surrogate).layers if layer.weights}

    backbone = [name for name in trained if is_backbone_layer(name)]
    assert len(backbone) > 100
    for name in backbone:  # kernels, BN scales and moving statistics: copied, then never changed
        for actual, expected in zip(trained[name].weights, generator[name].weights, strict=True):
            np.testing.assert_array_equal(actual.numpy(), expected.numpy(), err_msg=actual.path)

    # ...while the trained head did move away from the generator (so the comparison above can fail)
    head = [name for name in trained if not is_backbone_layer(name) and name != "logits"]
    changed = [name for name in head if any(not np.array_equal(a.numpy(), e.numpy())
                                            for a, e in zip(trained[name].weights, generator[name].weights))]
    assert "decoder_proj_conv" in changed
    assert any(name.endswith("_bn") for name in changed)  # unfrozen BN statistics do update


def test_rerunning_a_finished_run_returns_at_once(scratch_run, synthetic_root, monkeypatch, capsys):
    before = (scratch_run / "metrics.json").stat().st_mtime_ns
    monkeypatch.setattr(runsetup, "configure", lambda **options: pytest.fail("a finished run started again"))

    assert segment.main(segment_args(synthetic_root, scratch_run, "--init", "scratch", "--frac", "0.5",
                                     "--group", "bg:0;people:1-2;things:3-4", "--lr-schedule", "poly")) == 0

    assert "already finished" in capsys.readouterr().out
    assert (scratch_run / "metrics.json").stat().st_mtime_ns == before
    assert json.loads((scratch_run / "config.json").read_text())["lr_schedule"] == "poly"
    # TensorBoard shows the schedule: after the last step poly has brought the rate to 0
    rates = [float(tf.make_ndarray(v.tensor)) for path in (scratch_run / "logs").rglob("events.out.tfevents.*")
             for event in tf.compat.v1.train.summary_iterator(str(path)) for v in event.summary.value
             if v.tag == "train/learning_rate"]
    assert rates == [0.0]


def test_skip_bad_skips_the_truncated_image_and_reports_the_count(skip_bad_run, corrupt_root):
    bad_stem = corrupt_root[1].stem
    assert json.loads((skip_bad_run / "config.json").read_text())["skipped_files"] == 1
    assert "skipping 1 bad files" in (skip_bad_run / "stderr.txt").read_text()
    assert bad_stem not in read_lines(skip_bad_run / "train_stems.txt")
    assert (skip_bad_run / "metrics.json").is_file()


def test_truncated_image_exits_1_naming_the_file(corrupt_root, tmp_path):
    root, bad = corrupt_root
    result = subprocess.run(
        [sys.executable, "finetune/segment.py", "--data", str(root), "--out", str(tmp_path / "run"), *FLAGS],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)

    assert result.returncode == 1, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and str(bad) in errors[0] and "truncated" in errors[0] and "--skip-bad" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--init", "bogus"], "Wrong --init 'bogus', supported: scratch, imagenet, surrogate, imagenet+surrogate, control"),
    (["--patience", "0"], "--patience must be at least 1, got 0"),
    (["--min-delta", "-0.1"], "--min-delta must be >= 0, got -0.1"),
    (["--min-steps", "-1"], "--min-steps must be >= 0, got -1"),
    (["--patience", "3", "--distribute", "multiworker"], "--patience: not with --distribute multiworker"),
    (["--frac", "0"], "--frac must be in (0, 1], got 0.0"),
    (["--frac", "1.5"], "--frac must be in (0, 1], got 1.5"),
    (["--loss", "focal"], "invalid choice: 'focal'"),
    (["--labels", "0"], "--labels must be at least 1, got 0"),
    (["--labels", "8", "--frac", "0.5"], "--labels and --frac both choose the training images; give one"),
    (["--init", "segmentation"], "--init segmentation needs --source-run RUN"),
    (["--source-run", "runs/x"], "--source-run: only with --init segmentation, not --init scratch"),
])
def test_parser_rejects_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        segment.parse_args(["--out", "x", *flags])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_surrogate_exits_1_naming_it(synthetic_root, tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    args = segment_args(synthetic_root, tmp_path / "run", "--init", "surrogate", "--surrogate", str(missing))

    assert run(segment.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith(f"error: --surrogate {missing}")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unwritable_out_exits_1_naming_the_flag(synthetic_root, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "run"

    assert run(segment.main, segment_args(synthetic_root, out)) == 1

    assert error_lines(capsys.readouterr().err) == [f"error: --out {out}: not writable (Not a directory)"]


def test_bce_on_a_five_class_dataset_is_refused(synthetic_root, tmp_path, capsys):
    assert run(segment.main, segment_args(synthetic_root, tmp_path / "run", "--loss", "bce")) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "--loss bce" in errors[0] and "5 classes" in errors[0]


def write_legacy_imagenet_file(path):
    """A Keras-2-layout file naming every backbone layer, with ImageNet's full-width shape for conv1_conv."""
    names = [layer.name for layer in build_deeplabv3plus(5, width=WIDTH).layers
             if layer.weights and is_backbone_layer(layer.name)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            shapes = [(7, 7, 3, 64), (64,)] if name == "conv1_conv" else [(1,)]
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/w{i}".encode() for i in range(len(shapes))]
            for i, shape in enumerate(shapes):
                group.create_dataset(f"{name}/w{i}", data=np.zeros(shape, np.float32))
    return path


def test_imagenet_init_at_small_width_fails_with_one_line(synthetic_root, tmp_path, capsys):
    weights = write_legacy_imagenet_file(tmp_path / "resnet50_notop.h5")
    args = segment_args(synthetic_root, tmp_path / "run", "--init", "imagenet", "--imagenet-weights", str(weights))

    assert run(segment.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and str(weights) in errors[0] and "conv1_conv" in errors[0]
    assert "width 1.0" in errors[0]
    assert not (tmp_path / "run" / "init.json").exists()


@pytest.mark.parametrize("loss, num_classes", [("dice", 5), ("ce+dice", 5), ("bce", 2)])
def test_each_loss_trains_the_model(loss, num_classes, tmp_path):
    args = segment.parse_args(["--out", str(tmp_path), "--width", str(WIDTH), "--loss", loss])
    model = build_segmenter(num_classes, loss=args.loss, architecture=architecture_from_flags(args))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=make_loss(loss, num_classes), run_eagerly=True)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 33, 33, 3)).astype(np.float32)
    masks = rng.integers(0, num_classes, (2, 33, 33)).astype(np.int32)
    masks[:, :4] = 255
    before = model.get_layer("logits").kernel.numpy().copy()

    losses = [float(model.train_on_batch(images, masks)) for _ in range(2)]

    assert model.output_shape[-1] == (1 if loss == "bce" else num_classes)
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert not np.array_equal(model.get_layer("logits").kernel.numpy(), before)


def test_test_counts_hold_each_test_image_and_add_up_to_the_metrics(scratch_run):
    """Per-image confusion matrices: every split-level score can be recomputed without the weights."""
    from surrogate_supervision.models.metrics import parse_groups, segmentation_metrics

    counts = json.loads((scratch_run / "test_counts.json").read_text())
    metrics = json.loads((scratch_run / "metrics.json").read_text())
    assert list(counts["confusion"]) == read_lines(scratch_run / "splits" / "test.txt")
    matrices = np.array(list(counts["confusion"].values()))
    assert matrices.shape == (metrics["n_test_images"], 5, 5)
    groups = parse_groups("bg:0;people:1-2;things:3-4", counts["classes"])
    again = segmentation_metrics(matrices.sum(axis=0), counts["classes"], groups)
    for key in ("dice_mean", "dice_grouped", "dice_foreground", "miou", "n_pixels"):
        assert again[key] == pytest.approx(metrics[key]), key


class ScriptedValidation(segment.Evaluator):
    """Validation mean Dice read from a script, one value per evaluation; the test split is scored for real."""

    script = []

    def __call__(self, limit_images=0):
        metrics, shown = super().__call__(limit_images)
        if limit_images == 0:  # validation (the test evaluation asks for prediction grids)
            metrics["dice_mean"] = self.script.pop(0)
        return metrics, shown


# With --min-steps 6 the plateau that stops the run at step 4 is a warm-up: it goes on to its best at step 6.
@pytest.mark.parametrize("patience, min_steps, best_step, stopped_step", [(2, 0, 2, 4), (2, 6, 6, 8), (None, 0, 6, 8)])
def test_patience_stops_a_plateaued_run_and_keeps_the_best_step(patience, min_steps, best_step, stopped_step,
                                                                synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(segment, "Evaluator", ScriptedValidation)
    monkeypatch.setattr(ScriptedValidation, "script", [0.2, 0.5, 0.4, 0.45, 0.3, 0.9, 0.1, 0.1])
    out = tmp_path / "run"
    extra = ["--patience", str(patience), "--min-steps", str(min_steps)] if patience else []
    assert segment.main(segment_args(synthetic_root, out, "--steps", "8", "--val-images", "2", *extra)) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["best_step"], metrics["stopped_step"], metrics["steps"]) == (best_step, stopped_step, 8)
    assert metrics["min_steps"] == min_steps
    assert read_json(out / "best.json")["step"] == best_step
    assert f"ckpt-{stopped_step}.index" in {p.name for p in (out / "checkpoints").iterdir()}
    assert not (out / "checkpoints" / f"ckpt-{stopped_step + 1}.index").exists()
    if patience:  # killed between stopping and the test scores: the re-run trains no further
        (out / "metrics.json").unlink()
        monkeypatch.setattr(segment, "train_loop", lambda *a, **k: pytest.fail("trained past the plateau"))
        assert segment.main(segment_args(synthetic_root, out, "--steps", "8", "--val-images", "2", *extra)) == 0
        assert json.loads((out / "metrics.json").read_text())["stopped_step"] == stopped_step


def test_min_delta_stops_a_run_that_only_creeps_up_and_keeps_its_best_step(synthetic_root, tmp_path, monkeypatch):
    """Gains of less than --min-delta keep the best checkpoint moving but do not restart the patience clock."""
    monkeypatch.setattr(segment, "Evaluator", ScriptedValidation)
    monkeypatch.setattr(ScriptedValidation, "script", [0.2, 0.5, 0.55, 0.58, 0.9, 0.1, 0.1, 0.1])
    out = tmp_path / "run"
    flags = ("--steps", "8", "--val-images", "2", "--patience", "2", "--min-delta", "0.1")
    assert segment.main(segment_args(synthetic_root, out, *flags)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["best_step"], metrics["stopped_step"], metrics["min_delta"]) == (4, 4, 0.1)
    assert read_json(out / "best.json")["progress_step"] == 2


@pytest.fixture(scope="module")
def gray_generator(tmp_path_factory):
    """An untrained --predict gray generator: what a control run exports (the head is all that differs)."""
    path = tmp_path_factory.mktemp("control") / GENERATOR_FILE
    save_weights(build_generator(output="gray", width=WIDTH), path)
    return path.parent


def test_control_init_copies_the_gray_generator(synthetic_root, gray_generator, tmp_path):
    out = tmp_path / "run"
    assert segment.main(segment_args(synthetic_root, out, "--init", "control", "--surrogate", str(gray_generator))) == 0
    report = json.loads((out / "init.json").read_text())
    assert report["init"] == "control" and report["skipped"] == ["logits"] and len(report["copied"]) > 100
    assert json.loads((out / "metrics.json").read_text())["init"] == "control"


@pytest.mark.parametrize("init, generator, wanted", [
    ("control", "surrogate", "the control init needs a no-colour run"),
    ("surrogate", "gray_generator", "the surrogate init needs a colour run"),
])
def test_control_and_colour_arms_refuse_each_others_generator(init, generator, wanted, request, synthetic_root,
                                                              tmp_path, capsys):
    source = request.getfixturevalue(generator)
    args = segment_args(synthetic_root, tmp_path / "run", "--init", init, "--surrogate", str(source))

    assert run(segment.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith(f"error: --surrogate {source}") and wanted in errors[0]
    assert not (tmp_path / "run" / "init.json").exists()


def test_reaching_the_last_step_is_a_cap_at_a_constant_rate_and_the_schedule_s_end_under_poly():
    assert segment.end_note(6000, 8000, "poly") == segment.end_note(6000, 8000, "constant") == ""
    assert segment.end_note(8000, 8000, "constant") == " (hit the --steps cap)"
    assert segment.end_note(8000, 8000, "poly") == " (the poly schedule's end: rate 0)"


@pytest.fixture(scope="module")
def label_runs(synthetic_root, surrogate, tmp_path_factory):
    """--labels 8 from scratch and from the surrogate: two inits, one seed."""
    runs = {}
    for init, extra in (("scratch", []), ("surrogate", ["--surrogate", str(surrogate)])):
        runs[init] = tmp_path_factory.mktemp(f"labels_{init}")
        assert segment.main(segment_args(synthetic_root, runs[init], "--labels", "8", "--init", init, *extra)) == 0
    return runs


@pytest.fixture(scope="module")
def segmentation_run(synthetic_root, scratch_run, tmp_path_factory):
    """--labels 4 started from the finished scratch run (same dataset, same classes)."""
    out = tmp_path_factory.mktemp("from_segmentation")
    assert segment.main(segment_args(synthetic_root, out, "--labels", "4", "--init", "segmentation",
                                     "--source-run", str(scratch_run))) == 0
    return out


def test_label_counts_are_nested_and_identical_across_inits(label_runs, segmentation_run, scratch_run):
    from surrogate_supervision.datasets import select_count

    eight = read_lines(label_runs["scratch"] / "train_stems.txt")
    four, half = read_lines(segmentation_run / "train_stems.txt"), read_lines(scratch_run / "train_stems.txt")
    train_split = read_lines(scratch_run / "splits" / "train.txt")

    assert len(eight) == 8 and read_lines(label_runs["surrogate"] / "train_stems.txt") == eight  # every init
    assert len(four) == 4 and set(four) < set(eight) < set(half) < set(train_split)  # 4 ⊂ 8 ⊂ --frac 0.5
    assert select_count(train_split, len(half), 0) == half  # --frac 0.5 is --labels ceil(0.5·n)
    for init, out in label_runs.items():
        metrics, config = read_json(out / "metrics.json"), read_json(out / "config.json")
        assert (metrics["init"], metrics["labels"], metrics["frac"], metrics["n_train_images"]) == (init, 8, None, 8)
        assert (config["labels"], config["frac"]) == (8, None)
    assert read_json(scratch_run / "metrics.json")["labels"] == len(half)


def test_segmentation_init_starts_from_the_finished_run(segmentation_run, scratch_run):
    report = read_json(segmentation_run / "init.json")
    assert report["init"] == "segmentation" and report["source"] == str(scratch_run / "best.weights.h5")
    assert report["skipped"] == [] and "logits" in report["copied"] and len(report["copied"]) > 100
    assert report["note"] == "head copied: same classes"
    metrics = read_json(segmentation_run / "metrics.json")
    assert (metrics["init"], metrics["source_run"], metrics["labels"]) == ("segmentation", str(scratch_run), 4)
    assert read_json(segmentation_run / "config.json")["source_run"] == str(scratch_run)


def test_labels_beyond_the_training_split_exit_1_in_one_line(synthetic_root, tmp_path, capsys):
    assert run(segment.main, segment_args(synthetic_root, tmp_path / "run", "--labels", "21")) == 1
    assert error_lines(capsys.readouterr().err) == ["error: --labels 21: the training split has only 20 images"]


@pytest.mark.parametrize("source, extra, message", [
    ("scratch_run", ["--width", "0.25"], "its network differs: width 0.125 (this network: 0.25)"),
    ("surrogate", [], "a colorization run, not a finetune/segment.py run"),
    ("scratch_run", ["--split-seed", "SPLIT_OTHERWISE"], "of this run's validation and test images"),
])
def test_segmentation_init_refuses_in_one_line(source, extra, message, request, synthetic_root, tmp_path, capsys):
    source = request.getfixturevalue(source)
    if "SPLIT_OTHERWISE" in extra:  # a split seed whose validation or test images the source run trained on
        from surrogate_supervision.datasets.splits import dataset_splits

        trained = set(read_lines(source / "train_stems.txt"))
        ds = load_labeled(synthetic_root)
        seed = next(s for s in range(1, 50)
                    if trained & set(dataset_splits(ds, seed=s)["val"] + dataset_splits(ds, seed=s)["test"]))
        extra = ["--split-seed", str(seed)]
    args = segment_args(synthetic_root, tmp_path / "run", "--init", "segmentation", "--source-run", str(source),
                        *extra)

    assert run(segment.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith(f"error: --source-run {source}") and message in errors[0]
    assert not (tmp_path / "run" / "init.json").exists()
