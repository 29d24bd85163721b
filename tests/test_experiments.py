"""The label-efficiency grid: planning and bookkeeping in-process, then one smoke grid end to end.

The smoke grid (scratch, imagenet, surrogate, control × fractions 0.5, 1.0 × seed 1) runs once per module in
the background; a second one-cell grid, killed mid-cell and re-run, overlaps with it on the two cores. It runs
"offline" (an empty Keras cache and an unreachable proxy); its ImageNet cells, at width 0.125, cannot run by
construction and must be skipped, saying why, without trying a download.
"""

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from surrogate_supervision.models.io import write_json
from surrogate_supervision.models.runner.cli import run as run_script
from surrogate_supervision.models.runner.provenance import code_version

import numpy as np
import pytest

from surrogate_supervision.experiments import label_efficiency
from surrogate_supervision.experiments.label_efficiency import (
    finetune_command,
    parse_args,
    plan,
    pretrain_command,
    pretraining_runs,
    skip_reason,
)
from surrogate_supervision.experiments.plot import main as plot_main
from surrogate_supervision.experiments.plot import parse_args as plot_args
from surrogate_supervision.experiments.presets import DESCRIPTIONS, PRESETS
from surrogate_supervision.experiments.records import (
    COLUMNS,
    Cell,
    Pretraining,
    collect_results,
    read_results,
    read_runner_state,
)
from surrogate_supervision.experiments.report import budget_section, hit_cap, plot, summarize, write_plots_and_report
from surrogate_supervision.experiments.stats import BINDING, PAIRS, STAT_COLUMNS, VIEWS, load_counts

REPO = Path(__file__).resolve().parents[1]
GRID_TIMEOUT = 1800  # seconds; a hang (e.g. a download that never fails) ends the test instead of CI


def _grid_command(data, out, *extra):
    return [sys.executable, str(REPO / "experiments" / "label_efficiency.py"), "--data", str(data), "--out", str(out),
            "--preset", "smoke", "--seeds", "1", *extra]


def _offline_env(keras_home):
    """No Keras cache and a proxy that refuses connections: ImageNet downloads fail at once, online or not."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=str(keras_home), HTTP_PROXY="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    return env


def _processes_mentioning(text):
    """Pids of live processes whose command line contains `text` (a /proc scan, no psutil)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "(zombie)" not in status:
            pids.append(int(entry.name))
    return pids


def _latest_checkpoint_step(run_dir):
    state = run_dir / "checkpoints" / "checkpoint"  # TF writes this index atomically, after the checkpoint
    match = re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text()) if state.is_file() else None
    return int(match.group(1)) if match else 0


def _rows_by_cell(experiment):
    return {(r["init"], r["frac"]): r for r in read_results(experiment)}


# --- planning and bookkeeping, no subprocesses ---------------------------------------------------------------


def test_preset_is_demo_without_data_cpu_with_data():
    assert vars(parse_args(["--out", "x"]))["crop"] == PRESETS["demo"]["crop"]
    args = parse_args(["--out", "x", "--data", "root"])
    assert {k: getattr(args, k) for k in PRESETS["cpu"]} == PRESETS["cpu"]


def test_every_preset_has_a_one_line_description_in_the_help(capsys):
    assert set(DESCRIPTIONS) == set(PRESETS)
    for name, description in DESCRIPTIONS.items():
        assert description.strip() and "\n" not in description, name
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    assert all("".join(f"{name}: {line}".split()) in help_text for name, line in DESCRIPTIONS.items())


def test_explicit_flag_beats_preset():
    args = parse_args(["--out", "x", "--data", "root", "--preset", "smoke", "--finetune-steps", "6", "--lr", "0.01"])
    assert (args.finetune_steps, args.lr) == (6, 0.01)
    assert args.crop == PRESETS["smoke"]["crop"] and args.pretrain_steps == PRESETS["smoke"]["pretrain_steps"]


def test_cpu_preset_fine_tunes_with_ce_plus_dice_and_poly_and_flags_override_them():
    # kvasir_seg/loss_pilot.md: with CE alone the cpu grid's cells sat on the all-background plateau
    cell = Cell("scratch", 0.25, 1)
    assert _flag(finetune_command(parse_args(["--out", "x", "--data", "root"]), cell), "--loss") == "ce+dice"
    assert _flag(finetune_command(parse_args(["--out", "x", "--preset", "paper"]), cell), "--loss") == "ce"
    explicit = parse_args(["--out", "x", "--data", "root", "--loss", "ce", "--lr-schedule", "constant"])
    assert _flag(finetune_command(explicit, cell), "--loss") == "ce"
    # and with the poly schedule (the same file): the rate decays to 0 at the cap rather than staying constant
    assert _flag(finetune_command(parse_args(["--out", "x", "--data", "root"]), cell), "--lr-schedule") == "poly"
    assert _flag(finetune_command(explicit, cell), "--lr-schedule") == "constant"


def test_cpu_preset_runs_a_16000_step_poly_schedule_out_at_every_fraction():
    # the schedule check (experiments/results/<dataset>/schedule_8000/longer_schedule/): doubling 8,000 steps
    # raised scratch Dice at 10 % as well as at 100 % on both datasets, so the budget is steps, not epochs
    args = parse_args(["--out", "x", "--data", "root"])
    for frac in (0.1, 1.0):
        command = finetune_command(args, Cell("scratch", frac, 1))
        assert _flag(command, "--steps") == _flag(command, "--min-steps") == "16000"
        assert _flag(command, "--lr-schedule") == "poly" and _flag(command, "--eval-every") == "500"


def test_cell_names_and_pretraining():
    assert Cell("scratch", 0.5, 1).name == "segment/scratch_frac0.5_seed1"
    assert Cell("surrogate", 1.0, 2).name == "segment/surrogate_frac1_seed2"
    assert Cell("imagenet", 0.1, 3).run_dir("EXP") == Path("EXP/segment/imagenet_frac0.1_seed3")
    inits = ("scratch", "imagenet", "surrogate", "imagenet+surrogate", "control")
    assert [Cell(i, 1.0, 1).pretraining() for i in inits] == [
        None, None, Pretraining("scratch"), Pretraining("imagenet"), Pretraining("control")]
    assert [Cell(i, 1.0, 1).pretraining().name for i in inits[2:]] == ["scratch", "imagenet", "control"]


