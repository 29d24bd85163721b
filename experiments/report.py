"""Dice-vs-label-fraction plots and the experiment report (drawn by experiments/plot.py and the grid runner).

Three panels side by side: mean Dice over all K classes and Dice of the grouped 2-class view, like the
reference study's figure (Tajbakhsh et al., ISBI 2019), and foreground Dice (every class but background
merged), which the background does not dominate. One line per init: the mean over seeds, and a band for its
95 % bootstrap interval over seeds and test images (experiments/stats.py). Writes
EXP/dice_vs_fraction.{png,svg}, EXP/statistics.csv (paired differences between arms) and EXP/report.md.
"""

import platform
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from surrogate_supervision.models.io import read_json, write_atomic
from surrogate_supervision.models.rundir import (
    CONFIG_FILE,
    INIT_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    PRETRAIN_METRICS_FILE,
    SAMPLES_DIR,
)
from surrogate_supervision.models.runner.provenance import describe_provenance
from surrogate_supervision.models.transfer import PRETEXT_INITS

from matplotlib.figure import Figure

from surrogate_supervision.experiments.records import (
    PRETEXTS,
    Count,
    axis_order,
    axis_point,
    axis_text,
    read_results,
    read_runner_state,
)
from surrogate_supervision.experiments.stats import (
    BINDING,
    BORDERLINE,
    MARGIN,
    NO_DIFFERENCE,
    STATISTICS_FILE,
    ArmMean,
    arm_intervals,
    load_counts,
    pair_statistics,
    write_statistics,
)

STYLE = {"scratch": ("tab:gray", "o"), "imagenet": ("tab:blue", "s"), "surrogate": ("tab:red", "^"),
         "imagenet+surrogate": ("tab:purple", "D"), "control": ("tab:green", "v"), "positive": ("tab:orange", "P")}
PANELS = (("dice_mean", "mean Dice, all classes"), ("dice_grouped", "Dice, grouped 2-class view"),
          ("dice_foreground", "foreground Dice (all but background)"))
# A best validation step in the last tenth of a cell's schedule: the cell may still have been improving at its end.
LATE = 0.9


def summarize(rows, metric, cells=None, groups=None):
    """init → [ArmMean] over finished cells, sorted by axis point (the cell's fraction, or its label Count): the
    mean over seeds and its 95 % bootstrap interval from the per-image `cells` counts, or the mean of results.csv
    and no interval (low and high None) where a seed has no counts."""
    values = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == "done" and row.get(metric) is not None:
            values[row["init"]][axis_point(row)].append(row[metric])
    intervals = {(init, ci.point): ci
                 for init, points in arm_intervals(cells or {}, groups, metric).items() for ci in points}
    summary = {}
    for init, by_frac in values.items():
        summary[init] = []
        for frac, v in sorted(by_frac.items(), key=lambda item: axis_order(item[0])):
            ci = intervals.get((init, frac))
            if ci and ci.n_seeds == len(v):  # every seed has counts: the mean recomputed from them, and its interval
                summary[init].append(ArmMean(frac, ci.mean, ci.low, ci.high, len(v)))
            else:
                summary[init].append(ArmMean(frac, statistics.fmean(v), None, None, len(v)))
    return summary


def plot(rows, path_stem, title="", cells=None, groups=None):
    """Writes the three-panel figure as PNG and SVG; returns the PNG path. A grid over label counts is drawn against
    the number of labeled images (its all-labels cells at their training set's size), a fraction grid against the
    percentage."""
    figure = Figure(figsize=(5 * len(PANELS), 4))
    axes = figure.subplots(1, len(PANELS))
    x, ticks = axis_positions(rows)
    for ax, (metric, label) in zip(axes, PANELS):
        for init, points in summarize(rows, metric, cells, groups).items():
            colour, marker = STYLE.get(init, ("black", "x"))
            ax.plot([x(p.point) for p in points], [p.mean for p in points], marker=marker, color=colour, label=init)
            banded = [p for p in points if p.low is not None]
            if banded:
                ax.fill_between([x(p.point) for p in banded], [p.low for p in banded], [p.high for p in banded],
                                color=colour, alpha=0.15, linewidth=0)
        ax.set_xscale("log")
        ax.set_xticks(*ticks)
        ax.set_xlabel("labeled training images" + ("" if counted(rows) else " (%)"))
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


def counted(rows):
    """Whether the grid's axis is label counts (--labels) rather than fractions."""
    return any(row.get("labels") is not None for row in rows)


