"""Accelerator options shared by every script: distribution strategy, mixed precision, determinism.

The engine is TensorFlow's own `tf.distribute`; this module only maps our flags onto it.
"""

import json
import os
import random

import keras
import numpy as np
import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multiworker")


def quiet_tensorflow():
    """Silences TensorFlow's C++ start-up chatter; real warnings still reach the console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_strategy(name):
    """`--distribute`: one device, all local devices (MirroredStrategy), or workers from TF_CONFIG."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribute multiworker needs the TF_CONFIG environment variable (see README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Wrong --distribute {name!r}, supported: {', '.join(STRATEGIES)}")


def is_chief():
    """Only the chief writes checkpoints, samples and metrics in a multi-worker run."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    has_chief = "chief" in config.get("cluster", {})
    return task["type"] == "chief" or (not has_chief and task["type"] == "worker" and task.get("index", 0) == 0)


def worker_id():
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"{task.get('type', 'worker')}{task.get('index', 0)}"


def wait_for_workers(strategy):
    """Holds every worker of a multi-worker run here until all arrive; a no-op otherwise.

    Called at the end of a run, so that no worker exits while the chief still writes its outputs: to
    TensorFlow's coordination service a worker that is gone early looks crashed, and the chief can then
    hang at shutdown.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    all_arrived = tf.function(lambda: strategy.run(
        lambda: tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0))))
    all_arrived()


def set_precision(mixed_precision):
    """`--mixed-precision`: float16 with loss scaling on GPU, bfloat16 on CPU (no scaling needed)."""
    if not mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def wrap_optimizer(optimizer):
    """Adds dynamic loss scaling when float16 needs it (Keras 3 `LossScaleOptimizer`)."""
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def seed_everything(seed, deterministic=False):
    """Seeds Python, NumPy, TensorFlow and Keras; `--deterministic` also forces deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def configure(args):
    """Applies the accelerator flags of `args` and returns the strategy to build models under.

    The strategy comes first: a multi-worker strategy must configure TensorFlow's runtime before any op runs.
    """
    strategy = make_strategy(getattr(args, "distribute", "none"))
    seed_everything(args.seed, getattr(args, "deterministic", False))
    precision = set_precision(getattr(args, "mixed_precision", False))
    return strategy, precision
