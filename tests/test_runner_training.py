"""The training loop in-process, on a one-variable toy model: NaN, hooks, interrupts, resume, host copies.

The end-to-end runs in test_pretrain.py, test_finetune_segment.py and test_reliability.py drive the same loop
through the scripts (and a real SIGINT / SIGKILL); these pin each behaviour on its own, in milliseconds.
"""

import signal

from surrogate_supervision.models.runner.cli import run
from surrogate_supervision.models.runner.training import (
    Checkpoints,
    Interrupted,
    NonFiniteLoss,
    checkpoint_format,
    train_loop,
)

import numpy as np
import pytest
import tensorflow as tf


def toy_training(run_dir, checkpoint_every=2, nan_at=3, hooks=(), steps=10, **loop_options):
    """A one-variable 'model' whose loss turns NaN at step `nan_at`."""
    counter = tf.Variable(0.0)
    checkpoints = Checkpoints(run_dir, counter=counter)

    def step_fn(batch):
        counter.assign_add(1.0)
        return {"loss": tf.where(counter >= nan_at, tf.constant(np.nan), batch)}

    def make_dataset(start):
        return tf.data.Dataset.range(start, 1000).map(lambda i: tf.cast(i, tf.float32))

    def main(args=None):
        return train_loop(step_fn, make_dataset, strategy=tf.distribute.get_strategy(), checkpoints=checkpoints,
                          steps=steps, global_batch=1, checkpoint_every=checkpoint_every, hooks=hooks, desc="toy",
                          **loop_options)

    return main, counter


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    main, _ = toy_training(tmp_path)

    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 3; the last good checkpoint \(step 2\)"):
        main()

    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    _, counter = toy_training(tmp_path)
    assert Checkpoints(tmp_path, counter=counter).restore() == 2 and float(counter.numpy()) == 2.0


def test_nan_found_at_a_later_log_step_still_names_its_own_step(tmp_path):
    # Logs stay on the device between log steps; the check at step 10 still finds step 3 and saves nothing.
    main, _ = toy_training(tmp_path, checkpoint_every=100)

    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 3; the last good checkpoint \(step 0\)"):
        main()

    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is None


def test_logs_reach_the_host_only_at_log_and_checkpoint_steps(tmp_path, monkeypatch):
    import surrogate_supervision.models.runner.training as training

    copied = []
    to_host = training._to_host
    monkeypatch.setattr(training, "_to_host", lambda pending, c: copied.append([s for s, _ in pending]) or
                        to_host(pending, c))
    main, _ = toy_training(tmp_path, checkpoint_every=4, nan_at=1e9)
    assert main() == 0
    assert copied == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]  # one host copy per checkpoint or log step


def test_nan_loss_exits_1_with_one_line(tmp_path, capsys):
    main, _ = toy_training(tmp_path)

    assert run(main, None) == 1

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "step 3" in errors[0]


def test_hooks_run_every_n_steps_and_at_the_end(tmp_path):
    calls = []
    main, _ = toy_training(tmp_path, nan_at=1e9, hooks=[(4, lambda step, logs: calls.append((step, logs["loss"])))])

    assert main() == 0

    assert [step for step, _ in calls] == [4, 8, 10]
    assert calls[0][1] == 3.0  # the logs of the hook's own step (batch = element index, from 0)


def test_a_hook_that_returns_true_stops_and_checkpoints_that_step(tmp_path):
    main, counter = toy_training(tmp_path, checkpoint_every=100, nan_at=1e9, hooks=[(3, lambda step, logs: step >= 6)])

    assert main() == 0

    assert float(counter.numpy()) == 6.0
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-6")


def test_an_interrupt_saves_a_checkpoint_and_a_rerun_resumes_there(tmp_path):
    def interrupt_at_5(step, logs):
        if step == 5:
            signal.raise_signal(signal.SIGINT)  # the loop's handler turns it into a flag, checked after the step

    main, _ = toy_training(tmp_path, checkpoint_every=100, nan_at=1e9, hooks=[(1, interrupt_at_5)])
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup and in background jobs
    with pytest.raises(Interrupted, match="interrupted at step 5"):
        main()
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-5")
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back

    seen = []
    main, counter = toy_training(tmp_path, checkpoint_every=100, nan_at=1e9,
                                 hooks=[(1, lambda step, logs: seen.append((step, logs["loss"])))])
    assert main() == 5  # the step it resumed from
    assert seen[0] == (6, 5.0) and float(counter.numpy()) == 10.0  # the batch an uninterrupted run sees next


def test_an_interrupt_exits_130_with_one_line(tmp_path, capsys):
    main, _ = toy_training(tmp_path, nan_at=1e9,
                           hooks=[(2, lambda step, logs: signal.raise_signal(signal.SIGINT))])

    assert run(main, None) == 130

    assert "interrupted at step 2; checkpoint saved" in capsys.readouterr().err


def test_checkpoint_of_an_earlier_format_is_refused_in_one_line(tmp_path):
    """Checkpoints from before the backbone dropped its convolution biases record no format: resuming one is
    refused, naming it and what to do, instead of restoring variables that moved."""
    counter = tf.Variable(5.0)
    earlier = tf.train.Checkpoint(step=tf.Variable(4, dtype=tf.int64), counter=counter)  # as earlier versions saved
    tf.train.CheckpointManager(earlier, str(tmp_path / "checkpoints"), max_to_keep=2).save(checkpoint_number=4)
    counter.assign(0.0)

    with pytest.raises(OSError) as error:
        Checkpoints(tmp_path, counter=counter).restore()

    message = str(error.value)
    assert message.startswith(f"checkpoint {tmp_path / 'checkpoints' / 'ckpt-4'} is format 1 (backbone convolutions "
                              f"with a bias)") and f"move {tmp_path / 'checkpoints'} away" in message
    assert "\n" not in message and float(counter.numpy()) == 0.0
    current = Checkpoints(tmp_path / "new", counter=counter)
    current.save(2)
    assert checkpoint_format(tf.train.latest_checkpoint(str(current.shared))) == 2  # format recorded


def test_extra_scalars_are_written_at_each_log_step(tmp_path):
    # e.g. the learning rate a poly schedule gives, which is not one of the step's outputs
    writer = tf.summary.create_file_writer(str(tmp_path / "logs"))
    calls = []
    main, _ = toy_training(tmp_path, nan_at=1e9, steps=6, log_every=2, writer=writer,
                           scalars={"learning_rate": lambda: calls.append(None) or 0.5 * len(calls)})
    assert main() == 0
    writer.flush()
    written = {}
    for path in (tmp_path / "logs").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "train/learning_rate":
                    written[event.step] = float(tf.make_ndarray(value.tensor))
    assert written == {2: 0.5, 4: 1.0, 6: 1.5}  # read once per log step
