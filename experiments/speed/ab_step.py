"""A/B of the full training step in one process: variants built side by side, their steps alternated.

    python experiments/speed/ab_step.py keras_dw,atrous          # Keras' DepthwiseConv2D against models.atrous
    ONEDNN_MAX_CPU_ISA=AVX2 python experiments/speed/ab_step.py atrous,bias,bf16

Variants: atrous (the network as it is), keras_dw (ASPP/decoder on Keras' own Conv2D/DepthwiseConv2D),
bias (backbone convolutions with a bias, the layout before they dropped it: what that change is measured
against), onednn_bn (BatchNorm's forward pass on oneDNN's kernel even below AVX-512, as before the plain-ops
forward), onednn_wgrad (the backbone's weight gradients on oneDNN's kernels even below AVX-512, as before
`models.conv_grad`), bf16 (mixed_bfloat16 policy), noremap (Grappler's remapper off: set before each of its steps, since
TensorFlow optimizes a function once per setting, read at the call). Prints wall and process CPU seconds per
step (median over ROUNDS alternated steps); CPU seconds hold up better on a loaded machine.
"""

import contextlib
import os
import statistics
import sys
import time

import surrogate_supervision.models.batchnorm as batchnorm
import surrogate_supervision.models.conv_grad as conv_grad
import surrogate_supervision.models.deeplab as deeplab
import surrogate_supervision.models.resnet as resnet

import keras
import tensorflow as tf

from surrogate_supervision.experiments.speed.train_step import build_step


@contextlib.contextmanager
def variant(name):
    saved = (deeplab.DepthwiseConv2D, deeplab.Conv2D, resnet.Conv2D, batchnorm.slow_onednn_kernels,
             conv_grad.slow_onednn_kernels)
    if name == "onednn_bn":
        batchnorm.slow_onednn_kernels = lambda: False
    elif name == "keras_dw":
        deeplab.DepthwiseConv2D, deeplab.Conv2D = keras.layers.DepthwiseConv2D, keras.layers.Conv2D
    elif name == "bias":
        resnet.Conv2D = lambda *args, **kwargs: conv_grad.Conv2D(*args, **{**kwargs, "use_bias": True})
    elif name == "onednn_wgrad":
        conv_grad.slow_onednn_kernels = lambda: False
    elif name == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    elif name not in ("atrous", "noremap"):
        raise SystemExit(f"unknown variant {name!r}")
    try:
        yield
    finally:
        (deeplab.DepthwiseConv2D, deeplab.Conv2D, resnet.Conv2D, batchnorm.slow_onednn_kernels,
         conv_grad.slow_onednn_kernels) = saved
        keras.mixed_precision.set_global_policy("float32")


def with_remapping(enabled, step):
    """`step` run with Grappler's remapper on or off, whatever the other variants set."""
    def run():
        tf.config.optimizer.set_experimental_options({"remapping": enabled})
        return step()
    return run


def main():
    names = sys.argv[1].split(",")
    task, size = os.environ.get("TASK", "segment"), int(os.environ.get("SIZE", 256))
    rounds = int(os.environ.get("ROUNDS", 6))
    steps = {}
    for name in names:
        keras.utils.set_random_seed(0)
        with variant(name):
            steps[name] = with_remapping(name != "noremap", build_step(task, size, 4, 1.0, False)[0])
            steps[name]()  # trace (BatchNorm chooses its forward pass here)
    for name in names:
        steps[name]()  # warm
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            tick, tock = time.perf_counter(), time.process_time()
            steps[name]()
            wall[name].append(time.perf_counter() - tick)
            cpu[name].append(time.process_time() - tock)
    base_wall, base_cpu = statistics.median(wall[names[0]]), statistics.median(cpu[names[0]])
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"{name:>9}: {w:.3f} s/step wall (x{base_wall / w:.3f}), {c:.3f} CPU s/step (x{base_cpu / c:.3f}); "
              f"wall {[round(t, 2) for t in wall[name]]}")
    print(f"cap {os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
