"""Convolution gradients of the ResNet50 backbone computed other ways than TensorFlow's oneDNN NHWC kernels.

    python experiments/speed/conv_grad_kernels.py                       # native ISA
    ONEDNN_MAX_CPU_ISA=AVX2 python experiments/speed/conv_grad_kernels.py

Why: under an AVX2 cap the weight-gradient kernels TensorFlow gets from oneDNN (plain NHWC) are slower than the
blocked-layout ones PyTorch gets (measured: experiments/results/speed_notes.md), so other formulations may beat
them. Each row times, alternated in one process (median of ROUNDS), one layer shape of the 256^2, batch-4,
output-stride-16 step:
- weight gradient: `Conv2DBackpropFilter` NHWC (what training runs), the same on NCHW tensors (transposes
  included), one matmul per kernel tap, and one im2col matmul;
- input gradient: `Conv2DBackpropInput` NHWC, and the forward convolution with the flipped kernel (a matmul for
  1x1), which runs oneDNN's forward kernels.
Every formulation is checked against the first of its group (max relative difference printed).
"""

import os
import statistics
import time

from surrogate_supervision.models.conv_grad import shifted_views
from surrogate_supervision.models.runner.runtime import (
    onednn_enabled,  # importing models turns TensorFlow's oneDNN on (models/cpu.py)
)

import tensorflow as tf

# (spatial size, input channels, output channels, kernel, dilation): one bottleneck of each stage
SHAPES = ((64, 256, 64, 1, 1), (64, 64, 256, 1, 1), (64, 64, 64, 3, 1),
          (32, 512, 128, 1, 1), (32, 128, 512, 1, 1), (32, 128, 128, 3, 1),
          (16, 1024, 256, 1, 1), (16, 256, 1024, 1, 1), (16, 256, 256, 3, 1),
          (16, 2048, 512, 1, 1), (16, 512, 2048, 1, 1), (16, 512, 512, 3, 2))
BATCH, ROUNDS = 4, int(os.environ.get("ROUNDS", 7))


def filter_nhwc(x, dy, k, rate):
    return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=[k, k, x.shape[-1], dy.shape[-1]], out_backprop=dy,
                                           strides=[1] * 4, padding="SAME", dilations=[1, rate, rate, 1])


def filter_nchw(x, dy, k, rate):
    return tf.raw_ops.Conv2DBackpropFilter(
        input=tf.transpose(x, [0, 3, 1, 2]), filter_sizes=[k, k, x.shape[-1], dy.shape[-1]],
        out_backprop=tf.transpose(dy, [0, 3, 1, 2]), strides=[1] * 4, padding="SAME", dilations=[1, 1, rate, rate],
        data_format="NCHW")


def filter_per_tap(x, dy, k, rate):
    rows = tf.reshape(dy, [-1, dy.shape[-1]])
    taps = [tf.matmul(tf.reshape(t, [-1, x.shape[-1]]), rows, transpose_a=True) for t in shifted_views(x, k, rate)]
    return tf.reshape(tf.stack(taps), [k, k, x.shape[-1], dy.shape[-1]])


def filter_im2col(x, dy, k, rate):
    columns = tf.reshape(tf.concat(shifted_views(x, k, rate), -1), [-1, k * k * x.shape[-1]])
    return tf.reshape(tf.matmul(columns, tf.reshape(dy, [-1, dy.shape[-1]]), transpose_a=True),
                      [k, k, x.shape[-1], dy.shape[-1]])


def input_nhwc(dy, w, rate):
    shape = [dy.shape[0], dy.shape[1], dy.shape[2], w.shape[2]]
    return tf.raw_ops.Conv2DBackpropInput(input_sizes=shape, filter=w, out_backprop=dy, strides=[1] * 4,
                                          padding="SAME", dilations=[1, rate, rate, 1])


def input_forward(dy, w, rate):
    if w.shape[0] == 1:
        return tf.einsum("nhwo,io->nhwi", dy, w[0, 0])
    return tf.nn.conv2d(dy, tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]), 1, "SAME", dilations=rate)


FILTER = {"nhwc": filter_nhwc, "nchw": filter_nchw, "per_tap": filter_per_tap, "im2col": filter_im2col}
INPUT = {"nhwc": input_nhwc, "forward": input_forward}


def compare(functions, args):
    """(median ms, max relative difference to the first) per function, alternated over ROUNDS."""
    traced = {name: tf.function(f) for name, f in functions.items()}
    reference = next(iter(traced.values()))(*args)
    scale = float(tf.reduce_max(tf.abs(reference)))
    times, errors = {n: [] for n in traced}, {}
    for name, f in traced.items():
        errors[name] = float(tf.reduce_max(tf.abs(f(*args) - reference))) / scale
    for _ in range(ROUNDS):
        for name, f in traced.items():
            tick = time.perf_counter()
            f(*args).numpy()
            times[name].append(time.perf_counter() - tick)
    return {n: (1e3 * statistics.median(times[n]), errors[n]) for n in traced}


def main(shapes=SHAPES):
    if not onednn_enabled():  # TensorFlow's own CPU kernels take neither NCHW nor dilated gradients
        raise SystemExit("conv_grad_kernels.py compares oneDNN kernels: unset TF_ENABLE_ONEDNN_OPTS=0")
    totals = {}
    for size, c_in, c_out, k, rate in shapes:
        x, dy = tf.random.normal([BATCH, size, size, c_in]), tf.random.normal([BATCH, size, size, c_out])
        w = tf.random.normal([k, k, c_in, c_out])
        rows = {**{f"filter/{n}": v for n, v in compare(FILTER, (x, dy, k, rate)).items()},
                **{f"input/{n}": v for n, v in compare(INPUT, (dy, w, rate)).items()}}
        for name, (ms, _) in rows.items():
            totals[name] = totals.get(name, 0.0) + ms
        print(f"{size:3d}² {c_in:4d}→{c_out:4d} {k}×{k} rate {rate}: "
              + "  ".join(f"{n} {ms:6.1f} ms ({err:.0e})" for n, (ms, err) in rows.items()), flush=True)
    print(f"cap {os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')}, totals: "
          + "  ".join(f"{n} {ms:.0f} ms" for n, ms in totals.items()))
    return totals


if __name__ == "__main__":
    main()
