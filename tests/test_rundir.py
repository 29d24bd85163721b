"""One module names a run directory's files (models/rundir.py): its step, fresh/started/finished, save_weights.

    python -m pytest -q tests/test_rundir.py

The last test reads the package's source with `ast` and fails when a module other than models/rundir.py spells
the name of a run file or folder itself: a name written twice can drift apart, and then old runs stop resuming
or loading.
"""

import ast
import json
from pathlib import Path

from surrogate_supervision.models import Architecture, build_generator, build_segmenter, rundir
from surrogate_supervision.models.rundir import (
    ARCHITECTURE_FILE,
    CONFIG_FILE,
    GENERATOR_FILE,
    METRICS_FILE,
    is_finished,
    is_fresh,
    is_started,
    latest_step,
    save_weights,
)
from surrogate_supervision.models.runner.training import Checkpoints
from surrogate_supervision.models.transfer import load_generator

import h5py
import numpy as np
import pytest
import tensorflow as tf

from helpers import layer_weights, randomize

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datasets", "models", "pretrain", "finetune", "experiments")
# Every name of a run directory. "samples/", "probe/" and "splits/" are left out: the words name other things too
# (a flag, TensorBoard tags, a dataset root's splits/, which datasets/splits.py names, below models/rundir.py).
RUN_NAMES = ("config.json", "architecture.json", "checkpoints", ".workers", "logs", "generator.weights.h5",
             "generator_best_probe.weights.h5", "pretrain_metrics.json", "colour_bins.json", "colour_by_class.json",
             "probe.csv", "train_stems.txt", "init.json", "best.json", "best.weights.h5", "test_counts.json",
             "predictions.png", "metrics.json")
WIDTH = 0.125


def checkpointed(run, *steps):
    """Writes checkpoints of a one-variable state at `steps` in `run`, as a training run does."""
    checkpoints = Checkpoints(run, value=tf.Variable(0.0))
    for step in steps:
        checkpoints.save(step)
    return run


def test_a_run_without_checkpoints_is_fresh_at_step_0(tmp_path):
    assert latest_step(tmp_path / "absent") == 0 and is_fresh(tmp_path / "absent")
    (tmp_path / "checkpoints").mkdir()  # a folder without a checkpoint in it resumes nothing
    assert latest_step(tmp_path) == 0 and is_fresh(tmp_path)


def test_the_latest_step_is_that_of_the_newest_checkpoint(tmp_path):
    run = checkpointed(tmp_path, 2, 4, 10)
    assert latest_step(run) == 10 and not is_fresh(run)
    assert latest_step(str(run)) == 10  # a str names the run too


def test_a_run_is_started_once_it_has_a_config_and_a_checkpoints_folder(tmp_path):
    assert not is_started(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{}")
    assert not is_started(tmp_path)
    (tmp_path / "checkpoints").mkdir()  # even before its first checkpoint: check_resume compares flags from here on
    assert is_started(tmp_path)


def test_a_segmentation_run_is_finished_once_its_metrics_are_written(tmp_path):
    checkpointed(tmp_path, 5)
    assert not is_finished(tmp_path)
    (tmp_path / METRICS_FILE).write_text("{}")
    assert is_finished(tmp_path)


def test_a_pretraining_run_is_finished_with_its_generator_at_its_steps(tmp_path):
    (tmp_path / GENERATOR_FILE).write_bytes(b"")
    assert not is_finished(tmp_path, steps=5)  # a generator but no checkpoint
    checkpointed(tmp_path, 5)
    assert is_finished(tmp_path, steps=5) and is_finished(tmp_path, steps=4)
    assert not is_finished(tmp_path, steps=8)  # a re-run with a larger --steps trains on
    (tmp_path / GENERATOR_FILE).unlink()
    assert not is_finished(tmp_path, steps=5)  # its checkpoint at the end, but the generator not yet written


def h5_arrays(path):
    """Every dataset of an HDF5 file, by its path inside it."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_save_weights_writes_architecture_json_beside_the_weights(tmp_path):
    generator = build_generator(output="chroma", width=WIDTH)
    randomize(generator, seed=4)
    assert save_weights(generator, tmp_path / "run" / GENERATOR_FILE) == tmp_path / "run" / GENERATOR_FILE
    assert json.loads((tmp_path / "run" / ARCHITECTURE_FILE).read_text()) == generator.architecture.to_dict()
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".tmp")] == []
    loaded = load_generator(tmp_path / "run")
    for name, values in layer_weights(generator).items():
        for a, b in zip(values, layer_weights(loaded)[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # the file Keras' own save_weights writes, as save_generator did: runs saved before still load the same
    generator.save_weights(tmp_path / GENERATOR_FILE)
    before, after = h5_arrays(tmp_path / GENERATOR_FILE), h5_arrays(tmp_path / "run" / GENERATOR_FILE)
    assert sorted(before) == sorted(after)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_save_weights_leaves_out_the_optimizer_state(tmp_path):
    model = build_segmenter(3, architecture=Architecture(width=WIDTH))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    save_weights(model, tmp_path / "best.weights.h5")
    assert not any(name.startswith("optimizer") for name in h5_arrays(tmp_path / "best.weights.h5"))
    assert json.loads((tmp_path / ARCHITECTURE_FILE).read_text())["outputs"] == 3


def docstrings(tree):
    """The string constants that are docstrings (module, class, function): prose, not names in use."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(source):
    """(run name, line) for each string literal (f-string parts included, docstrings not) that is a run file's
    name, or a path (no spaces) with one as a part: `"config.json"`, `"logs/probe"`. Prose that mentions a file
    ("no config.json beside it") is a message, not the name in use."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            value = node.value.strip()
            if value and not any(c.isspace() for c in value):
                found += [(name, node.lineno) for name in RUN_NAMES if name in value.split("/")]
    return found


def test_the_scan_finds_a_spelled_name_but_not_prose():
    source = 'x = out / "config.json"\ny = f"{out}/logs"\nz = f"no {NAME} in {out / \'metrics.json\'}"\n' \
             'w = "no best.json beside it"\n'
    assert sorted(spelled_names(source)) == [("config.json", 1), ("logs", 2), ("metrics.json", 3)]
    assert spelled_names('def f():\n    """Writes RUN/config.json."""\n') == []


def test_each_run_file_is_named_in_models_rundir_only():
    modules = sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))
    assert REPO / "models" / "rundir.py" in modules
    elsewhere = [f"{path.relative_to(REPO)}:{line}: {name!r}"
                 for path in modules if path != REPO / "models" / "rundir.py"
                 for name, line in spelled_names(path.read_text())]
    assert elsewhere == [], "spell these with models/rundir.py's constants:\n" + "\n".join(elsewhere)
    defined = {value for value in vars(rundir).values() if isinstance(value, str)}
    assert set(RUN_NAMES) <= defined, f"not defined in models/rundir.py: {sorted(set(RUN_NAMES) - defined)}"


@pytest.mark.parametrize("name", RUN_NAMES)
def test_models_rundir_defines_each_name_once(name):
    assert [n for n, _ in spelled_names((REPO / "models" / "rundir.py").read_text())].count(name) == 1