def test_fine_tuning_seed_i_starts_from_pretraining_run_i_mod_p(tmp_path):
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1", "2", "3", "--pretrain-seeds", "2",
                       "--inits", "scratch", "surrogate", "control"])
    cells = plan(args)
    runs = pretraining_runs(args, cells)
    assert [r.name for r in runs] == ["control", "control_seed1", "scratch", "scratch_seed1"]
    for cell in cells:
        surrogate = _flag(finetune_command(args, cell), "--surrogate")
        if cell.init == "scratch":
            assert surrogate is None
        else:
            arm = "scratch" if cell.init == "surrogate" else "control"
            assert surrogate == str(tmp_path / "pretrain" / (arm + ("_seed1" if cell.seed % 2 else ""))), cell
    for run in runs:  # each run its own seed; the control differs from the colour arm by --predict gray only
        command = pretrain_command(args, run)
        assert (_flag(command, "--seed"), _flag(command, "--init")) == (str(run.index), "scratch")
        predict = "gray" if run.arm == "control" else "rgb"
        assert _flag(command, "--predict") == predict
        assert _flag(command, "--out") == str(tmp_path / "pretrain" / run.name)
        other = pretrain_command(args, Pretraining("scratch" if run.arm == "control" else "control", run.index))
        differs = [(a, b) for a, b in zip(map(str, command), map(str, other)) if a != b]
        assert sorted(differs) == sorted([(str(run.run_dir(tmp_path)), str(Pretraining(
            "scratch" if run.arm == "control" else "control", run.index).run_dir(tmp_path))),
            (predict, "rgb" if predict == "gray" else "gray")])


def test_a_restored_grid_pretrains_again_only_the_runs_unfinished_cells_need(tmp_path, monkeypatch):
    """Committed results on a new machine: every cell's metrics.json, no weights. Re-running the grid must not
    spend hours pretraining runs whose cells are all finished."""
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1", "2", "--pretrain-seeds", "2",
                       "--inits", "scratch", "surrogate", "control"])
    cells = plan(args)
    unfinished = Cell("control", 1.0, 2)  # starts from pretraining run `control` (2 mod 2 = 0)
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells if c != unfinished})
    state.update({f"pretrain/{r.name}": {"status": "done", "wall_seconds": 1.0, "attempts": 1}
                  for r in pretraining_runs(args, cells)})
    write_json(tmp_path / "runner_state.json", state)
    ran = []
    monkeypatch.setattr(label_efficiency, "run_and_tee", lambda argv, **_: (ran.append(argv), (0, ""))[1])
    label_efficiency.main(args)
    assert [(Path(argv[1]).name, _flag(argv, "--out")) for argv in ran] == [
        ("colorize.py", str(tmp_path / "pretrain" / "control")), ("segment.py", str(unfinished.run_dir(tmp_path)))]


def test_imagenet_cells_at_reduced_width_without_weights_are_skipped(tmp_path):
    weights = tmp_path / "resnet50.h5"
    demo = parse_args(["--out", str(tmp_path)])
    assert "imagenet" in demo.inits and "control" in demo.inits
    for init in ("imagenet", "imagenet+surrogate"):
        reason = skip_reason(demo, Cell(init, 0.5, 1))
        assert "--width 1" in reason and "--imagenet-weights" in reason
        assert skip_reason(parse_args(["--out", "x", "--width", "1"]), Cell(init, 0.5, 1)) is None
        assert skip_reason(parse_args(["--out", "x", "--imagenet-weights", str(weights)]), Cell(init, 0.5, 1)) is None
    for init in ("scratch", "surrogate", "control"):
        assert skip_reason(demo, Cell(init, 0.5, 1)) is None
    args = parse_args(["--out", str(tmp_path), "--inits", "imagenet+surrogate", "surrogate"])
    assert [r.name for r in pretraining_runs(args, plan(args))] == ["scratch"]  # no ImageNet pretraining either


def _flag(command, name):
    command = [str(c) for c in command]
    return command[command.index(name) + 1] if name in command else None


def test_finetune_command_points_each_init_at_its_pretraining(tmp_path):
    exp, weights = tmp_path / "exp", tmp_path / "resnet50.h5"
    args = parse_args(["--data", "root", "--out", str(exp), "--preset", "smoke", "--imagenet-weights", str(weights)])
    expected = {"scratch": (None, None), "imagenet": (None, weights),
                "surrogate": (exp / "pretrain" / "scratch", None),
                "imagenet+surrogate": (exp / "pretrain" / "imagenet", weights),
                "control": (exp / "pretrain" / "control", None)}
    for init, (surrogate, imagenet_weights) in expected.items():
        cell = Cell(init, 0.25, 3)
        command = finetune_command(args, cell)
        assert command[0] == "finetune/segment.py"
        assert (_flag(command, "--init"), _flag(command, "--frac"), _flag(command, "--seed")) == (init, "0.25", "3")
        assert _flag(command, "--out") == str(cell.run_dir(exp))
        assert _flag(command, "--steps") == str(PRESETS["smoke"]["finetune_steps"])
        assert _flag(command, "--patience") == str(PRESETS["smoke"]["patience"])
        assert _flag(command, "--min-delta") == str(PRESETS["smoke"]["min_delta"])
        assert _flag(command, "--surrogate") == (surrogate and str(surrogate)), init
        assert _flag(command, "--imagenet-weights") == (imagenet_weights and str(imagenet_weights)), init
    assert _flag(pretrain_command(args, Pretraining("imagenet")), "--imagenet-weights") == str(weights)
    assert _flag(pretrain_command(args, Pretraining("scratch")), "--imagenet-weights") is None


def test_preset_pretext_reaches_the_pretraining_command():
    reference = pretrain_command(parse_args(["--out", "x", "--preset", "paper"]), Pretraining("scratch"))
    assert [_flag(reference, f) for f in ("--colour-loss", "--predict", "--l1-weight", "--gan-weight")] == \
        ["l1", "rgb", "1.0", "1.0"]  # the paper preset is the reference recipe
    for preset in ("cpu", "demo"):
        args = parse_args(["--out", "x", "--preset", preset])
        command = pretrain_command(args, Pretraining("scratch"))
        assert _flag(command, "--colour-loss") == PRESETS[preset]["colour_loss"] == "classify"  # pretext.md's choice
        assert _flag(command, "--gan-weight") == str(PRESETS[preset]["gan_weight"])
    classify = pretrain_command(parse_args(["--out", "x", "--colour-loss", "classify", "--gan-weight", "0"]),
                                Pretraining("scratch"))
    assert (_flag(classify, "--colour-loss"), _flag(classify, "--gan-weight")) == ("classify", "0.0")
    assert _flag(classify, "--predict") is None and _flag(classify, "--l1-weight") is None
    for preset in ("cpu", "demo"):  # classify: the matched control classifies luma bins with the same loss
        args = parse_args(["--out", "x", "--preset", preset])
        colour, control = (pretrain_command(args, Pretraining(arm)) for arm in ("scratch", "control"))
        assert [_flag(control, f) for f in ("--colour-loss", "--predict", "--gan-weight")] == \
            ["classify", "gray", str(PRESETS[preset]["gan_weight"])]
        assert _flag(colour, "--predict") is None  # colorize.py's chroma bins
        rest = [str(c) for c in control]
        del rest[rest.index("--predict"):rest.index("--predict") + 2]
        out = {str(Pretraining("scratch").run_dir("x")): str(Pretraining("control").run_dir("x"))}
        assert rest == [out.get(str(c), str(c)) for c in colour]  # only the target differs (and the run directory)
    # with the L1 pretext the control keeps the colour arm's GAN weight and reconstructs gray through the L1 term
    control = pretrain_command(parse_args(["--out", "x", "--preset", "paper"]), Pretraining("control"))
    assert [_flag(control, f) for f in ("--colour-loss", "--predict", "--gan-weight")] == \
        ["l1", "gray", str(PRESETS["paper"]["gan_weight"])]


