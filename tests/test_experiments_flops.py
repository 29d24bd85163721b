"""experiments/speed/flops.py: FLOPs counted from traced graphs against hand counts, and the matmul-rate probe."""

from surrogate_supervision.models import conv_grad

import numpy as np
import pytest
import tensorflow as tf

from surrogate_supervision.experiments.speed import flops


def traced(fn, *specs):
    return tf.function(fn).get_concrete_function(*specs).graph


def test_convolution_counts_two_flops_per_multiply_add():
    kernel = tf.random.normal((3, 3, 3, 5))
    graph = traced(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"), tf.TensorSpec((2, 8, 8, 3)))
    assert flops.graph_flops(graph) == {"Conv2D": 2 * (2 * 8 * 8 * 5) * (3 * 3 * 3)}


def test_gradient_nobody_reads_is_not_counted():
    """The tape's data gradient of a convolution over a constant input is built and then pruned by TensorFlow."""
    kernel = tf.Variable(tf.random.normal((3, 3, 4, 6)))

    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 2, "SAME"))
        return tape.gradient(loss, kernel)

    graph = traced(step, tf.TensorSpec((2, 16, 16, 4)))
    forward = 2 * (2 * 8 * 8 * 6) * (3 * 3 * 4)
    assert {"Conv2DBackpropInput", "Conv2DBackpropFilter"} <= {op.type for op in graph.get_operations()}
    assert flops.graph_flops(graph) == {"Conv2D": forward, "Conv2DBackpropFilter": forward}
    assert sorted(flops.op_kinds(graph).values()) == [("Conv2D 3x3", forward), ("Conv2DBackpropFilter 3x3", forward)]


def test_depthwise_and_its_gradients_count_per_channel():
    kernel = tf.Variable(tf.random.normal((3, 3, 8, 1)))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.depthwise_conv2d(x, kernel, (1, 1, 1, 1), "SAME", dilations=(2, 2)) ** 2)
        return tape.gradient(loss, [x, kernel])

    counts = flops.graph_flops(traced(step, tf.TensorSpec((1, 10, 10, 8))))
    forward = 2 * (10 * 10 * 8) * 9
    assert counts == {"DepthwiseConv2dNative": forward, "DepthwiseConv2dNativeBackpropInput": forward,
                      "DepthwiseConv2dNativeBackpropFilter": forward}


def test_matmul_inner_dimension_follows_transpose():
    b = tf.random.normal((7, 5))
    graph = traced(lambda a: tf.matmul(a, b, transpose_a=True), tf.TensorSpec((7, 3)))
    assert flops.graph_flops(graph) == {"MatMul": 2 * 3 * 5 * 7}


def test_dynamic_shape_is_refused_with_the_op_named():
    kernel = tf.random.normal((1, 1, 3, 2))
    graph = traced(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME", name="probe"), tf.TensorSpec((None, 4, 4, 3)))
    with pytest.raises(ValueError, match="probe.*fixed input size"):
        flops.graph_flops(graph)


@pytest.mark.parametrize("matmul_weight_gradients", [False, True])
def test_segmentation_step_counts_forward_and_both_gradients(monkeypatch, matmul_weight_gradients):
    """Every convolution has a trainable kernel (weight gradient = forward); only the stem's data gradient, with
    respect to the image, is pruned. Where the backbone's weight gradients are matmuls (`conv_grad`, on
    CPUs below AVX-512) the same FLOPs are counted under MatMul."""
    monkeypatch.setattr(conv_grad, "slow_onednn_kernels", lambda: matmul_weight_gradients)
    counts = flops.step_flops("segment", 64, 2, width=0.125)
    forward = counts["Conv2D"] + counts.get("DepthwiseConv2dNative", 0)
    assert counts["Conv2DBackpropFilter"] + counts.get("MatMul", 0) == counts["Conv2D"]
    assert ("MatMul" in counts) is matmul_weight_gradients
    stem = 2 * (2 * 32 * 32 * 8) * (7 * 7 * 3)  # 7×7 stride-2 convolution, 64 × 0.125 = 8 filters
    assert counts["Conv2DBackpropInput"] == counts["Conv2D"] - stem
    assert sum(counts.values()) == pytest.approx(3 * forward - stem)


def test_matmul_rate_is_positive():
    assert flops.tensorflow_matmul_gflops(n=64, seconds=0.05) > 0


def test_peer_forward_matches_ours():
    """The peer's network computes what ours does: forward FLOPs within 1 %."""
    import importlib.util

    torch = pytest.importorskip("torch")
    if importlib.util.find_spec("segmentation_models_pytorch") is None:  # imported by build_peer, after its shim
        pytest.skip("segmentation_models_pytorch is not installed (the `bench` extra)")
    from surrogate_supervision.models import build_deeplabv3plus

    from surrogate_supervision.experiments.speed.benchmark import build_peer

    ours = sum(flops.graph_flops(traced(build_deeplabv3plus(9), tf.TensorSpec((2, 96, 96, 3)))).values())
    peer = flops.torch_forward_flops(build_peer(96, 2)[1], torch.zeros(2, 3, 96, 96))
    assert peer == pytest.approx(ours, rel=0.01)
    assert np.isfinite(ours) and ours > 1e9
