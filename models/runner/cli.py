"""Command-line pieces every script shares: flags defined once, the run's config.json, one-line errors.

A flag means the same thing in every script (see the table in DESIGN.md); scripts pick flags by name and
may override a default, never retype a definition. Where a default depends on whether --data is given (the
reference recipe with it, sizes for the built-in synthetic set without: `DEMO_DEFAULTS`), `Parser` decides it
after parsing, and an explicit flag always wins.
"""

import argparse
import os
import shlex
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

from surrogate_supervision.models import INITS, Architecture, TransferError
from surrogate_supervision.models.io import read_json, write_json
from surrogate_supervision.models.rundir import CONFIG_FILE, is_started
from surrogate_supervision.models.runner.provenance import code_version, machine_summary
from surrogate_supervision.models.runner.runtime import is_chief
from surrogate_supervision.models.runner.training import Interrupted, NonFiniteLoss

import tensorflow as tf

from surrogate_supervision.datasets import FlagError, ToolkitError, unwrap_dataset_error

FLAGS = {
    "data": dict(nargs="+", type=Path, default=None, help="dataset root(s); for pretraining also folders of images or videos (default: built-in synthetic set)"),
    "out": dict(type=Path, required=True, help="run directory; re-running with the same --out resumes"),
    "steps": dict(type=int, help="training steps"),
    "batch": dict(type=int, default=4, help="global batch size (split across replicas)"),
    "crop": dict(type=int, default=513, help="square crop size"),
    "lr": dict(type=float, help="Adam learning rate"),
    "lr_schedule": dict(choices=("constant", "poly"), default="constant", help="learning rate over the run: constant, or DeepLab's poly decay lr·(1 − step/steps)^0.9, reaching 0 at --steps"),
    "beta1": dict(type=float, default=0.5, help="Adam beta1 (pix2pix's 0.5)"),
    "beta2": dict(type=float, default=0.999, help="Adam beta2"),
    "seed": dict(type=int, default=0, help="seed for label fractions, data order and weights"),
    "split_seed": dict(type=int, default=0, help="seed of the train/val/test draw when a dataset has no splits/ (shared by pretraining, so its test images stay unseen)"),
    "backbone": dict(choices=("resnet50", "resnet50_beta"), default="resnet50", help="ResNet50 with the 7x7 stem (ImageNet-compatible) or DeepLab's three-3x3 beta stem"),
    "width": dict(type=float, default=1.0, help="channel multiplier (1.0 is the real model)"),
    "output_stride": dict(type=int, choices=(8, 16), default=16, help="backbone output stride"),
    "regular_conv": dict(action="store_true", help="regular 3x3 convolutions in ASPP/decoder instead of atrous separable ones"),
    "init": dict(default="scratch", help=f"how the network starts: {' | '.join(INITS)} (control: a generator pretrained on the no-colour target; segmentation: a finished segment.py run, --source-run)"),
    "imagenet_weights": dict(type=Path, default=None, help="local Keras ResNet50 ImageNet weights file (default: Keras' download and cache)"),
    "surrogate": dict(type=Path, default=None, help="colorization run directory or its generator.weights.h5"),
    "surrogate_checkpoint": dict(choices=("final", "best-probe"), default="final", help="with --surrogate RUN: its last generator, or the one its downstream probe scored best (colorize.py --probe-data)"),
    "frac": dict(type=float, default=1.0, help="fraction of the training split used, nested across fractions for a seed (all of it when neither --frac nor --labels is given)"),
    "labels": dict(type=int, default=None, help="number of training images used instead of --frac: the first N of the seeded order --frac takes its fractions from, so counts nest (8 inside 20) and --frac f equals --labels ceil(f·n)"),
    "source_run": dict(type=Path, default=None, help="with --init segmentation: a finished finetune/segment.py run whose body and decoder start this one"),
    "mixed_precision": dict(action="store_true", help="mixed precision (float16 on GPU with loss scaling, bfloat16 on CPU)"),
    "xla": dict(action="store_true", help="compile the training step with XLA"),
    "distribute": dict(choices=("none", "mirrored", "multiworker"), default="none", help="tf.distribute strategy (multiworker reads TF_CONFIG)"),
    "checkpoint_every": dict(type=int, default=1000, help="checkpoint interval in steps"),
    "eval_every": dict(type=int, default=1000, help="validation interval in steps"),
    "sample_every": dict(type=int, default=1000, help="sample-grid interval in steps"),
    "loss": dict(choices=("ce", "dice", "ce+dice", "bce"), default="ce", help="segmentation loss"),
    "freeze_encoder": dict(action="store_true", help="keep backbone weights and BatchNorm statistics fixed"),
    "group": dict(default=None, help="class grouping for grouped Dice, e.g. 'background:0;skin:1-8'"),
    "skip_bad": dict(action="store_true", help="skip unreadable or invalid files and report how many"),
    "deterministic": dict(action="store_true", help="deterministic ops and data order"),
}
# Without --data, pretrain/colorize.py and finetune/segment.py train on the built-in synthetic set (64-px scenes),
# where the reference recipe (full width, 513-px crops, 76,000 and 300,000 steps) would take days on a laptop. These
# are the sizes of the label-efficiency grid's `demo` preset (experiments/presets.py), so that
# `python pretrain/colorize.py` then `python finetune/segment.py --init surrogate --frac 0.25` finish in minutes on
# two cores and give the grid's surrogate cell: colour classification without the GAN term (the pretext that
# helped at this scale, experiments/results/pretext.md), and fine-tuning that stops once 3 evaluations 50 steps
# apart have not added 0.01 validation Dice (--steps is the cap). With --data each flag keeps its own default.
DEMO_DEFAULTS = {
    "colorize": dict(steps=400, crop=65, width=0.25, checkpoint_every=50, sample_every=200, colour_loss="classify",
                     gan_weight=0.0),
    "segment": dict(steps=1500, crop=65, width=0.25, lr=1e-3, eval_every=50, checkpoint_every=50, patience=3,
                    min_delta=0.01),
}
# What config.json's "defaults" records: which of the two sets of defaults applied to the flags not given.
DEFAULTS_DEMO, DEFAULTS_REFERENCE = "synthetic demo", "reference recipe"
# Where runs go when --out is not given, relative to the current directory.
DEFAULT_RUNS = Path("runs")