def test_label_counts_are_the_grid_axis_passed_through_as_labels(tmp_path):
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1", "2", "--inits", "scratch",
                       "surrogate", "--labels", "20", "8"])
    cells = plan(args)
    assert [c.name for c in cells[:2]] == ["segment/scratch_labels8_seed1", "segment/scratch_labels20_seed1"]
    assert len(cells) == 8 and {c.labels for c in cells} == {8, 20} and {c.frac for c in cells} == {None}
    assert [Cell.from_name(c.name) for c in cells] == cells
    for cell in cells:  # segment.py nests the counts and gives every init the same images for a seed
        command = finetune_command(args, cell)
        assert (_flag(command, "--labels"), _flag(command, "--frac")) == (str(cell.labels), None)
        assert _flag(command, "--out") == str(tmp_path / "segment" / f"{cell.init}_labels{cell.labels}_seed{cell.seed}")
    assert parse_args(["--out", "x", "--data", "d"]).fracs == [0.1, 0.25, 0.5, 1.0]  # the cpu preset's
    assert parse_args(["--out", "x"]).fracs == [0.1, 0.25, 1.0] and parse_args(["--out", "x"]).labels is None  # demo
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--labels", "8", "--fracs", "0.5"])


def _fake_runs(ran, n_train=100):
    """A run_and_tee that records each command and leaves a finished segment.py run (metrics.json and weights)."""
    def run(argv, **_):
        ran.append(argv)
        if Path(argv[1]).name == "segment.py":
            out = Path(_flag(argv, "--out"))
            labels = _flag(argv, "--labels")
            write_json(out / "metrics.json", dict(n_train_images=int(labels) if labels else n_train, steps=4,
                                                  dice_mean=0.5, dice_grouped=0.5, miou=0.3, pixel_accuracy=0.8,
                                                  best_step=2, stopped_step=4))
            (out / "best.weights.h5").write_bytes(b"")
        return 0, ""
    return run


def test_jobs_run_steps_side_by_side_each_with_its_share_of_the_cores(tmp_path, monkeypatch):
    """--jobs 2: two steps at once, each told to use half the cores and kept quiet (their output goes to
    runner.log); a positive cell still starts only once its source cell has finished."""
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1", "--inits", "scratch", "positive",
                       "--labels", "8", "20", "--jobs", "2"])
    running, overlap, finished_at, started_at, seen = [], [], {}, {}, []
    record = _fake_runs([])

    def run(argv, env=None, echo=True):
        out = _flag(argv, "--out")
        started_at[out] = time.monotonic()
        running.append(out)
        overlap.append(len(running))
        seen.append((env, echo))
        time.sleep(0.3)
        running.remove(out)
        finished_at[out] = time.monotonic()
        return record(argv)

    monkeypatch.setattr(label_efficiency, "run_and_tee", run)
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    assert label_efficiency.main(args) == 0

    assert max(overlap) == 2
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert all(env["TF_NUM_INTRAOP_THREADS"] == share and echo is False for env, echo in seen)
    source = str(Cell("scratch", 1.0, 1).run_dir(tmp_path))
    for n in (8, 20):
        assert started_at[str(Cell("positive", None, 1, n).run_dir(tmp_path))] >= finished_at[source]
    rows = read_results(tmp_path)
    assert len(rows) == 5 and all(r["status"] == "done" for r in rows)


def test_positive_arm_starts_from_the_same_seed_scratch_cell_on_all_labels_run_first(tmp_path, monkeypatch):
    args = parse_args(["--out", str(tmp_path), "--preset", "smoke", "--seeds", "1", "2", "--inits", "positive",
                       "scratch", "--labels", "8", "20"])
    cells = plan(args)
    for seed in (1, 2):
        source = Cell("scratch", 1.0, seed)  # not on the count axis: added, first of its seed's block
        block = [c for c in cells if c.seed == seed]
        assert block[0] == source and cells.count(source) == 1
        for cell in (c for c in block if c.init == "positive"):
            command = finetune_command(args, cell)
            assert (_flag(command, "--init"), _flag(command, "--labels")) == ("segmentation", str(cell.labels))
            assert _flag(command, "--source-run") == str(source.run_dir(tmp_path)) and _flag(command, "--surrogate") \
                is None
    ran = []
    monkeypatch.setattr(label_efficiency, "run_and_tee", _fake_runs(ran))
    assert label_efficiency.main(args) == 0
    outs = [_flag(argv, "--out") for argv in ran]
    for seed in (1, 2):
        source = str(Cell("scratch", 1.0, seed).run_dir(tmp_path))
        assert all(outs.index(source) < outs.index(str(Cell("positive", None, seed, n).run_dir(tmp_path)))
                   for n in (8, 20))
    rows = {(r["init"], r["frac"], r["labels"], r["seed"]): r for r in read_results(tmp_path)}
    assert rows["scratch", 1.0, None, 1]["status"] == "done" and rows["positive", None, 8, 2]["status"] == "done"

    # a fraction grid holds the positive arm's cell at all labels: skipped by construction, never failed
    exp = tmp_path / "fractions"
    args = parse_args(["--out", str(exp), "--preset", "smoke", "--inits", "scratch", "positive", "--fracs", "0.5",
                       "1.0"])
    assert [c.name for c in plan(args)] == ["segment/scratch_frac1_seed1", "segment/scratch_frac0.5_seed1",
                                            "segment/positive_frac0.5_seed1", "segment/positive_frac1_seed1"]
    assert "positive control at all labels" in skip_reason(args, Cell("positive", 1.0, 1))
    ran.clear()
    assert label_efficiency.main(args) == 0
    assert len(ran) == 3 and _flag(ran[-1], "--source-run") == str(Cell("scratch", 1.0, 1).run_dir(exp))
    state = read_runner_state(exp)
    assert state["segment/positive_frac1_seed1"]["status"] == "skipped"
    assert "positive control at all labels" in state["segment/positive_frac1_seed1"]["error"]
    # a count as large as the training set is all labels too, once the source cell says how many there are
    assert "all labels" in skip_reason(args, Cell("positive", None, 1, 100))
    assert skip_reason(args, Cell("positive", None, 1, 99)) is None


