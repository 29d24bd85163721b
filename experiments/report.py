"""Dice-vs-label-fraction plots and the experiment report (drawn by experiments/plot.py and the grid runner).

Three panels side by side: mean Dice over all K classes and Dice of the grouped 2-class view, like the
reference study's figure (Tajbakhsh et al., ISBI 2019), and foreground Dice (every class but background
merged), which the background does not dominate. One line per init: the mean over seeds, and a band for its
95 % bootstrap interval over seeds and test images (experiments/stats.py). Writes
EXP/dice_vs_fraction.{png,svg}, EXP/statistics.csv (paired differences between arms) and EXP/report.md.
"""

import platform
import statistics
from collections import defaultdict
from pathlib import Path

from models.io import read_json, write_atomic
from models.runner.provenance import describe_provenance
from models.transfer import PRETEXT_INITS

from matplotlib.figure import Figure

from experiments.results import read_results, read_runner_state
from experiments.stats import (
    NO_DIFFERENCE,
    STATISTICS_FILE,
    arm_intervals,
    load_counts,
    pair_statistics,
    write_statistics,
)

STYLE = {"scratch": ("tab:gray", "o"), "imagenet": ("tab:blue", "s"), "surrogate": ("tab:red", "^"),
         "imagenet+surrogate": ("tab:purple", "D"), "control": ("tab:green", "v")}
PANELS = (("dice_mean", "mean Dice, all classes"), ("dice_grouped", "Dice, grouped 2-class view"),
          ("dice_foreground", "foreground Dice (all but background)"))


def summarize(rows, metric, cells=None, groups=None):
    """init → sorted [(frac, mean, low, high, n_seeds)] over finished cells: the mean over seeds and its 95 %
    bootstrap interval from the per-image `cells` counts, or the mean of results.csv and (None, None) where a
    seed has no counts."""
    values = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == "done" and row.get(metric) is not None:
            values[row["init"]][row["frac"]].append(row[metric])
    intervals = {(init, p[0]): p
                 for init, points in arm_intervals(cells or {}, groups, metric).items() for p in points}
    summary = {}
    for init, by_frac in values.items():
        summary[init] = []
        for frac, v in sorted(by_frac.items()):
            ci = intervals.get((init, frac))
            if ci and ci[4] == len(v):  # every seed has counts: the mean recomputed from them, and its interval
                summary[init].append((frac, *ci[1:4], len(v)))
            else:
                summary[init].append((frac, statistics.fmean(v), None, None, len(v)))
    return summary


def plot(rows, path_stem, title="", cells=None, groups=None):
    """Writes the three-panel figure as PNG and SVG; returns the PNG path."""
    figure = Figure(figsize=(5 * len(PANELS), 4))
    axes = figure.subplots(1, len(PANELS))
    for ax, (metric, label) in zip(axes, PANELS):
        for init, points in summarize(rows, metric, cells, groups).items():
            colour, marker = STYLE.get(init, ("black", "x"))
            fracs = [100 * p[0] for p in points]
            means = [p[1] for p in points]
            ax.plot(fracs, means, marker=marker, color=colour, label=init)
            banded = [p for p in points if p[2] is not None]
            if banded:
                ax.fill_between([100 * p[0] for p in banded], [p[2] for p in banded], [p[3] for p in banded],
                                color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], ["10", "25", "50", "100"])
        ax.set_xlabel("labeled training images (%)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice (test split)")
    if axes[0].get_legend_handles_labels()[0]:  # every cell may have failed (e.g. ImageNet offline)
        axes[0].legend(loc="best")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    png = Path(f"{path_stem}.png")
    for suffix in (".png", ".svg"):
        figure.savefig(Path(f"{path_stem}{suffix}"), dpi=120)
    return png


def ran_to_the_last_step(row):
    return row["status"] == "done" and row.get("stopped_step") is not None and row["stopped_step"] >= row["steps"]


def hit_cap(row):
    """A finished cell that trained to the --finetune-steps cap at a constant learning rate: it may not have
    converged. Under the poly schedule the last step is where the rate reaches 0: the run ended settled."""
    return ran_to_the_last_step(row) and row.get("lr_schedule") != "poly"


