"""Segmentation fine-tuning of DeepLabV3+ ResNet50 from scratch, ImageNet, or a colorization generator.

    python finetune/segment.py --init surrogate --frac 0.25
    python finetune/segment.py --data ROOT --init surrogate --surrogate runs/colorize --frac 0.25 --out RUN
    python finetune/segment.py --data ROOT --init segmentation --source-run runs/segment --labels 20 --out RUN

Trains on a nested fraction (or --labels count) of the training split, selects the best checkpoint by
validation mean Dice, and reports test-split metrics in RUN/metrics.json and each test image's confusion counts in
RUN/test_counts.json. `--patience N` stops once validation has not improved for N evaluations, but never before
--min-steps; otherwise a run trains to --steps. With no --data the built-in
synthetic set is used, with settings sized for it (`models.runner.cli.DEMO_DEFAULTS`: minutes on a laptop); with
--data the defaults are the reference recipe. RUN defaults to runs/segment_<init>_<frac> (or _labels<N>), and
--surrogate to runs/colorize, pretrain/colorize.py's default run directory.
"""

import functools
import sys
from pathlib import Path

from surrogate_supervision.models import INITS, TransferError, build_segmenter, make_loss, transfer_weights
from surrogate_supervision.models.conv_bias import load_weights
from surrogate_supervision.models.io import read_json, write_atomic, write_json
from surrogate_supervision.models.metrics import confusion_matrix, parse_groups, segmentation_metrics
from surrogate_supervision.models.optimizers import learning_rate, make_adam
from surrogate_supervision.models.rundir import (
    BEST_FILE,
    BEST_WEIGHTS,
    CONFIG_FILE,
    INIT_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    TEST_COUNTS_FILE,
    TRAIN_STEMS_FILE,
    is_finished,
    latest_step,
    network_only,
    save_weights,
)
from surrogate_supervision.models.runner.cli import (
    DEFAULT_RUNS,
    DEMO_DEFAULTS,
    add_flags,
    architecture_from_flags,
    defaults_notice,
    parser,
    run,
)
from surrogate_supervision.models.runner.inference import DEFAULT_SCHEME, Predictor
from surrogate_supervision.models.runner.runsetup import RunSetup
from surrogate_supervision.models.runner.training import train_loop
from surrogate_supervision.models.runner.visualize import overlay, tile, write_png
from surrogate_supervision.models.surrogate_checkpoints import choose_surrogate
from surrogate_supervision.models.transfer import PRETEXT_INITS

import numpy as np
import tensorflow as tf

from surrogate_supervision import datasets


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    add_flags(p, "data", "out", "steps", "batch", "crop", "lr", "lr_schedule", "beta1", "beta2", "seed", "split_seed",
              "backbone", "width", "output_stride", "regular_conv", "init", "imagenet_weights", "surrogate",
              "surrogate_checkpoint", "source_run", "frac", "labels", "loss", "freeze_encoder", "group",
              "mixed_precision", "xla", "distribute", "checkpoint_every", "eval_every", "skip_bad", "deterministic",
              steps=300_000, lr=1e-4, frac=None, out=None)
    p.add_argument("--val-images", type=int, default=None, help="validate on at most this many images (all by default)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop when validation mean Dice has not improved for this many evaluations (--steps stays "
                        "the cap; default: train to --steps)")
    p.add_argument("--min-steps", type=int, default=0,
                   help="with --patience: never stop before this step (a warm-up in which no progress is expected, "
                        "like Keras' EarlyStopping start_from_epoch: a model may sit on a plateau before it learns)")
    p.add_argument("--min-delta", type=float, default=0.0,
                   help="with --patience: a validation mean Dice counts as progress only when it beats the last "
                        "progress by more than this (the best checkpoint still follows every gain)")
    p.default_later("out", DEFAULT_RUNS / "segment_<init>_<frac>, or _labels<N> with --labels")
    p.default_later("surrogate", f"{DEFAULT_RUNS / 'colorize'} with --init {', '.join(PRETEXT_INITS)}")
    p.size_for_data(DEMO_DEFAULTS["segment"])
    args = p.parse_args(argv)
    if "patience" in p.defaulted and args.distribute == "multiworker":
        args.patience = None  # the synthetic set's early stop is a default, not a request (see below)
    if args.patience is not None and args.patience < 1:
        p.error(f"--patience must be at least 1, got {args.patience}")
    if args.min_delta < 0:
        p.error(f"--min-delta must be >= 0, got {args.min_delta}")
    if args.min_steps < 0:
        p.error(f"--min-steps must be >= 0, got {args.min_steps}")
    if args.patience and args.distribute == "multiworker":
        p.error("--patience: not with --distribute multiworker (validation runs on the chief only, so the other "
                "workers could not stop with it)")
    if args.init not in INITS:
        p.error(f"Wrong --init {args.init!r}, supported: {', '.join(INITS)}")
    if args.labels is not None and args.frac is not None:
        p.error("--labels and --frac both choose the training images; give one")
    if args.labels is not None and args.labels < 1:
        p.error(f"--labels must be at least 1, got {args.labels}")
    if args.labels is None and args.frac is None:
        args.frac = 1.0  # the default, set here so that --labels can tell whether --frac was given
    if args.frac is not None and not 0 < args.frac <= 1:
        p.error(f"--frac must be in (0, 1], got {args.frac}")
    if (args.init == "segmentation") != (args.source_run is not None):
        p.error("--init segmentation needs --source-run RUN" if args.source_run is None else
                f"--source-run: only with --init segmentation, not --init {args.init}")
    if args.data and len(args.data) > 1:
        p.error("--data: fine-tuning takes one labeled dataset root")
    if args.out is None:
        args.out = DEFAULT_RUNS / (f"segment_{args.init}_" +
                                   (f"{args.frac:g}" if args.labels is None else f"labels{args.labels}"))
    if args.surrogate is None and args.init in PRETEXT_INITS:
        args.surrogate = DEFAULT_RUNS / "colorize"
    notice = defaults_notice(args, p, "segment")
    if notice:
        print(notice, file=sys.stderr)
    return args


