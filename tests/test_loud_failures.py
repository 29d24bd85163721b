"""Failures that must not pass quietly: a code error during a checkpoint restore, a grid with failed cells, text
files that are not UTF-8, a damaged config.json, and internal errors the CLI used to print as one line."""

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

from surrogate_supervision.models.metrics import parse_groups
from surrogate_supervision.models.runner import training
from surrogate_supervision.models.runner.cli import check_resume, error_line, run
from surrogate_supervision.models.runner.runs import read_run_config
from surrogate_supervision.models.runner.runtime import make_strategy
from surrogate_supervision.models.runner.training import Checkpoints
from surrogate_supervision.models.segmenter import build_segmenter
from surrogate_supervision.models.surrogate_checkpoints import choose_surrogate
from surrogate_supervision.models.transfer import read_imagenet_weights, resolve_surrogate

import numpy as np
import pytest
import tensorflow as tf

from surrogate_supervision.datasets import DatasetError, FileError, FlagError, ToolkitError, load_labeled, load_palette
from surrogate_supervision.datasets.rle import read_rle_table
from surrogate_supervision.datasets.splits import select_fraction
from surrogate_supervision.experiments import label_efficiency
from surrogate_supervision.experiments.label_efficiency import parse_args

REPO = Path(__file__).resolve().parents[1]


# --- checkpoint restore: damaged files fall back, code errors propagate ----------------------------------------


def _two_checkpoints(run_dir):
    """Checkpoints at steps 2 ([1, 2]) and 4 ([3, 4]) of one variable; returns it."""
    value = tf.Variable([1.0, 2.0])
    checkpoints = Checkpoints(run_dir, value=value)
    checkpoints.save(2)
    value.assign([3.0, 4.0])
    checkpoints.save(4)
    value.assign([0.0, 0.0])
    return value


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {  # what each raises on restore, as tried: IndexError, OpError, NotFoundError, DataLossError
    "data file truncated": ("data-*", _truncate),
    "data file garbage": ("data-*", lambda path: path.write_bytes(b"damaged")),
    "index truncated": ("index", _truncate),
    "index garbage": ("index", lambda path: path.write_bytes(b"damaged")),
    "index gone": ("index", Path.unlink),
    "data file gone": ("data-*", Path.unlink),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_each_kind_of_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, capsys):
    value = _two_checkpoints(tmp_path)
    pattern, spoil = DAMAGES[damage]
    spoil(next((tmp_path / "checkpoints").glob(f"ckpt-4.{pattern}")))
    assert Checkpoints(tmp_path, value=value).restore() == 2
    np.testing.assert_array_equal(value.numpy(), [1.0, 2.0])
    assert "ckpt-4 is unreadable" in capsys.readouterr().err


def test_a_flipped_byte_in_the_data_file_falls_back_too(tmp_path):
    value = _two_checkpoints(tmp_path)
    _flip_last_byte(next((tmp_path / "checkpoints").glob("ckpt-4.data-*")))
    assert Checkpoints(tmp_path, value=value).restore() == 2


def test_a_code_error_while_reading_a_checkpoint_propagates_instead_of_falling_back(tmp_path, monkeypatch):
    value = _two_checkpoints(tmp_path)

    def broken(path):
        raise TypeError("a bug in the restore path")

    monkeypatch.setattr(training, "checkpoint_format", broken)
    with pytest.raises(TypeError, match="a bug in the restore path"):
        Checkpoints(tmp_path, value=value).restore()


def test_a_code_error_inside_the_restore_propagates_instead_of_falling_back(tmp_path, monkeypatch, capsys):
    value = _two_checkpoints(tmp_path)
    checkpoints = Checkpoints(tmp_path, value=value)

    def broken(path):
        raise AttributeError("'NoneType' object has no attribute 'assign'")

    monkeypatch.setattr(checkpoints.checkpoint, "restore", broken)
    with pytest.raises(AttributeError, match="has no attribute 'assign'"):
        checkpoints.restore()
    assert "unreadable" not in capsys.readouterr().err


def test_a_checkpoint_of_another_shape_is_not_taken_for_a_damaged_file(tmp_path):
    _two_checkpoints(tmp_path)
    with pytest.raises(ValueError, match="incompatible"):
        Checkpoints(tmp_path, value=tf.Variable([0.0, 0.0, 0.0])).restore()


# --- the grid exits 1, naming its failed steps ------------------------------------------------------------------


