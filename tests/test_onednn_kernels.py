import pytest

from surrogate_supervision.experiments.speed.onednn_kernels import kernel_times

PRIMITIVE = "onednn_verbose,v1,primitive,{event},cpu,convolution,{impl},{prop},src:f32::blocked:{layout}::f0,,mb4,{ms}"
LOG = "\n".join([
    "onednn_verbose,v1,info,cpu,isa:Intel AVX2",
    PRIMITIVE.format(event="exec", impl="jit_1x1:avx2", prop="backward_weights", layout="acdb", ms=10.5),
    PRIMITIVE.format(event="exec", impl="jit_1x1:avx2", prop="backward_weights", layout="acdb", ms=2.5),
    PRIMITIVE.format(event="exec", impl="jit:avx2", prop="forward_training", layout="aBcd8b", ms=4.0),
    PRIMITIVE.format(event="create:cache_miss", impl="jit:avx2", prop="forward_training", layout="abcd", ms=99.0),
    "some other line,7.0",
])


def test_kernel_times_sums_exec_lines_by_primitive_implementation_and_layout():
    times = kernel_times(LOG)
    assert times == {("convolution", "jit_1x1:avx2", "backward_weights", "nhwc"): (13.0, 2),
                     ("convolution", "jit:avx2", "forward_training", "blocked"): (4.0, 1)}
    assert list(times)[0][2] == "backward_weights"  # largest first


def test_every_gradient_formulation_equals_tensorflows(monkeypatch, capsys):
    """conv_grad_kernels.py's alternatives compute the same gradients (small shapes, a dilated 3×3 included)."""
    import surrogate_supervision.experiments.speed.conv_grad_kernels as grads

    if not grads.onednn_enabled():
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's own kernels have no NCHW or dilated gradients")
    monkeypatch.setattr(grads, "ROUNDS", 1)
    for size, c_in, c_out, k, rate in ((6, 8, 4, 1, 1), (7, 4, 8, 3, 1), (9, 4, 4, 3, 2)):
        x, dy = grads.tf.random.normal([2, size, size, c_in]), grads.tf.random.normal([2, size, size, c_out])
        w = grads.tf.random.normal([k, k, c_in, c_out])
        for results in (grads.compare(grads.FILTER, (x, dy, k, rate)), grads.compare(grads.INPUT, (dy, w, rate))):
            assert all(error < 1e-5 for _, error in results.values()), results
    assert set(grads.main(shapes=((5, 4, 4, 3, 2),))) == {f"filter/{n}" for n in grads.FILTER} | {
        f"input/{n}" for n in grads.INPUT}
    assert "totals" in capsys.readouterr().out
