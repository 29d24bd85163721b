"""Resuming refuses any flag that changes what a run computes, the data included, in one line."""

import argparse
import json
from pathlib import Path

from surrogate_supervision.models.runner.cli import check_resume, check_writable

import pytest

BEFORE = dict(data=[Path("/data/a")], holdout=32, video_every=10, freeze_encoder=False, val_images=None, crop=65,
              width=0.125, steps=10)


def started_run(tmp_path, **flags):
    (tmp_path / "checkpoints").mkdir()
    config = {k: [str(p) for p in v] if k == "data" else v for k, v in {**BEFORE, **flags}.items()}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("flag, value", [("data", [Path("/data/b")]), ("holdout", 8), ("video_every", 5),
                                         ("freeze_encoder", True), ("val_images", 20)])
def test_a_changed_input_on_resume_is_refused_naming_the_flag(tmp_path, flag, value):
    out = started_run(tmp_path)
    with pytest.raises(ValueError, match=f"^--{flag.replace('_', '-')} .* differs from the run being resumed"):
        check_resume(argparse.Namespace(**{**BEFORE, flag: value}), out)


def test_the_same_data_named_another_way_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "run").mkdir()
    out = started_run(tmp_path / "run", data=[tmp_path / "data"])
    check_resume(argparse.Namespace(**{**BEFORE, "data": [Path("data")], "steps": 20}), out)  # no error


def test_under_a_poly_schedule_steps_are_fixed_on_resume_and_free_otherwise(tmp_path):
    # the poly decay is a function of --steps: extending the run would bend it mid-way
    out = started_run(tmp_path, lr_schedule="poly")
    with pytest.raises(ValueError, match="^--steps 20 differs from the run being resumed"):
        check_resume(argparse.Namespace(**{**BEFORE, "lr_schedule": "poly", "steps": 20}), out)
    check_resume(argparse.Namespace(**{**BEFORE, "lr_schedule": "poly"}), out)  # same steps: resumes
    with pytest.raises(ValueError, match="^--lr-schedule constant differs"):
        check_resume(argparse.Namespace(**{**BEFORE, "lr_schedule": "constant", "steps": 20}), out)


def test_the_writable_check_leaves_another_workers_probe_alone(tmp_path):
    """Two workers of a multi-worker run check one --out at once (tests/test_scale.py's localhost cluster): with a
    fixed probe name, one worker's probe in the directory made the other's check fail or delete it."""
    another = tmp_path / ".write_test"  # a probe under the old fixed name, mid-check in the other worker
    another.mkdir()
    check_writable(tmp_path)
    assert another.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == [".write_test"]
