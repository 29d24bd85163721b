"""The pilot's table: per dataset and label count, could a grid there see an init effect at all?

    python experiments/pilot_table.py GRID [GRID ...] --out experiments/results/label_counts/pilot.md

Each GRID is an output folder of `label_efficiency.py --labels N ... --inits scratch positive`. Grids of one dataset
(say one per seed, each run on its own core) are pooled cell by cell. Per dataset and count: scratch's and the
positive control's mean test Dice over seeds; positive − scratch and scratch on all labels − scratch, paired by seed
and test image with 95 % bootstrap intervals (experiments/stats.py); and the verdict the study is gated on. A
dataset qualifies when labels bind at its smallest count (scratch on all labels beats scratch there) and the
positive control beats scratch at its two smallest counts: only there can a null result for a pretext mean
something. Then each cell's best validation step against its schedule, to size each count's schedule so the best
step is not in its last 10 %.
"""

import shlex
import sys
from collections import defaultdict
from pathlib import Path

from surrogate_supervision.models.io import write_atomic
from surrogate_supervision.models.runner.cli import parser, run
from surrogate_supervision.models.runner.provenance import describe_provenance

from surrogate_supervision.datasets import FileError
from surrogate_supervision.experiments.curves import late_gain, settled_step, validation_curve
from surrogate_supervision.experiments.records import (
    Count,
    axis_order,
    axis_point,
    dataset_name,
    read_results,
    read_runner_state,
)
from surrogate_supervision.experiments.report import LATE, interval, verdict_text
from surrogate_supervision.experiments.stats import ALL_LABELS, BINDING, arm_intervals, load_counts, pair_statistics

VIEW = "dice_mean"  # the view the study is gated on: mean Dice over all classes
TOLERANCE = 0.005  # the cpu preset's --min-delta: a validation gain smaller than this does not count as progress
POSITIVE = "positive"


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("grids", nargs="+", type=Path, help="label_efficiency.py output folders over --labels")
    p.add_argument("--out", type=Path, required=True, help="the Markdown table to write")
    return p.parse_args(argv)


def pooled_grids(grids):
    """{dataset: Pooled cells} from the grids, each (init, point, seed) from one grid only."""
    pooled = {}
    for grid in grids:
        if not (grid / "results.csv").is_file():
            raise FileError(f"{grid / 'results.csv'}: no such file (not a label_efficiency.py output folder, or no "
                            "cell has finished yet)")
        state = read_runner_state(grid)
        rows = read_results(grid)
        cells, groups = load_counts(grid, rows)
        entry = pooled.setdefault(dataset_name(state, grid), dict(cells=defaultdict(dict), groups=groups, rows=[],
                                                                  states=[], grids=[], counts=set()))
        entry["counts"] |= {axis_point(r) for r in rows if r.get("labels") is not None}  # finished or not
        for key, seeds in cells.items():
            for seed, counts in seeds.items():
                if seed in entry["cells"][key]:
                    raise FileError(f"{grid}: cell {key[0]} {key[1]} seed {seed} is also in another grid of this "
                                    "dataset: pass each cell's grid once")
                entry["cells"][key][seed] = counts
        entry["groups"] = entry["groups"] or groups
        entry["rows"] += [{**r, "path": grid / r["run_dir"]} for r in rows if r["status"] == "done"]
        entry["states"].append(state)
        entry["grids"].append(grid)
    return pooled


def count_rows(cells, groups, counts):
    """[(count, scratch ArmMean, positive ArmMean, positive − scratch row, binding row)] per label count in
    `counts`, any of them None where its cells have not finished; and scratch's ArmMean on all labels (or None)."""
    means = {init: {m.point: m for m in ms} for init, ms in arm_intervals(cells, groups, VIEW).items()}
    stats = {(r["arm"], axis_point(r)): r for r in pair_statistics(cells, groups, views=[VIEW])}
    scratch, positive = means.get("scratch", {}), means.get(POSITIVE, {})
    rows = [(n, scratch.get(n), positive.get(n), stats.get((POSITIVE, n)), stats.get((BINDING.arm, n)))
            for n in sorted(counts, key=axis_order)]
    return rows, scratch.get(ALL_LABELS)


def qualifies(rows):
    """(verdict, why): labels bind at the smallest count and the positive control beats scratch at the two
    smallest; None while a cell it needs has not finished."""
    if len(rows) < 2:
        return None, "fewer than two label counts"
    (first, _, _, positive_1, binding), (second, _, _, positive_2, _) = rows[0], rows[1]
    needed = {f"scratch on all labels − scratch at {first}": binding, f"positive − scratch at {first}": positive_1,
              f"positive − scratch at {second}": positive_2}
    missing = [name for name, row in needed.items() if row is None]
    if missing:
        return None, "not yet: " + ", ".join(missing) + " (cells unfinished)"
    failed = [f"{name} is {verdict_text(row)}" for name, row in needed.items() if row["verdict"] != "higher"]
    return not failed, "; ".join(failed) or "all three intervals exclude zero"