# Flags that fix what a run computes: a resumed run must not change them.
RESUME_FIXED = ("data", "holdout", "video_every", "crop", "batch", "seed", "split_seed", "backbone", "width",
                "output_stride", "regular_conv", "init", "frac", "loss", "freeze_encoder", "val_images", "gan_loss", "lr_schedule",
                "l1_weight", "predict", "lr", "beta1", "beta2", "colour_loss", "gan_weight", "surrogate_checkpoint",
                "labels", "source_run")


def add_flags(parser, *names, **defaults):
    """Adds the named shared flags to `parser`; keyword arguments override their defaults (a required flag given
    a default, like --out, becomes optional)."""
    for name in names:
        spec = dict(FLAGS[name])
        if name in defaults:
            spec["default"] = defaults[name]
            spec.pop("required", None)
        parser.add_argument("--" + name.replace("_", "-"), **spec)
    return parser


def architecture_from_flags(args):
    """The `Architecture` that `--backbone`, `--width`, `--output-stride` and `--regular-conv` describe."""
    return Architecture(backbone=args.backbone, width=args.width, output_stride=args.output_stride,
                        separable=not args.regular_conv)


def run_config(args):
    """The flags as config.json records them (paths as strings)."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["data"] = [str(p) for p in args.data] if getattr(args, "data", None) else None
    return config


def _comparable(key, value):
    """`--data` and `--source-run` name the same files whether given relative or absolute."""
    if key == "data" and value:
        return [str(Path(p).resolve()) for p in value]
    if key == "source_run" and value:
        return str(Path(value).resolve())
    return value


def check_resume(args, out):
    """Refuses to resume, or to call finished, a run in `out` whose computation-defining flags changed; returns
    the flags as config.json will record them (for `save_config`)."""
    out = Path(out)
    path, config = out / CONFIG_FILE, run_config(args)
    if is_started(out):
        previous = read_json(path)  # damaged JSON raises FileError naming the file
        # a poly schedule is a function of --steps: another --steps would bend the decay mid-run
        fixed = RESUME_FIXED + (("steps",) if config.get("lr_schedule") == "poly" else ())
        for key in fixed:
            if key in previous and key in config and _comparable(key, previous[key]) != _comparable(key, config[key]):
                raise FlagError(f"--{key.replace('_', '-')} {config[key]} differs from the run being resumed "
                                 f"in {out} ({previous[key]}); use a new --out")
    return config


def save_config(config, out, **extra):
    """Writes `<out>/config.json`: `config` (from `check_resume` or `run_config`), `extra`, the command line, the
    commit and the CPU it ran on."""
    out = Path(out)
    path, config = out / CONFIG_FILE, {**config, **extra}
    config["command"] = shlex.join(["python"] + sys.argv)
    config["saved_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    config["code"], config["machine"] = code_version(), machine_summary()
    if is_chief():
        write_json(path, config)
    return config


def check_writable(out):
    """Fails early, naming the flag, when the run directory cannot be created or written.

    The probe is a nameless temporary file: the workers of a multi-worker run check the same directory at the same
    time, and with one fixed probe name one worker's unlink removed the other's probe ("not writable (No such file
    or directory)" on a writable directory)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise FlagError(f"--out {out}: not writable ({error.strerror or error})") from None


