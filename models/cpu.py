"""Settings TensorFlow reads once, when it loads: set here, imported first by the `models` package.

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

import os
import platform
import sys


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


quiet_tensorflow()
enable_onednn()