def training_images(args, train_split):
    """The training images `--frac` or `--labels` choose: one seeded order serves both, so for a seed the 8
    images lie inside the 20, every init trains on the same ones, and --frac f equals --labels ceil(f·n)."""
    if args.labels is None:
        return datasets.select_fraction(train_split, args.frac, args.seed)
    if args.labels > len(train_split):
        raise datasets.FlagError(f"--labels {args.labels}: the training split has only {len(train_split)} images")
    return datasets.select_count(train_split, args.labels, args.seed)


def check_source_run_split(args, splits):
    """Refuses a --source-run of the same dataset that trained on this run's validation or test images (it was
    split with another --split-seed or split files): they would select and score a network that has seen them.
    Runs on other datasets are not compared, as their stems may coincide by chance."""
    source = read_json(args.source_run / CONFIG_FILE, {})
    resolve = lambda data: sorted(str(Path(p).resolve()) for p in data or [])
    if resolve(source.get("data")) != resolve(args.data):
        return
    stems_file = args.source_run / TRAIN_STEMS_FILE
    seen = set(stems_file.read_text().split()) if stems_file.is_file() else set()
    held_out = sorted(seen & (set(splits["val"]) | set(splits["test"])))
    if held_out:
        raise datasets.FlagError(f"--source-run {args.source_run}: trained on {len(held_out)} of this run's "
                                 f"validation and test images (e.g. {held_out[0]!r}); it was split otherwise "
                                 f"(another --split-seed?)")


def load_checked_dataset(args):
    """The labeled dataset after the same checks `datasets/describe.py` runs; stops at the first problem."""
    ds = datasets.load_labeled(args.data[0] if args.data else datasets.ensure_synthetic())
    problems = datasets.check_labeled(ds, progress=True)
    if problems and not args.skip_bad:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise datasets.DatasetError(f"{problems[0]}{more}; fix it, or pass --skip-bad to skip bad files")
    if problems:
        print(f"--skip-bad: skipping {len(problems)} bad files", file=sys.stderr)
        ds = datasets.drop_bad(ds, problems)
    return ds, len(problems)


class Evaluator:
    """Scores a split through the one inference path (`models.runner.inference.Predictor`, the default scheme, which
    finetune/predict.py uses too) and writes prediction overlays; keeps each image's confusion matrix in
    `per_image` (stem → counts) for scores recomputed later."""

    def __init__(self, predictor, ds, stems, groups):
        self.predictor = predictor
        self.ds, self.stems, self.groups = ds, stems, groups
        self.per_image = {}

    def __call__(self, limit_images=0):
        k = self.ds.num_classes
        matrix = np.zeros((k, k), np.int64)
        shown = []
        for stem in self.stems:
            image, mask = self.ds.read_pair(stem)
            prediction = self.predictor.labels(image)
            self.per_image[stem] = confusion_matrix(mask, prediction, k)
            matrix += self.per_image[stem]
            if len(shown) < limit_images:
                shown.append([image, overlay(image, mask, k), overlay(image, prediction, k)])
        return segmentation_metrics(matrix, self.ds.class_names, self.groups), shown


def write_prediction_grid(shown, path, height=128):
    """image | ground truth | prediction, one row per test image, as thumbnails (small enough to commit)."""
    def thumbnail(x):
        return tf.image.resize(x, (height, int(x.shape[1] * height / x.shape[0])), "area").numpy().round()

    rows = [[thumbnail(x).astype(np.uint8) for x in row] for row in shown]
    write_png(path, tile(rows))


