"""Dice-vs-label-fraction plots and the experiment report of a label-efficiency grid.

    python experiments/plot.py EXP

Redraws what experiments/label_efficiency.py draws after each cell (experiments/report.py):
EXP/dice_vs_fraction.{png,svg}, EXP/statistics.csv (paired differences between arms) and EXP/report.md.
"""

import sys
from pathlib import Path

from surrogate_supervision.models.runner.cli import parser, run

from surrogate_supervision.datasets import FileError
from surrogate_supervision.experiments.report import write_plots_and_report


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("experiment", type=Path, help="experiment directory holding results.csv")
    return p.parse_args(argv)


def main(args):
    if not (args.experiment / "results.csv").is_file():
        raise FileError(f"{args.experiment / 'results.csv'}: no such file (run experiments/label_efficiency.py)")
    print(write_plots_and_report(args.experiment))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
