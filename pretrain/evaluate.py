"""How well a colorization run colorizes held-out images, against the trivial answer: the gray input.

    python pretrain/evaluate.py RUN [--by-class LABELED_ROOT]

Rebuilds the run's held-out images (the same seeded draw `colorize.py` made) and its generator, and writes
RUN/pretrain_metrics.json. Three views, at the generator's stride-4 resolution (L1 in [-1, 1] units):
- RGB L1, |G(g) − x| vs |g − x|: the generator must also reproduce the luminance it was given;
- chroma L1 (YCbCr Cb and Cr), where the gray input has none: the colour alone.
- colour accuracy AuC, raw and rebalanced (`pretrain/colour_accuracy.py`, Zhang et al. 2016's scores): the share
  of pixels within a chroma distance of the truth, averaged over distances; rebalanced, each true colour bin
  weighs the same, so gray, right on the many near-gray pixels and wrong on every colourful one, scores low.
With --colour-loss classify also the cross-entropy of the real colours' soft-encoded bins under the generator's
distribution and under the training prior (the classification counterpart of the gray baseline).
Each is given twice: with BatchNorm's moving averages (inference mode), and with the statistics of each batch
of 4 held-out crops, as pix2pix evaluates its generators (`*_batch_stats`; dropout off, weights untouched).
With --by-class, also the chroma L1 per class of a labeled root's test split (RUN/colour_by_class.json,
`pretrain/colour_by_class.py`): where in the image the colour error is, and where a colorizer could win.
"""

import sys
from pathlib import Path

from surrogate_supervision.models.io import write_json
from surrogate_supervision.models.rundir import COLOUR_BY_CLASS_FILE
from surrogate_supervision.models.runner.cli import parser, run
from surrogate_supervision.models.transfer import load_generator

from surrogate_supervision.pretrain.colour_by_class import class_colour_scores, describe_by_class
from surrogate_supervision.pretrain.holdout import colorization_config, describe, evaluate_run


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="colorization run directory")
    p.add_argument("--by-class", type=Path, default=None, metavar="LABELED_ROOT",
                   help="also score chroma L1 per class on this labeled root's test split (colour_by_class.json)")
    return p.parse_args(argv)


def main(args):
    config = colorization_config(args.run)  # first, so a folder that is not a run is named in one line
    generator = load_generator(args.run)
    print(describe(evaluate_run(args.run, generator)))
    if args.by_class:
        result = class_colour_scores(generator, args.by_class, split_seed=config["split_seed"])
        write_json(args.run / COLOUR_BY_CLASS_FILE, result)
        print(describe_by_class(result))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
