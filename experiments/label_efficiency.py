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
import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from surrogate_supervision.models import INITS
from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.rundir import BEST_WEIGHTS, GENERATOR_FILE, METRICS_FILE
from surrogate_supervision.models.runner.cli import add_flags
from surrogate_supervision.models.runner.provenance import code_version, machine_summary

from tqdm import tqdm

from surrogate_supervision.experiments.presets import DESCRIPTIONS, PRESETS
from surrogate_supervision.experiments.records import Cell, collect_results, read_runner_state, write_runner_state
from surrogate_supervision.experiments.report import write_plots_and_report

REPO = Path(__file__).resolve().parent.parent
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
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="cpu with --data, demo without (experiments/presets.py). "
                        + "; ".join(f"{name}: {line}" for name, line in DESCRIPTIONS.items()))
    p.add_argument("--inits", nargs="+", default=["scratch", "imagenet", "surrogate", "control"], choices=ARMS)
    amounts = p.add_mutually_exclusive_group()
    amounts.add_argument("--fracs", nargs="+", type=float, default=None,
                         help="label fractions, the grid's axis (default: the preset's)")
    amounts.add_argument("--labels", nargs="+", type=int, default=None,
                         help="label counts instead of fractions (segment.py --labels N: nested, the same images for "
                              "every init), for the regime where a few labeled images are all there is")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="fine-tuning seeds (overrides the preset)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at once, each with its share of the CPU cores as threads (overrides the preset)")
    add_flags(p, "group", "imagenet_weights", "backbone")
    add_flags(p, "loss", "lr_schedule", loss=None, lr_schedule=None)  # None: the preset's
    for name in PRESETS["cpu"]:
        if name in ("seeds", "loss", "lr_schedule", "fracs", "jobs"):
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
        if getattr(args, name) is None and name != "fracs":
            setattr(args, name, value)
    if args.pretrain_seeds < 1:
        p.error(f"--pretrain-seeds must be at least 1, got {args.pretrain_seeds}")
    if args.patience < 1:
        p.error(f"--patience must be at least 1, got {args.patience}")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.labels is None and args.fracs is None:
        args.fracs = list(preset["fracs"])
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
        everything = read_json(source.run_dir(args.out) / METRICS_FILE, {}).get("n_train_images")
        if cell.labels is None and cell.frac == 1.0 or cell.labels is not None and everything and \
                cell.labels >= everything:
            return (f"the positive control at all labels would fine-tune {source.name} again on the images it was "
                    "trained on: nothing to measure")
    return None


