"""The label-efficiency grid: how much does surrogate supervision buy when labels are scarce?

    python experiments/label_efficiency.py --data ROOT [--unlabeled DIR ...] --out EXP [--preset cpu]

Pretrains each pretext arm --pretrain-seeds times (colorization from scratch for `surrogate`, from ImageNet
for `imagenet+surrogate`, and the no-colour target for `control`), fine-tunes every cell of inits × label
fractions × seeds, each in its own run directory under EXP, and writes EXP/results.csv, EXP/statistics.csv
(paired bootstrap intervals), the Dice-vs-fraction plots and EXP/report.md. Re-running skips finished cells and
resumes unfinished ones. With no --data it runs the `demo` preset on the built-in synthetic set.

A cell stops at --finetune-steps, or earlier once validation has not improved for --patience evaluations, but never
before --min-steps. The `cpu` preset sets --min-steps to the cap, so patience never acts there: every cell runs its
poly schedule out and is scored at its best validation checkpoint, converged or not (report.md counts the cells
whose best step came late in the schedule). The `demo` preset's cells stop on their own.
"""

import argparse
import ctypes
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from surrogate_supervision.models import INITS
from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.runner.cli import add_flags
from surrogate_supervision.models.runner.provenance import code_version, machine_summary
from surrogate_supervision.models.runner.runs import BEST_WEIGHTS

from tqdm import tqdm

from surrogate_supervision.experiments.report import write_plots_and_report
from surrogate_supervision.experiments.results import Cell, collect_results, read_runner_state, write_runner_state

