"""Dice-vs-label-fraction plots and the experiment report.

    python experiments/plot.py EXP

Two panels side by side, like the reference study's figure (Tajbakhsh et al., ISBI 2019): mean Dice over
all K classes, and Dice of the grouped 2-class view; one line per init, mean ± spread over seeds.
Writes EXP/dice_vs_fraction.{png,svg} and EXP/report.md.
"""

import argparse
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.results import read_results, read_runner_state  # noqa: E402
from models.training import read_json, write_atomic  # noqa: E402

STYLE = {"scratch": ("tab:gray", "o"), "imagenet": ("tab:blue", "s"), "surrogate": ("tab:red", "^"),
         "imagenet+surrogate": ("tab:purple", "D")}
PANELS = (("dice_mean", "mean Dice, all classes"), ("dice_grouped", "Dice, grouped 2-class view"))


def summarize(rows, metric):
    """init → sorted [(frac, mean, min, max, n_seeds)] over finished cells."""
    values = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["status"] == "done" and row[metric] is not None:
            values[row["init"]][row["frac"]].append(row[metric])
    return {init: [(frac, statistics.fmean(v), min(v), max(v), len(v)) for frac, v in sorted(by_frac.items())]
            for init, by_frac in values.items()}


def plot(rows, path_stem, title=""):
    """Writes the two-panel figure as PNG and SVG; returns the PNG path."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (metric, label) in zip(axes, PANELS):
        for init, points in summarize(rows, metric).items():
            colour, marker = STYLE.get(init, ("black", "x"))
            fracs = [100 * p[0] for p in points]
            means = [p[1] for p in points]
            ax.plot(fracs, means, marker=marker, color=colour, label=init)
            if any(p[4] > 1 for p in points):
                ax.fill_between(fracs, [p[2] for p in points], [p[3] for p in points], color=colour, alpha=0.15)
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
    plt.close(figure)
    return png


def table(rows):
    lines = ["| init | frac | seed | n_train | Dice (K classes) | Dice (grouped) | mIoU | pixel acc. | steps | wall s | status |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    number = lambda v: "" if v is None else f"{v:.4f}"
    for r in rows:
        status = r["status"] if r["status"] == "done" else f"{r['status']}: {r['note']}"
        lines.append(f"| {r['init']} | {r['frac']:g} | {r['seed']} | {r['n_train'] or ''} | {number(r['dice_mean'])} | "
                     f"{number(r['dice_grouped'])} | {number(r['miou'])} | {number(r['pixel_accuracy'])} | "
                     f"{r['steps'] or ''} | {r['wall_seconds']:.0f} | {status} |")
    return "\n".join(lines)


def write_plots_and_report(experiment):
    experiment = Path(experiment)
    rows = read_results(experiment)
    state = read_runner_state(experiment)
    png = plot(rows, experiment / "dice_vs_fraction", title=experiment.name)
    parts = [f"# Label-efficiency experiment: {experiment.name}", "",
             f"Machine: {platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}",
             "", "Command:", "", f"    {state.get('__command__', '(unknown)')}", "",
             f"![Dice vs label fraction]({png.name})", "", table(rows), ""]
    for start in ("scratch", "imagenet"):
        run = experiment / "pretrain" / start
        samples = sorted((run / "samples").glob("*.png"))
        if samples:
            score = read_json(run / "pretrain_metrics.json", {})
            parts += [f"## Colorization pretraining ({start})", "",
                      f"    {state.get(f'pretrain/{start}', {}).get('command', '')}", ""]
            if "l1_colorized" in score:
                parts += [f"Held-out L1 to the real colours ([-1, 1] units): colorized {score['l1_colorized']:.4f}, "
                          f"grayscale input {score['l1_gray']:.4f} ({score['n_images']} images).", ""]
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path, help="experiment directory holding results.csv")
    args = p.parse_args(argv)
    if not (args.experiment / "results.csv").is_file():
        print(f"error: {args.experiment / 'results.csv'}: no such file (run experiments/label_efficiency.py)",
              file=sys.stderr)
        return 1
    print(write_plots_and_report(args.experiment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
