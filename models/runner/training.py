"""The training loop both scripts share: distributed steps, checkpoints that resume, logs, Ctrl-C.

A run's position is one integer, the step: the data stream restarts at element `step × global batch`,
so a resumed run sees exactly the batches an uninterrupted one would have seen.
"""

import math
import shutil
import signal
import sys
import time
from pathlib import Path

from surrogate_supervision.models.rundir import WORKERS_DIR, checkpoints_dir
from surrogate_supervision.models.runner.runtime import is_chief, worker_id

import tensorflow as tf
from tqdm import tqdm


class NonFiniteLoss(RuntimeError):
    """A NaN or Inf loss: the run stops, its last good checkpoint stays."""


class Interrupted(RuntimeError):
    """Ctrl-C (SIGINT) or SIGTERM: a checkpoint was saved at `step`."""

    def __init__(self, step):
        super().__init__(f"interrupted at step {step}; checkpoint saved, re-run the same command to resume")
        self.step = step


def random_states(**models):
    """The state of every layer's random-number generator (Dropout's masks), by model and layer name.

    Keras keeps these out of a model's checkpoint; without them a resumed run would draw the dropout masks
    of a fresh start, not those the uninterrupted run draws next.
    """
    return {f"{model_name}/{layer.name}": layer.seed_generator.state
            for model_name, model in models.items() if hasattr(model, "layers")
            for layer in model.layers if getattr(layer, "seed_generator", None) is not None}


# What the variables of a checkpoint mean; the number is saved in each one (one without it is format 1).
CHECKPOINT_FORMATS = {1: "backbone convolutions with a bias", 2: "backbone convolutions without bias"}
CHECKPOINT_FORMAT = 2
FORMAT_KEY = "format/.ATTRIBUTES/VARIABLE_VALUE"
# What reading and restoring a damaged checkpoint raises (truncated, garbage or flipped bytes in its index or
# data file, or one of them gone; tried in tests/test_loud_failures.py): TensorFlow's OpError (DataLossError,
# NotFoundError, plain OpError), IndexError ("Read less bytes than requested": the checkpoint reader on a
# truncated data file) and OSError. Anything else (a checkpoint that lacks objects the program has, values
# of another shape, a TypeError in the code) is not a damaged file: it propagates with its traceback rather
# than sending the run back to an older checkpoint.
DAMAGED_CHECKPOINT_ERRORS = (tf.errors.OpError, IndexError, OSError)


def checkpoint_format(path):
    """The CHECKPOINT_FORMAT a checkpoint was written in (1 for those written before it was recorded)."""
    reader = tf.train.load_checkpoint(path)
    return int(reader.get_tensor(FORMAT_KEY)) if reader.has_tensor(FORMAT_KEY) else 1


class Checkpoints:
    """Model and optimizer states, dropout's random state and the step, every N steps; the last two are kept.

    In a multi-worker run every worker must take part in saving; only the chief's copy is kept.

    A checkpoint of another format is refused in one line, not converted. Checkpoints key most variables and
    their Adam moments by position, so without the biases of format 1 every later one moves: restoring it
    would fail at the first shape that differs, or put values in the wrong
    variables where shapes agree. Converting would take the old network and optimizers rebuilt to read it.
    """

    def __init__(self, run_dir, max_to_keep=2, **trackables):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.format = tf.Variable(CHECKPOINT_FORMAT, dtype=tf.int64, trainable=False, name="format")
        self.checkpoint = tf.train.Checkpoint(step=self.step, format=self.format,
                                              random_states=random_states(**trackables), **trackables)
        self.chief = is_chief()
        self.shared = checkpoints_dir(run_dir)
        directory = self.shared
        if not self.chief:
            directory = Path(run_dir) / WORKERS_DIR / worker_id()
        self.directory = directory
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=max_to_keep)

    def restore(self):
        """Restores the latest checkpoint (the chief's, on every worker); returns its step (0 if none)."""
        state = tf.train.get_checkpoint_state(str(self.shared))
        candidates = list(reversed(state.all_model_checkpoint_paths)) if state else []
        for path in candidates:  # newest first; a damaged file falls back to the one before
            try:
                written = checkpoint_format(path)
                if written == CHECKPOINT_FORMAT:
                    self.checkpoint.restore(path).assert_existing_objects_matched()
                    return int(self.step.numpy())
            except DAMAGED_CHECKPOINT_ERRORS as error:
                detail = (str(error).strip().splitlines() or [""])[0][:200]
                print(f"warning: checkpoint {path} is unreadable ({type(error).__name__}: {detail}); "
                      f"trying an older one", file=sys.stderr)
                continue
            raise OSError(f"checkpoint {path} is format {written} ({CHECKPOINT_FORMATS.get(written, 'unknown')}); "
                          f"this version resumes format {CHECKPOINT_FORMAT} only "
                          f"({CHECKPOINT_FORMATS[CHECKPOINT_FORMAT]}): finish the run with the version that "
                          f"started it, or move {self.shared} away to start over")
        if candidates:
            raise OSError(f"no readable checkpoint in {self.shared}; move it away to start over")
        return 0

    def save(self, step):
        self.step.assign(step)
        try:
            self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            raise OSError(f"could not write a checkpoint in {self.directory}: {error}; "
                          f"the previous one is kept") from None
        if not self.chief:
            shutil.rmtree(self.directory, ignore_errors=True)