def test_report_says_per_count_whether_the_regime_can_detect_an_init_effect(tmp_path):
    counts_axis, seeds = (8, 80), (1, 2, 3)
    cells = [Cell(init, None, seed, n) for init in ("scratch", "positive") for n in counts_axis for seed in seeds]
    cells += [Cell("scratch", 1.0, seed) for seed in seeds]
    rng = np.random.default_rng(0)
    # the positive control helps at 8 labels, not at 80; labels bind at 8 (scratch on all labels is better), not at 80
    rate = {("positive", 8): 0.8, ("scratch", 8): 0.5, ("scratch", None): 0.8, ("scratch", 80): 0.8,
            ("positive", 80): 0.8}
    counts = {c: _counts(rng, rate.get((c.init, c.labels), 0.7)) for c in cells}
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells}, counts)
    collect_results(tmp_path, cells, state)
    write_json(tmp_path / "runner_state.json", state)
    write_plots_and_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    detect = report.split("## Can this regime detect an init effect?")[1]
    assert re.search(r"- 8 labeled images: scratch on all labels − scratch \+0\.\d+ \[\+0\.\d+, \+0\.\d+\]: "
                     r"labels bind; positive − scratch \+0\.\d+ \[\+0\.\d+, \+0\.\d+\]: detectable\.", detect)
    assert re.search(r"- 80 labeled images: scratch on all labels − scratch .*: no measurable difference, labels do "
                     r"not bind; positive − scratch .*: no measurable difference; this regime cannot detect an init "
                     r"effect here\.", detect)
    assert "positive control beats scratch) at: 8 labeled images.\n" in detect
    assert "**positive**: this grid's scratch cell trained on all labels with the same seed" in report
    with open(tmp_path / "statistics.csv", newline="") as f:
        stats = list(csv.DictReader(f))
    assert {(r["labels"], r["frac"], r["arm"], r["baseline"]) for r in stats} == {
        (str(n), "", arm, "scratch") for n in counts_axis for arm in ("positive", "scratch_all_labels")}
    assert "| positive | 8 labels | 1 |" in report and "| scratch | 1 | 3 |" in report
    assert (tmp_path / "dice_vs_fraction.png").read_bytes().startswith(b"\x89PNG")


def _fake_grid(exp, cells, dice, counts=None, stopped_step=2):
    """Writes metrics.json (and, from `counts`, cell → (N, 2, 2) confusion, test_counts.json) for the cells in
    `dice` (cell → Dice), marks the others failed; returns the state."""
    state = {}
    for cell in cells:
        if cell in dice:
            write_json(cell.run_dir(exp) / "metrics.json",
                       dict(n_train_images=7, steps=4, dice_mean=dice[cell], dice_grouped=0.5, dice_foreground=0.4,
                            miou=0.25, pixel_accuracy=0.75, best_step=2, stopped_step=stopped_step))
            if counts:
                write_json(cell.run_dir(exp) / "test_counts.json", {
                    "classes": ["background", "thing"], "groups": {"background": [0], "thing": [1]},
                    "confusion": {f"img{i:03d}": m.tolist() for i, m in enumerate(counts[cell])}})
            state[cell.name] = {"status": "done", "wall_seconds": 12.34, "attempts": 1,
                                "command": f"python {cell.name}"}
        else:
            state[cell.name] = {"status": "failed", "wall_seconds": 1.0, "attempts": 1, "error": "error: no weights"}
    return state


def test_collect_results_writes_atomically_and_reads_back(tmp_path):
    done, failed = Cell("scratch", 0.5, 1), Cell("imagenet", 0.5, 1)
    state = _fake_grid(tmp_path, [done, failed], {done: 0.123456789})
    for _ in range(2):  # rebuilt, not appended
        collect_results(tmp_path, [done, failed], state)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["results.csv"]  # no temporary file left
    with open(tmp_path / "results.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == COLUMNS
    first, second = read_results(tmp_path)
    assert first == dict(init="scratch", frac=0.5, labels=None, seed=1, n_train=7, dice_mean=0.123457, dice_grouped=0.5,
                         dice_foreground=0.4, miou=0.25, pixel_accuracy=0.75, steps=4, best_step=2, stopped_step=2,
                         lr_schedule="constant", wall_seconds=12.3, status="done",
                         run_dir="segment/scratch_frac0.5_seed1", note="")
    assert (second["status"], second["note"], second["n_train"], second["dice_mean"], second["steps"]) == (
        "failed", "error: no weights", None, None, None)


def test_cell_names_round_trip_and_results_keep_cells_a_narrower_run_did_not_plan(tmp_path):
    cells = [Cell("imagenet+surrogate", 0.1, 3), Cell("scratch", 1.0, 12), Cell("control", 0.25, 1)]
    assert [Cell.from_name(c.name) for c in cells] == cells
    assert Cell.from_name("pretrain/scratch_seed1") is None and Cell.from_name("__codes__") is None
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells[:2]})  # the third failed
    collect_results(tmp_path, cells, state)
    rows = collect_results(tmp_path, [Cell("scratch", 0.5, 1)], state)  # a later run of the grid with --inits scratch
    assert [(r["init"], r["frac"], r["seed"], r["status"]) for r in rows] == [
        ("scratch", 0.5, 1, "pending"), ("imagenet+surrogate", 0.1, 3, "done"), ("scratch", 1.0, 12, "done")]
    assert len(read_results(tmp_path)) == 3


def test_a_done_cell_whose_outputs_are_gone_is_pending_not_done(tmp_path):
    """The runner redoes a cell whose metrics.json is missing; the table must not count it as finished."""
    cells = [Cell("scratch", 0.5, 1), Cell("scratch", 1.0, 1)]
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells})
    (cells[1].run_dir(tmp_path) / "metrics.json").unlink()
    rows = collect_results(tmp_path, cells, state)
    assert [(r["frac"], r["status"]) for r in rows] == [(0.5, "done"), (1.0, "pending")]


def test_a_poly_cell_that_reaches_its_last_step_ran_its_schedule_out_not_into_the_cap():
    row = lambda schedule, stopped: dict(init="scratch", frac=1.0, seed=1, status="done", steps=8, stopped_step=stopped,
                                         lr_schedule=schedule)
    constant, poly, stopped = row("constant", 8), row("poly", 8), row("poly", 5)
    assert (hit_cap(constant), hit_cap(poly), hit_cap(stopped)) == (True, False, False)
    text = "\n".join(budget_section([poly, stopped]))
    assert "1 of 2 cells ran the poly learning-rate schedule to its last step" in text and "hit the" not in text
    assert "1 of 2 cells hit the --finetune-steps cap" in "\n".join(budget_section([constant, stopped]))


