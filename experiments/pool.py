"""Pools grids run in parts into one grid folder, and writes its table, statistics, plot and report.

    python experiments/pool.py GRID [GRID ...] --out DIR

A grid's cells can be run as several label_efficiency.py grids: one per core (two runners must not share a folder),
per seed or arm, or on several machines. Each GRID's finished runs (cells and pretraining runs) are copied into DIR
as records: their metrics, per-image test counts, configs, splits and the last colour sample, without weights,
checkpoints or logs (DIR is what a results folder commits: about 100 KB a cell). The runner states are merged, so
DIR's results.csv and report.md read as one grid's, naming every command and code version that ran a part of it.

Re-pooling into the same DIR updates it: runs already there stay (their source may be gone, say a machine that did
not keep its files), runs from the GRIDs replace them. A run found in two GRIDs is refused: counted twice it would
narrow every interval. So are GRIDs of different datasets.
"""

import shlex
import shutil
import sys
from pathlib import Path

from surrogate_supervision.models.rundir import (
    CHECKPOINTS_DIR,
    LOGS_DIR,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PRETRAIN_METRICS_FILE,
    SAMPLES_DIR,
    WORKERS_DIR,
)
from surrogate_supervision.models.runner.cli import parser, run

from surrogate_supervision.datasets import FileError
from surrogate_supervision.experiments.records import (
    axis_order,
    axis_point,
    collect_results,
    dataset_name,
    read_runner_state,
    write_runner_state,
)
from surrogate_supervision.experiments.report import write_plots_and_report

# What a run's record leaves out: the large files (weights, checkpoints) and the ones nothing reads back from a
# results folder (TensorBoard logs; samples but the last, and test prediction pictures but those report.md shows).
LEFT_OUT_DIRS = (CHECKPOINTS_DIR, LOGS_DIR, SAMPLES_DIR, WORKERS_DIR)
LEFT_OUT_FILES = (".weights.h5", PREDICTIONS_FILE)


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+", type=Path, help="label_efficiency.py output folders")
    p.add_argument("--out", type=Path, required=True, help="the pooled folder (created, or updated)")
    return p.parse_args(argv)


def finished_runs(grid):
    """The grid's finished runs, as paths relative to it: pretraining runs with their scores, cells with metrics.
    An unfinished run is left out: its best.json would stand without the test it has not had."""
    runs = [run for run in sorted((grid / "pretrain").glob("*")) if (run / PRETRAIN_METRICS_FILE).is_file()]
    runs += [run for run in sorted((grid / "segment").glob("*")) if (run / METRICS_FILE).is_file()]
    return [run.relative_to(grid) for run in runs]


def record_files(run_dir):
    """The files of a run's record (LEFT_OUT_DIRS and LEFT_OUT_FILES aside), relative to the run."""
    files = [p for p in sorted(run_dir.rglob("*")) if p.is_file() and ".tmp" not in p.name
             and not p.name.endswith(LEFT_OUT_FILES) and p.relative_to(run_dir).parts[0] not in LEFT_OUT_DIRS]
    samples = sorted((run_dir / SAMPLES_DIR).glob("*.png"))
    return [p.relative_to(run_dir) for p in files + samples[-1:]]


def copy_record(run_dir, destination):
    """Replaces `destination` with the record of `run_dir`."""
    shutil.rmtree(destination, ignore_errors=True)
    for name in record_files(run_dir):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / name, destination / name)


def merged_state(out, grids, states):
    """DIR's runner state, updated with each grid's entries for its finished runs; the provenance keys (__codes__,
    __machine__, __args__) joined, and __command__ naming every grid's command and this pooling."""
    state = read_runner_state(out)
    commands = list(state.get("__commands__", []))
    codes = list(state.get("__codes__", []))
    for grid, grid_state in zip(grids, states):
        for name in finished_runs(grid):  # finished, whatever a later attempt in its grid recorded
            entry = grid_state.get(name.as_posix(), {"wall_seconds": 0.0, "attempts": 1})
            state[name.as_posix()] = {**entry, "status": "done", "error": ""}
        codes += [code for code in grid_state.get("__codes__", []) if code not in codes]
        if grid_state.get("__command__") and grid_state["__command__"] not in commands:
            commands.append(grid_state["__command__"])
        state["__machine__"] = grid_state.get("__machine__", state.get("__machine__"))
        state.setdefault("__args__", grid_state.get("__args__"))
    pooling = shlex.join(["python", "experiments/pool.py", *map(str, grids), "--out", str(out)])
    state.update(__codes__=codes, __commands__=commands,
                 __command__=" ; ".join(commands + [pooling]) if commands else pooling)
    return state


def check_grids(grids, states):
    """One-line refusals: a GRID that is not a grid, GRIDs of different datasets, a run in two GRIDs."""
    seen, datasets = {}, {}
    for grid, state in zip(grids, states):
        if not state:
            raise FileError(f"{grid / 'runner_state.json'}: no such file (not a label_efficiency.py output folder)")
        dataset = dataset_name(state, grid)
        datasets.setdefault(dataset, grid)
        if len(datasets) > 1:
            first, first_grid = next(iter(datasets.items()))
            raise FileError(f"{grid}: a grid of {dataset}, but {first_grid} ran on {first}: pool the grids of one "
                            "dataset")
        for name in finished_runs(grid):
            if name in seen:
                raise FileError(f"{grid / name}: also in {seen[name]}: pass each run's grid once")
            seen[name] = grid


def pool(grids, out):
    """Copies the grids' finished runs' records into `out`, merges their states and writes results.csv,
    statistics.csv, the plots and report.md there; returns results.csv's rows."""
    grids = [Path(g) for g in grids]
    states = [read_runner_state(g) for g in grids]
    check_grids(grids, states)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = {name: grid / name for grid in grids for name in finished_runs(grid)}
    for name, source in sources.items():
        copy_record(source, out / name)
    state = merged_state(out, grids, states)
    write_runner_state(out, state)
    rows = collect_results(out, [], state)
    for row in shown_predictions(rows):
        source = sources.get(Path(row["run_dir"]))  # None: pooled before, from a part not passed this time
        if source and (source / PREDICTIONS_FILE).is_file():
            shutil.copy2(source / PREDICTIONS_FILE, out / row["run_dir"] / PREDICTIONS_FILE)
    write_plots_and_report(out)
    return rows


def shown_predictions(rows):
    """The finished cells whose test prediction pictures report.md shows: the first seed's at the smallest label
    count or fraction (one per arm; all of them would be 250 KB a cell)."""
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        return []
    smallest = min(map(axis_point, done), key=axis_order)
    first_seed = min(r["seed"] for r in done if axis_point(r) == smallest)
    return [r for r in done if axis_point(r) == smallest and r["seed"] == first_seed]


def main(args):
    rows = pool(args.grids, args.out)
    done = sum(r["status"] == "done" for r in rows)
    print(f"{args.out}: {done} finished cells from {len(args.grids)} grids; report {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