class _InterruptFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (so the checkpoint is consistent)."""

    def __init__(self):
        self.raised = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def make_distributed_step(step_fn, strategy, xla=False):
    """One global step: `step_fn` on every replica (XLA-compiled if asked), logs averaged across them."""

    def distributed_step(batch):
        logs = strategy.run(step_fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in logs.items()}

    return tf.function(distributed_step, jit_compile=xla or None, reduce_retracing=True)


def _to_host(pending, checkpoints):
    """Copies the pending steps' logs to the host; a NaN or Inf stops the run naming the first bad step."""
    for step, logs in pending:
        logs = {k: float(v) for k, v in logs.items()}
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {step}; the last good checkpoint "
                                f"(step {int(checkpoints.step.numpy())}) is kept in {checkpoints.directory}")
    return logs


def train_loop(step_fn, make_dataset, *, strategy, checkpoints, steps, global_batch, checkpoint_every,
               metrics=(), writer=None, scalars=None, hooks=(), log_every=10, xla=False, desc="train"):
    """Runs `step_fn` from the last checkpoint up to `steps`; returns the step it started from.

    Not `keras.Model.fit`: Keras 3 does not support multi-worker `fit`, and `BackupAndRestore` resumes at
    epoch granularity, where this loop resumes at the exact step (and batch) it stopped at.

    Args:
        step_fn: per-replica step, batch → dict of scalar logs (e.g. a Keras model's `train_step`).
        make_dataset: start element → a `tf.data.Dataset` of global batches from that element on.
        metrics: Keras metrics behind the logs, reset after each TensorBoard write.
        scalars: name → zero-argument function, written to TensorBoard as train/<name> at each log step: values
            that are not the step's outputs, such as the learning rate a schedule gives.
        hooks: (every, fn(step, logs)) pairs, run on the chief every `every` steps and at the end. A hook
            that returns True ends the run early (e.g. validation stopped improving): the step is
            checkpointed and the loop returns. Single-process strategies only: other workers cannot hear it.
    """
    start = checkpoints.restore()
    if start >= steps:
        return start
    dataset = strategy.experimental_distribute_dataset(make_dataset(start * global_batch))
    iterator = iter(dataset)
    step_once = make_distributed_step(step_fn, strategy, xla)
    chief = is_chief()
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", dynamic_ncols=True, disable=not chief)
    step, tick, tick_step = start, time.perf_counter(), start
    pending = []  # logs still on the device: copying them every step would stall an accelerator's queue
    with bar, _InterruptFlag() as interrupt:  # the bar closes however the loop ends: errors get their own line
        while step < steps:
            step += 1
            pending.append((step, step_once(next(iterator))))
            bar.update(1)
            log_due = step % log_every == 0 or step == steps
            hooks_due = [hook for every, hook in hooks if chief and (step % every == 0 or step == steps)]
            save_due = step % checkpoint_every == 0 or step == steps or interrupt.raised
            if not (log_due or hooks_due or save_due):
                continue
            logs, pending = _to_host(pending, checkpoints), []
            if log_due:
                rate = global_batch * (step - tick_step) / max(time.perf_counter() - tick, 1e-9)
                tick, tick_step = time.perf_counter(), step
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in logs.items()}, "img/s": f"{rate:.1f}"})
                if writer is not None:
                    with writer.as_default(step=step):
                        for k, v in logs.items():
                            tf.summary.scalar(f"train/{k}", v)
                        tf.summary.scalar("train/images_per_second", rate)
                        for name, value in (scalars or {}).items():
                            tf.summary.scalar(f"train/{name}", value())
                for metric in metrics:
                    metric.reset_state()
            stop = False
            for hook in hooks_due:
                stop = bool(hook(step, logs)) or stop
            if save_due or stop or interrupt.raised:  # a signal may also arrive during a hook
                checkpoints.save(step)
            if interrupt.raised:
                raise Interrupted(step)
            if stop:
                break
    return start