def test_report_names_the_weights_each_pretraining_runs_cells_started_from(tmp_path):
    """A pretraining run lost with its machine is pretrained again; cells after that start from another file."""
    cells = [Cell("surrogate", frac, 1) for frac in (0.25, 0.5, 1.0)] + [Cell("surrogate", 1.0, 2)]
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells})
    digests = ["a" * 64, "a" * 64, "b" * 64, "c" * 64]  # run scratch_seed1 regenerated before its 100 % cell
    for cell, digest in zip(cells, digests):
        pretraining = cell.pretraining(2).run_dir(tmp_path)
        write_json(cell.run_dir(tmp_path) / "init.json", {"init": "surrogate", "source_sha256": digest,
                                                          "source": str(pretraining / "generator.weights.h5")})
        (pretraining / "samples").mkdir(parents=True, exist_ok=True)
        (pretraining / "samples" / "step_00004.png").write_bytes(b"")
    collect_results(tmp_path, cells, state)
    write_json(tmp_path / "runner_state.json", state)
    write_plots_and_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    once, twice = report.split("## Pretraining scratch_seed1")[0], report.split("## Pretraining scratch_seed1")[1]
    assert "SHA-256 cccccccccccc (1 cell)" in once and "pretrained" not in once.split("## Pretraining scratch")[1]
    assert "SHA-256 aaaaaaaaaaaa (2 cells)" in twice and "SHA-256 bbbbbbbbbbbb (1 cell)" in twice
    assert "**This run was pretrained 2 times**" in twice and "bbbbbbbbbbbb: 1/seed 1" in twice


def test_report_names_the_cpu_each_cell_ran_on(tmp_path):
    """A grid resumed on another session's machine mixes CPUs; the report says which cell ran where."""
    cells = [Cell("scratch", frac, 1) for frac in (0.5, 1.0)] + [Cell("scratch", 1.0, 2)]
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells})
    isas = [["avx2", "avx512f", "avx512_bf16"], ["avx2", "avx512f", "avx512_bf16"], ["avx2", "avx512f"]]
    for cell, isa in zip(cells, isas):
        write_json(cell.run_dir(tmp_path) / "config.json", {"machine": {
            "cpu_model": "Xeon", "cpus": 2, "cpu_isa": isa, "onednn_max_cpu_isa": "native"}})
    collect_results(tmp_path, cells, state)
    write_plots_and_report(tmp_path)
    header = (tmp_path / "report.md").read_text().split("Command:")[0]
    assert "CPUs: Xeon, 2 CPUs, avx2 avx512f avx512_bf16, oneDNN cap native (2 cells: scratch 0.5/seed 1, " \
           "scratch 1/seed 1); Xeon, 2 CPUs, avx2 avx512f, oneDNN cap native (1 cell: scratch 1/seed 2)" in header


def _counts(rng, rate, images=40):
    """(images, 2, 2) confusion counts: half background, all found; a fraction ~`rate` of the foreground found."""
    found = np.clip(rng.normal(rate, 0.05, images), 0, 1) * 100
    return np.stack([np.array([[100, 0], [100 - f, f]]) for f in found.round()])


def test_summarize_mean_over_seeds_with_a_bootstrap_band_only_where_counts_exist():
    def row(frac, seed, dice, status="done"):
        return dict(init="scratch", frac=frac, seed=seed, status=status, dice_mean=dice)

    rows = [row(0.5, 1, 0.2), row(0.5, 2, 0.4), row(1.0, 1, 0.5), row(1.0, 2, 0.7), row(1.0, 3, None, "failed")]
    ((frac_a, *a), (frac_b, *b)), = summarize(rows, "dice_mean").values()
    assert (frac_a, frac_b) == (0.5, 1.0)
    assert a == pytest.approx([0.3, None, None, 2]) and b == pytest.approx([0.6, None, None, 2])

    rng = np.random.default_rng(0)
    cells = {("scratch", 1.0): {1: ([f"i{k}" for k in range(40)], _counts(rng, 0.5)),
                                2: ([f"i{k}" for k in range(40)], _counts(rng, 0.7))}}
    half, (frac, mean, low, high, n) = summarize(rows, "dice_mean", cells, [[0], [1]])["scratch"]
    assert half == pytest.approx((0.5, 0.3, None, None, 2))  # no counts at 0.5: no band
    assert (frac, n) == (1.0, 2) and 0.6 < low < mean < high < 0.95  # recomputed from the counts


def test_plot_and_report_survive_an_init_without_results(tmp_path):
    cells = [Cell(init, frac, seed) for init in ("scratch", "imagenet") for frac in (0.5, 1.0) for seed in (1, 2)]
    state = _fake_grid(tmp_path, cells, {c: 0.1 * c.seed + c.frac / 2 for c in cells if c.init == "scratch"})
    collect_results(tmp_path, cells, state)
    write_json(tmp_path / "runner_state.json", state)
    rows = read_results(tmp_path)
    assert set(summarize(rows, "dice_mean")) == {"scratch"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to draw is no reason for an empty-legend warning either
        png = plot([r for r in rows if r["init"] == "imagenet"], tmp_path / "only_failed")
    assert png.read_bytes().startswith(b"\x89PNG") and (tmp_path / "only_failed.svg").is_file()
    write_plots_and_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "failed: error: no weights" in report and "python segment/scratch_frac1_seed2" in report
    assert (tmp_path / "dice_vs_fraction.png").read_bytes().startswith(b"\x89PNG")


def test_report_and_csv_hold_an_interval_per_fraction_and_pair(tmp_path):
    inits, fracs, seeds = ("scratch", "surrogate", "control"), (0.25, 1.0), (1, 2, 3)
    cells = [Cell(i, f, s) for i in inits for f in fracs for s in seeds]
    rng = np.random.default_rng(0)
    rate = {"scratch": 0.5, "surrogate": 0.8, "control": 0.8}  # colour adds nothing to the warm-up here
    counts = {c: _counts(rng, rate[c.init] * c.frac ** 0.1) for c in cells}
    capped = Cell("control", 1.0, 2)
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells}, counts)
    write_json(capped.run_dir(tmp_path) / "metrics.json",
               {**json.loads((capped.run_dir(tmp_path) / "metrics.json").read_text()), "stopped_step": 4})
    collect_results(tmp_path, cells, state)
    write_json(tmp_path / "runner_state.json", state)
    write_plots_and_report(tmp_path)

    with open(tmp_path / "statistics.csv", newline="") as f:
        reader = csv.DictReader(f)
        stats = list(reader)
    assert tuple(reader.fieldnames) == STAT_COLUMNS
    pairs = [p for p in PAIRS if set(p) <= set(inits)]
    assert sorted((r["view"], float(r["frac"]), r["arm"], r["baseline"]) for r in stats) == sorted(
        [(v, f, *p) for v in VIEWS for f in fracs for p in pairs] + [(v, 0.25, *BINDING) for v in VIEWS])
    for r in stats:
        assert float(r["ci_low"]) <= float(r["difference"]) <= float(r["ci_high"]), r
        assert (r["n_seeds"], r["n_images"]) == ("3", "40")
        gain = r["baseline"] == "scratch"
        assert r["verdict"] == ("higher" if gain else "no measurable difference"), r
        assert r["seeds_positive"] == ("3" if gain else r["seeds_positive"])
    report = (tmp_path / "report.md").read_text()
    for r in stats:
        line = (f"| {100 * float(r['frac']):g} % | {r['arm']} − {r['baseline']} | {float(r['difference']):+.3f} "
                f"[{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}] | {r['seeds_positive']}/3 | 40 | "
                f"{r['verdict']} |")
        assert line in report
    assert report.count("no measurable difference; colour is not what helps here") == len(fracs)
    # the plot's lines and bands as numbers: an arm's mean over its 3 seeds and its interval, per fraction
    means = report.split("## Mean Dice per arm")[1].split("## Paired differences")[0]
    assert "| labels | scratch | surrogate | control |" in means
    summary = summarize(read_results(tmp_path), "dice_mean", *load_counts(tmp_path, read_results(tmp_path)))
    for frac in fracs:
        arms = [next(p for p in summary[init] if p.point == frac) for init in ("scratch", "surrogate", "control")]
        assert all(p.low < p.mean < p.high and p.n_seeds == 3 for p in arms)
        scratch, surrogate, _ = arms
        assert scratch.high < surrogate.low  # scratch's rate 0.5 against the surrogate's 0.8: the bands do not meet
        assert f"| {100 * frac:g} % | " + " | ".join(
            f"{p.mean:.3f} [{p.low:.3f}, {p.high:.3f}] (3 seeds)" for p in arms) + " |" in means
    assert re.search(r"- 25 % of the labels: scratch on all labels − scratch \+0\.\d+ \[\+0\.\d+, \+0\.\d+\]: labels "
                     r"bind\.", report) and "Labels bind at none" not in report
    assert "1 of 18 cells hit the --finetune-steps cap" in report and "control 1 seed 2" in report
    assert "| 2 / 4 / 4 **hit the cap** |" in report and report.count("hit the cap**") == 1


