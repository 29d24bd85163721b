"""Faults a long run must survive: SIGKILL, Ctrl-C, damaged checkpoints, write errors, and determinism."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from surrogate_supervision.models.runner.training import Checkpoints

import keras
import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
TINY = ["--width", "0.125", "--crop", "65", "--batch", "2"]


def script(name, *args):
    return [sys.executable, str(REPO / name), *map(str, args)]


def wait_for(predicate, process, timeout=300):
    """Polls until `predicate()` holds; fails if the process ends first or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail(f"process ended (status {process.returncode}) before the awaited state")
        time.sleep(0.2)
    process.kill()
    pytest.fail("timed out")


def checkpoint_steps(run_dir):
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in (run_dir / "checkpoints").glob("ckpt-*.index"))


def test_sigkill_during_pretraining_then_rerun_finishes_the_same_schedule(synthetic_root, tmp_path):
    out = tmp_path / "colorize"
    command = script("pretrain/colorize.py", "--data", synthetic_root, "--out", out, "--steps", 8,
                     "--checkpoint-every", 2, "--sample-every", 100, *TINY)
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    wait_for(lambda: checkpoint_steps(out) and checkpoint_steps(out)[-1] >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpoint_steps(out)[-1]
    assert killed_at < 8 and not (out / "generator.weights.h5").exists()
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert checkpoint_steps(out)[-1] == 8
    assert json.loads((out / "pretrain_metrics.json").read_text())["steps"] == 8
    assert not list(out.rglob(".tmp.*")) and not list(out.glob(".config.json.*")), "temporary files left behind"


def test_sigint_saves_a_checkpoint_and_exits_cleanly(synthetic_root, tmp_path):
    out = tmp_path / "segment"
    command = script("finetune/segment.py", "--data", synthetic_root, "--out", out, "--steps", 10_000,
                     "--checkpoint-every", 10_000, "--eval-every", 10_000, *TINY)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    wait_for(lambda: (out / "logs").is_dir() and any((out / "logs").iterdir()), process)
    time.sleep(3)  # a few steps in, between checkpoints
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "checkpoint saved" in stderr.splitlines()[-1]
    saved = checkpoint_steps(out)
    assert len(saved) == 1 and 0 < saved[0] < 10_000
    assert "Traceback" not in stderr


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    value = tf.Variable([1.0, 2.0])
    checkpoints = Checkpoints(tmp_path, value=value)
    checkpoints.save(2)
    value.assign([3.0, 4.0])
    checkpoints.save(4)
    next((tmp_path / "checkpoints").glob("ckpt-4.data*")).write_bytes(b"damaged")
    value.assign([0.0, 0.0])
    assert Checkpoints(tmp_path, value=value).restore() == 2
    np.testing.assert_array_equal(value.numpy(), [1.0, 2.0])


def test_write_error_on_checkpoint_is_a_clear_message_and_keeps_the_last_one(tmp_path, monkeypatch):
    value = tf.Variable(1.0)
    checkpoints = Checkpoints(tmp_path, value=value)
    checkpoints.save(2)

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(checkpoints.manager, "save", disk_full)
    with pytest.raises(OSError, match="could not write a checkpoint.*No space left.*previous one is kept"):
        checkpoints.save(4)
    assert Checkpoints(tmp_path, value=value).restore() == 2


def test_deterministic_runs_give_identical_subsets_and_metrics(synthetic_root, tmp_path, restore_determinism):
    from surrogate_supervision.finetune.segment import main, parse_args

    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = parse_args(["--data", str(synthetic_root), "--out", str(out), "--steps", "3", "--frac", "0.5",
                           "--eval-every", "3", "--checkpoint-every", "3", "--deterministic", "--seed", "7", *TINY])
        assert main(args) == 0
        runs.append(out)
    a, b = runs
    assert (a / "train_stems.txt").read_text() == (b / "train_stems.txt").read_text()
    metrics_a, metrics_b = (json.loads((r / "metrics.json").read_text()) for r in runs)
    for key in ("dice_mean", "dice_grouped", "miou", "pixel_accuracy"):
        assert metrics_a[key] == pytest.approx(metrics_b[key], abs=1e-6)


@pytest.fixture
def restore_determinism():
    """--deterministic switches TensorFlow's process-wide op determinism on; switch it back afterwards."""
    from tensorflow.python.framework import config

    yield
    config.disable_op_determinism()


def test_a_resumed_run_draws_the_dropout_masks_an_uninterrupted_run_draws(tmp_path):
    def model():
        inputs = keras.Input((64,))
        return keras.Model(inputs, keras.layers.Dropout(0.5, seed=3, name="drop")(inputs))

    x = np.ones((1, 64), np.float32)
    uninterrupted = model()
    for _ in range(3):
        uninterrupted(x, training=True)
    Checkpoints(tmp_path, model=uninterrupted).save(3)
    expected_next = uninterrupted(x, training=True).numpy()

    resumed = model()
    assert Checkpoints(tmp_path, model=resumed).restore() == 3
    np.testing.assert_array_equal(resumed(x, training=True).numpy(), expected_next)