def mean_text(mean):
    if mean is None:
        return "–"
    band = "" if mean.low is None else f" [{mean.low:.3f}, {mean.high:.3f}]"
    return f"{mean.mean:.3f}{band} ({mean.n_seeds})"


def difference_text(row):
    return "–" if row is None else (f"{interval(row)} {verdict_text(row)} ({row['n_seeds']} seed"
                                   f"{'s' * (row['n_seeds'] != 1)})")


def table_lines(pooled):
    lines = ["| dataset | labels | scratch | positive control | positive − scratch | scratch on all labels − scratch "
             "|", "| --- | --- | --- | --- | --- | --- |"]
    verdicts = []
    for dataset, entry in sorted(pooled.items()):
        rows, everything = count_rows(entry["cells"], entry["groups"], entry["counts"])
        for n, scratch, positive, gain, binding in rows:
            lines.append(f"| {dataset} | {int(n)} | {mean_text(scratch)} | {mean_text(positive)} | "
                         f"{difference_text(gain)} | {difference_text(binding)} |")
        if everything:
            lines.append(f"| {dataset} | all | {mean_text(everything)} | | | |")
        verdict, why = qualifies(rows)
        verdicts.append(f"- **{dataset}**: " + {True: "qualifies", False: "does not qualify",
                                                None: "undecided"}[verdict] + f" ({why}).")
    return lines + ["", "Mean test Dice over all classes; an arm's cell is its mean over seeds [95 % interval over "
                    "seeds and test images] (seeds); a difference is paired by seed and test image.", "",
                    "Does each dataset qualify for the study (labels bind at its smallest count, and the positive "
                    "control beats scratch at its two smallest)?", ""] + verdicts


def schedule_lines(pooled):
    """Each finished cell's best validation step against its schedule, what the schedule's last tenth added to the
    best validation Dice, and the step from which validation stayed within TOLERANCE of its best
    (experiments/curves.py): a count whose cells still gained in their last tenth needs a longer schedule, one
    whose cells settled early can have a shorter one."""
    lines = ["| dataset | arm | labels | best step / schedule | in the last 10 % | gain in the last 10 % | "
             f"within {TOLERANCE} of the best from step |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, entry in sorted(pooled.items()):
        by_cell = defaultdict(list)
        for row in entry["rows"]:
            by_cell[row["init"], axis_point(row)].append(row)
        for (init, point), rows in sorted(by_cell.items(), key=lambda i: (i[0][0], axis_order(i[0][1]))):
            rows = sorted(rows, key=lambda r: r["seed"])
            curves = [validation_curve(r["path"]) for r in rows]
            best = ", ".join(f"{r['best_step']} / {r['steps']}" for r in rows)
            late = sum(r["best_step"] is not None and r["best_step"] > LATE * r["steps"] for r in rows)
            gains = ", ".join(f"{g:+.3f}" if (g := late_gain(c, r["steps"], LATE)) == g else "–"  # nan: no curve
                              for c, r in zip(curves, rows))
            settled = ", ".join(settled_text(c) for c in curves)
            amount = f"{int(point)}" if isinstance(point, Count) else "all"
            lines.append(f"| {dataset} | {init} | {amount} | {best} | {late} of {len(rows)} | {gains} | {settled} |")
    return lines + ["", "One value per seed, in seed order (" + "; ".join(
        f"{dataset}: seeds {', '.join(str(s) for s in sorted({r['seed'] for r in entry['rows']}))}"
        for dataset, entry in sorted(pooled.items())) + f"); \"not settled\": the last evaluation lies more than "
        f"{TOLERANCE} below the best (validation moves by more than that between evaluations); –: no curve logged."]


def settled_text(curve):
    """The settled step of a validation curve, or why there is none: no curve at all, or a last evaluation more
    than TOLERANCE below the best (noise larger than the tolerance, or a decline)."""
    if not curve:
        return "–"
    return str(settled_step(curve, TOLERANCE) or "not settled")


def provenance_lines(pooled):
    lines = []
    for dataset, entry in sorted(pooled.items()):
        for grid, state in zip(entry["grids"], entry["states"]):
            code, cpu = describe_provenance(state.get("__codes__", []), state.get("__machine__"))
            lines += [f"- {dataset}, `{grid}`: code {code}; CPU {cpu}; command `{state.get('__command__', '?')}`"]
    return lines


def main(args):
    pooled = pooled_grids(args.grids)
    command = shlex.join(["python", "experiments/pilot_table.py", *map(str, args.grids), "--out", str(args.out)])
    text = ["# Pilot: where could a grid see an init effect?", "", f"Written by `{command}`.", ""]
    text += table_lines(pooled) + ["", "## Best validation step against the schedule", ""] + schedule_lines(pooled)
    text += ["", "## What ran", ""] + provenance_lines(pooled) + [""]
    write_atomic(args.out, "\n".join(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