REPO = Path(__file__).resolve().parent.parent
# Every value is a flag of this script; an explicit flag beats the preset. `finetune_steps` is a cap: a cell
# stops once validation mean Dice has not improved for `patience` evaluations (every `eval_every` steps), but never
# before `min_steps`; where `min_steps` equals the cap (`cpu`), patience never acts.
# The pretext (colorize.py's colour loss, output, L1 weight λ and GAN weight μ): the paper's recipe, or at CPU
# scale colour classification without the GAN term, the only pretext whose frozen body beat a random one on the
# downstream probe (experiments/results/pretext.md).
REFERENCE_PRETEXT = dict(colour_loss="l1", predict="rgb", l1_weight=1.0, gan_weight=1.0)
CPU_PRETEXT = dict(colour_loss="classify", predict="chroma", l1_weight=1.0, gan_weight=0.0)
PRESETS = {
    "paper": dict(crop=513, width=1.0, batch=4, pretrain_steps=76_000, finetune_steps=300_000, lr=1e-4,
                  pretrain_lr=2e-4, eval_every=5000, checkpoint_every=5000, sample_every=5000, patience=10,
                  min_delta=0.0, min_steps=0, seeds=[1, 2, 3], pretrain_seeds=3, loss="ce", lr_schedule="constant",
                  **REFERENCE_PRETEXT),
    # Sized for the label-efficiency study (experiments/results/ccp_human_parsing/, kvasir_seg/): two ~1,000-image
    # datasets, 3 arms x 4 fractions x 5 seeds each, the two grids side by side, one per core (these small networks gain
    # ~30 % throughput from two 1-thread processes over one 2-thread one). Planned at about 8 hours per dataset, it
    # takes far longer: with CE + Dice and poly most cells train 5,000-8,000 steps at ~10 steps/s plus an 8-second
    # validation every 250 steps (a quarter of the time), ~20 minutes a cell, so ~24 hours per core for a dataset's 60
    # cells and 10 pretraining runs (2-core AMD EPYC, AVX-512, 2026-11-25, at 0e515d2). Crop 129 is the crop the
    # pretexts were compared at (pretext.md). Measured at crop 129 on all labels, Adam 1e-3, from scratch: CCP's
    # validation Dice climbed 0.21 -> 0.60 over 4,500 steps by noisy steps of +-0.05, and Kvasir-SEG's jumped at 1,250
    # steps and then wandered; hence patience 6 (1,500 steps) with min-delta 0.005 so a single noisy evaluation neither
    # stops nor prolongs a cell, and a cap of 8,000. min_steps 4,000: Kvasir-SEG cells first sit for ~3,000 steps on the
    # all-background plateau (validation 0.46-0.52) before they find polyps (0.58); at 5183ef2, without it, a 25 % cell
    # stopped there at 2,000 steps with its best checkpoint at 500 (test 0.520, below the 10 % cell's 0.582). Loss CE +
    # Dice: with CE alone the Kvasir-SEG 25 % cell never left that plateau in 4,000 steps and 2 of CCP's first 3 cells
    # hit the cap still climbing; CE + Dice left it by step 1,000 and reached CCP's 0.60 at 3,750 steps instead of 6,750
    # (kvasir_seg/loss_pilot.md). Poly learning-rate decay (DeepLab's) to 0 at the cap: at a constant 1e-3 CCP's 25 %
    # cell was still climbing at the cap (validation 0.647 -> 0.678 over its last 500 steps) and Kvasir-SEG's wandered
    # (its 100 % cell peaked at step 2,250, test 0.654, below the 10 % cell's 0.715); with poly the CCP cell reached the
    # same test Dice (0.699 vs 0.697) and flattened, stopping by patience at 7,750. Half the schedule (4,000 steps,
    # poly) cost 0.04-0.06 test Dice, still climbing at its end (loss_pilot.md). One pretraining run per fine-tuning
    # seed (pretrain_seeds = 5): a seed's pretraining and its 4 cells (~25 + 4 x 30 minutes) fit in one working session
    # on one core, so a machine lost between sessions (results are committed, weights are not) seldom leaves finished
    # cells whose pretraining must be redone for the rest (report.md names the weights each cell used), and the interval
    # over seeds is also one over pretraining runs. min_steps = finetune_steps (since 2026-11-26, second session): every
    # cell runs the poly schedule out and is scored at its best validation checkpoint, so patience and min_delta no
    # longer act at this preset (they do where --min-steps is lowered) and no cell is known to have converged (report.md
    # counts the cells whose best step came in the schedule's last 10 %). Patience had stopped cells on a
    # plateau at a still-high learning rate, before the decay that brings the late gains: at e004420, seed 1, 6 of 17
    # cells stopped at steps 5,250-6,500, and they were the low ones (Kvasir-SEG: all 4 surrogate cells, 0.655-0.712,
    # and the scratch 100 % cell, 0.696, below scratch's 10-50 % cells, 0.726-0.737, which all ran out), so the stopping
    # rule, not the initialisation, decided part of the comparison. 16,000 steps (since 2026-12-02, at b82724b on an
    # Intel Xeon with AMX): seed 1's scratch cells with the schedule doubled, nothing else changed, gained at both ends
    # of the label range, CCP 10 % 0.691 -> 0.742 and 100 % 0.707 -> 0.747, Kvasir-SEG 10 % 0.737 -> 0.744 and 100 %
    # 0.727 -> 0.744 (the 100 % runs in `<dataset>/schedule_8000/longer_schedule/`; the 10 % runs' directories were lost
    # with that machine before they were copied, and each grid's scratch 10 % seed-1 cell measures them again), so 8,000
    # steps under-trained every fraction, not only the ones with the fewest passes over their images, and a budget in
    # epochs would not fix it: a fixed 16,000. Evaluation and checkpoints every 500 steps (32 a cell) instead of 250: a
    # validation pass is ~4 s, 6 % of a cell's time at 250, and the poly schedule's best checkpoint falls in its last
    # steps (21 of seed 1's 24 cells at 8,000 peaked at step 7,000 or later). ~30 minutes a cell on one core.
    "cpu": dict(crop=129, width=0.25, batch=4, pretrain_steps=5000, finetune_steps=16_000, lr=1e-3, pretrain_lr=2e-4,
                eval_every=500, checkpoint_every=500, sample_every=1000, patience=6, min_delta=0.005, min_steps=16_000,
                seeds=[1, 2, 3, 4, 5], pretrain_seeds=5, loss="ce+dice", lr_schedule="poly", **CPU_PRETEXT),
    # The cpu grid scaled to the 128-px synthetic set: the README's main command (two 400-step pretraining runs,
    # 12 cells). The synthetic scenes reward training for thousands of steps by ever smaller gains, so a cell
    # stops once 150 steps have added less than 0.01 validation Dice: scratch cells measured stopping at
    # 850-1,050 steps (experiments/results/demo.md), well inside the 1,500-step cap.
    "demo": dict(crop=65, width=0.25, batch=4, pretrain_steps=400, finetune_steps=1500, lr=1e-3,
                 pretrain_lr=2e-4, eval_every=50, checkpoint_every=50, sample_every=200, patience=3, min_delta=0.01,
                 min_steps=0, seeds=[1], pretrain_seeds=1, loss="ce", lr_schedule="constant",
                 **CPU_PRETEXT),
    "smoke": dict(crop=65, width=0.125, batch=2, pretrain_steps=4, finetune_steps=4, lr=1e-4, pretrain_lr=2e-4,
                  eval_every=2, checkpoint_every=2, sample_every=2, patience=1, min_delta=0.0, min_steps=0, seeds=[1],
                  pretrain_seeds=1, loss="ce", lr_schedule="constant", **REFERENCE_PRETEXT),
}
IMAGENET_INITS = ("imagenet", "imagenet+surrogate")
# The positive control: fine-tuned from the grid's own scratch cell trained on all labels with the same seed
# (segment.py --init segmentation), the most any initialisation could buy at each label count. Were it to lose to
# scratch everywhere, a null result for the pretexts would say nothing about them. `segmentation` itself needs a run
# to start from, which only this arm names.
POSITIVE = "positive"
ARMS = tuple(init for init in INITS if init != "segmentation") + (POSITIVE,)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="labeled dataset root (default: built-in synthetic set)")
    p.add_argument("--unlabeled", type=Path, nargs="+", default=[], help="extra folders/videos for pretraining")
    add_flags(p, "out")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="cpu with --data, demo without")
    p.add_argument("--inits", nargs="+", default=["scratch", "imagenet", "surrogate", "control"], choices=ARMS)
    amounts = p.add_mutually_exclusive_group()
    amounts.add_argument("--fracs", nargs="+", type=float, default=None,
                         help="label fractions, the grid's axis (default: 0.1 0.25 0.5 1.0)")
    amounts.add_argument("--labels", nargs="+", type=int, default=None,
                         help="label counts instead of fractions (segment.py --labels N: nested, the same images for "
                              "every init), for the regime where a few labeled images are all there is")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="fine-tuning seeds (overrides the preset)")
    add_flags(p, "group", "imagenet_weights", "backbone")
    add_flags(p, "loss", "lr_schedule", loss=None, lr_schedule=None)  # None: the preset's
    for name in PRESETS["cpu"]:
        if name in ("seeds", "loss", "lr_schedule"):
            continue  # added above
        kind = float if name in ("width", "lr", "pretrain_lr", "l1_weight", "gan_weight", "min_delta") else int
        kind = str if name in ("colour_loss", "predict") else kind
        help = {"patience": "stop a cell after this many evaluations without a better validation Dice",
                "min_delta": "a validation gain counts as progress only above this",
                "min_steps": "never stop a cell before this step (a plateau before learning is not convergence)",
                "pretrain_seeds": "pretraining runs per pretext arm; fine-tuning seed i starts from run i mod P"}
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                       help=help.get(name, "") + " (overrides the preset)")
    add_flags(p, "mixed_precision", "xla", "skip_bad", "deterministic")  # passed to every run
    args = p.parse_args(argv)
    preset = PRESETS[args.preset or ("cpu" if args.data else "demo")]
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.pretrain_seeds < 1:
        p.error(f"--pretrain-seeds must be at least 1, got {args.pretrain_seeds}")
    if args.patience < 1:
        p.error(f"--patience must be at least 1, got {args.patience}")
    if args.labels is None and args.fracs is None:
        args.fracs = [0.1, 0.25, 0.5, 1.0]
    if args.labels is not None and min(args.labels) < 1:
        p.error(f"--labels must be at least 1, got {min(args.labels)}")
    return args


