from experiments.onednn_kernels import kernel_times

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
