"""The experiment grid's records: its cells, the runner's state (runner_state.json) and results.csv.

results.csv is rebuilt from every cell's metrics.json after each cell and written atomically, so an
interrupted grid never leaves a partial table and a re-run never counts a cell twice.
"""

import csv
import dataclasses
import io
import re
from pathlib import Path

from surrogate_supervision.models.io import read_json, write_atomic, write_json
from surrogate_supervision.models.rundir import CONFIG_FILE, METRICS_FILE

from surrogate_supervision.datasets import FileError

# `labels`: the cell's --labels count, empty for a --frac cell (and absent from tables written before counts)
COLUMNS = ("init", "frac", "labels", "seed", "n_train", "dice_mean", "dice_grouped", "dice_foreground", "miou",
           "pixel_accuracy", "steps", "best_step", "stopped_step", "lr_schedule", "wall_seconds", "status", "run_dir",
           "note")
SCORES = ("dice_mean", "dice_grouped", "dice_foreground", "miou", "pixel_accuracy")
STATE_FILE = "runner_state.json"
CELL_NAME = re.compile(r"segment/(?P<init>.+)_(?:frac(?P<frac>[0-9.e+-]+)|labels(?P<labels>[0-9]+))"
                       r"_seed(?P<seed>-?[0-9]+)")
# Each pretext arm: the init fine-tuning starts from it, and where colorize.py starts (--init). `control` trains on
# the gray target, the others on colour.
PRETEXTS = {"scratch": ("surrogate", "scratch"), "imagenet": ("imagenet+surrogate", "imagenet"),
            "control": ("control", "scratch")}


@dataclasses.dataclass(frozen=True)
class Pretraining:
    """Pretraining run `index` (its --seed) of a pretext arm: `scratch` and `imagenet` colorize, `control`
    gives back the gray input. Run 0 keeps the arm's bare name, so a one-run grid reads as before."""
    arm: str
    index: int = 0

    @property
    def name(self):
        return self.arm + (f"_seed{self.index}" if self.index else "")

    @property
    def start(self):
        return PRETEXTS[self.arm][1]

    def run_dir(self, experiment):
        return Path(experiment) / "pretrain" / self.name


class Count(int):
    """A label count on the grid's axis (--labels N), kept apart from a fraction: the int 1 equals the float 1.0,
    but a count grid also holds its cells on all labels (frac 1.0), and `--labels 1` must not share their key."""

    def __eq__(self, other):
        return isinstance(other, Count) and int(self) == int(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(("labels", int(self)))


def axis_point(row):
    """Where a cell (a results row) sits on the grid's axis: its label Count under --labels, else its fraction."""
    return Count(row["labels"]) if row.get("labels") is not None else row["frac"]


def axis_order(point):
    """Sort key of axis points: counts ascending, then fractions (a count grid's all-labels cells come last)."""
    return (not isinstance(point, Count), float(point))


def axis_text(point):
    """'8' for a label count, '25 %' for a fraction."""
    return f"{int(point)}" if isinstance(point, Count) else f"{100 * point:g} %"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One fine-tuning run of the grid: an init, a share of the training labels (fraction `frac`, or a count
    `labels` with frac None), a seed."""
    init: str
    frac: float | None
    seed: int
    labels: int | None = None

    @property
    def name(self):
        amount = f"frac{self.frac:g}" if self.labels is None else f"labels{self.labels}"
        return f"segment/{self.init}_{amount}_seed{self.seed}"

    @property
    def point(self):
        return axis_point(dataclasses.asdict(self))

    def run_dir(self, experiment):
        return Path(experiment) / self.name

    @classmethod
    def from_name(cls, name):
        """The cell whose `name` this is, or None for another step of the runner's state."""
        match = CELL_NAME.fullmatch(name)
        if not match:
            return None
        if match["labels"] is not None:
            return cls(match["init"], None, int(match["seed"]), int(match["labels"]))
        return cls(match["init"], float(match["frac"]), int(match["seed"]))

    def pretraining(self, pretrain_seeds=1):
        """The pretraining run this cell starts from (fine-tuning seed i from run i mod P), or None."""
        arms = [arm for arm, (init, _) in PRETEXTS.items() if init == self.init]
        return Pretraining(arms[0], self.seed % pretrain_seeds) if arms else None


def read_runner_state(experiment):
    return read_json(Path(experiment) / STATE_FILE, {})


def dataset_name(state, grid):
    """The dataset a grid ran on: its --data folder's name (several folders joined by '+'), or the built-in
    synthetic set's when the grid had no --data."""
    args = state.get("__args__")
    if not args:
        raise FileError(f"{grid / 'runner_state.json'}: no flags recorded: cannot tell the grid's dataset")
    data = args.get("data")
    if data in (None, "", "None"):
        return "built-in synthetic set"
    return "+".join(Path(p.strip(" '[]")).name for p in data.split(","))


def write_runner_state(experiment, state):
    write_json(Path(experiment) / STATE_FILE, state)


def cell_row(experiment, cell, state):
    run_dir = cell.run_dir(experiment)
    entry = state.get(cell.name, {})
    metrics = read_json(run_dir / METRICS_FILE, {})
    row = {"init": cell.init, "frac": cell.frac, "labels": cell.labels, "seed": cell.seed,
           "run_dir": str(run_dir.relative_to(experiment)), "wall_seconds": round(entry.get("wall_seconds", 0.0), 1)}
    if metrics:
        schedule = read_json(run_dir / CONFIG_FILE, {}).get("lr_schedule", "constant")  # older runs: constant
        row.update(n_train=metrics["n_train_images"], steps=metrics["steps"], status="done", note="",
                   lr_schedule=schedule, best_step=metrics.get("best_step"), stopped_step=metrics.get("stopped_step"),
                   **{k: round(metrics[k], 6) for k in SCORES if metrics.get(k) is not None})
    else:  # "done" without its metrics: its outputs were removed (or lost), so the runner will run it again
        status = entry.get("status", "pending")
        row.update(status="pending" if status == "done" else status, note=entry.get("error", ""))
    return row


def collect_results(experiment, cells, state):
    """Writes EXP/results.csv, one row per cell (finished or not), and after them one per cell an earlier run of
    the grid finished outside this one's plan (another --inits, --seeds or --fracs: a grid run in parts keeps one
    table); returns the rows."""
    earlier = {cell for name, entry in state.items()
               if (cell := Cell.from_name(name)) and entry.get("status") == "done"} - set(cells)
    cells = list(cells) + sorted(earlier, key=lambda c: (c.seed, c.init, axis_order(c.point)))
    rows = [cell_row(experiment, cell, state) for cell in cells]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(experiment) / "results.csv", buffer.getvalue())
    return rows


def read_results(experiment):
    """results.csv as a list of dicts with numbers parsed."""
    with open(Path(experiment) / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("frac", "wall_seconds") + SCORES:
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
        for key in ("seed", "labels", "n_train", "steps", "best_step", "stopped_step"):  # no labels: a fraction grid
            row[key] = int(row[key]) if row.get(key) not in (None, "") else None
    return rows