def table(rows):
    lines = ["| init | frac | seed | n_train | Dice (K classes) | Dice (grouped) | Dice (foreground) | mIoU | "
             "pixel acc. | best / stopped / cap step | wall s | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    number = lambda v: "" if v is None else f"{v:.4f}"
    for r in rows:
        status = r["status"] if r["status"] == "done" else f"{r['status']}: {r['note']}"
        steps = "" if r["steps"] is None else " / ".join(
            "?" if v is None else str(v) for v in (r.get("best_step"), r.get("stopped_step"), r["steps"]))
        steps += " **hit the cap**" if hit_cap(r) else " (poly: to rate 0)" if ran_to_the_last_step(r) else ""
        lines.append(f"| {r['init']} | {r['frac']:g} | {r['seed']} | {r['n_train'] or ''} | {number(r['dice_mean'])} | "
                     f"{number(r['dice_grouped'])} | {number(r.get('dice_foreground'))} | {number(r['miou'])} | "
                     f"{number(r['pixel_accuracy'])} | {steps} | {r['wall_seconds']:.0f} | {status} |")
    return "\n".join(lines)


def budget_section(rows):
    """Which finished cells stopped on their own (validation plateaued) and which ran into the step cap."""
    done = [r for r in rows if r["status"] == "done"]
    capped = [r for r in done if hit_cap(r)]
    scheduled = [r for r in done if ran_to_the_last_step(r) and not hit_cap(r)]
    unknown = [r for r in done if r.get("stopped_step") is None]
    if not done:
        return []
    lines = ["## Fine-tuning budget", ""]
    if scheduled:
        lines += [f"{len(scheduled)} of {len(done)} cells ran the poly learning-rate schedule to its last step, where "
                  "the rate reaches 0 (the others stopped earlier by --patience); they ended settled, not cut off.", ""]
    if unknown:
        lines += [f"{len(unknown)} of {len(done)} finished cells record no stopped step (written before "
                  "--patience existed): whether they hit the cap is unknown.", ""]
    if capped:
        names = ", ".join(f"{r['init']} {r['frac']:g} seed {r['seed']}" for r in capped)
        lines += [f"**{len(capped)} of {len(done)} cells hit the --finetune-steps cap** before validation stopped "
                  f"improving ({names}): they may not have converged; raise --finetune-steps.", ""]
    elif not unknown and not scheduled:
        lines += [f"Every one of the {len(done)} finished cells stopped before the --finetune-steps cap "
                  "(validation mean Dice stopped improving for --patience evaluations).", ""]
    return lines


def interval(row):
    return f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def arm_means_section(rows, cells, groups):
    """The numbers behind the plot's lines and bands, which a reader should not have to read off a figure."""
    lines = ["## Mean Dice per arm (the plot's lines and bands)", "",
             "Mean over seeds of each arm's test Dice with its 95 % bootstrap interval over seeds and test images "
             "(the plot's band) and its number of seeds. An arm's interval says how well its level is known, not "
             "whether it differs from another arm's: the paired differences below say that.", ""]
    order = list(STYLE)
    for view, label in PANELS:
        summary = summarize(rows, view, cells, groups)
        if not summary:
            continue
        inits = sorted(summary, key=lambda init: (order.index(init) if init in order else len(order), init))
        points = {(init, p[0]): p for init, arm in summary.items() for p in arm}
        lines += [f"### {label}", "", "| labels | " + " | ".join(inits) + " |", "| --- |" + " --- |" * len(inits)]
        for frac in sorted({frac for _, frac in points}):
            lines.append(f"| {100 * frac:g} % | " + " | ".join(arm_mean(points.get((i, frac))) for i in inits) + " |")
        lines.append("")
    return lines


def arm_mean(point):
    """'0.743 [0.735, 0.751] (3 seeds)' for one (frac, mean, low, high, n_seeds) point of summarize()."""
    if point is None:
        return ""
    _, mean, low, high, n = point
    seeds = f"{n} seed{'s' * (n != 1)}"
    return f"{mean:.3f} ({seeds}, no interval)" if low is None else f"{mean:.3f} [{low:.3f}, {high:.3f}] ({seeds})"


def statistics_section(stats):
    """The paired differences per view, fraction and pair, and what surrogate − control says about colour."""
    if not stats:
        return ["## Paired differences", "", "No per-image counts (`test_counts.json`) in the finished cells, or no "
                "two arms share a seed: no intervals. Cells written before per-image counts existed must be re-run.",
                ""]
    lines = ["## Paired differences (95 % bootstrap confidence intervals)", "",
             "Mean over seeds of the difference in test Dice between two arms, pairs matched by seed and test image; "
             "the interval redraws seeds and test images together (see README, *Reading the intervals*). "
             f"Where the interval includes zero the table says *{NO_DIFFERENCE}*. Also in `{STATISTICS_FILE}`.", ""]
    for view, label in PANELS:
        rows = [r for r in stats if r["view"] == view]
        if not rows:
            continue
        lines += [f"### {label}", "",
                  "| labels | arm − baseline | difference [95 % CI] | seeds > 0 | images | verdict |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {100 * r['frac']:g} % | {r['arm']} − {r['baseline']} | {interval(r)} | "
                  f"{r['seeds_positive']}/{r['n_seeds']} | {r['n_images']} | {r['verdict']} |" for r in rows]
        lines.append("")
    return lines + colour_section(stats)


def colour_section(stats):
    """Says, fraction by fraction, whether colour is what helps: surrogate against the no-colour control."""
    lines = ["## Is it the colour?", ""]
    by_key = {(r["view"], r["frac"], r["arm"], r["baseline"]): r for r in stats}
    fracs = sorted({r["frac"] for r in stats if (r["arm"], r["baseline"]) == ("surrogate", "control")})
    if not fracs:
        return lines + ["No surrogate and control cells with a common seed: the grid cannot tell colour from "
                        "pretraining as such. Add `control` to --inits.", ""]
    verdicts = []
    for frac in fracs:
        colour = by_key[("dice_mean", frac, "surrogate", "control")]
        verdicts.append(colour["verdict"])
        text = f"- {100 * frac:g} % of the labels: surrogate − control {interval(colour)} (mean Dice, all classes): "
        if colour["verdict"] == NO_DIFFERENCE:
            text += f"{NO_DIFFERENCE}; colour is not what helps here"
        elif colour["verdict"] == "higher":
            text += "colour helps beyond the same pretraining without colour"
        else:
            text += "the no-colour control does better; colour does not help here"
        for arm in ("surrogate", "control"):
            gain = by_key.get(("dice_mean", frac, arm, "scratch"))
            if gain:
                text += f"; {arm} − scratch {interval(gain)} ({gain['verdict']})"
        lines.append(text + ".")
    if all(v == NO_DIFFERENCE for v in verdicts):
        lines += ["", "At no fraction does the surrogate differ measurably from the control: whatever the surrogate "
                  "gains over scratch, pretraining on the same images without colour explains as well as colour does."]
    return lines + [""]


def weights_used(experiment, rows):
    """pretraining run name → {weights file SHA-256: [cells that started from it]}, from each finished cell's
    init.json. A run whose weights were lost (a new machine) is pretrained again by the runner; unless that is
    bit-exact, its later cells start from a different file, and this tells which."""
    used = defaultdict(lambda: defaultdict(list))
    for row in rows:
        init = read_json(experiment / row["run_dir"] / "init.json", {}) if row["status"] == "done" else {}
        if init.get("source_sha256") and row["init"] in PRETEXT_INITS:
            used[Path(init["source"]).parent.name][init["source_sha256"]].append(f"{row['frac']:g}/seed {row['seed']}")
    return used


def weights_lines(versions):
    if not versions:
        return []
    lines = [f"Fine-tuned from generator weights SHA-256 {digest[:12]} ({len(cells)} cell{'s' * (len(cells) != 1)})."
             for digest, cells in versions.items()]
    if len(versions) > 1:
        lines.append(f"**This run was pretrained {len(versions)} times** (same command and seed, its weights lost in "
                     "between); the files differ, so each counts as its own pretraining run: " + "; ".join(
                         f"{digest[:12]}: {', '.join(cells)}" for digest, cells in versions.items()) + ".")
    return [" ".join(lines), ""]


def machines_used(experiment, rows):
    """CPU description → the finished cells that ran on it, from each cell's config.json: a grid resumed across
    working sessions runs on whatever machine each session has."""
    used = defaultdict(list)
    for row in rows:
        machine = read_json(experiment / row["run_dir"] / "config.json", {}).get("machine") \
            if row["status"] == "done" else None
        if machine:
            used[describe_provenance([], machine)[1]].append(f"{row['init']} {row['frac']:g}/seed {row['seed']}")
    return used


def write_plots_and_report(experiment):
    experiment = Path(experiment)
    rows = read_results(experiment)
    state = read_runner_state(experiment)
    cells, groups = load_counts(experiment, rows)
    stats = pair_statistics(cells, groups)
    write_statistics(experiment, stats)
    png = plot(rows, experiment / "dice_vs_fraction", title=experiment.name, cells=cells, groups=groups)
    code, cpu = describe_provenance(state.get("__codes__", []), state.get("__machine__"))
    machines = machines_used(experiment, rows)
    if machines:
        cpu = "; ".join(f"{description} ({len(cells)} cell{'s' * (len(cells) != 1)}: {', '.join(cells)})"
                        for description, cells in machines.items()) + " (from each finished cell's config.json)"
    else:
        cpu += " (the CPU of the grid runner's last start; each run's config.json records its own)"
    parts = [f"# Label-efficiency experiment: {experiment.name}", "",
             f"Code: {code}. CPU{'s' * (len(machines) > 1)}: {cpu}. Platform of this report: {platform.platform()}, "
             f"Python {platform.python_version()}.",
             "", "Command:", "", f"    {state.get('__command__', '(unknown)')}", "",
             f"![Dice vs label fraction: mean over seeds, band = 95 % bootstrap interval]({png.name})", "",
             table(rows), ""]
    parts += budget_section(rows) + arm_means_section(rows, cells, groups) + statistics_section(stats)
    weights = weights_used(experiment, rows)
    for run in sorted(p for p in (experiment / "pretrain").glob("*") if p.is_dir()):
        start = run.name
        samples = sorted((run / "samples").glob("*.png"))
        if samples:
            score = read_json(run / "pretrain_metrics.json", {})
            predict = read_json(run / "config.json", {}).get("predict", "rgb")
            kind = "no-colour control: gives back its gray input" if predict == "gray" else f"colorization, {predict}"
            parts += [f"## Pretraining {start} ({kind})", "",
                      f"    {state.get(f'pretrain/{start}', {}).get('command', '')}", ""]
            if "l1_colorized" in score:
                parts += [f"Held-out L1 to the real colours ([-1, 1] units): colorized {score['l1_colorized']:.4f}, "
                          f"grayscale input {score['l1_gray']:.4f} ({score['n_images']} images).", ""]
            parts += weights_lines(weights.get(start, {}))
            parts += [f"Gray | colorized | real, step {samples[-1].stem.split('_')[-1].lstrip('0')}:", "",
                      f"![colorization samples]({samples[-1].relative_to(experiment)})", ""]
    shown = [r for r in rows if r["status"] == "done" and r["frac"] == min(x["frac"] for x in rows)]
    if shown:
        parts += ["## Sample test predictions (image | ground truth | prediction), smallest fraction", ""]
        for r in shown[:4]:
            grid = Path(r["run_dir"]) / "predictions.png"
            if (experiment / grid).is_file():
                parts += [f"**{r['init']}**, seed {r['seed']}:", "", f"![{r['init']}]({grid})", ""]
    commands = [f"    {v['command']}" for k, v in state.items() if not k.startswith("__") and v.get("command")]
    parts += ["## Every command the grid ran", ""] + commands + [""]
    write_atomic(experiment / "report.md", "\n".join(parts))
    return png