def run_step(name, command, state, log, outputs=(), *, jobs=1, lock=None):
    """Runs one script to completion (it resumes itself); records wall time and outcome under `name`.

    A step marked done is run again when one of its `outputs` is gone (e.g. a fresh checkout that kept
    results.csv but not the pretrained weights); the script then resumes or finishes at once. With `jobs` > 1
    other steps run beside it: its output is kept for runner.log instead of shown, it gets its share of the cores
    as threads (`step_environment`), and `lock` guards the shared state and log.
    """
    lock = lock or contextlib.nullcontext()
    with lock:
        if finished(state, name, outputs):
            return True
        entry = state.setdefault(name, {"wall_seconds": 0.0, "attempts": 0})
        entry["command"] = shlex.join(["python"] + [str(c) for c in command])
    argv = [sys.executable, str(REPO / command[0])] + [str(c) for c in command[1:]]
    tick = time.time()
    returncode, tail = run_and_tee(argv, env=step_environment(jobs), echo=jobs == 1)
    lines = [line for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    with lock:
        entry["wall_seconds"] += time.time() - tick
        entry["attempts"] += 1
        log.write(f"$ {entry['command']}\n" + "\n".join(lines[-50:]) + "\n")
        if returncode == 0:
            entry.update(status="done", error="")
            if jobs > 1:
                tqdm.write(f"{name}: done in {time.time() - tick:.0f} s")
        else:
            entry.update(status="failed", error=(lines[-1] if lines else f"exit status {returncode}")[:500])
            tqdm.write(f"{name}: failed: {entry['error']}")
    return returncode == 0


def step_environment(jobs):
    """The environment of a step that shares the machine with `jobs` - 1 others: each gets an equal share of the
    cores as TensorFlow and OpenMP threads (threads a user set stay). None (inherit) for one step at a time."""
    if jobs == 1:
        return None
    threads = str(max(1, len(os.sched_getaffinity(0)) // jobs))
    names = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
    return {**{name: threads for name in names}, **os.environ}


def finished(state, name, outputs=()):
    """Whether the step `name` ran to the end and every one of its `outputs` is still there."""
    return state.get(name, {}).get("status") == "done" and all(Path(p).exists() for p in outputs)


def cell_outputs(args, cell, sources=()):
    """What a finished cell leaves; a cell in `sources` (the positive cells still to run start from it) also needs
    its weights, so on a machine without them it is run again."""
    return [cell.run_dir(args.out) / METRICS_FILE] + ([cell.run_dir(args.out) / BEST_WEIGHTS] if cell in sources
                                                         else [])


def _die_with_parent():
    """Children get SIGKILL when the runner dies, so a killed grid never leaves a run writing behind it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_and_tee(argv, env=None, echo=True):
    """Runs a script showing its progress live (`echo`); returns (exit status, the tail of its stderr)."""
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=None if echo else subprocess.DEVNULL, env=env,
                               preexec_fn=_die_with_parent)
    tail = b""
    for chunk in iter(lambda: process.stderr.read1(4096), b""):
        if echo:
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
    lock, futures = threading.Lock(), {}
    step = dict(jobs=args.jobs, lock=lock)

    def pretrain(pretraining):
        tqdm.write(f"pretraining ({pretraining.name}) → {pretraining.run_dir(args.out)}")
        run_step(f"pretrain/{pretraining.name}", pretrain_command(args, pretraining), state, log,
                 outputs=[pretraining.run_dir(args.out) / GENERATOR_FILE], **step)
        with lock:
            write_runner_state(args.out, state)

    def run_cell(cell):
        needs = cell.pretraining(args.pretrain_seeds)
        reason = skip_reason(args, cell)
        if cell.init == POSITIVE and positive_source(cell).name in futures:
            futures[positive_source(cell).name].result()  # submitted, so started, before this cell: no deadlock
        if reason:
            outcome = {"status": "skipped", "wall_seconds": 0.0, "attempts": 0, "error": reason}
        elif needs and state.get(f"pretrain/{needs.name}", {}).get("status") != "done":
            error = state.get(f"pretrain/{needs.name}", {}).get("error")
            outcome = {"status": "failed", "wall_seconds": 0.0, "attempts": 0,
                       "error": f"pretraining {needs.name} failed: {error}"}
        elif cell.init == POSITIVE and not finished(state, (source := positive_source(cell)).name,
                                                    cell_outputs(args, source, {source})):
            error = state.get(source.name, {}).get("error") or "not run"
            outcome = {"status": "failed", "wall_seconds": 0.0, "attempts": 0,
                       "error": f"its source cell {source.name} did not finish: {error}"}
        else:
            outcome = None
            run_step(cell.name, finetune_command(args, cell), state, log, outputs=cell_outputs(args, cell, sources),
                     **step)
        with lock:
            if outcome is not None:
                state[cell.name] = outcome
            write_runner_state(args.out, state)
            collect_results(args.out, cells, state)
            bar.update()

    # Steps run `--jobs` at a time: pretraining runs first (cells start from them), then the cells in plan order, a
    # positive cell waiting for its source cell.
    with open(args.out / "runner.log", "a") as log, ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(pretrain, pretraining_runs(args, pending)))
        with tqdm(total=len(cells), desc="grid", unit="cell") as bar:
            for cell in cells:
                futures[cell.name] = pool.submit(run_cell, cell)
            for future in futures.values():
                future.result()
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