def _grid(tmp_path, monkeypatch, fail):
    """Runs a smoke grid (scratch, surrogate, imagenet; imagenet skipped at width 0.125) whose scripts are faked:
    those whose command line contains `fail` exit 1. Returns main's exit status."""
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1",
                       "--inits", "scratch", "surrogate", "imagenet"])

    def fake(argv, **_):
        failed = fail is not None and any(fail in str(a) for a in argv)
        return (1, "error: something broke\n") if failed else (0, "")

    monkeypatch.setattr(label_efficiency, "run_and_tee", fake)
    return label_efficiency.main(args)


def test_a_grid_with_a_failed_cell_exits_1_naming_it(tmp_path, monkeypatch, capsys):
    assert _grid(tmp_path, monkeypatch, fail="scratch_frac0.5") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 step(s) failed: segment/scratch_frac0.5_seed1" in errors[0], errors
    assert str(tmp_path / "runner.log") in errors[0]


def test_a_failed_pretraining_is_named_with_the_cells_it_failed(tmp_path, monkeypatch, capsys):
    assert _grid(tmp_path, monkeypatch, fail="colorize.py") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pretrain/" in errors[0] and "segment/surrogate_frac1_seed1" in errors[0], errors
    assert "segment/scratch" not in errors[0] and "imagenet" not in errors[0]


def test_a_grid_whose_only_unfinished_cells_are_skipped_exits_0(tmp_path, monkeypatch, capsys):
    assert _grid(tmp_path, monkeypatch, fail=None) == 0
    assert "error:" not in capsys.readouterr().err


# --- text files that are not UTF-8, damaged JSON: one line naming the file --------------------------------------