def shared_flags(args):
    flags = ["--crop", args.crop, "--width", args.width, "--batch", args.batch, "--backbone", args.backbone,
             "--checkpoint-every", args.checkpoint_every]
    flags += [f"--{f}" for f in ("mixed-precision", "xla", "skip-bad", "deterministic")
              if getattr(args, f.replace("-", "_"))]
    return flags


def pretrain_command(args, pretraining):
    """colorize.py for one pretraining run. The control arm predicts its gray input (--predict gray) with the colour
    arm's data, steps, optimizer, seed, GAN weight and colour loss: with --colour-loss l1 it reconstructs the gray
    image, with classify it classifies luma into as many bins as the colour arm's chroma bins, with the same
    rebalancing and head, so that surrogate − control measures the colour target and not the loss."""
    data = ([args.data] if args.data else []) + list(args.unlabeled)
    command = ["pretrain/colorize.py", "--out", pretraining.run_dir(args.out), "--init", pretraining.start,
               "--steps", args.pretrain_steps, "--lr", args.pretrain_lr, "--sample-every", args.sample_every,
               "--seed", pretraining.index, "--gan-weight", args.gan_weight]
    control = pretraining.arm == "control"
    command += ["--colour-loss", args.colour_loss]
    if args.colour_loss == "l1":
        command += ["--predict", "gray" if control else args.predict, "--l1-weight", args.l1_weight]
    elif control:
        command += ["--predict", "gray"]  # classify: luma bins (classify_gray), the colour arm's chroma bins' match
    command += (["--data", *data] if data else []) + shared_flags(args)
    if pretraining.start == "imagenet" and args.imagenet_weights:
        command += ["--imagenet-weights", args.imagenet_weights]
    return command


