"""The skeleton both training scripts share, around the steps that are each one's own.

    setup = RunSetup(args, finished=is_finished)   # --out writable, flags checked against the run being resumed
    if setup.finished: print(...); return 0        # a finished run says so and stops
    setup.start()                                  # seeds, distribution strategy, precision
    setup.save_config(n_train_images=...)          # config.json
    with setup.scope(): build...                   # variables under the strategy
    checkpoints = setup.checkpoints(model=..., optimizer=...)
    if setup.fresh: initialise...                  # --init applies to a run with no checkpoint only
    train_loop(step_fn, make_dataset, **setup.loop_options(), metrics=..., hooks=[(every, hook)], desc=...)
    return setup.finish(write_outputs, ...)        # the chief writes its outputs, every worker waits

The steps between these are each script's own: its data, its networks, its hooks, its outputs. Like
`cli.py:check_resume`, `RunSetup` reads the flags both training scripts have (--out, --seed, --distribute,
--deterministic, --mixed-precision, --steps, --batch, --checkpoint-every, --xla) and passes them on as values.
"""

from pathlib import Path

from surrogate_supervision.models.rundir import LOGS_DIR, is_fresh
from surrogate_supervision.models.runner.cli import check_resume, check_writable, save_config
from surrogate_supervision.models.runner.runtime import configure, is_chief, wait_for_workers
from surrogate_supervision.models.runner.training import Checkpoints

import tensorflow as tf


class RunSetup:
    """One training run's directory, flags and accelerator set-up, from `--out` checked to the workers' last wait.

    `finished(out)` says whether the run in `out` is done (decided before anything is configured)."""

    def __init__(self, args, finished):
        self.args = args
        self.out = Path(args.out)
        check_writable(self.out)
        self.config = check_resume(args, self.out)
        self.finished = finished(self.out)
        self.chief = is_chief()
        self.strategy = self.precision = self._writer = self._checkpoints = None

    @property
    def fresh(self):
        """No checkpoint yet: the networks start from their initialisation."""
        return is_fresh(self.out)

    def start(self):
        """Seeds, distribution strategy and precision from the flags."""
        args = self.args
        self.strategy, self.precision = configure(seed=args.seed, distribute=args.distribute,
                                                  deterministic=args.deterministic,
                                                  mixed_precision=args.mixed_precision)
        return self

    @property
    def writer(self):
        """The chief's TensorBoard writer (RUN/logs, made on first use); a no-op one on the other workers."""
        if self._writer is None:
            self._writer = (tf.summary.create_file_writer(str(self.out / LOGS_DIR)) if self.chief
                            else tf.summary.create_noop_writer())
        return self._writer

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    def save_config(self, **extra):
        """config.json: the flags, the precision, `extra`, the replica count."""
        return save_config(self.config, self.out, precision=self.precision, **extra, replicas=self.replicas)

    def scope(self):
        """Where the networks and optimizers are built, so that their variables are the strategy's."""
        return self.strategy.scope()

    def checkpoints(self, **trackables):
        self._checkpoints = Checkpoints(self.out, **trackables)
        return self._checkpoints

    def loop_options(self):
        """The `train_loop` keywords the flags and the set-up decide."""
        args = self.args
        return dict(strategy=self.strategy, checkpoints=self._checkpoints, steps=args.steps, global_batch=args.batch,
                    checkpoint_every=args.checkpoint_every, writer=self.writer, xla=args.xla)

    def finish(self, chief_writes, *args, **kwargs):
        """The end of a run: the chief writes its outputs (`chief_writes(*args, **kwargs)`), then every worker waits
        for the others; returns the exit status."""
        if self.chief:
            chief_writes(*args, **kwargs)
        wait_for_workers(self.strategy)
        return 0