# What `run` reports in one line: the toolkit's own refusals (their messages name the file, folder or value), a
# NaN loss, and OSError, which is about the files and disks the run was pointed at (missing, unreadable,
# damaged, full) and whose message names them. Anything else, ValueError and TypeError included, is a bug
# and keeps its traceback.
ONE_LINE_ERRORS = (ToolkitError, TransferError, NonFiniteLoss, OSError)


def error_line(error, args=None):
    """`error`'s message as the command line shows it: a toolkit error about a library parameter (`param`) names
    the flag that set it instead ("imagenet_weights" → "--imagenet-weights"), where the script has that flag
    (`args`, when given, has the attribute); any other error reads as `str` gives it."""
    param = getattr(error, "param", None)
    if param and (args is None or hasattr(args, param)):
        return error.named("--" + param.replace("_", "-"))
    return str(error)


def run(main, args):
    """Runs `main(args)`; expected failures (`ONE_LINE_ERRORS`) become one line on stderr and exit status 1."""
    try:
        return main(args) or 0
    except tf.errors.OpError as error:  # a bad file met mid-stream, wrapped by tf.data
        cause = unwrap_dataset_error(error)
        if cause is None:
            raise
        print(f"error: {cause} (pass --skip-bad to skip such files)", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(f"\n{stop}", file=sys.stderr)
        return 130
    except ONE_LINE_ERRORS as error:
        if os.environ.get("SURROGATE_TRACEBACK"):  # for debugging: the full stack
            traceback.print_exc()
        print(f"error: {error_line(error, args)}", file=sys.stderr)
        return 1


def _shown(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


class Parser(argparse.ArgumentParser):
    """An argument parser whose flags may take a default that depends on other flags, decided after parsing.

    Such a flag's argparse default is suppressed, so that a value in the namespace is one the user typed; a flag
    still missing after parsing gets its default then. `size_for_data` makes --data the deciding flag: with it
    a flag keeps its own default (the reference recipe), without it takes the value sized for the built-in
    synthetic set; `args.defaults` then says which applied (recorded in config.json)."""

    def __init__(self, description):
        super().__init__(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        self._by_data = {}  # dest -> (default with --data, default without)
        self._later = []  # dests whose default the script decides after parsing (None until then)
        self.defaulted = set()  # after parsing: the flags that took a default decided here

    def _action(self, dest):
        return next(action for action in self._actions if action.dest == dest)

    def size_for_data(self, demo):
        """Each flag named in `demo` keeps its default with --data, and takes `demo`'s value without it."""
        for dest, value in demo.items():
            action = self._action(dest)
            reference = action.default
            self._by_data[dest] = (reference, value)
            action.default = argparse.SUPPRESS
            action.help += (f" (default: {_shown(reference)}; without --data: {_shown(value)})" if reference is not None
                            else f" (without --data: {_shown(value)})")

    def default_later(self, dest, shown):
        """`dest` is None unless given; the script then sets it from other flags, as `shown` describes in --help."""
        action = self._action(dest)
        action.default = argparse.SUPPRESS
        action.help += f" (default: {shown})"
        self._later.append(dest)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        self.defaulted = set()
        for dest in self._later:
            if not hasattr(namespace, dest):
                setattr(namespace, dest, None)
                self.defaulted.add(dest)
        if self._by_data:
            with_data = bool(getattr(namespace, "data", None))
            for dest, (reference, demo) in self._by_data.items():
                if not hasattr(namespace, dest):
                    setattr(namespace, dest, reference if with_data else demo)
                    self.defaulted.add(dest)
            namespace.defaults = DEFAULTS_REFERENCE if with_data else DEFAULTS_DEMO
        return namespace, extras


def parser(description):
    return Parser(description)


def defaults_notice(args, parser, script):
    """The line a script prints first about the defaults chosen for the user: the synthetic set's sizes without
    --data, and a run directory (or pretraining run) nobody named. None when there is nothing to say."""
    parts = []
    if not args.data:
        sized = [f"--{dest.replace('_', '-')} {_shown(getattr(args, dest))}" for dest in DEMO_DEFAULTS[script]
                 if dest in parser.defaulted and getattr(args, dest) is not None]
        parts.append("no --data: the built-in synthetic set" +
                     (f", with settings sized for it ({' '.join(sized)}; with --data the reference recipe)" if sized
                      else ""))
    if "out" in parser.defaulted:
        parts.append(f"run directory {args.out} (no --out given)")
    if "surrogate" in parser.defaulted and getattr(args, "surrogate", None) is not None:
        parts.append(f"pretraining run {args.surrogate} (no --surrogate given)")
    return "; ".join(parts) or None
