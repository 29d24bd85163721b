"""The experiment grid's bookkeeping: cells, the runner's state, and results.csv.

results.csv is rebuilt from every cell's metrics.json after each cell and written atomically, so an
interrupted grid never leaves a partial table and a re-run never counts a cell twice.
"""

import csv
import dataclasses
import io
from pathlib import Path

from models.training import read_json, write_atomic, write_json

COLUMNS = ("init", "frac", "seed", "n_train", "dice_mean", "dice_grouped", "miou", "pixel_accuracy", "steps",
           "wall_seconds", "status", "run_dir", "note")
STATE_FILE = "runner_state.json"


@dataclasses.dataclass(frozen=True)
class Cell:
    init: str
    frac: float
    seed: int

    @property
    def name(self):
        return f"segment/{self.init}_frac{self.frac:g}_seed{self.seed}"

    def run_dir(self, experiment):
        return Path(experiment) / self.name

    def pretraining(self):
        """The colorization start this cell needs, or None."""
        if self.init == "surrogate":
            return "scratch"
        if self.init == "imagenet+surrogate":
            return "imagenet"
        return None


def read_runner_state(experiment):
    return read_json(Path(experiment) / STATE_FILE, {})


def write_runner_state(experiment, state):
    write_json(Path(experiment) / STATE_FILE, state)


def cell_row(experiment, cell, state):
    run_dir = cell.run_dir(experiment)
    entry = state.get(cell.name, {})
    metrics = read_json(run_dir / "metrics.json", {})
    row = {"init": cell.init, "frac": cell.frac, "seed": cell.seed, "run_dir": str(run_dir.relative_to(experiment)),
           "wall_seconds": round(entry.get("wall_seconds", 0.0), 1)}
    if metrics:
        row.update(n_train=metrics["n_train_images"], steps=metrics["steps"], status="done", note="",
                   **{k: round(metrics[k], 6) for k in ("dice_mean", "dice_grouped", "miou", "pixel_accuracy")})
    else:
        row.update(status=entry.get("status", "pending"), note=entry.get("error", ""))
    return row


def collect_results(experiment, cells, state):
    """Writes EXP/results.csv, one row per cell (finished or not); returns the rows."""
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
        for key in ("frac", "dice_mean", "dice_grouped", "miou", "pixel_accuracy", "wall_seconds"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else None
        for key in ("seed", "n_train", "steps"):
            row[key] = int(row[key]) if row.get(key) not in (None, "") else None
    return rows
