"""Settings TensorFlow reads once, when it loads, set here (imported first by the `models` package), and the
CPU queries the layers and the runner share (flags, oneDNN cap, whether oneDNN runs below AVX-512).

Every script's first TensorFlow-loading import goes through `models` (or `models.runner`, inside it), so
TensorFlow's C++ start-up chatter is silenced (TF_CPP_MIN_LOG_LEVEL=2; real warnings still show) and oneDNN
is on before TensorFlow is imported. `pyproject.toml` orders `models` imports before third-party
ones to keep it so.

TensorFlow's Linux x86 wheels turn their oneDNN kernels on by default only where the CPU has AVX512_VNNI,
AVX512_BF16, AVX_VNNI or AMX. On the many machines without them (an AVX2 AMD EPYC, say) every convolution,
its gradients and BatchNorm run on Eigen's generic kernels instead, and dilated depthwise convolutions go
through SpaceToBatchND: this network's training step measured 1.6–1.8× slower that way (see
experiments/results/benchmarks.md). oneDNN picks its AVX2 or AVX-512 code at run time, so it is turned on
everywhere on x86 Linux unless the user has chosen (TF_ENABLE_ONEDNN_OPTS=0 still turns it off).
"""

import functools
import os
import platform
import sys

# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA) below AVX-512.
ONEDNN_ISAS_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def enable_onednn(environ=os.environ, machine=None, system=sys.platform):
    """Sets TF_ENABLE_ONEDNN_OPTS=1 on x86 Linux unless already set; returns whether it did.

    Has an effect only before TensorFlow is imported (TensorFlow reads the variable once, at load).
    """
    machine = (machine or platform.machine()).lower()
    if system != "linux" or machine not in ("x86_64", "amd64") or "TF_ENABLE_ONEDNN_OPTS" in environ:
        return False
    environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return True


def quiet_tensorflow(environ=os.environ):
    """TF_CPP_MIN_LOG_LEVEL=2 unless already set: start-up INFO lines hidden, warnings and errors kept."""
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where that file is absent."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def onednn_isa_cap():
    """The instruction-set cap set by ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA); "" when none."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return "" if cap.upper() in ("ALL", "DEFAULT") else cap.upper()


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels (off by default on CPUs without AVX512_VNNI/BF16 or AMX)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def onednn_below_avx512_reason():
    """Why TensorFlow's oneDNN kernels run below AVX-512 here (no AVX-512, or a cap), or None where they do not
    (AVX-512, not x86, or oneDNN off). Some of those kernels are several times slower there than the same
    arithmetic done otherwise: fused inference convolutions, BatchNorm's forward pass (benchmarks.md)."""
    if not onednn_enabled():
        return None
    flags = cpu_flags()
    if flags and "avx512f" not in flags:  # an x86 CPU (its /proc/cpuinfo has "flags") without AVX-512
        return "this CPU has no AVX-512"
    if onednn_isa_cap() in ONEDNN_ISAS_BELOW_AVX512:
        return f"ONEDNN_MAX_CPU_ISA={onednn_isa_cap()} caps oneDNN below AVX-512"
    return None


@functools.cache
def slow_onednn_kernels():
    """Whether two of oneDNN's kernels should be avoided on this machine (read once per process): below AVX-512
    and with no GPU, BatchNorm's forward pass and convolution weight gradients are faster done otherwise.

    - BatchNorm forward: oneDNN 3.7's kernel on TensorFlow's NHWC tensors (`bnorm_tbb_jit:avx2`) took 43 ms for
      a 4×64×64×256 activation against 5 ms natively (ONEDNN_VERBOSE, an Intel Xeon capped at AVX2), its
      backward the same 6-8 ms on both; on a real AVX2-only CPU (AMD EPYC Zen 3) 6.6 ms, and the plain-ops
      forward (`models.batchnorm`) still made the whole training step 2.6 % faster.
    - Weight gradients: oneDNN's AVX2 kernels for NHWC (`jit_1x1:avx2`, `jit:avx2`) cost 2.4× the blocked-layout
      ones PyTorch gets; the same gradient as one matrix multiply (`models.conv_grad`) made the step 3.1-4.6 %
      faster on that EPYC (three A/B runs, benchmarks.md).
    Only on CPU-only machines: on a GPU the layers run cuDNN's kernels whatever the host CPU.
    """
    if onednn_below_avx512_reason() is None:
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


quiet_tensorflow()
enable_onednn()
