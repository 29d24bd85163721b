"""The toolkit's two commands as a newcomer types them, and script start-up without TensorFlow's chatter.

`python pretrain/colorize.py` then `python finetune/segment.py --init surrogate --frac 0.25`, with no --data, --out
or --surrogate: the built-in synthetic set, settings sized for it, runs/colorize found by the second. The
subprocess runs override only sizes and intervals (a tiny width, crop and step count), never the paths.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from surrogate_supervision.models import cpu
from surrogate_supervision.models.runner.cli import DEFAULTS_DEMO, DEFAULTS_REFERENCE, DEMO_DEFAULTS

import pytest

import surrogate_supervision.finetune.segment as segment
import surrogate_supervision.pretrain.colorize as colorize
from surrogate_supervision.experiments.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21 printed at every script start, --help included, before the script's own first line.
CHATTER = ("All log messages before absl::InitializeLog", "oneDNN custom operations are on",
           "Could not find cuda drivers", "failed call to cuInit")
TINY = ["--width", "0.125", "--crop", "65", "--batch", "2", "--steps", "2"]  # runs end with a checkpoint and an
# evaluation whatever their intervals


def newcomer_env(data_home):
    """The environment of a plain shell: without the suite's TF_CPP_MIN_LOG_LEVEL, the synthetic set in
    `data_home`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["SURROGATE_DATA_HOME"] = str(data_home)
    return env


def typed(command, cwd, env):
    result = subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_no_chatter(stderr):
    found = [line for line in stderr.splitlines() if any(pattern in line for pattern in CHATTER)]
    assert not found, found


@pytest.mark.slow
def test_the_two_commands_run_as_typed(synthetic_root, tmp_path):
    """No --data, --out or --surrogate: runs/colorize, then runs/segment_surrogate_0.25 starting from its
    generator, both recording the synthetic set's defaults; each prints its own line first."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic-64px").symlink_to(synthetic_root)  # the built-in set, already generated
    env, work = newcomer_env(tmp_path / "data"), tmp_path / "newcomer"
    work.mkdir()

    first = typed([str(REPO / "pretrain/colorize.py"), *TINY], work, env)
    second = typed([str(REPO / "finetune/segment.py"), "--init", "surrogate", "--frac", "0.25", *TINY], work, env)

    pretraining, cell = work / "runs" / "colorize", work / "runs" / "segment_surrogate_0.25"
    assert (pretraining / "generator.weights.h5").is_file() and (cell / "metrics.json").is_file()
    init = json.loads((cell / "init.json").read_text())
    assert (work / init["source"]).resolve() == (pretraining / "generator.weights.h5").resolve(), init
    assert init["copied"], init
    for run, script in ((pretraining, "colorize"), (cell, "segment")):
        config = json.loads((run / "config.json").read_text())
        assert config["defaults"] == DEFAULTS_DEMO and config["data"] is None
        sized = {k: v for k, v in DEMO_DEFAULTS[script].items() if k not in ("width", "crop", "batch", "steps")}
        assert sized and {k: config[k] for k in sized} == sized  # the demo's sizes the test did not override
    assert json.loads((cell / "config.json").read_text())["surrogate"] == "runs/colorize"
    for result in (first, second):
        assert_no_chatter(result.stderr)
        assert result.stderr.startswith("no --data: the built-in synthetic set"), result.stderr[:2000]


def test_help_starts_without_tensorflow_chatter(tmp_path):
    result = typed([str(REPO / "finetune/segment.py"), "--help"], tmp_path, newcomer_env(tmp_path))
    assert result.stdout.startswith("usage: segment.py")
    assert_no_chatter(result.stderr)


def test_dropping_stderr_lines_keeps_everything_else(capfd):
    """The filter drops only the chatter, at the descriptor C++ writes to, and keeps other lines in order."""
    with cpu.dropping_stderr_lines(cpu.STARTUP_CHATTER):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796656277.956629   24317 port.cc:153] oneDNN custom operations are on.\n"
                    b"W0000 00:00:1796656277.957288   24317 some.cc:31] a real warning\n")
        os.write(2, b"a line of Python's\n")
        os.write(2, b"E0000 00:00:1796656283.542893   24317 cuda_platform.cc:52] failed call to cuInit: 303\n")
    assert capfd.readouterr().err.splitlines() == [
        "W0000 00:00:1796656277.957288   24317 some.cc:31] a real warning", "a line of Python's",
        "E0000 00:00:1796656283.542893   24317 cuda_platform.cc:52] failed call to cuInit: 303"]


def test_data_keeps_the_reference_recipe_and_explicit_flags_win():
    reference = colorize.parse_args(["--data", "d"])
    assert (reference.steps, reference.crop, reference.width, reference.colour_loss, reference.gan_weight) == \
        (76_000, 513, 1.0, "l1", 1.0)
    assert reference.defaults == DEFAULTS_REFERENCE and reference.out == Path("runs/colorize")
    demo = colorize.parse_args(["--steps", "7"])
    assert (demo.steps, demo.crop, demo.colour_loss, demo.predict, demo.defaults) == \
        (7, 65, "classify", "classify", DEFAULTS_DEMO)
    assert colorize.parse_args(["--predict", "rgb"]).colour_loss == "l1"  # flags only L1 takes keep it
    cell = segment.parse_args(["--data", "d", "--init", "control", "--labels", "8"])
    assert (cell.steps, cell.lr, cell.patience, cell.out, cell.surrogate) == \
        (300_000, 1e-4, None, Path("runs/segment_control_labels8"), Path("runs/colorize"))
    assert segment.parse_args(["--distribute", "multiworker"]).patience is None  # a default, not a request
    assert segment.parse_args(["--init", "scratch", "--out", "x"]).surrogate is None


def test_the_grids_demo_preset_is_what_the_two_commands_default_to():
    """README's grid without --data runs the `demo` preset: its pretraining run and its surrogate cells are what
    the two commands give without --data (models.runner.cli.DEMO_DEFAULTS), so change both together."""
    demo = PRESETS["demo"]
    pre, cell = colorize.parse_args([]), segment.parse_args(["--init", "surrogate"])
    assert (pre.steps, pre.crop, pre.width, pre.batch, pre.lr, pre.checkpoint_every, pre.sample_every,
            pre.colour_loss, pre.gan_weight, pre.l1_weight) == \
        (demo["pretrain_steps"], demo["crop"], demo["width"], demo["batch"], demo["pretrain_lr"],
         demo["checkpoint_every"], demo["sample_every"], demo["colour_loss"], demo["gan_weight"], demo["l1_weight"])
    assert (cell.steps, cell.crop, cell.width, cell.batch, cell.lr, cell.eval_every, cell.checkpoint_every,
            cell.patience, cell.min_delta, cell.min_steps, cell.loss, cell.lr_schedule) == \
        (demo["finetune_steps"], demo["crop"], demo["width"], demo["batch"], demo["lr"], demo["eval_every"],
         demo["checkpoint_every"], demo["patience"], demo["min_delta"], demo["min_steps"], demo["loss"],
         demo["lr_schedule"])
