"""pretrain/colorize.py on tiny CPU runs: its outputs, resuming, the generator it exports, and its errors.

Runs call the script's `main` in-process (TensorFlow is imported once) at width 0.125 and crop 65; one run is
shared by the module (and, through the same directory, by test_finetune_segment.py when both run together).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from surrogate_supervision.models.rundir import ARCHITECTURE_FILE, GENERATOR_FILE
from surrogate_supervision.models.runner.cli import run
from surrogate_supervision.models.runner.training import train_loop
from surrogate_supervision.models.transfer import load_generator

import cv2
import numpy as np
import pytest
import tensorflow as tf

import surrogate_supervision.pretrain.colorize as colorize

REPO = Path(__file__).resolve().parents[1]
CROP, SMALL = 65, 17  # the generator's stride-4 output for a 65-pixel crop: (65 - 1) // 4 + 1
FLAGS = ["--width", "0.125", "--crop", str(CROP), "--batch", "2", "--checkpoint-every", "2", "--sample-every", "2"]


def colorize_args(root, out, *extra):
    return colorize.parse_args(["--data", str(root), "--out", str(out), *FLAGS, *extra])


def shared_run_dir(tmp_path_factory):
    """One directory per session: a second `main` with the same flags finishes at once or resumes."""
    return tmp_path_factory.getbasetemp() / "colorize_w0.125_c65"


@pytest.fixture(scope="module")
def first_run(synthetic_root, tmp_path_factory):
    """Two steps, checkpoint at step 2 (already done, and then a no-op, if another module ran it)."""
    out = shared_run_dir(tmp_path_factory)
    assert colorize.main(colorize_args(synthetic_root, out, "--steps", "2")) == 0
    return out


@pytest.fixture(scope="module")
def resumed_run(first_run, synthetic_root):
    """The same --out with --steps 4; records the step `train_loop` started from."""
    started = []

    def spy(*args, **kwargs):
        started.append(train_loop(*args, **kwargs))
        return started[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(colorize, "train_loop", spy)
        assert colorize.main(colorize_args(synthetic_root, first_run, "--steps", "4")) == 0
    return first_run, started


def checkpoint_value(out, step, name):
    return int(tf.train.load_checkpoint(str(out / "checkpoints" / f"ckpt-{step}")).get_tensor(
        f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))


def event_values(logs):
    """TensorBoard tag → list of values (None for images) from every event file under `logs`."""
    values = {}
    for path in sorted(logs.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                values.setdefault(value.tag, []).append(
                    float(tensor) if tensor is not None and tensor.ndim == 0 else None)
    return values


def test_short_run_writes_every_output(first_run):
    out = first_run
    config = json.loads((out / "config.json").read_text())
    assert config["width"] == 0.125 and config["crop"] == CROP and config["init"] == "scratch"
    assert config["n_train_images"] > 0 and config["n_holdout_images"] > 0
    assert (out / "checkpoints" / "checkpoint").is_file()
    assert tf.train.latest_checkpoint(str(out / "checkpoints")) is not None
    assert (out / GENERATOR_FILE).is_file()
    assert json.loads((out / ARCHITECTURE_FILE).read_text())["width"] == 0.125

    tags = event_values(out / "logs")
    assert {"train/d_loss", "train/g_adv", "train/g_l1", "samples/gray_colorized_real"} <= set(tags)
    assert all(math.isfinite(v) for k, vs in tags.items() if k.startswith("train/") for v in vs)

    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert math.isfinite(metrics["l1_colorized"]) and math.isfinite(metrics["l1_gray"])
    assert 0 <= metrics["l1_colorized"] <= 2 and metrics["n_images"] == config["n_holdout_images"]


def test_evaluate_rebuilds_the_holdout_and_scores_rgb_and_chroma(first_run, capsys):
    from surrogate_supervision.pretrain.evaluate import main, parse_args

    before = json.loads((first_run / "pretrain_metrics.json").read_text())
    assert run(main, parse_args([str(first_run)])) == 0
    assert "chroma L1" in capsys.readouterr().out
    after = json.loads((first_run / "pretrain_metrics.json").read_text())
    # Same held-out images and generator: the RGB scores the run wrote are reproduced exactly.
    assert after["l1_gray"] == pytest.approx(before["l1_gray"], abs=1e-6)
    assert after["l1_colorized"] == pytest.approx(before["l1_colorized"], abs=1e-5)
    assert 0 < after["chroma_l1_gray"] < 1 and math.isfinite(after["chroma_l1_colorized"])
    # Zhang et al.'s colour accuracy, for the colorization and the gray answer (pretrain/colour_accuracy.py)
    for key in ("auc", "auc_rebalanced"):
        assert 0 < after[f"{key}_gray"] <= 1 and 0 <= after[f"{key}_colorized"] <= 1


def test_batch_statistics_scoring_leaves_the_generator_as_it_was(first_run):
    from surrogate_supervision.pretrain.holdout import colorization_scores, holdout_batch, run_holdout

    config = json.loads((first_run / "config.json").read_text())
    batch = holdout_batch(run_holdout(config), config["crop"], config["seed"])
    generator = load_generator(first_run)
    before = [v.numpy() for v in generator.variables]
    first, second = colorization_scores(generator, batch), colorization_scores(generator, batch)
    assert first == second  # deterministic: dropout is off while scoring with batch statistics
    assert first["l1_colorized_batch_stats"] != first["l1_colorized"]
    assert 0 < first["chroma_l1_colorized_batch_stats"] < 2
    for value, variable in zip(before, generator.variables):  # moving averages restored
        np.testing.assert_array_equal(value, variable.numpy())
    assert generator.get_layer("aspp_dropout").rate == pytest.approx(0.1)


def test_evaluate_names_a_directory_that_is_not_a_run(tmp_path, capsys):
    from surrogate_supervision.pretrain.evaluate import main, parse_args

    assert run(main, parse_args([str(tmp_path)])) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}: no config.json")


def test_sample_grid_is_gray_colorized_real(first_run):
    samples = sorted((first_run / "samples").glob("step_*.png"))
    assert samples and samples[0].name == "step_0000002.png"
    assert samples[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = cv2.cvtColor(cv2.imread(str(samples[0])), cv2.COLOR_BGR2RGB).astype(int)

    n = json.loads((first_run / "config.json").read_text())["n_holdout_images"]
    gap = 2
    assert grid.shape == (n * SMALL + (n - 1) * gap, 3 * SMALL + 2 * gap, 3)
    gray, real = grid[:SMALL, :SMALL], grid[:SMALL, 2 * (SMALL + gap):]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert np.abs(real[..., 0] - real[..., 2]).mean() > 5  # the synthetic scenes are colourful


def test_generator_output_in_unit_range_at_stride_4(first_run):
    generator = load_generator(first_run)
    x = np.random.default_rng(0).uniform(-1, 1, (2, CROP, CROP, 3)).astype(np.float32)

    y = generator(x, training=False).numpy()

    assert y.shape == (2, SMALL, SMALL, 3)
    assert np.isfinite(y).all() and y.min() >= -1 and y.max() <= 1


def test_resume_continues_from_the_saved_step(resumed_run):
    out, started = resumed_run
    assert started == [2]  # restored at step 2, not restarted from 0
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-4")
    assert checkpoint_value(out, 4, "step") == 4
    # the optimizers were restored too: 2 updates before, 2 after
    assert checkpoint_value(out, 4, "g_optimizer/_iterations") == 4
    assert checkpoint_value(out, 4, "d_optimizer/_iterations") == 4
    assert json.loads((out / "pretrain_metrics.json").read_text())["steps"] == 4
    assert (out / "samples" / "step_0000004.png").is_file()


def test_finished_run_says_so_and_trains_nothing(resumed_run, synthetic_root, monkeypatch, capsys):
    out, _ = resumed_run
    monkeypatch.setattr(colorize, "train_loop", lambda *a, **k: pytest.fail("a finished run trained again"))

    assert colorize.main(colorize_args(synthetic_root, out, "--steps", "4")) == 0

    assert "already finished" in capsys.readouterr().out


@pytest.mark.parametrize("steps", ["4", "6"], ids=["finished", "unfinished"])
def test_changed_width_on_resume_is_refused(resumed_run, synthetic_root, capsys, steps):
    out, _ = resumed_run
    args = colorize_args(synthetic_root, out, "--steps", steps)
    args.width = 0.25

    assert run(colorize.main, args) == 1

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --width 0.25 differs")
    assert json.loads((out / "config.json").read_text())["width"] == 0.125


def test_script_exits_1_with_one_line_on_changed_width(resumed_run, synthetic_root):
    out, _ = resumed_run
    result = subprocess.run(
        [sys.executable, "pretrain/colorize.py", "--data", str(synthetic_root), "--out", str(out), *FLAGS,
         "--steps", "6", "--width", "0.25"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--width" in errors[0] and str(out) in errors[0]
    assert "Traceback" not in result.stderr


def test_chroma_run_exports_a_luma_preserving_generator(synthetic_root, tmp_path):
    out = tmp_path / "chroma"
    assert colorize.main(colorize_args(synthetic_root, out, "--steps", "2", "--predict", "chroma")) == 0
    assert json.loads((out / ARCHITECTURE_FILE).read_text())["output"] == "chroma"
    generator = load_generator(out)
    gray = np.repeat(np.random.default_rng(0).uniform(-0.5, 0.5, (1, CROP, CROP, 1)).astype("float32"), 3, -1)
    rgb = generator(gray, training=False).numpy()
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(luma, gray[:, ::4, ::4, 0], atol=2e-3)

    args = colorize_args(synthetic_root, out, "--steps", "4")  # the default --predict rgb
    with pytest.raises(ValueError, match="--predict rgb differs"):
        colorize.main(args)


def test_gray_target_holds_no_colour_only_the_inputs_luma(synthetic_root):
    from surrogate_supervision import datasets

    sources = datasets.list_unlabeled([synthetic_root])[:6]
    colour = next(iter(datasets.colorization_dataset(sources, crop=CROP, batch=3, seed=1)))
    gray = next(iter(datasets.colorization_dataset(sources, crop=CROP, batch=3, seed=1, target="gray")))
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    for key, size in (("rgb", CROP), ("rgb_small", SMALL)):
        target, real = gray[key].numpy(), colour[key].numpy()
        assert target.shape == (3, size, size, 3) and np.ptp(real, axis=-1).max() > 0.1  # the real one has colour
        np.testing.assert_allclose(np.ptp(target, axis=-1), 0, atol=1e-6)  # R = G = B: no colour at all
        np.testing.assert_allclose(target[..., 0], real @ weights, atol=1e-5)  # ...and the input's luma
    for key in ("gray", "gray_small"):  # the generator's input and the condition are unchanged
        np.testing.assert_array_equal(gray[key].numpy(), colour[key].numpy())
    np.testing.assert_array_equal(gray["gray_small"].numpy(), gray["rgb_small"].numpy())  # the input given back


def test_predict_gray_trains_the_rgb_network_on_the_gray_target(synthetic_root, tmp_path, monkeypatch):
    from surrogate_supervision import datasets
    from surrogate_supervision.datasets.pipeline import colorization_dataset

    made = []

    def spy(*args, **kwargs):
        made.append((kwargs, colorization_dataset(*args, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(datasets, "colorization_dataset", spy)
    out = tmp_path / "control"
    assert colorize.main(colorize_args(synthetic_root, out, "--steps", "2", "--predict", "gray")) == 0

    assert json.loads((out / ARCHITECTURE_FILE).read_text())["output"] == "gray"
    assert load_generator(out).get_layer("logits").filters == 3  # the rgb network, not chroma's two channels
    (kwargs, training), = [(k, d) for k, d in made if "start_index" in k]
    assert kwargs["target"] == "gray"
    batch = next(iter(training))
    np.testing.assert_allclose(batch["rgb_small"].numpy(), batch["gray_small"].numpy(), atol=1e-6)
    assert all(k.get("target", "rgb") == "rgb" for k, _ in made if "start_index" not in k)  # samples: real colours


@pytest.mark.parametrize("init", ["surrogate", "imagenet+surrogate"])
def test_parser_rejects_surrogate_init(init, capsys):
    with pytest.raises(SystemExit) as stop:
        colorize.parse_args(["--out", "x", "--init", init])
    assert stop.value.code == 2
    assert f"--init {init}" in capsys.readouterr().err


def test_classify_predict_gray_is_the_matched_control_on_luma_bins(synthetic_root, tmp_path, monkeypatch):
    """--colour-loss classify --predict gray: the classify arm's head, loss and bin statistics, on the gray target."""
    from surrogate_supervision.models.colour_bins import NUM_BINS

    from surrogate_supervision import datasets
    from surrogate_supervision.datasets.pipeline import colorization_dataset

    targets = []

    def spy(*args, **kwargs):
        if "start_index" in kwargs:  # the training stream (not the bins' prior or the held-out samples)
            targets.append(kwargs.get("target", "rgb"))
        return colorization_dataset(*args, **kwargs)

    monkeypatch.setattr(datasets, "colorization_dataset", spy)
    out = tmp_path / "matched_control"
    args = colorize_args(synthetic_root, out, "--steps", "2", "--colour-loss", "classify", "--predict", "gray",
                         "--gan-weight", "0")
    assert args.predict == "classify_gray"
    assert colorize.main(args) == 0

    assert json.loads((out / ARCHITECTURE_FILE).read_text())["output"] == "classify_gray"
    assert json.loads((out / "config.json").read_text())["predict"] == "classify_gray"
    generator = load_generator(out)
    assert generator.get_layer("logits").filters == NUM_BINS  # the colour arm's head
    bins = json.loads((out / "colour_bins.json").read_text())
    assert bins["space"] == "luma" and len(bins["weights"]) == NUM_BINS and "centres_luma" in bins
    assert targets == ["gray"]  # trained on the gray target
    gray = np.repeat(np.random.default_rng(0).uniform(-0.5, 0.5, (1, CROP, CROP, 1)).astype("float32"), 3, -1)
    assert np.ptp(generator(gray, training=False).numpy(), axis=-1).max() == 0  # it paints no colour