def test_report_says_when_labels_bind_nowhere_so_no_init_could_win(tmp_path):
    cells = [Cell("scratch", frac, seed) for frac in (0.1, 1.0) for seed in (1, 2, 3)]
    rng = np.random.default_rng(0)
    state = _fake_grid(tmp_path, cells, {c: 0.5 for c in cells}, {c: _counts(rng, 0.7) for c in cells})  # flat
    collect_results(tmp_path, cells, state)
    write_json(tmp_path / "runner_state.json", state)
    write_plots_and_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert re.search(r"- 10 % of the labels: scratch on all labels − scratch .*: no measurable difference, labels do "
                     r"not bind\.", report)
    assert "Labels bind at none of this grid's points below all labels: no initialisation had anything to win" in report


def test_plot_cli_without_results_fails_with_one_line(tmp_path, capsys):
    assert run_script(plot_main, plot_args([str(tmp_path)])) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "results.csv" in err


# --- the smoke grid, end to end --------------------------------------------------------------------------------

SMOKE_INITS = ("scratch", "imagenet", "surrogate", "control")
RUNNABLE = ("scratch", "surrogate", "control")
SMOKE_FRACS = (0.5, 1.0)


class BackgroundGrid:
    """The smoke grid, started at once; `wait()` blocks until it is done and returns the experiment dir."""

    def __init__(self, data, root):
        self.out = root / "exp"
        self.env = _offline_env(root / "keras_home")
        self.command = _grid_command(data, self.out, "--inits", *SMOKE_INITS,
                                     "--fracs", *map(str, SMOKE_FRACS))
        self.log = root / "grid.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.started = time.time()

    def wait(self):
        try:
            returncode = self.process.wait(timeout=max(1, GRID_TIMEOUT - (time.time() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"smoke grid still running after {GRID_TIMEOUT} s; log: {self.log}")
        assert returncode == 0, self.log.read_text()[-3000:]
        return self.out

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="module")
def smoke_grid(synthetic_root, tmp_path_factory):
    grid = BackgroundGrid(synthetic_root, tmp_path_factory.mktemp("smoke_grid"))
    yield grid
    grid.stop()


@pytest.fixture(scope="module")
def experiment(smoke_grid):
    return smoke_grid.wait()


@pytest.fixture(scope="module")
def rerun(smoke_grid, experiment):
    """Runs the same grid command again; returns (result, state before, state after, metrics mtimes before/after)."""
    def mtimes():
        return {p: p.stat().st_mtime_ns for p in sorted(experiment.glob("segment/*/metrics.json"))}

    before, mtimes_before, rows_before = read_runner_state(experiment), mtimes(), read_results(experiment)
    result = subprocess.run(smoke_grid.command, cwd=REPO, env=smoke_grid.env, capture_output=True, text=True,
                            timeout=GRID_TIMEOUT)
    return dict(result=result, before=before, after=read_runner_state(experiment), rows_before=rows_before,
                mtimes_before=mtimes_before, mtimes_after=mtimes())


def test_kill_mid_cell_then_rerun_resumes_from_checkpoint(smoke_grid, synthetic_root, tmp_path):
    # `smoke_grid` only so the big grid is already running in the background: the two share the cores.
    out = tmp_path / "killed"
    command = _grid_command(synthetic_root, out, "--inits", "scratch", "--fracs", "1.0", "--finetune-steps", "6",
                            "--checkpoint-every", "2", "--eval-every", "2", "--patience", "10")  # runs to step 6
    env = _offline_env(tmp_path / "keras_home")
    run_dir = Cell("scratch", 1.0, 1).run_dir(out)
    with open(tmp_path / "first.log", "wb") as log:
        runner = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.time() + GRID_TIMEOUT
        while _latest_checkpoint_step(run_dir) < 2:
            assert runner.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.05)
        os.kill(runner.pid, signal.SIGKILL)  # the runner only: its child must die with it (PR_SET_PDEATHSIG)
        runner.wait()
        killed_at = _latest_checkpoint_step(run_dir)
        for _ in range(100):
            if not _processes_mentioning(str(out)):
                break
            time.sleep(0.1)
        assert not _processes_mentioning(str(out)), "the fine-tuning run outlived its killed runner"
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
        for pid in _processes_mentioning(str(out)):  # only runs started above carry this tmp path
            os.kill(pid, signal.SIGKILL)
    assert 2 <= killed_at < 6 and not (run_dir / "metrics.json").exists(), "killed too late to test resuming"
    assert not (out / "results.csv").exists() or read_results(out)[0]["status"] != "done"

    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=GRID_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_results(out)
    assert (row["status"], row["steps"], row["n_train"]) == ("done", 6, json.loads(
        (run_dir / "metrics.json").read_text())["n_train_images"])
    assert (run_dir / "checkpoints" / "ckpt-6.index").is_file()
    # tqdm starts at the restored step: the first progress line of the re-run reads "K/6" with K the checkpoint's.
    progress = [int(k) for k in re.findall(r"segment scratch:.*?\| (\d+)/6 \[", result.stderr.replace("\r", "\n"))]
    assert progress and progress[0] == killed_at and progress[-1] == 6, progress


