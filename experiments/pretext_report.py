"""The pretext comparison's table and probe-Dice curves from colorization run directories.

    python experiments/pretext_report.py RUN [RUN ...] --out experiments/results/pretext/ccp

Writes OUT.png (probe mean Dice against pretraining step, one line per run, the step-0 random body dashed)
and prints a Markdown table: steps reached, held-out RGB and chroma L1 of the colorization against the gray
input's (from pretrain_metrics.json, `pretrain/evaluate.py`), and the last and best probe Dice.
"""

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from models.training import read_json  # noqa: E402
from pretrain.probe import PROBE_FILE, read_rows  # noqa: E402


def recipe(config):
    """A run's pretext in words, from its config.json."""
    loss = config.get("colour_loss", "l1")
    colour = "classify" if loss == "classify" else f"{config.get('predict', 'rgb')} L1 λ={config.get('l1_weight', 1):g}"
    return f"{colour}, GAN μ={config.get('gan_weight', 1):g}"


def table_row(run):
    config, metrics = read_json(run / "config.json", {}), read_json(run / "pretrain_metrics.json", {})
    rows = read_rows(run / PROBE_FILE)
    later = [r for r in rows if r["step"] > 0]
    done = metrics.get("steps")
    fmt = lambda key: f"{metrics[key]:.4f}" if key in metrics else "–"
    ratio = lambda a, b: f"{metrics[a] / metrics[b] - 1:+.0%}" if a in metrics and b in metrics else "–"
    return (f"| `{run.name}` | {recipe(config)} | {done if done else 'partial: ' + str(max((r['step'] for r in rows), default=0))} "
            f"| {fmt('l1_colorized')} / {fmt('l1_gray')} ({ratio('l1_colorized', 'l1_gray')}) "
            f"| {fmt('chroma_l1_colorized')} / {fmt('chroma_l1_gray')} ({ratio('chroma_l1_colorized', 'chroma_l1_gray')}) "
            f"| {rows[0]['dice_mean']:.3f} | {later[-1]['dice_mean']:.3f} @ {later[-1]['step']} "
            f"| {max(r['dice_mean'] for r in later):.3f} |" if later else f"| `{run.name}` | {recipe(config)} | no probe yet |")


def plot_probes(runs, path):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        rows = read_rows(run / PROBE_FILE)
        if not rows:
            continue
        line, = ax.plot([r["step"] for r in rows], [r["dice_mean"] for r in rows], marker="o", ms=3,
                        label=recipe(read_json(run / "config.json", {})))
        if rows[0]["step"] == 0:
            ax.axhline(rows[0]["dice_mean"], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("probe mean Dice (validation crops)")
    ax.set_title("Linear probe on the frozen generator body (dotted: step 0, random body)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="colorization run directories")
    p.add_argument("--out", type=Path, required=True, help="path stem of the plot (OUT.png)")
    args = p.parse_args(argv)
    print("| run | pretext | steps | RGB L1 colorized / gray | chroma L1 colorized / gray | probe Dice step 0 "
          "| probe Dice last | probe Dice best |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in args.runs:
        print(table_row(run))
    plot_probes(args.runs, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
