from experiments.onednn_kernels import kernel_times

LOG = """onednn_verbose,v1,info,cpu,isa:Intel AVX2
onednn_verbose,v1,primitive,exec,cpu,convolution,jit_1x1:avx2,backward_weights,src:f32::blocked:acdb::f0 wei:f32,,mb4,10.5
onednn_verbose,v1,primitive,exec,cpu,convolution,jit_1x1:avx2,backward_weights,src:f32::blocked:acdb::f0 wei:f32,,mb4,2.5
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32:a:blocked:aBcd8b::f0,,mb4,4.0
onednn_verbose,v1,primitive,create:cache_miss,cpu,convolution,jit:avx2,forward_training,src:f32,,mb4,99.0
some other line,7.0
"""


def test_kernel_times_sums_exec_lines_by_primitive_implementation_and_layout():
    times = kernel_times(LOG)
    assert times == {("convolution", "jit_1x1:avx2", "backward_weights", "nhwc"): (13.0, 2),
                     ("convolution", "jit:avx2", "forward_training", "blocked"): (4.0, 1)}
    assert list(times)[0][2] == "backward_weights"  # largest first
