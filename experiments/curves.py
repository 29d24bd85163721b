"""A fine-tuning run's validation curve, read back from its TensorBoard logs, and what it says about its schedule.

Under a poly schedule a cell's best validation step is nearly always its last: the learning rate reaches 0 there,
and the last small steps still add a little. So "best step in the last 10 %" alone cannot tell a cell that was
still learning from one that had long settled. What sizes a schedule is how much the last tenth bought
(`late_gain`) and from which step validation stayed within a tolerance of its best (`settled_step`).
"""

import math

from surrogate_supervision.models.rundir import LOGS_DIR

import tensorflow as tf
from tensorflow.core.util.event_pb2 import Event

VALIDATION_TAG = "val/dice_mean"


def validation_curve(run_dir, tag=VALIDATION_TAG):
    """{step: value} of `tag` in the run's TensorBoard logs. A resumed run logs some steps again in a new event file:
    the value logged last (by the events' own wall time, not the files' names, which can share a second) wins.
    Empty when the run logged none."""
    logged = []
    for path in (run_dir / LOGS_DIR).glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = Event.FromString(record.numpy())
            logged += [(event.wall_time, int(event.step), float(tf.make_ndarray(value.tensor)))
                       for value in event.summary.value if value.tag == tag]
    curve = {step: value for _, step, value in sorted(logged)}
    return dict(sorted(curve.items()))


def late_gain(curve, steps, late=0.9):
    """What the last (1 − late) of a `steps`-step schedule added to the best validation score: the best over the
    whole curve minus the best up to step late · steps (nan when either part is empty)."""
    early = [v for s, v in curve.items() if s <= late * steps]
    if not curve or not early:
        return math.nan
    return max(curve.values()) - max(early)


def settled_step(curve, tolerance):
    """The first step from which every validation score lies within `tolerance` of the best: after it the schedule
    bought less than `tolerance` (None for an empty curve)."""
    if not curve:
        return None
    best, settled = max(curve.values()), None
    for step, value in curve.items():
        if value < best - tolerance:
            settled = None
        elif settled is None:
            settled = step
    return settled
