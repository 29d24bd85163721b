"""How well a colorization run colorizes held-out images, against the trivial answer: the gray input.

    python pretrain/evaluate.py RUN

Rebuilds the run's held-out images (the same seeded draw `colorize.py` made) and its generator, and writes
RUN/pretrain_metrics.json. Two views, both in [-1, 1] units at the generator's stride-4 resolution:
- RGB L1, |G(g) − x| vs |g − x|: the generator must also reproduce the luminance it was given;
- chroma L1 (YCbCr Cb and Cr), where the gray input has none: the colour alone.
With --colour-loss classify also the cross-entropy of the real colours' soft-encoded bins under the generator's
distribution and under the training prior (the classification counterpart of the gray baseline).
Each is given twice: with BatchNorm's moving averages (inference mode), and with the statistics of each batch
of 4 held-out crops, as pix2pix evaluates its generators (`*_batch_stats`; dropout off, weights untouched).
"""

import sys
from pathlib import Path

from models.runner.cli import parser, run

from pretrain.holdout import describe, evaluate_run


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="colorization run directory")
    return p.parse_args(argv)


def main(args):
    print(describe(evaluate_run(args.run)))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
