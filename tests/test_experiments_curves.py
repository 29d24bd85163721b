"""experiments/curves.py: a run's validation curve read back from TensorBoard, and what it says of its schedule."""

import math

from surrogate_supervision.models.rundir import LOGS_DIR

import tensorflow as tf

from surrogate_supervision.experiments.curves import late_gain, settled_step, validation_curve


def _log(run, points, tag="val/dice_mean"):
    writer = tf.summary.create_file_writer(str(run / LOGS_DIR))
    with writer.as_default():
        for step, value in points.items():
            tf.summary.scalar(tag, value, step=step)
            tf.summary.scalar("train/loss", 9.0, step=step)  # another tag: not part of the curve
    writer.close()


def test_a_resumed_runs_curve_joins_its_event_files_the_later_one_winning(tmp_path):
    _log(tmp_path, {500: 0.5, 1000: 0.6})
    first = set((tmp_path / LOGS_DIR).glob("events.out.tfevents.*"))
    _log(tmp_path, {1000: 0.62, 1500: 0.7})  # resumed from step 500's checkpoint: 1000 logged again
    (older,), (newer,) = first, set((tmp_path / LOGS_DIR).glob("events.out.tfevents.*")) - first
    # The names' seconds can be equal and then say nothing of which file came last; renamed here so that the names
    # give the wrong order outright, and only the events' own times tell.
    older.rename(older.with_name("events.out.tfevents.2000000000.host.1.0.v2"))
    newer.rename(newer.with_name("events.out.tfevents.1000000000.host.1.0.v2"))
    curve = validation_curve(tmp_path)
    assert list(curve) == [500, 1000, 1500]
    assert math.isclose(curve[1000], 0.62, rel_tol=1e-6) and math.isclose(curve[1500], 0.7, rel_tol=1e-6)
    assert validation_curve(tmp_path / "none") == {}


def test_late_gain_and_settled_step_tell_a_settled_curve_from_a_climbing_one():
    settled = {1000: 0.5, 2000: 0.70, 3000: 0.698, 4000: 0.702, 5000: 0.701, 10_000: 0.703}
    climbing = {1000: 0.5, 2000: 0.6, 5000: 0.65, 9000: 0.66, 10_000: 0.70}
    assert math.isclose(late_gain(settled, 10_000), 0.703 - 0.702) and settled_step(settled, 0.005) == 2000
    assert math.isclose(late_gain(climbing, 10_000), 0.70 - 0.66) and settled_step(climbing, 0.005) == 10_000
    # a dip below the tolerance restarts the count: from 3000 on it is within 0.005 of the best
    assert settled_step({1000: 0.7, 2000: 0.6, 3000: 0.699}, 0.005) == 3000
    assert math.isnan(late_gain({}, 10)) and settled_step({}, 0.005) is None


def test_pilot_table_says_why_a_curve_has_no_settled_step():
    from surrogate_supervision.experiments.pilot_table import settled_text

    assert settled_text({}) == "–"
    assert settled_text({500: 0.50, 1000: 0.60, 1500: 0.598}) == "1000"
    assert settled_text({500: 0.50, 1000: 0.60, 1500: 0.58}) == "not settled"  # the last evaluation fell below