class ValidationHook:
    """Every --eval-every steps: validation scores to TensorBoard, the best weights (best.weights.h5) and best.json
    kept; returns True, which stops training, once `plateau(progress_step, step)` says validation stalled."""

    def __init__(self, validate, model, out, writer, *, min_delta, plateau):
        self.validate, self.model, self.out, self.writer = validate, model, Path(out), writer
        self.min_delta, self.plateau = min_delta, plateau

    def __call__(self, step, logs):
        metrics, _ = self.validate()
        with self.writer.as_default(step=step):
            for key in ("dice_mean", "dice_grouped", "miou", "pixel_accuracy"):
                tf.summary.scalar(f"val/{key}", metrics[key])
        best_file = self.out / BEST_FILE
        best, dice = read_json(best_file, {}), metrics["dice_mean"]
        if dice > best.get("val_dice_mean", -1.0):
            save_weights(self.model, self.out / BEST_WEIGHTS)
            best.update(step=step, val_dice_mean=dice)
        if dice > best.get("progress_dice", -1.0) + self.min_delta:  # the patience clock restarts
            best.update(progress_step=step, progress_dice=dice)
        write_json(best_file, best)
        return self.plateau(best["progress_step"], step)


def main(args):
    setup = RunSetup(args, finished=is_finished)
    if setup.finished:
        print(f"{setup.out}: already finished; metrics in {setup.out / METRICS_FILE}")
        return 0
    setup.start()
    ds, groups, splits, train = prepare_data(args, setup)
    with setup.scope():
        model = build_model(args, ds.num_classes)
    checkpoints = setup.checkpoints(model=model, optimizer=model.optimizer)
    if setup.fresh:
        initialise(model, args.init, setup.out, ds.class_names, imagenet_weights=args.imagenet_weights,
                   surrogate=args.surrogate, surrogate_checkpoint=args.surrogate_checkpoint,
                   source_run=args.source_run)
    predictor = Predictor(model, train_crop=args.crop, scheme=DEFAULT_SCHEME)  # one traced network: val, then test
    plateau = functools.partial(is_plateau, patience=args.patience, eval_every=args.eval_every,
                                min_steps=args.min_steps)
    validate = Evaluator(predictor, ds, splits["val"][: args.val_images] if args.val_images else splits["val"], groups)
    hook = ValidationHook(validate, model, setup.out, setup.writer, min_delta=args.min_delta, plateau=plateau)
    make_dataset = training_data(ds, train, crop=args.crop, batch=args.batch, seed=args.seed, skip_bad=args.skip_bad)
    stopped_step, best = latest_step(setup.out), read_json(setup.out / BEST_FILE, {})
    if not plateau(best.get("progress_step", best.get("step")), stopped_step):  # resumed after stopping
        train_loop(model.train_step, make_dataset, **setup.loop_options(), metrics=model.metrics,
                   # the schedule at the optimizer's step count: the rate the next step will use
                   scalars={"learning_rate": lambda: model.optimizer.learning_rate},
                   hooks=[(args.eval_every, hook)], desc=f"segment {args.init}")
        stopped_step = int(checkpoints.step.numpy())
    return setup.finish(evaluate_on_test, predictor, ds, splits, groups, train, out=setup.out,
                        stopped_step=stopped_step, steps=args.steps, lr_schedule=args.lr_schedule, init=args.init,
                        frac=args.frac, seed=args.seed, patience=args.patience, min_delta=args.min_delta,
                        min_steps=args.min_steps, source_run=args.source_run)


def prepare_data(args, setup):
    """The checked dataset, the --group classes, the splits (made once, kept in the run) and the training images
    (listed in train_stems.txt); saves config.json. Returns (dataset, groups, splits, training stems)."""
    ds, n_bad = load_checked_dataset(args)
    groups = parse_groups(args.group, ds.class_names)
    splits = datasets.load_or_make_splits(ds, setup.out, seed=args.split_seed)
    train = training_images(args, splits["train"])
    if args.source_run is not None:
        check_source_run_split(args, splits)
    write_atomic(setup.out / TRAIN_STEMS_FILE, "\n".join(train) + "\n")
    setup.save_config(classes=ds.class_names, n_train_images=len(train), n_split={k: len(v) for k, v in splits.items()},
                      skipped_files=n_bad)
    print(f"segmentation: {ds.num_classes} classes, {len(train)}/{len(splits['train'])} training images "
          f"({f'frac {args.frac}' if args.labels is None else f'--labels {args.labels}'}), {len(splits['val'])} val, "
          f"{len(splits['test'])} test, init {args.init}",
          file=sys.stderr)
    return ds, groups, splits, train