def finetune_command(args, cell):
    init = "segmentation" if cell.init == POSITIVE else cell.init
    amount = ["--frac", cell.frac] if cell.labels is None else ["--labels", cell.labels]
    command = ["finetune/segment.py", "--out", cell.run_dir(args.out), "--init", init, *amount, "--seed", cell.seed,
               "--steps", args.finetune_steps, "--lr", args.lr, "--eval-every", args.eval_every,
               "--patience", args.patience, "--min-delta", args.min_delta, "--min-steps", args.min_steps,
               "--loss", args.loss, "--lr-schedule", args.lr_schedule]
    command += (["--data", args.data] if args.data else []) + shared_flags(args)
    command += ["--group", args.group] if args.group else []
    if cell.init in IMAGENET_INITS and args.imagenet_weights:
        command += ["--imagenet-weights", args.imagenet_weights]
    pretraining = cell.pretraining(args.pretrain_seeds)
    if pretraining:
        command += ["--surrogate", pretraining.run_dir(args.out)]
    if cell.init == POSITIVE:
        command += ["--source-run", positive_source(cell).run_dir(args.out)]
    return command


def positive_source(cell):
    """The cell a positive-control cell starts from: scratch on all labels, the same seed (the same data order)."""
    return Cell("scratch", 1.0, cell.seed)


def skip_reason(args, cell):
    """Why a cell cannot run by construction (then it is `skipped`, not `failed`), or None."""
    if cell.init in IMAGENET_INITS and args.width != 1 and not args.imagenet_weights:
        return (f"ImageNet weights exist for --width 1 only (this grid: --width {args.width:g}); "
                "run with --width 1, or pass --imagenet-weights FILE")
    if cell.init == POSITIVE:
        source = positive_source(cell)
        everything = read_json(source.run_dir(args.out) / "metrics.json", {}).get("n_train_images")
        if cell.labels is None and cell.frac == 1.0 or cell.labels is not None and everything and \
                cell.labels >= everything:
            return (f"the positive control at all labels would fine-tune {source.name} again on the images it was "
                    "trained on: nothing to measure")
    return None