def test_results_csv_has_one_row_per_cell(experiment):
    with open(experiment / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert sorted((r["init"], float(r["frac"]), r["seed"]) for r in rows) == sorted(
        (i, f, "1") for i in SMOKE_INITS for f in SMOKE_FRACS)


def test_finished_cells_have_metrics_and_nested_subsets(experiment):
    rows = _rows_by_cell(experiment)
    for init in RUNNABLE:
        for frac in SMOKE_FRACS:
            row = rows[init, frac]
            assert row["status"] == "done" and row["steps"] == PRESETS["smoke"]["finetune_steps"], row
            assert 2 <= row["best_step"] <= row["stopped_step"] <= row["steps"], row
            counts = json.loads((experiment / row["run_dir"] / "test_counts.json").read_text())
            assert len(counts["confusion"]) == json.loads(
                (experiment / row["run_dir"] / "metrics.json").read_text())["n_test_images"]
            assert all(0 <= row[k] <= 1 for k in ("dice_mean", "dice_grouped", "miou", "pixel_accuracy")), row
            assert row["wall_seconds"] > 0 and (experiment / row["run_dir"] / "metrics.json").is_file()
        half, full = rows[init, 0.5]["n_train"], rows[init, 1.0]["n_train"]
        assert 1 <= half <= math.ceil(0.5 * full) < full
    stems = {(init, frac): set((Cell(init, frac, 1).run_dir(experiment) / "train_stems.txt").read_text().split())
             for init in RUNNABLE for frac in SMOKE_FRACS}
    for frac in SMOKE_FRACS:  # the same subset for every runnable init
        assert stems["scratch", frac] == stems["surrogate", frac] == stems["control", frac]
    assert stems["scratch", 0.5] < stems["scratch", 1.0]
    assert len(stems["scratch", 1.0]) == rows["scratch", 1.0]["n_train"]
    assert len(stems["scratch", 0.5]) == rows["scratch", 0.5]["n_train"]


def test_no_cell_fails_and_imagenet_cells_are_skipped_saying_why(experiment):
    rows = _rows_by_cell(experiment)
    assert [r for r in rows.values() if r["status"] == "failed"] == []
    for frac in SMOKE_FRACS:
        row = rows["imagenet", frac]
        assert row["status"] == "skipped" and row["dice_mean"] is None
        assert "--width 1" in row["note"] and "--imagenet-weights" in row["note"], row["note"]
        assert not Cell("imagenet", frac, 1).run_dir(experiment).exists()  # never started
    assert sorted(p.name for p in (experiment / "pretrain").iterdir()) == ["control", "scratch"]
    control = json.loads((experiment / "pretrain" / "control" / "config.json").read_text())
    assert control["predict"] == "gray" and control["steps"] == PRESETS["smoke"]["pretrain_steps"]


def test_smoke_grid_writes_paired_intervals(experiment):
    with open(experiment / "statistics.csv", newline="") as f:
        stats = list(csv.DictReader(f))
    pairs = {("surrogate", "scratch"), ("surrogate", "control"), ("control", "scratch")}
    assert {(r["view"], float(r["frac"]), r["arm"], r["baseline"]) for r in stats} == {
        (v, f, *p) for v in VIEWS for f in SMOKE_FRACS for p in pairs} | {
        (v, f, *BINDING) for v in VIEWS for f in SMOKE_FRACS if f != 1.0}
    assert all(float(r["ci_low"]) <= float(r["difference"]) <= float(r["ci_high"]) for r in stats)
    report = (experiment / "report.md").read_text()
    assert "## Paired differences (95 % bootstrap confidence intervals)" in report and "## Is it the colour?" in report


def test_plots_exist(experiment):
    assert (experiment / "dice_vs_fraction.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "<svg" in (experiment / "dice_vs_fraction.svg").read_text()


def test_report_has_table_plot_samples_and_commands(experiment):
    report = (experiment / "report.md").read_text()
    state = read_runner_state(experiment)
    assert "![Dice vs label fraction: mean over seeds, band = 95 % bootstrap interval](dice_vs_fraction.png)" in report
    table = [line for line in report.splitlines() if re.match(r"\| (scratch|imagenet|surrogate|control) \|", line)]
    assert len(table) == len(SMOKE_INITS) * len(SMOKE_FRACS)
    samples = re.findall(r"!\[colorization samples\]\((.+?)\)", report)
    assert samples and all((experiment / s).is_file() for s in samples)
    assert state["__command__"] in report and "--preset smoke" in state["__command__"]
    # the commit and the CPU the grid ran on; a fresh clone is a git checkout
    assert state["__codes__"] == [code_version()] and code_version() is not None
    assert f"Code: commit {code_version()['commit'][:10]}" in report and state["__machine__"]["cpu_model"] in report
    for name, entry in state.items():
        if not name.startswith("__") and entry["status"] != "skipped":  # skipped cells never ran a command
            assert entry["command"] in report, name


def test_rerun_skips_finished_cells(experiment, rerun):
    assert rerun["result"].returncode == 0, rerun["result"].stderr[-3000:]
    done_before = [r for r in rerun["rows_before"] if r["status"] == "done"]
    assert len(done_before) == 6
    assert [r for r in read_results(experiment) if r["status"] == "done"] == done_before
    assert rerun["mtimes_after"] == rerun["mtimes_before"] and len(rerun["mtimes_before"]) == 6
    for name, entry in rerun["after"].items():
        if name.startswith("__"):
            continue
        expected = 0 if name.startswith("segment/imagenet") else 1  # nothing ran again; skipped cells never run
        assert entry["attempts"] == expected, (name, entry)
        assert entry["status"] == rerun["before"][name]["status"]
    assert "6/8 cells finished, 2 skipped, 0 failed" in rerun["result"].stdout


def test_plot_script_regenerates_plots_and_report(experiment, rerun):
    # `rerun` first: both rewrite the report, so they must not overlap when tests are reordered.
    for name in ("dice_vs_fraction.png", "dice_vs_fraction.svg", "report.md"):
        (experiment / name).unlink()
    result = subprocess.run([sys.executable, str(REPO / "experiments" / "plot.py"), str(experiment)], cwd=REPO,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (experiment / "dice_vs_fraction.png").read_bytes().startswith(b"\x89PNG")
    assert "<svg" in (experiment / "dice_vs_fraction.svg").read_text()
    assert "| scratch | 0.5 | 1 |" in (experiment / "report.md").read_text()



def test_pilot_table_pools_a_datasets_grids_and_says_whether_it_qualifies(tmp_path):
    from surrogate_supervision.datasets import FileError
    from surrogate_supervision.experiments.pilot_table import main as pilot_table
    from surrogate_supervision.experiments.pilot_table import parse_args as pilot_args

    rng = np.random.default_rng(0)
    # "binds": labels bind at 8 and the positive control beats scratch at 8 and 20 (every other cell at 0.8).
    # "flat": scratch at 8 is as good as on all labels, and nothing beats it.
    rates = {"binds": {("scratch", 8): 0.4, ("scratch", 20): 0.5}, "flat": {}}
    grids = []
    for dataset, rate in rates.items():
        for seeds in ((1, 2), (3,)):  # one grid per core: seeds 1 and 2 in one, seed 3 in another
            exp = tmp_path / f"{dataset}_{seeds[0]}"
            cells = [Cell(init, None, seed, n) for init in ("scratch", "positive") for n in (8, 20) for seed in seeds]
            cells += [Cell("scratch", 1.0, seed) for seed in seeds]
            counts = {c: _counts(rng, rate.get((c.init, c.labels), 0.8)) for c in cells}
            state = _fake_grid(exp, cells, {c: 0.5 for c in cells}, counts)
            collect_results(exp, cells, state)
            write_json(exp / "runner_state.json", {**state, "__args__": {"data": f"/data/{dataset}"}})
            grids.append(exp)
    out = tmp_path / "pilot.md"
    assert pilot_table(pilot_args([*map(str, grids), "--out", str(out)])) == 0
    text = out.read_text()
    assert re.search(r"\| binds \| 8 \| 0\.\d+ \[0\.\d+, 0\.\d+\] \(3\) \| 0\.\d+ \[.*\] \(3\) \| \+0\.\d+ \[\+0\.\d+, "
                     r"\+0\.\d+\] higher \(3 seeds\) \| \+0\.\d+ \[\+0\.\d+, \+0\.\d+\] higher \(3 seeds\) \|", text)
    assert "- **binds**: qualifies (all three intervals exclude zero)." in text
    assert re.search(r"- \*\*flat\*\*: does not qualify \(scratch on all labels − scratch at 8 is no measurable "
                     r"difference; positive − scratch at 8 is no measurable difference; positive − scratch at 20 is no "
                     r"measurable difference\)\.", text)
    assert "| binds | positive | 8 | 2 / 4, 2 / 4, 2 / 4 | 0 of 3 | –, –, – | –, –, – |" in text
    with pytest.raises(FileError, match="also in another grid"):  # a cell counted twice would narrow the interval
        pilot_table(pilot_args([str(grids[0]), str(grids[0]), "--out", str(out)]))


def test_pool_merges_grids_run_in_parts_into_one_report_and_refuses_a_run_counted_twice(tmp_path):
    from surrogate_supervision.datasets import FileError
    from surrogate_supervision.experiments.pool import main as pool_main
    from surrogate_supervision.experiments.pool import parse_args as pool_args

    rng = np.random.default_rng(0)
    parts = {"a": [Cell(i, None, s, n) for i in ("scratch", "positive") for s in (1, 2) for n in (8, 20)]
             + [Cell("scratch", 1.0, s) for s in (1, 2)],
             "b": [Cell("surrogate", None, s, n) for s in (1, 2) for n in (8, 20)]}
    grids = []
    for part, cells in parts.items():
        grid = tmp_path / part
        state = _fake_grid(grid, cells, {c: 0.5 for c in cells}, {c: _counts(rng, 0.6) for c in cells})
        for cell in cells:  # what a record leaves out, and what it keeps
            write_json(cell.run_dir(grid) / "config.json", {"lr_schedule": "poly"})
            for big in ("best.weights.h5", "checkpoints/ckpt-4.index", "logs/events.out.tfevents.1",
                        "predictions.png"):
                (cell.run_dir(grid) / big).parent.mkdir(parents=True, exist_ok=True)
                (cell.run_dir(grid) / big).write_bytes(b"x")
        unfinished = Cell("control", None, 1, 8).run_dir(grid)  # a cell cut off mid-run stays out
        (unfinished / "checkpoints").mkdir(parents=True)
        pretrain = grid / "pretrain" / "scratch_seed1"
        (pretrain / "samples").mkdir(parents=True)
        write_json(pretrain / "pretrain_metrics.json", {"steps": 4})
        for step in (2, 4):
            (pretrain / "samples" / f"step_000000{step}.png").write_bytes(b"png")
        if part == "b":
            state["pretrain/scratch_seed1"] = {"status": "done", "wall_seconds": 3.0, "attempts": 1,
                                               "command": "python pretrain/colorize.py"}
        write_json(grid / "runner_state.json", {**state, "__args__": {"data": "/data/ccp"},
                                                "__command__": f"python experiments/label_efficiency.py part {part}",
                                                "__codes__": [{"commit": part * 40, "dirty": False}]})
        grids.append(grid)

    out = tmp_path / "pooled"
    with pytest.raises(FileError, match="pretrain/scratch_seed1: also in"):  # both parts hold the same run
        pool_main(pool_args([*map(str, grids), "--out", str(out)]))
    shutil.rmtree(grids[0] / "pretrain")
    assert pool_main(pool_args([*map(str, grids), "--out", str(out)])) == 0
    rows = read_results(out)
    assert sorted(r["run_dir"] for r in rows) == sorted(c.name for cells in parts.values() for c in cells)
    assert all(r["status"] == "done" for r in rows)
    kept = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    cell = Cell("positive", None, 2, 20).name
    assert {f"{cell}/metrics.json", f"{cell}/test_counts.json", f"{cell}/config.json"} <= kept
    assert not any(k.endswith(".weights.h5") or "/checkpoints/" in k or "/logs/" in k for k in kept)
    assert not any("control" in k for k in kept)
    assert {k for k in kept if "/samples/" in k} == {"pretrain/scratch_seed1/samples/step_0000004.png"}
    # the prediction pictures report.md shows: the first seed's at the smallest count, one per arm
    assert {k for k in kept if k.endswith("predictions.png")} == {
        f"segment/{init}_labels8_seed1/predictions.png" for init in ("scratch", "positive", "surrogate")}
    state = read_runner_state(out)
    assert [c["commit"] for c in state["__codes__"]] == ["a" * 40, "b" * 40]
    report = (out / "report.md").read_text()
    assert "part a" in report and "part b" in report and "experiments/pool.py" in report
    assert len(re.findall(r"!\[\w+\]\(segment/\w+_labels8_seed1/predictions.png\)", report)) == 3
    assert (out / "statistics.csv").is_file() and (out / "dice_vs_fraction.png").is_file()

    # Pooling again, with one part's folder gone (a machine that did not keep it), keeps what was pooled before.
    shutil.rmtree(grids[1])
    assert pool_main(pool_args([str(grids[0]), "--out", str(out)])) == 0
    assert len(read_results(out)) == len(rows)
    other = tmp_path / "other"
    write_json(other / "runner_state.json", {"__args__": {"data": "/data/kvasir"}})
    with pytest.raises(FileError, match="pool the grids of one dataset"):
        pool_main(pool_args([str(grids[0]), str(other), "--out", str(out)]))