def build_model(args, num_classes):
    """The segmenter and its optimizer, compiled with the --loss; called under the strategy's scope."""
    model = build_segmenter(num_classes, loss=args.loss, freeze_encoder=args.freeze_encoder,
                            architecture=architecture_from_flags(args))
    optimizer = make_adam(learning_rate(args.lr, args.lr_schedule, args.steps), args.beta1, args.beta2)
    model.compile(optimizer=optimizer, loss=make_loss(args.loss, num_classes))
    model.optimizer.build(model.trainable_variables)
    return model


def initialise(model, init, out, class_names, *, imagenet_weights=None, surrogate=None, surrogate_checkpoint=None,
               source_run=None):
    """A fresh run's weights as `init` says (from ImageNet, a colorization run or a segmentation run); the transfer's
    report is printed and kept in the run (init.json)."""
    if init in PRETEXT_INITS:
        surrogate = choose_surrogate(surrogate, surrogate_checkpoint)
    try:
        report = transfer_weights(model, init, imagenet_weights=imagenet_weights, surrogate=surrogate,
                                  source_run=source_run, class_names=class_names)
    except TransferError as error:
        if init != "segmentation":
            raise
        raise TransferError(f"--source-run {error}") from None  # the library names the run, the user the flag
    print(report.summary(), file=sys.stderr)
    write_json(Path(out) / INIT_FILE, vars(report))


def training_data(ds, train, *, crop, batch, seed, skip_bad):
    """`train_loop`'s make_dataset: start element → the batches of the `train` stems from it on."""
    counter = datasets.SkipCounter() if skip_bad else None

    def make_dataset(start):
        return datasets.segmentation_dataset(
            [ds.image_paths[s] for s in train], [ds.mask_paths[s] for s in train], crop=crop, batch=batch,
            seed=seed, start_index=start, skip_bad=skip_bad, num_classes=ds.num_classes, palette=ds.palette,
            counter=counter)

    return make_dataset


def is_plateau(progress_step, step, *, patience, eval_every, min_steps):
    """True once `patience` evaluations in a row (one every `eval_every` steps) have not beaten the last progress
    (the best validation mean Dice, by more than --min-delta), and never before `min_steps`. Decided from steps
    alone, so a resumed run stops where an uninterrupted one would."""
    return (bool(patience) and progress_step is not None and step >= min_steps
            and step - progress_step >= patience * eval_every)


def evaluate_on_test(predictor, ds, splits, groups, train, *, out, stopped_step, steps, lr_schedule, init, frac, seed,
                     patience, min_delta, min_steps, source_run):
    """The chief's last step: the best validation checkpoint on the test split, metrics.json (recording the run's
    settings given here), each test image's confusion counts (every statistic can be recomputed from them without
    the weights) and a grid."""
    out = Path(out)
    best_file = out / BEST_FILE
    load_weights(network_only(predictor.model), out / BEST_WEIGHTS)  # also one an earlier version wrote, biases folded
    evaluator = Evaluator(predictor, ds, splits["test"], groups)
    metrics, shown = evaluator(limit_images=4)
    best = read_json(best_file, {})
    metrics.update(n_test_images=len(splits["test"]), n_train_images=len(train), init=init, frac=frac,
                   seed=seed, steps=steps, best_step=best.get("step"), stopped_step=stopped_step,
                   patience=patience, min_delta=min_delta, min_steps=min_steps,
                   val_dice_mean=best.get("val_dice_mean"), inference=evaluator.predictor.scheme.as_dict(),
                   labels=len(train),
                   source_run=None if source_run is None else str(source_run),
                   classes=ds.class_names)
    write_json(out / TEST_COUNTS_FILE, {"classes": ds.class_names, "groups": metrics["groups"],
                                        "rows": "truth", "columns": "prediction",
                                        "confusion": {stem: m.tolist() for stem, m in evaluator.per_image.items()}})
    if shown:
        write_prediction_grid(shown, out / PREDICTIONS_FILE)
    write_json(out / METRICS_FILE, metrics)
    print(f"test: dice_mean {metrics['dice_mean']:.4f}, dice_grouped {metrics['dice_grouped']:.4f}, "
          f"mIoU {metrics['miou']:.4f} ({len(splits['test'])} images; best val step {best.get('step')}, "
          f"stopped at step {stopped_step}{end_note(stopped_step, steps, lr_schedule)})")


def end_note(stopped_step, steps, lr_schedule):
    """What reaching --steps means: cut off at a constant rate, or the poly schedule run out (rate 0)."""
    if stopped_step < steps:
        return ""
    return " (the poly schedule's end: rate 0)" if lr_schedule == "poly" else " (hit the --steps cap)"


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