def axis_positions(rows):
    """(axis point → x on the plot, (tick positions, tick labels)): the percentage for a fraction grid; for a count
    grid the count, and for its cells on a fraction of the labels (all labels) their number of training images."""
    if not counted(rows):
        return (lambda frac: 100 * frac), ([10, 25, 50, 100], ["10", "25", "50", "100"])
    sizes = defaultdict(list)
    for row in rows:
        if row.get("labels") is None and row.get("n_train") is not None:
            sizes[row["frac"]].append(row["n_train"])
    x = lambda point: int(point) if isinstance(point, Count) else statistics.fmean(sizes.get(point, [float("nan")]))
    points = sorted({axis_point(row) for row in rows if row.get("labels") is not None or row["frac"] in sizes},
                    key=axis_order)
    return x, ([x(p) for p in points], [f"{x(p):.0f}" + ("" if isinstance(p, Count) else " (all)" if p == 1.0
                                                          else f" ({axis_text(p)})") for p in points])


def amount(row):
    """A cell's share of the labels as the table writes it: its fraction, or its count under --labels."""
    return f"{row['frac']:g}" if row.get("labels") is None else f"{row['labels']} labels"


def ran_to_the_last_step(row):
    return row["status"] == "done" and row.get("stopped_step") is not None and row["stopped_step"] >= row["steps"]


def hit_cap(row):
    """A finished cell that trained to the --finetune-steps cap at a constant learning rate: it may not have
    converged. Under the poly schedule the last step is where the rate reaches 0: the schedule ended there, which
    says nothing about whether validation had stopped improving (late_best says that)."""
    return ran_to_the_last_step(row) and row.get("lr_schedule") != "poly"


def late_best(row):
    """A finished cell whose best validation step falls in the last 10 % of its schedule: it may still have been
    improving when the schedule ended."""
    return row["status"] == "done" and row.get("best_step") is not None and row["best_step"] > LATE * row["steps"]