def _labeled_root(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    return tmp_path


def test_classes_txt_that_is_not_utf8_names_the_file_in_one_line(tmp_path, capsys):
    root = _labeled_root(tmp_path)
    (root / "classes.txt").write_bytes(b"background\ncaf\xe9\n")  # Latin-1
    with pytest.raises(DatasetError, match=r"classes.txt: not UTF-8 text \(byte 0xe9 on line 2, offset 14\)"):
        load_labeled(root)
    assert run(lambda args: load_labeled(root), None) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {root / 'classes.txt'}: not UTF-8 text (byte 0xe9 on line 2, offset 14); save it as UTF-8"]


def test_classes_txt_with_a_byte_order_mark_reads_without_it(tmp_path):
    root = _labeled_root(tmp_path)
    (root / "classes.txt").write_bytes("\ufeffbackground\nthing\n".encode())
    assert load_labeled(root).class_names == ["background", "thing"]


def test_rle_csv_and_palette_that_are_not_utf8_name_the_file(tmp_path):
    table = tmp_path / "train.csv"
    table.write_bytes(b"id,rle\nimg\xff1,1 2\n")
    with pytest.raises(DatasetError, match=f"{table}: not UTF-8 text"):
        read_rle_table(table)
    palette = tmp_path / "palette.txt"
    palette.write_bytes(b"0 0 0 # noir\n255 255 255 # blanc \xe0\n")
    with pytest.raises(DatasetError, match=f"{palette}: not UTF-8 text"):
        load_palette(palette)


def test_rle_csv_still_reads_quoted_fields_and_crlf_lines(tmp_path):
    table = tmp_path / "train.csv"
    table.write_bytes(b'id,rle\r\n"a",1 2\r\nb,"3 4"\r\na,5 6\r\n')
    assert read_rle_table(table) == {"a": ["1 2", "5 6"], "b": ["3 4"]}


def _resumable(out, config_bytes):
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.json").write_bytes(config_bytes)
    return parse_args(["--out", str(out), "--preset", "smoke"])  # any flags: check_resume compares them


@pytest.mark.parametrize("config, problem", [(b'{"width": 0.125,\n "crop"', "not valid JSON"),
                                             (b'{"note": "\xe9"}', "not UTF-8 text")])
def test_a_damaged_config_json_on_resume_names_the_file_in_one_line(tmp_path, capsys, config, problem):
    args = _resumable(tmp_path, config)
    with pytest.raises(FileError, match=problem):
        check_resume(args, tmp_path)
    assert run(lambda a: check_resume(a, tmp_path), args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / 'config.json'}: {problem}"), lines


def test_a_damaged_config_json_of_a_finished_run_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text('{"loss": "ce", "classes": ["a", "b"]')
    with pytest.raises(FileError, match=f"{tmp_path / 'config.json'}: not valid JSON"):
        read_run_config(tmp_path)


# --- the CLI: the toolkit's own errors in one line, any other error with its traceback ---------------------------


@pytest.mark.parametrize("error", [ValueError("an internal check failed"), TypeError("unsupported operand"),
                                   KeyError("width")])
def test_an_internal_error_is_not_turned_into_one_line(error):
    def main(args):
        raise error

    with pytest.raises(type(error)):
        run(main, None)


@pytest.mark.parametrize("error", [DatasetError("data/x.png: unreadable"), FlagError("--crop 7: too small"),
                                   FileError("run/config.json: not valid JSON"),
                                   FileNotFoundError(2, "No such file or directory", "weights.h5")])
def test_the_toolkits_own_errors_and_missing_files_are_one_line(error, capsys):
    def main(args):
        raise error

    assert run(main, None) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {error}"]


def test_an_internal_value_error_in_a_script_exits_1_with_its_traceback():
    script = ("import sys\nfrom models.runner.cli import run\n"
              "def main(args):\n    raise ValueError('an internal check failed')\n"
              "sys.exit(run(main, None))\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "in main" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "ValueError: an internal check failed"


# --- library errors name parameters, the CLI names flags (issue #49) ---------------------------------------------

# (a call that refuses a parameter value, the parameter, the message after its name)
PARAMETER_REFUSALS = [
    (lambda tmp: parse_groups("background:0;thing:9", ["background", "thing"]), "group",
     "'background:0;thing:9': class id 9 outside 0..1"),
    (lambda tmp: build_segmenter(3, loss="bce"), "loss", "bce is for two-class datasets; this one has 3 classes"),
    (lambda tmp: make_strategy("everywhere"), "distribute",
     "'everywhere' unknown, supported: none, mirrored, multiworker"),
    (lambda tmp: select_fraction(["a", "b"], 1.5, seed=0), "frac", "must be in (0, 1], got 1.5"),
    (lambda tmp: resolve_surrogate(tmp / "nothing"), "surrogate", "{tmp}/nothing: no such file"),
    (lambda tmp: read_imagenet_weights(tmp / "r50.h5"), "imagenet_weights", "{tmp}/r50.h5: no such file"),
    (lambda tmp: choose_surrogate(tmp / "g.weights.h5", "best-probe"), "surrogate_checkpoint",
     "best-probe needs the surrogate to be a run directory"),
]


@pytest.mark.parametrize("refuse, param, message", PARAMETER_REFUSALS,
                         ids=[param for _, param, _ in PARAMETER_REFUSALS])
def test_a_library_error_names_its_parameter_and_the_cli_its_flag(refuse, param, message, tmp_path, capsys):
    message = message.format(tmp=tmp_path)
    with pytest.raises(ToolkitError) as caught:
        refuse(tmp_path)
    error = caught.value
    assert error.param == param and not re.search(r"--[a-z]", str(error)), str(error)
    assert str(error).startswith(f"{param} {message}"), str(error)
    flag = "--" + param.replace("_", "-")

    def main(args):
        raise error

    assert run(main, argparse.Namespace(**{param: None})) == 1  # a script with that flag
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {flag} {message}"), line
    assert error_line(error, argparse.Namespace()) == str(error)  # a script without it: the parameter's name
    assert issubclass(FlagError, ToolkitError) and issubclass(DatasetError, ToolkitError)
    assert issubclass(ToolkitError, ValueError)  # callers that catch ValueError still catch them


def _scripts_own_functions(tree):
    """The `main` and `parse_args` of a library module that is also a script (`if __name__ == "__main__":`): its
    own command line may name its flags."""
    is_script = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)
    return {node for node in tree.body if is_script and isinstance(node, ast.FunctionDef)
            and node.name in ("main", "parse_args")}


def _texts(node):
    """Every string literal under `node`; an f-string with each replacement field read as "x"."""
    for child in ast.walk(node):
        if isinstance(child, ast.JoinedStr):
            yield "".join(part.value if isinstance(part, ast.Constant) else "x" for part in child.values)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value


def test_no_library_message_names_a_flag():
    """Only scripts and models/runner/cli.py know flags: an error raised or a line printed below them names the
    parameter (`ToolkitError(param=...)`), which the CLI shows as the flag."""
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
    found = []
    for path in sorted([*(REPO / "datasets").rglob("*.py"), *(REPO / "models").rglob("*.py")]):
        if path == REPO / "models" / "runner" / "cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = {id(node) for function in _scripts_own_functions(tree) for node in ast.walk(function)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Raise):
                parts = [node.exc, node.cause]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                parts = [*node.args, *(keyword.value for keyword in node.keywords)]
            else:
                continue
            found += [f"{path.relative_to(REPO)}:{node.lineno}: {match.group()}" for part in parts if part is not None
                      for text in _texts(part) for match in flag.finditer(text)]
    assert not found, sorted(set(found))
