"""Colorization pretraining, the surrogate task: a conditional GAN learns to colorize grayscale images.

    python pretrain/colorize.py
    python pretrain/colorize.py --data DIR [DIR ...] --out runs/colorize

Its generator is a DeepLabV3+ ResNet50; `finetune/segment.py --init surrogate --surrogate RUN` starts
segmentation from it. With no --data the built-in synthetic set is used, with settings sized for it
(`models.runner.cli.DEMO_DEFAULTS`: minutes on a laptop); with --data the defaults are the reference recipe. The run
directory defaults to runs/colorize, where segment.py looks for it. Re-running resumes.
"""

import functools
import sys
import time
from pathlib import Path

from surrogate_supervision.models import ColorizationGAN, build_discriminator, build_generator, transfer_weights
from surrogate_supervision.models.colour_classify import (
    BIN_SPACES,
    COLOUR_LOSSES,
    ClassifyColorizationGAN,
    colour_bins_from_images,
    load_colour_bins,
    save_colour_bins,
    set_used_bins,
    start_at_blind_guess,
)
from surrogate_supervision.models.deeplab import GENERATOR_OUTPUTS
from surrogate_supervision.models.gan import GAN_LOSSES
from surrogate_supervision.models.io import write_json
from surrogate_supervision.models.optimizers import make_adam
from surrogate_supervision.models.resnet import scaled
from surrogate_supervision.models.rundir import (
    BINS_FILE,
    GENERATOR_FILE,
    PRETRAIN_METRICS_FILE,
    SAMPLES_DIR,
    is_finished,
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
from surrogate_supervision.models.runner.runsetup import RunSetup
from surrogate_supervision.models.runner.training import train_loop
from surrogate_supervision.models.runner.visualize import tile, to_uint8, write_png
from surrogate_supervision.models.transfer import GRAY_OUTPUTS

import tensorflow as tf

from surrogate_supervision import datasets
from surrogate_supervision.pretrain.holdout import colorization_scores, describe, holdout_batch, split_holdout
from surrogate_supervision.pretrain.probe import Probe

PRIOR_IMAGES = 512  # training crops whose chroma (or luma) estimates the bins' prior for --colour-loss classify


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    add_flags(p, "data", "out", "steps", "batch", "crop", "lr", "beta1", "beta2", "seed", "split_seed", "backbone",
              "width", "output_stride", "regular_conv", "init", "imagenet_weights", "mixed_precision", "xla",
              "distribute", "checkpoint_every", "sample_every", "skip_bad", "deterministic", steps=76_000, lr=2e-4,
              out=None)
    p.add_argument("--l1-weight", type=float, default=1.0, help="weight λ of the L1 reconstruction term")
    p.add_argument("--gan-loss", choices=GAN_LOSSES, default="lsgan", help="least-squares or vanilla GAN loss")
    p.add_argument("--gan-weight", type=float, default=1.0,
                   help="weight μ of the generator's adversarial term (0: colour loss alone, no GAN)")
    p.add_argument("--colour-loss", choices=COLOUR_LOSSES, default="l1",
                   help="l1: regress the colours (the reference); classify: cross-entropy over quantised chroma "
                        "bins with rare colours up-weighted, decoded by the annealed mean (Zhang et al. 2016); with "
                        "--predict gray the same over as many luma bins, the control matched to it")
    p.add_argument("--predict", choices=[o for o in GENERATOR_OUTPUTS if not o.startswith("classify")], default=None,
                   help="rgb: the generator paints all three channels (the reference); chroma: it predicts Cb/Cr "
                        "and keeps the input's luma, as Lab-space colorization does; gray: the no-colour control, "
                        "the rgb network trained to give back its gray input (same data, steps, GAN and L1 terms), "
                        "with --colour-loss classify as luma bins (same loss, rebalancing and head as the colour "
                        "bins) (default: rgb; chroma bins with --colour-loss classify)")
    p.add_argument("--probe-data", type=Path, default=None,
                   help="labeled root: every --probe-every steps, score a linear segmentation probe on the frozen "
                        "body (probe.csv, generator_best_probe.weights.h5)")
    p.add_argument("--probe-every", type=int, default=1000, help="probe interval in steps (with --probe-data)")
    p.add_argument("--video-every", type=int, default=30, help="use every Nth frame of video files")
    p.add_argument("--holdout", type=int, default=32, help="images kept out of training to measure colorization")
    p.default_later("out", DEFAULT_RUNS / "colorize")
    p.size_for_data(DEMO_DEFAULTS["colorize"])
    args = p.parse_args(argv)
    args.out = args.out or DEFAULT_RUNS / "colorize"
    if "colour_loss" in p.defaulted and (args.predict == "rgb" or args.l1_weight != 1.0):
        args.colour_loss = "l1"  # the synthetic set's default pretext yields to flags that only L1 takes
    if args.init not in ("scratch", "imagenet"):
        p.error(f"--init {args.init}: pretraining starts from scratch or imagenet")
    if args.colour_loss == "classify":
        if args.predict == "rgb":
            p.error("--predict rgb: --colour-loss classify predicts chroma bins and keeps the input's luma (or, "
                    "with --predict gray, luma bins)")
        if args.l1_weight != 1.0:
            p.error(f"--l1-weight {args.l1_weight}: weights the L1 of --colour-loss l1; classify trains the "
                    f"rebalanced cross-entropy")
    if args.colour_loss == "classify":
        args.predict = "classify_gray" if args.predict == "gray" else "classify"
    else:
        args.predict = args.predict or "rgb"
    if args.gan_weight < 0:
        p.error(f"--gan-weight must be >= 0, got {args.gan_weight}")
    if args.probe_every < 1:
        p.error(f"--probe-every must be >= 1, got {args.probe_every}")
    notice = defaults_notice(args, p, "colorize")
    if notice:
        print(notice, file=sys.stderr)
    return args


def write_samples(generator, batch, path, writer, step, limit=8):
    """gray | colorized | real, one row per held-out image."""
    fake = generator(batch["gray"][:limit], training=False).numpy()
    rows = [[to_uint8(g), to_uint8(f), to_uint8(r)]
            for g, f, r in zip(batch["gray_small"][:limit].numpy(), fake, batch["rgb_small"][:limit].numpy())]
    grid = tile(rows)
    write_png(path, grid)
    with writer.as_default(step=step):
        tf.summary.image("samples/gray_colorized_real", grid[None], step=step)


class SampleHook:
    """Every --sample-every steps: the held-out batch gray | colorized | real, as a PNG in `directory` and in
    TensorBoard."""

    def __init__(self, generator, batch, directory, writer):
        self.generator, self.batch, self.directory, self.writer = generator, batch, directory, writer

    def __call__(self, step, logs):
        write_samples(self.generator, self.batch, self.directory / f"step_{step:07d}.png", self.writer, step)


class ProbeHook:
    """Every --probe-every steps: the linear segmentation probe scores the generator's frozen body."""

    def __init__(self, probe, generator):
        self.probe, self.generator = probe, generator

    def __call__(self, step, logs):
        self.probe(self.generator, step)  # it only watches: a hook that returns a true value stops training


def main(args):
    setup = RunSetup(args, finished=functools.partial(is_finished, steps=args.steps))
    if setup.finished:
        print(f"{setup.out}: already finished ({args.steps} steps); {setup.out / GENERATOR_FILE} is ready")
        return 0
    setup.start()
    sources = datasets.list_unlabeled(args.data or [datasets.ensure_synthetic()], video_every=args.video_every,
                                      seed=args.split_seed)
    train, held = split_holdout(sources, args.holdout, args.seed)
    setup.save_config(n_train_images=len(train), n_holdout_images=len(held))
    print(f"colorization: {len(train)} training images, {len(held)} held out, {setup.precision}, "
          f"{setup.replicas} replica(s)", file=sys.stderr)
    bins = colour_bins(train, setup.out / BINS_FILE, BIN_SPACES[args.predict], crop=args.crop, batch=args.batch,
                       seed=args.seed) if args.colour_loss == "classify" else None
    with setup.scope():
        gan = build_gan(args, bins)
    generator = gan.generator
    checkpoints = setup.checkpoints(generator=generator, discriminator=gan.discriminator,
                                    g_optimizer=gan.g_optimizer, d_optimizer=gan.d_optimizer)
    if setup.fresh:
        initialise(generator, args.init, imagenet_weights=args.imagenet_weights, prior=bins and bins["prior"])
    fixed = holdout_batch(held, args.crop, args.seed) if setup.chief else None
    hooks = [] if fixed is None else [(args.sample_every, SampleHook(generator, fixed, setup.out / SAMPLES_DIR,
                                                                     setup.writer))]
    tick = time.perf_counter()
    probe = Probe(args.probe_data, setup.out, crop=args.crop, split_seed=args.split_seed, writer=setup.writer) \
        if setup.chief and args.probe_data else None
    if probe is not None:
        hooks.append((args.probe_every, ProbeHook(probe, generator)))
        if setup.fresh and not probe.has(0):
            probe(generator, 0)  # the body before pretraining: the baseline (random with --init scratch)
    skipped = datasets.SkipCounter() if args.skip_bad else None
    make_dataset = training_data(train, crop=args.crop, batch=args.batch, seed=args.seed, skip_bad=args.skip_bad,
                                 counter=skipped, target="gray" if args.predict in GRAY_OUTPUTS else "rgb")
    train_loop(gan.train_step, make_dataset, **setup.loop_options(), metrics=gan.metrics, hooks=hooks,
               desc="colorize")
    return setup.finish(write_outputs, generator, fixed, skipped, checkpoints, setup.out, bins=bins,
                        probe_cost=probe.cost(time.perf_counter() - tick) if probe and probe.session else None)


def build_gan(args, bins=None):
    """The generator (its head as --predict asks), the discriminator (as narrow as --width makes the generator)
    and their optimizers, compiled into the GAN that trains them; called under the strategy's scope."""
    generator = build_generator(output=args.predict, architecture=architecture_from_flags(args))
    discriminator = build_discriminator(filters=scaled(64, args.width))  # narrow with the generator
    if bins is None:
        gan = ColorizationGAN(generator, discriminator)
    else:
        set_used_bins(generator, bins["used"])
        gan = ClassifyColorizationGAN(generator, discriminator, bins["weights"])
    gan.compile(make_adam(args.lr, args.beta1, args.beta2), make_adam(args.lr, args.beta1, args.beta2),
                l1_weight=args.l1_weight, gan_loss=args.gan_loss, gan_weight=args.gan_weight)
    gan.g_optimizer.build(generator.trainable_variables)
    gan.d_optimizer.build(discriminator.trainable_variables)
    return gan


def initialise(generator, init, *, imagenet_weights=None, prior=None):
    """A fresh run's generator: ImageNet weights with `init` "imagenet"; chroma heads start at gray, bins at
    `prior`."""
    if init == "imagenet":
        report = transfer_weights(generator, "imagenet", imagenet_weights=imagenet_weights)
        print(report.summary(), file=sys.stderr)
    start_at_blind_guess(generator, prior)


def training_data(train, *, crop, batch, seed, skip_bad, counter, target):
    """`train_loop`'s make_dataset: start element → the training batches from it on."""
    def make_dataset(start):
        return datasets.colorization_dataset(train, crop=crop, batch=batch, seed=seed, start_index=start,
                                             skip_bad=skip_bad, counter=counter, target=target)

    return make_dataset


def colour_bins(train, path, space, *, crop, batch, seed):
    """The bins' statistics for --colour-loss classify (chroma bins, or luma bins for --predict gray) in `space`:
    estimated from the first PRIOR_IMAGES training crops, saved at `path` (and read back on resume)."""
    bins = load_colour_bins(path)
    if bins is None:
        data = datasets.colorization_dataset(train, crop=crop, batch=batch, seed=seed)
        batches = max(1, PRIOR_IMAGES // batch)
        bins = colour_bins_from_images((element["rgb_small"].numpy() for element in data.take(batches)), space)
        save_colour_bins(bins, path, space, n_images=batches * batch)
    print(f"{space.name} bins: {int(bins['used'].sum())} of {len(bins['used'])} occur in the training images; "
          f"weights {bins['weights'][bins['used']].min():.2f}–{bins['weights'].max():.2f}", file=sys.stderr)
    return bins


def write_outputs(generator, fixed, skipped, checkpoints, out, bins=None, probe_cost=None):
    """The chief's last writes: the generator's weights and its held-out colorization scores."""
    save_weights(generator, out / GENERATOR_FILE)
    summary = {"steps": int(checkpoints.step.numpy()), "skipped_files": skipped.count if skipped else 0}
    if probe_cost:
        summary["probe_cost"] = probe_cost
    if fixed is not None:
        summary.update(colorization_scores(generator, fixed, bins=bins))
        print(describe(summary), file=sys.stderr)
    if skipped:
        print(f"skipped {skipped.count} unreadable files (--skip-bad)", file=sys.stderr)
    write_json(out / PRETRAIN_METRICS_FILE, summary)
    print(f"wrote {out / GENERATOR_FILE}")


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
