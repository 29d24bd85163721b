"""Accelerator options shared by every script: distribution strategy, mixed precision, determinism, and
the graph rewrites that suit this CPU.

The engine is TensorFlow's own `tf.distribute`; this module only maps our flags onto it.
"""

import functools
import json
import os
import random
import sys
import time

from surrogate_supervision.models.cpu import (
    ONEDNN_ISAS_BELOW_AVX512,
    cpu_flags,
    onednn_below_avx512_reason,
    onednn_enabled,
    onednn_isa_cap,
)

import keras
import numpy as np
import tensorflow as tf

from surrogate_supervision.datasets import ToolkitError

STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(name):
    """`--distribute`: one device, all local devices (MirroredStrategy), or workers from TF_CONFIG."""
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ToolkitError("multiworker needs the TF_CONFIG environment variable (see docs/scale.md)",
                               param="distribute")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ToolkitError(f"{name!r} unknown, supported: {', '.join(STRATEGIES)}", param="distribute")


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


# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) below its native bfloat16 arithmetic.
ONEDNN_ISAS_WITHOUT_BF16 = ONEDNN_ISAS_BELOW_AVX512 + ("AVX512_CORE", "AVX512_CORE_VNNI")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
SEVERAL_TIMES_SLOWER = "where bfloat16 is several times slower than float32"
# bfloat16 is kept only where `bfloat16_speedup` finds it clearly faster: a CPU whose flags promise it can still be
# slower.
MIN_BFLOAT16_SPEEDUP = 1.1


def slow_low_precision_reason():
    """Why bfloat16 would be slower than float32 on this CPU, or None when it is faster here.

    On a CPU without AVX512_BF16 or AMX, TensorFlow's bfloat16 convolutions fall back to reference code, several
    times slower than float32. With them, it depends on the CPU: the training step ran much faster in bfloat16 on
    an AMD EPYC with avx512_bf16, but slower on an Intel Xeon with the same flags and no AMX, so where the flags
    allow it, `bfloat16_speedup` times the two (measurements: experiments/results/cpu_kernels.md).
    GPUs are not checked here (float16 is used there).
    """
    if not onednn_enabled():
        return f"TensorFlow's oneDNN kernels are off (TF_ENABLE_ONEDNN_OPTS=0), {SEVERAL_TIMES_SLOWER}"
    flags = cpu_flags()
    if not flags & set(CPU_BF16_FLAGS):
        return f"this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16), {SEVERAL_TIMES_SLOWER}"
    if onednn_isa_cap() in ONEDNN_ISAS_WITHOUT_BF16:
        return (f"ONEDNN_MAX_CPU_ISA={onednn_isa_cap()} caps oneDNN below its bfloat16 instructions, "
                f"{SEVERAL_TIMES_SLOWER}")
    speedup = bfloat16_speedup()
    if speedup < MIN_BFLOAT16_SPEEDUP:
        return (f"on this CPU bfloat16 ran ResNet50's bottleneck blocks' training step at {speedup:.2f}x "
                f"float32's speed (kept only from {MIN_BFLOAT16_SPEEDUP}x)")
    return None


# ResNet50's four bottleneck stages as the backbone runs them on a 256 crop at output stride 16: (map size,
# channels, blocks).
RESNET50_STAGES = ((64, 256, 3), (32, 512, 4), (16, 1024, 6), (16, 2048, 3))


@functools.cache
def bfloat16_speedup():
    """float32's time over bfloat16's for one training step (forward, both gradients) of ResNet50's bottleneck
    stages: one block of each stage timed, weighted by the stage's block count (`RESNET50_STAGES`), batch 4.
    Every stage, because the gain grows with depth where the CPU multiplies bfloat16 matrices fast: on an Intel
    Xeon with AMX the first stage's block gains nothing and the later ones ever more, so a check of the first
    block alone refused the whole network's gain; where bfloat16 is slower (the Xeon without AMX) the first block
    already shows it (experiments/results/cpu_kernels.md). A few seconds, once per process; the global
    precision policy is left as it was (each layer gets its own)."""
    seconds = {policy: sum(blocks * _bottleneck_step_seconds(policy, size, channels)
                           for size, channels, blocks in RESNET50_STAGES)
               for policy in ("float32", "mixed_bfloat16")}
    return seconds["float32"] / seconds["mixed_bfloat16"]


def _bottleneck_step_seconds(policy, size=64, channels=256, batch=4, repeats=5):
    x = keras.Input((size, size, channels))
    y = x
    for filters, kernel in ((channels // 4, 1), (channels // 4, 3), (channels, 1)):
        y = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, dtype=policy)(y)
        y = keras.layers.BatchNormalization(dtype=policy)(y)
        y = keras.layers.ReLU(dtype=policy)(y) if filters != channels else y
    block = keras.Model(x, keras.layers.Add(dtype=policy)([y, x]))
    inputs = tf.random.stateless_normal((batch, size, size, channels), seed=(0, 0))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = tf.cast(block(inputs, training=True), tf.float32)
            loss = tf.reduce_mean(outputs * outputs)
        return tape.gradient(loss, [inputs] + block.trainable_variables)

    step()  # traces and warms up
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def slow_fused_inference_reason():
    """Why oneDNN's fused inference convolutions would be slow on this CPU, or None where they are not.

    In inference, Grappler's remapper fuses Conv2D + BatchNorm (+ ReLU) into one oneDNN convolution with
    post-ops. Below AVX-512, oneDNN 3.7 runs those on its generic `gemm:jit` kernel, and prediction is many times
    slower than with the remapper off, while natively (AVX-512) the remapper makes it a little faster, so it stays
    on there (experiments/results/cpu_kernels.md).
    """
    return onednn_below_avx512_reason()


def avoid_slow_fused_inference():
    """Switches Grappler's remapper off where `slow_fused_inference_reason()` gives a reason; returns it.

    Process-wide, and read by TensorFlow when a function runs: set before a run's first step, so training
    and validation run one setting throughout (the remapper does not change the training step's speed on
    either CPU kind: experiments/results/cpu_kernels.md). A remapper setting the user has already made is left alone.
    """
    reason = slow_fused_inference_reason()
    if reason and "remapping" not in tf.config.optimizer.get_experimental_options():
        tf.config.optimizer.set_experimental_options({"remapping": False})
    return reason


def set_precision(mixed_precision):
    """`--mixed-precision`: float16 with loss scaling on GPU, bfloat16 on CPUs where it is faster.

    On a CPU without native bfloat16 math it would make a run several times slower, and on some with it
    slower still (`slow_low_precision_reason`), so there this falls back to float32 with a one-line warning.
    """
    if mixed_precision and not tf.config.list_physical_devices("GPU"):
        reason = slow_low_precision_reason()
        if reason:
            print(f"warning: mixed precision ignored, training in float32: {reason}", file=sys.stderr)
            mixed_precision = False
    if not mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
        return "float32"
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def seed_everything(seed, deterministic=False):
    """Seeds Python, NumPy, TensorFlow and Keras; `--deterministic` also forces deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def configure(*, seed, distribute="none", deterministic=False, mixed_precision=False):
    """Applies the accelerator options and returns (the strategy to build models under, the precision policy).

    The strategy comes first: a multi-worker strategy must configure TensorFlow's runtime before any op runs.
    """
    strategy = make_strategy(distribute)
    seed_everything(seed, deterministic)
    precision = set_precision(mixed_precision)
    avoid_slow_fused_inference()
    return strategy, precision
