"""Arithmetic of a training step and the machine's arithmetic ceiling: how close a step is to what the CPU can do.

A speed target against a peer ("1.25x its images/s") can only be met while the peer runs below the machine's
ceiling divided by 1.25. These functions put both steps on that scale: the floating-point operations a step
executes, counted from our traced graph (the peer's network is the same: its forward pass, counted by
PyTorch, is checked equal), and the fp32 matrix-multiply rate of the same threads and instruction set, the
ceiling dense convolutions approach.

    python experiments/speed/benchmark.py roofline --size 256 --batch 4
"""

import time

import numpy as np

# Multiply-adds of one op from the static shapes of its graph: the filter is input 1 of a forward convolution
# and of its data gradient, the output of its filter gradient; the output gradient is the last input of both
# gradients. Two FLOPs per multiply-add.
_CONVOLUTION_OPS = {
    "Conv2D": lambda op: (op.outputs[0], op.inputs[1], False),
    "Conv2DBackpropInput": lambda op: (op.inputs[2], op.inputs[1], False),
    "Conv2DBackpropFilter": lambda op: (op.inputs[2], op.outputs[0], False),
    "DepthwiseConv2dNative": lambda op: (op.outputs[0], op.inputs[1], True),
    "DepthwiseConv2dNativeBackpropInput": lambda op: (op.inputs[2], op.inputs[1], True),
    "DepthwiseConv2dNativeBackpropFilter": lambda op: (op.inputs[2], op.outputs[0], True),
}


def _static(shape, op):
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ValueError(f"{op.type} {op.name!r} has a dynamic shape {dims}: trace with a fixed input size")
    return dims


def op_flops(op):
    """FLOPs of one convolution or matrix-multiply op of a traced graph; 0 for any other op."""
    if op.type in _CONVOLUTION_OPS:
        out, kernel, depthwise = _CONVOLUTION_OPS[op.type](op)
        out, kernel = _static(out.shape, op), _static(kernel.shape, op)
        taps = kernel[0] * kernel[1] * (1 if depthwise else kernel[2])  # multiply-adds per output value
        return 2 * int(np.prod(out)) * taps
    if op.type in ("MatMul", "BatchMatMulV2"):
        a, out = _static(op.inputs[0].shape, op), _static(op.outputs[0].shape, op)
        inner = a[-2] if op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x") else a[-1]
        return 2 * int(np.prod(out)) * inner
    return 0


def op_kinds(graph):
    """Op name → ("<op type> <kernel height>x<width>", FLOPs) for the convolutions and matrix multiplies of a
    traced graph.

    Ops whose outputs nothing reads are left out: TensorFlow prunes them before running (the gradient with
    respect to the input image, which every convolution's gradient function also returns, is one).
    """
    kinds = {}
    for op in graph.get_operations():
        flop = op_flops(op) if any(output.consumers() for output in op.outputs) else 0
        if flop:
            kernel = _CONVOLUTION_OPS[op.type](op)[1].shape if op.type in _CONVOLUTION_OPS else None
            kinds[op.name] = (f"{op.type} {kernel[0]}x{kernel[1]}" if kernel else op.type, flop)
    return kinds


def graph_flops(graph):
    """Op type → FLOPs summed over a traced graph's convolutions and matrix multiplies that run."""
    totals = {}
    for kind, flop in op_kinds(graph).values():
        op_type = kind.split(" ")[0]
        totals[op_type] = totals.get(op_type, 0) + flop
    return totals


def step_flops(task, size, batch, width=1.0):
    """Op type → FLOPs of one of our training steps, as `experiments.speed.train_step` builds and runs it."""
    from surrogate_supervision.experiments.speed.train_step import build_traced_step

    step, data, _ = build_traced_step(task, size, batch, width, xla=False)
    return graph_flops(step.get_concrete_function(data).graph)


def torch_forward_flops(model, inputs):
    """FLOPs PyTorch counts for one forward pass: the check that the peer's network computes what ours does.

    Only the forward pass: `FlopCounterMode` counts a grouped convolution's backward as if it were dense, which
    overstates the cost of the peer's depthwise ASPP/decoder layers (seen: experiments/results/speed_notes.md).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs)
    return counter.get_total_flops()


def _rate(multiply, n, seconds):
    """GFLOP/s of the best of several timed n×n×n multiplies, each a separate call, run for about `seconds`."""
    multiply()  # warm-up: kernel choice, allocation
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        tick = time.perf_counter()
        multiply()
        best = min(best, time.perf_counter() - tick)
    return 2 * n**3 / best / 1e9


def tensorflow_matmul_gflops(n=2048, seconds=5.0):
    """TensorFlow's fp32 matrix-multiply rate on this process's threads (oneDNN's sgemm where oneDNN is on)."""
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[0, 0]))
    return _rate(lambda: float(matmul()), n, seconds)


def torch_matmul_gflops(n=2048, seconds=5.0):
    """PyTorch's fp32 matrix-multiply rate on its threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return _rate(lambda: float(torch.mm(a, b)[0, 0]), n, seconds)