def table(rows):
    lines = [f"| init | {'labels or frac' if counted(rows) else 'frac'} | seed | n_train | Dice (K classes) | "
             "Dice (grouped) | Dice (foreground) | mIoU | pixel acc. | best / stopped / cap step | wall s | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    number = lambda v: "" if v is None else f"{v:.4f}"
    for r in rows:
        status = r["status"] if r["status"] == "done" else f"{r['status']}: {r['note']}"
        steps = "" if r["steps"] is None else " / ".join(
            "?" if v is None else str(v) for v in (r.get("best_step"), r.get("stopped_step"), r["steps"]))
        steps += " **hit the cap**" if hit_cap(r) else " (poly: to rate 0)" if ran_to_the_last_step(r) else ""
        lines.append(f"| {r['init']} | {amount(r)} | {r['seed']} | {r['n_train'] or ''} | {number(r['dice_mean'])} | "
                     f"{number(r['dice_grouped'])} | {number(r.get('dice_foreground'))} | {number(r['miou'])} | "
                     f"{number(r['pixel_accuracy'])} | {steps} | {r['wall_seconds']:.0f} | {status} |")
    return "\n".join(lines)


def budget_section(rows):
    """How each finished cell's fine-tuning ended, and how many may still have been improving at the end. A row's
    `min_steps` (from its metrics.json) says whether --patience could stop it at all.

    --patience stops a cell only after --min-steps; where --min-steps equals the cap (the cpu preset), every cell
    runs its poly schedule out and is scored at its best validation checkpoint, and no cell stopped because
    validation stopped improving. The count of late best steps says how many cells may not have converged.
    """
    done = [r for r in rows if r["status"] == "done"]
    capped = [r for r in done if hit_cap(r)]
    scheduled = [r for r in done if ran_to_the_last_step(r) and not hit_cap(r)]
    stopped = [r for r in done if r.get("stopped_step") is not None and r["stopped_step"] < r["steps"]]
    unknown = [r for r in done if r.get("stopped_step") is None]
    if not done:
        return []
    lines = ["## Fine-tuning budget", ""]
    if scheduled:
        text = (f"{len(scheduled)} of {len(done)} cells ran the poly learning-rate schedule to its last step, where "
                "the rate reaches 0, and are scored at their best validation checkpoint.")
        pinned = [r for r in scheduled if r.get("min_steps") is not None and r["min_steps"] >= r["steps"]]
        if pinned:
            which = f"all {len(pinned)}" if len(pinned) == len(scheduled) else f"{len(pinned)}"
            text += (f" For {which} of them --min-steps equals the step cap, so --patience could not stop them: they "
                     "ran the whole schedule whether or not validation was still improving.")
        lines += [text, ""]
    if stopped:
        lines += [f"{len(stopped)} of {len(done)} cells were stopped by --patience before the --finetune-steps cap "
                  "(after --min-steps, validation mean Dice had not improved by --min-delta for --patience "
                  "evaluations).", ""]
    if unknown:
        lines += [f"{len(unknown)} of {len(done)} finished cells record no stopped step (written before "
                  "--patience existed): whether they hit the cap is unknown.", ""]
    if capped:
        names = ", ".join(f"{r['init']} {amount(r)} seed {r['seed']}" for r in capped)
        lines += [f"**{len(capped)} of {len(done)} cells hit the --finetune-steps cap** at a constant learning rate "
                  f"({names}): they may not have converged; raise --finetune-steps.", ""]
    lines += late_best_lines(done)
    return lines


def late_best_lines(done):
    """The count of finished cells whose best validation step is in the last 10 % of their schedule, by arm and
    label fraction, and what it means."""
    late = [r for r in done if late_best(r)]
    known = [r for r in done if r.get("best_step") is not None]
    if not known:
        return []
    if not late:
        return [f"None of the {len(known)} cells with a recorded best step reached it in the last "
                f"{100 * (1 - LATE):.0f} % of its schedule.", ""]
    arms, fracs = Counter(r["init"] for r in late), Counter(axis_point(r) for r in late)
    return [f"**{len(late)} of {len(known)} cells had their best validation step in the last "
            f"{100 * (1 - LATE):.0f} % of their schedule** (by arm: "
            + ", ".join(f"{arm} {n}" for arm, n in sorted(arms.items()))
            + f"; by label {'count' if counted(done) else 'fraction'}: "
            + ", ".join(f"{axis_text(frac)} {n}" for frac, n in sorted(fracs.items(), key=lambda i: axis_order(i[0])))
            + "). These cells may still "
            "have been improving when the schedule ended: a longer schedule could raise their scores and change the "
            "differences between arms below.", ""]


def labels_text(point):
    """'8 labeled images', or '25 % of the labels'."""
    return f"{int(point)} labeled images" if isinstance(point, Count) else f"{100 * point:g} % of the labels"


def interval(row):
    return f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def verdict_text(row):
    """The row's verdict; a borderline one with the bound that lies within MARGIN of zero, which the interval's
    three decimals cannot show."""
    if row["verdict"] != BORDERLINE:
        return row["verdict"]
    if abs(row["ci_low"]) <= abs(row["ci_high"]):
        return f"{BORDERLINE}: lower bound {row['ci_low']:+.4f}"
    return f"{BORDERLINE}: upper bound {row['ci_high']:+.4f}"


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
        points = {(init, p.point): p for init, arm in summary.items() for p in arm}
        lines += [f"### {label}", "", "| labels | " + " | ".join(inits) + " |", "| --- |" + " --- |" * len(inits)]
        for frac in sorted({p.point for p in points.values()}, key=axis_order):
            lines.append(f"| {axis_text(frac)} | " + " | ".join(arm_mean(points.get((i, frac))) for i in inits) + " |")
        lines.append("")
    return lines


def arm_mean(point):
    """'0.743 [0.735, 0.751] (3 seeds)' for one ArmMean of summarize()."""
    if point is None:
        return ""
    seeds = f"{point.n_seeds} seed{'s' * (point.n_seeds != 1)}"
    if point.low is None:
        return f"{point.mean:.3f} ({seeds}, no interval)"
    return f"{point.mean:.3f} [{point.low:.3f}, {point.high:.3f}] ({seeds})"


def statistics_section(stats):
    """The paired differences per view, fraction and pair, and what surrogate − control says about colour."""
    if not stats:
        return ["## Paired differences", "", "No per-image counts (`test_counts.json`) in the finished cells, or no "
                "two arms share a seed: no intervals. Cells written before per-image counts existed must be re-run.",
                ""]
    lines = ["## Paired differences (95 % bootstrap confidence intervals)", "",
             "Mean over seeds of the difference in test Dice between two arms, pairs matched by seed and test image; "
             "the interval redraws seeds and test images together (see docs/scripts.md, *Reading the intervals*). "
             f"Where the interval includes zero the table says *{NO_DIFFERENCE}*; where a bound lies within "
             f"{MARGIN} of zero, *{BORDERLINE}* with that bound: too close to zero to tell higher or lower from no "
             f"difference. Also in `{STATISTICS_FILE}`.", ""]
    for view, label in PANELS:
        rows = [r for r in stats if r["view"] == view]
        if not rows:
            continue
        lines += [f"### {label}", "",
                  "| labels | arm − baseline | difference [95 % CI] | seeds > 0 | images | verdict |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {axis_text(axis_point(r))} | {r['arm']} − {r['baseline']} | {interval(r)} | "
                  f"{r['seeds_positive']}/{r['n_seeds']} | {r['n_images']} | {verdict_text(r)} |" for r in rows]
        lines.append("")
    return lines + colour_section(stats) + regime_section(stats)


def colour_section(stats):
    """Says, fraction by fraction, whether colour is what helps: surrogate against the no-colour control."""
    lines = ["## Is it the colour?", ""]
    by_key = {(r["view"], axis_point(r), r["arm"], r["baseline"]): r for r in stats}
    fracs = sorted({axis_point(r) for r in stats if (r["arm"], r["baseline"]) == ("surrogate", "control")},
                   key=axis_order)
    if not fracs:
        return lines + ["No surrogate and control cells with a common seed: the grid cannot tell colour from "
                        "pretraining as such. Add `control` to --inits.", ""]
    verdicts = []
    for frac in fracs:
        colour = by_key[("dice_mean", frac, "surrogate", "control")]
        verdicts.append(colour["verdict"])
        text = f"- {labels_text(frac)}: surrogate − control {interval(colour)} (mean Dice, all classes): "
        if colour["verdict"] == NO_DIFFERENCE:
            text += f"{NO_DIFFERENCE}; colour is not what helps here"
        elif colour["verdict"] == BORDERLINE:
            text += f"{verdict_text(colour)}, too close to zero to say whether colour helps here"
        elif colour["verdict"] == "higher":
            text += "colour helps beyond the same pretraining without colour"
        else:
            text += "the no-colour control does better; colour does not help here"
        for arm in ("surrogate", "control"):
            gain = by_key.get(("dice_mean", frac, arm, "scratch"))
            if gain:
                text += f"; {arm} − scratch {interval(gain)} ({verdict_text(gain)})"
        lines.append(text + ".")
    if all(v == NO_DIFFERENCE for v in verdicts):
        lines += ["", "At no fraction does the surrogate differ measurably from the control: whatever the surrogate "
                  "gains over scratch, pretraining on the same images without colour explains as well as colour does."]
    return lines + [""]


def regime_section(stats):
    """Says, point by point, whether this grid could see an init effect at all. Two conditions: labels bind there
    (scratch on all labels beats scratch at the point: what more labels buy is all a better start could buy), and
    the positive control, started from the scratch cell trained on all labels (the most any initialisation could
    buy), beats scratch. Where either fails, a null result for the other arms says nothing about their pretexts."""
    rows = {(r["arm"], axis_point(r)): r for r in stats if r["view"] == "dice_mean"}
    points = sorted({point for arm, point in rows if arm in (BINDING.arm, "positive")}, key=axis_order)
    if not points:
        return []
    lines = ["## Can this regime detect an init effect?", "",
             "Mean Dice, all classes. *Labels bind* where scratch on all labels beats scratch at that point: an "
             "initialisation can only buy what more labels would. The positive control is initialised from this "
             "grid's scratch cell trained on all labels with the same seed: where it does not beat scratch, no "
             "initialisation could show a gain at that point.", ""]
    detectable = []
    for point in points:
        binding, positive = rows.get((BINDING.arm, point)), rows.get(("positive", point))
        parts = []
        if binding:
            parts.append(f"scratch on all labels − scratch {interval(binding)}: " + (
                "labels bind" if binding["verdict"] == "higher" else f"{verdict_text(binding)}, labels do not bind"))
        if positive:
            parts.append(f"positive − scratch {interval(positive)}: " + (
                "detectable" if positive["verdict"] == "higher" else
                f"{verdict_text(positive)}; this regime cannot detect an init effect here"))
        if binding and positive and binding["verdict"] == positive["verdict"] == "higher":
            detectable.append(point)
        lines.append(f"- {labels_text(point)}: " + "; ".join(parts) + ".")
    if any(("positive", point) in rows for point in points):
        where = ", ".join(labels_text(p) for p in detectable) or "none of its points"
        lines += ["", f"This grid can see an init effect (labels bind and the positive control beats scratch) at: "
                      f"{where}."]
    elif not any(rows.get((BINDING.arm, point), {}).get("verdict") == "higher" for point in points):
        lines += ["", "Labels bind at none of this grid's points below all labels: no initialisation had anything "
                      "to win here, whatever its pretext, and a null result for the pretext arms says nothing about "
                      "them."]
    return lines + [""]


PRETEXTS_SHOWN = {"rgb": ("colour (RGB)", "L1"), "chroma": ("colour (Cb/Cr)", "L1"),
                  "gray": ("its gray input, no colour", "L1"),
                  "classify": ("colour (Cb/Cr) in bins", "rebalanced cross-entropy over the bins"),
                  "classify_gray": ("luma in as many bins, no colour", "rebalanced cross-entropy over the bins")}
ARM_STARTS = {"scratch": "random weights, no pretraining", "imagenet": "ImageNet classification weights",
              "positive": "this grid's scratch cell trained on all labels with the same seed (segment.py --init "
                          "segmentation --source-run): the most any initialisation could buy"}


def pretext_kind(config):
    """What a pretraining run predicted and with which loss, from its config.json."""
    target, loss = PRETEXTS_SHOWN.get(config.get("predict", "rgb"), (config.get("predict"), "?"))
    if config.get("gan_weight"):
        loss += f" + GAN (weight {config['gan_weight']:g})"
    return f"{target}, {loss}"


def arms_section(experiment, rows):
    """What each arm started from, and for the pretext arms what they pretrained on and with which loss. Written
    for the grids the matched control, the positive arm or label counts came with; the fraction grids before them
    keep their reports as they were."""
    arms = list(dict.fromkeys(r["init"] for r in rows))
    configs = {run.name: read_json(run / CONFIG_FILE, {}) for run in sorted((experiment / "pretrain").glob("*"))
               if run.is_dir()}
    if not (counted(rows) or "positive" in arms
            or any(c.get("predict") == "classify_gray" for c in configs.values())):
        return []
    lines = ["## What each arm started from", ""]
    for arm in sorted(arms, key=lambda a: (list(STYLE).index(a) if a in STYLE else len(STYLE), a)):
        if arm in ARM_STARTS:
            lines.append(f"- **{arm}**: {ARM_STARTS[arm]}.")
            continue
        runs = {pretext for pretext, (init, _) in PRETEXTS.items() if init == arm}  # pretrain/<run>[_seed<i>]
        kinds = sorted({pretext_kind(config) for name, config in configs.items() if name.split("_seed")[0] in runs})
        lines.append(f"- **{arm}**: pretrained on {'; '.join(kinds) or 'runs whose config.json is not here'}.")
    return lines + [""]


def weights_used(experiment, rows):
    """pretraining run name → {weights file SHA-256: [cells that started from it]}, from each finished cell's
    init.json. A run whose weights were lost (a new machine) is pretrained again by the runner; unless that is
    bit-exact, its later cells start from a different file, and this tells which."""
    used = defaultdict(lambda: defaultdict(list))
    for row in rows:
        init = read_json(experiment / row["run_dir"] / INIT_FILE, {}) if row["status"] == "done" else {}
        if init.get("source_sha256") and row["init"] in PRETEXT_INITS:
            used[Path(init["source"]).parent.name][init["source_sha256"]].append(f"{amount(row)}/seed {row['seed']}")
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
        machine = read_json(experiment / row["run_dir"] / CONFIG_FILE, {}).get("machine") \
            if row["status"] == "done" else None
        if machine:
            _, cpu = describe_provenance([], machine)
            used[cpu].append(f"{row['init']} {amount(row)}/seed {row['seed']}")
    return used


def rows_with_budget(experiment):
    """results.csv's rows, each finished one with its `min_steps` from metrics.json added: not a results.csv column,
    it says whether --patience could stop the cell at all (budget_section)."""
    rows = read_results(experiment)
    for row in rows:
        if row["status"] == "done":
            row["min_steps"] = read_json(experiment / row["run_dir"] / METRICS_FILE, {}).get("min_steps")
    return rows


def write_statistics_table(experiment, cells, groups):
    """Writes EXP/statistics.csv, the paired differences between arms; returns its rows."""
    stats = pair_statistics(cells, groups)
    write_statistics(experiment, stats)
    return stats


def provenance_lines(experiment, rows, state):
    """The report's title and what produced its numbers: the code, the CPUs the cells ran on (each finished cell's
    config.json, else the grid runner's last start), this report's platform, and the grid's command."""
    code, cpu = describe_provenance(state.get("__codes__", []), state.get("__machine__"))
    machines = machines_used(experiment, rows)
    if machines:
        cpu = "; ".join(f"{description} ({len(cells)} cell{'s' * (len(cells) != 1)}: {', '.join(cells)})"
                        for description, cells in machines.items()) + " (from each finished cell's config.json)"
    else:
        cpu += " (the CPU of the grid runner's last start; each run's config.json records its own)"
    return [f"# Label-efficiency experiment: {experiment.name}", "",
            f"Code: {code}. CPU{'s' * (len(machines) > 1)}: {cpu}. Platform of this report: {platform.platform()}, "
            f"Python {platform.python_version()}.",
            "", "Command:", "", f"    {state.get('__command__', '(unknown)')}", ""]


def pretraining_sections(experiment, rows, state):
    """One section per pretraining run with samples: what it predicted, its command, its held-out L1, the weights
    its cells started from, and its last samples."""
    lines = []
    weights = weights_used(experiment, rows)
    for run in sorted(p for p in (experiment / "pretrain").glob("*") if p.is_dir()):
        start = run.name
        samples = sorted((run / SAMPLES_DIR).glob("*.png"))
        if not samples:
            continue
        score = read_json(run / PRETRAIN_METRICS_FILE, {})
        config = read_json(run / CONFIG_FILE, {})
        predict = config.get("predict", "rgb")
        kind = "no-colour control: gives back its gray input" if predict == "gray" else f"colorization, {predict}"
        kind = f"no-colour control: {pretext_kind(config)}" if predict == "classify_gray" else kind
        lines += [f"## Pretraining {start} ({kind})", "",
                  f"    {state.get(f'pretrain/{start}', {}).get('command', '')}", ""]
        if "l1_colorized" in score:
            lines += [f"Held-out L1 to the real colours ([-1, 1] units): colorized {score['l1_colorized']:.4f}, "
                      f"grayscale input {score['l1_gray']:.4f} ({score['n_images']} images).", ""]
        lines += weights_lines(weights.get(start, {}))
        lines += [f"Gray | colorized | real, step {samples[-1].stem.split('_')[-1].lstrip('0')}:", "",
                  f"![colorization samples]({samples[-1].relative_to(experiment)})", ""]
    return lines


def predictions_section(experiment, rows):
    """Up to four finished cells' test prediction grids at the smallest fraction (or label count)."""
    smallest = min(map(axis_point, rows), key=axis_order, default=None)
    shown = [r for r in rows if r["status"] == "done" and axis_point(r) == smallest
             and (experiment / r["run_dir"] / PREDICTIONS_FILE).is_file()]  # a pooled folder keeps a few
    if not shown:
        return []
    lines = ["## Sample test predictions (image | ground truth | prediction), smallest fraction", ""]
    for r in shown[:4]:
        grid = Path(r["run_dir"]) / PREDICTIONS_FILE
        lines += [f"**{r['init']}**, seed {r['seed']}:", "", f"![{r['init']}]({grid})", ""]
    return lines


def commands_section(state):
    """Every command the runner's state recorded, in the order it ran them."""
    commands = [f"    {v['command']}" for k, v in state.items() if not k.startswith("__") and v.get("command")]
    return ["## Every command the grid ran", ""] + commands + [""]


def write_markdown(experiment, rows, state, png, cells, groups, stats):
    """Writes EXP/report.md: provenance, the figure `png`, the cell table, and the sections that read it."""
    parts = (provenance_lines(experiment, rows, state)
             + [f"![Dice vs label fraction: mean over seeds, band = 95 % bootstrap interval]({png.name})", "",
                table(rows), ""]
             + arms_section(experiment, rows) + budget_section(rows) + arm_means_section(rows, cells, groups)
             + statistics_section(stats) + pretraining_sections(experiment, rows, state)
             + predictions_section(experiment, rows) + commands_section(state))
    write_atomic(experiment / "report.md", "\n".join(parts))


def write_plots_and_report(experiment):
    """Redraws a grid's outputs from EXP/results.csv, the runner's state and each cell's files: statistics.csv, the
    figure dice_vs_fraction.{png,svg} and report.md. Returns the PNG's path."""
    experiment = Path(experiment)
    rows = rows_with_budget(experiment)
    state = read_runner_state(experiment)
    cells, groups = load_counts(experiment, rows)
    stats = write_statistics_table(experiment, cells, groups)
    png = plot(rows, experiment / "dice_vs_fraction", title=experiment.name, cells=cells, groups=groups)
    write_markdown(experiment, rows, state, png, cells, groups, stats)
    return png
