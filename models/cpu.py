"""Settings TensorFlow reads once, when it loads, set here (imported first by the `models` package), and the
CPU queries the layers and the runner share (flags, oneDNN cap, whether oneDNN runs below AVX-512).

Every script's first TensorFlow-loading import goes through `models` (or `models.runner`, inside it), so
oneDNN is on before TensorFlow is imported, and TensorFlow is imported here, its C++ start-up chatter dropped
(`import_tensorflow`; real warnings and errors still show). `pyproject.toml` orders `models` imports before
third-party ones to keep it so.

TensorFlow's Linux x86 wheels turn their oneDNN kernels on by default only where the CPU has AVX512_VNNI,
AVX512_BF16, AVX_VNNI or AMX. On the many machines without them (an AVX2 AMD EPYC, say) every convolution,
its gradients and BatchNorm run on Eigen's generic kernels instead, and dilated depthwise convolutions go
through SpaceToBatchND: this network's training step is far slower that way
(experiments/results/cpu_kernels.md). oneDNN picks its AVX2 or AVX-512 code at run time, so it is turned on
everywhere on x86 Linux unless the user has chosen (TF_ENABLE_ONEDNN_OPTS=0 still turns it off).
"""

import contextlib
import functools
import os
import platform
import re
import sys
import tempfile

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


# What TensorFlow's C++ side prints while it loads, before absl's logging is initialised and so whatever
# TF_CPP_MIN_LOG_LEVEL says (each of its two shared libraries prints its own copy): absl's notice that it
# logs to stderr until then, and INFO records ("oneDNN custom operations are on", "Could not find cuda drivers").
STARTUP_CHATTER = re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                             rb"STDERR|I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] ")
# The error TensorFlow's CUDA wheel logs on the first device query of a machine without an NVIDIA driver: no
# news there, and a real error on a machine that has one (so dropped only where it has none).
NO_DRIVER_CHATTER = re.compile(rb"E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] failed call to cuInit")


def has_nvidia_driver():
    """Whether an NVIDIA kernel driver is loaded (Linux); without one no GPU can be used."""
    return os.path.exists("/proc/driver/nvidia/version")


@contextlib.contextmanager
def dropping_stderr_lines(pattern):
    """Runs the block with file descriptor 2 captured, then writes back every line `pattern` does not match.

    At the descriptor, not `sys.stderr`: TensorFlow's C++ code writes there directly. What Python writes in the
    block goes through the same descriptor and comes back in order. Lines come back when the block ends, so
    output of a crash inside it (a segmentation fault, not an exception) would be lost: keep the block short.
    """
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to capture (closed): nothing would be printed anyway
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(keepends=True) if not pattern.match(line))
            while kept:
                kept = kept[os.write(2, kept):]


def import_tensorflow(environ=os.environ):
    """Imports TensorFlow, and on a machine without an NVIDIA driver lists its devices once, with the start-up
    chatter of both dropped (`STARTUP_CHATTER`, `NO_DRIVER_CHATTER`), so a script's first lines are its own.

    TF_CPP_MIN_LOG_LEVEL=2 no longer hides those lines: TensorFlow prints them before absl's logging reads any
    level. Nothing is dropped where the user asked for INFO lines (TF_CPP_MIN_LOG_LEVEL 0 or 1). Costs well
    under a millisecond beside the import's seconds; listing devices does not start TensorFlow's runtime, so
    thread and device settings made later still apply.
    """
    level = environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if not (level.isdigit() and int(level) >= 2):
        import tensorflow  # noqa: F401
        return
    no_driver = not has_nvidia_driver()
    pattern = re.compile(STARTUP_CHATTER.pattern + (b"|" + NO_DRIVER_CHATTER.pattern if no_driver else b""))
    with dropping_stderr_lines(pattern):
        import tensorflow as tf

        if no_driver:
            tf.config.list_physical_devices("GPU")  # cuInit fails here, logging NO_DRIVER_CHATTER


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
    arithmetic done otherwise: fused inference convolutions, BatchNorm's forward pass
    (experiments/results/cpu_kernels.md)."""
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

    - BatchNorm forward: oneDNN 3.7's kernel on TensorFlow's NHWC tensors (`bnorm_tbb_jit:avx2`) is several times
      slower than its AVX-512 one under an AVX2 cap, and much less so on a real AVX2-only CPU, where the plain-ops
      forward (`models.batchnorm`) still makes the whole training step a little faster, so it is kept there.
    - Weight gradients: oneDNN's AVX2 kernels for NHWC (`jit_1x1:avx2`, `jit:avx2`) cost more than twice the
      blocked-layout ones PyTorch gets; the same gradient as one matrix multiply (`models.conv_grad`) makes the step
      a few percent faster on a real AVX2-only CPU.
    The measurements, with their machines and commits: experiments/results/cpu_kernels.md.
    Only on CPU-only machines: on a GPU the layers run cuDNN's kernels whatever the host CPU.
    """
    if onednn_below_avx512_reason() is None:
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


quiet_tensorflow()
enable_onednn()
import_tensorflow()