def run_step(name, command, state, log, outputs=()):
    """Runs one script to completion (it resumes itself); records wall time and outcome under `name`.

    A step marked done is run again when one of its `outputs` is gone (e.g. a fresh checkout that kept
    results.csv but not the pretrained weights); the script then resumes or finishes at once.
    """
    if finished(state, name, outputs):
        return True
    entry = state.setdefault(name, {"wall_seconds": 0.0, "attempts": 0})
    argv = [sys.executable, str(REPO / command[0])] + [str(c) for c in command[1:]]
    entry["command"] = shlex.join(["python"] + [str(c) for c in command])
    tick = time.time()
    returncode, tail = run_and_tee(argv)
    entry["wall_seconds"] += time.time() - tick
    entry["attempts"] += 1
    lines = [line for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    log.write(f"$ {entry['command']}\n" + "\n".join(lines[-50:]) + "\n")
    if returncode == 0:
        entry.update(status="done", error="")
    else:
        entry.update(status="failed", error=(lines[-1] if lines else f"exit status {returncode}")[:500])
        tqdm.write(f"{name}: failed: {entry['error']}")
    return returncode == 0


def finished(state, name, outputs=()):
    """Whether the step `name` ran to the end and every one of its `outputs` is still there."""
    return state.get(name, {}).get("status") == "done" and all(Path(p).exists() for p in outputs)


def cell_outputs(args, cell, sources=()):
    """What a finished cell leaves; a cell in `sources` (the positive cells still to run start from it) also needs
    its weights, so on a machine without them it is run again."""
    return [cell.run_dir(args.out) / "metrics.json"] + ([cell.run_dir(args.out) / BEST_WEIGHTS] if cell in sources
                                                         else [])


def _die_with_parent():
    """Children get SIGKILL when the runner dies, so a killed grid never leaves a run writing behind it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_and_tee(argv):
    """Runs a script showing its progress live; returns (exit status, the tail of its stderr)."""
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    tail = b""
    for chunk in iter(lambda: process.stderr.read1(4096), b""):
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        tail = (tail + chunk)[-20_000:]
    return process.wait(), tail.decode(errors="replace")


def plan(args):
    """Every cell, seed by seed, over --fracs or --labels. With the positive arm each seed's block starts with the
    scratch cell on all labels, added when the axis lacks it (a count grid): that seed's positive cells start from
    its weights."""
    cells = []
    for seed in args.seeds:
        if args.labels is None:
            block = [Cell(init, frac, seed) for init in args.inits for frac in sorted(args.fracs)]
        else:
            block = [Cell(init, None, seed, count) for init in args.inits for count in sorted(set(args.labels))]
        if POSITIVE in args.inits:
            source = Cell("scratch", 1.0, seed)
            block = [source] + [cell for cell in block if cell != source]
        cells += block
    return cells


def pretraining_runs(args, cells):
    """The pretraining runs the runnable cells start from, each once."""
    runs = {cell.pretraining(args.pretrain_seeds) for cell in cells if skip_reason(args, cell) is None}
    return sorted(runs - {None}, key=lambda r: (r.arm, r.index))


def main(args):
    args.out.mkdir(parents=True, exist_ok=True)
    state = read_runner_state(args.out)
    state["__args__"] = {k: str(v) for k, v in vars(args).items()}
    state["__command__"] = shlex.join(["python", "experiments/label_efficiency.py"] + sys.argv[1:])
    codes, code = state.setdefault("__codes__", []), code_version()  # every code version that ran part of it
    if code not in codes:
        codes.append(code)
    state["__machine__"] = machine_summary()
    cells = plan(args)
    # Only cells still to run need their pretraining: a grid restored from its committed results on a new
    # machine (no weights) pretrains again just the runs that unfinished cells start from.
    pending = [cell for cell in cells if not finished(state, cell.name, cell_outputs(args, cell))]
    sources = {positive_source(cell) for cell in pending if cell.init == POSITIVE and skip_reason(args, cell) is None}
    with open(args.out / "runner.log", "a") as log:
        for pretraining in pretraining_runs(args, pending):
            tqdm.write(f"pretraining ({pretraining.name}) → {pretraining.run_dir(args.out)}")
            run_step(f"pretrain/{pretraining.name}", pretrain_command(args, pretraining), state, log,
                     outputs=[pretraining.run_dir(args.out) / "generator.weights.h5"])
            write_runner_state(args.out, state)
        for cell in tqdm(cells, desc="grid", unit="cell"):
            needs = cell.pretraining(args.pretrain_seeds)
            reason = skip_reason(args, cell)
            if reason:
                state[cell.name] = {"status": "skipped", "wall_seconds": 0.0, "attempts": 0, "error": reason}
            elif needs and state.get(f"pretrain/{needs.name}", {}).get("status") != "done":
                error = state.get(f"pretrain/{needs.name}", {}).get("error")
                state[cell.name] = {"status": "failed", "wall_seconds": 0.0, "attempts": 0,
                                    "error": f"pretraining {needs.name} failed: {error}"}
            elif cell.init == POSITIVE and not finished(state, (source := positive_source(cell)).name,
                                                        cell_outputs(args, source, {source})):
                error = state.get(source.name, {}).get("error") or "not run"
                state[cell.name] = {"status": "failed", "wall_seconds": 0.0, "attempts": 0,
                                    "error": f"its source cell {source.name} did not finish: {error}"}
            else:
                run_step(cell.name, finetune_command(args, cell), state, log,
                         outputs=cell_outputs(args, cell, sources))
            write_runner_state(args.out, state)
            collect_results(args.out, cells, state)
    write_plots_and_report(args.out)
    status = [state.get(c.name, {}).get("status") for c in cells]
    print(f"{status.count('done')}/{len(cells)} cells finished, {status.count('skipped')} skipped, "
          f"{status.count('failed')} failed; results in {args.out / 'results.csv'}, report {args.out / 'report.md'}")
    # A grid with failed steps must not pass for a finished one in a script or CI: exit 1, naming them (cells
    # skipped by construction are not failures; each failed step's error is in runner_state.json and runner.log).
    failed = [f"pretrain/{run.name}" for run in pretraining_runs(args, pending)
              if state.get(f"pretrain/{run.name}", {}).get("status") == "failed"]
    failed += [cell.name for cell, cell_status in zip(cells, status) if cell_status == "failed"]
    if failed:
        print(f"error: {len(failed)} step(s) failed: {', '.join(failed)} (see {args.out / 'runner.log'})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
