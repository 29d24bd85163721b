"""The pretext comparison's table and probe-Dice curves from colorization run directories.

    python experiments/pretext_report.py RUN [RUN ...] --out experiments/results/pretext/ccp

Writes OUT.png (probe mean Dice against pretraining step, one line per run, the step-0 random body dashed)
and prints a Markdown table: steps reached, held-out RGB and chroma L1 of the colorization against the gray
input's (from pretrain_metrics.json, `pretrain/evaluate.py`), and the last and best probe Dice.
"""

import sys
from pathlib import Path

from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.rundir import CONFIG_FILE, PRETRAIN_METRICS_FILE, PROBE_FILE
from surrogate_supervision.models.runner import cli

from matplotlib.figure import Figure

from surrogate_supervision.pretrain.probe import read_rows


def recipe(config):
    """A run's pretext in words, from its config.json."""
    loss = config.get("colour_loss", "l1")
    colour = "classify" if loss == "classify" else \
        f"{config.get('predict', 'rgb')} L1 λ={config.get('l1_weight', 1):g}"
    return f"{colour}, GAN μ={config.get('gan_weight', 1):g}"


def table_row(run):
    config, metrics = read_json(run / CONFIG_FILE, {}), read_json(run / PRETRAIN_METRICS_FILE, {})
    rows = read_rows(run / PROBE_FILE)
    later = [r for r in rows if r["step"] > 0]
    if not later:
        return f"| `{run.name}` | {recipe(config)} | no probe yet |"
    steps = metrics.get("steps") or f"partial: {later[-1]['step']}"
    if metrics.get("steps") and later[-1]["step"] > metrics["steps"]:  # being extended: its probe is ahead
        steps = f"{metrics['steps']} (probed to {later[-1]['step']}, partial)"

    def versus(key):
        colorized, gray = metrics.get(f"{key}_colorized"), metrics.get(f"{key}_gray")
        if colorized is None or gray is None:
            return "–"
        return f"{colorized:.4f} / {gray:.4f} ({colorized / gray - 1:+.0%})"

    return (f"| `{run.name}` | {recipe(config)} | {steps} | {versus('l1')} | {versus('chroma_l1')} "
            f"| {rows[0]['dice_mean']:.3f} | {later[-1]['dice_mean']:.3f} @ {later[-1]['step']} "
            f"| {max(r['dice_mean'] for r in later):.3f} |")


def plot_probes(runs, path):
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for run in runs:
        rows = read_rows(run / PROBE_FILE)
        if not rows:
            continue
        line, = ax.plot([r["step"] for r in rows], [r["dice_mean"] for r in rows], marker="o", ms=3,
                        label=recipe(read_json(run / CONFIG_FILE, {})))
        if rows[0]["step"] == 0:
            ax.axhline(rows[0]["dice_mean"], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("probe mean Dice (validation crops)")
    ax.set_title("Linear probe on the frozen generator body (dotted: step 0, random body)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv=None):
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="colorization run directories")
    p.add_argument("--out", type=Path, required=True, help="path stem of the plot (OUT.png)")
    return p.parse_args(argv)


def main(args):
    print("| run | pretext | steps | RGB L1 colorized / gray | chroma L1 colorized / gray | probe Dice step 0 "
          "| probe Dice last | probe Dice best |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [run for run in args.runs if run.is_dir()]
    for run in runs:
        print(table_row(run))
    plot_probes(runs, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args()))
