"""--mixed-precision never slows a run: bfloat16 only on CPUs where it measures faster, else float32 + warning."""

import os

from surrogate_supervision.models import cpu as models_cpu
from surrogate_supervision.models.runner import runtime

import keras
import pytest


@pytest.fixture
def cpu(monkeypatch):
    """Pretends to be a GPU-less machine with the given /proc/cpuinfo flags and oneDNN environment."""
    monkeypatch.setattr(runtime.tf.config, "list_physical_devices", lambda kind=None: [])
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS"):
        monkeypatch.delenv(name, raising=False)

    def set_cpu(flags, onednn=True, speedup=1.75, **env):
        for module in (runtime, models_cpu):
            monkeypatch.setattr(module, "cpu_flags", lambda: set(flags.split()))
            monkeypatch.setattr(module, "onednn_enabled", lambda: onednn)
        monkeypatch.setattr(runtime, "bfloat16_speedup", lambda: speedup)  # 1.75: measured on an AMD EPYC
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    yield set_cpu
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("flags, env", [
    ("fpu avx2 avx512f avx512_bf16", {}),
    ("fpu avx2 avx512f amx_bf16 amx_tile", {}),
    ("fpu avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}),
    ("fpu avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "ALL"}),
])
def test_bfloat16_where_the_cpu_has_native_bfloat16(cpu, capsys, flags, env):
    cpu(flags, **env)
    assert runtime.slow_low_precision_reason() is None
    assert runtime.set_precision(True) == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("flags, env, why", [
    ("fpu avx2 fma", {}, "no native bfloat16"),
    ("fpu avx2 avx512f avx512_vnni", {}, "no native bfloat16"),
    ("fpu avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "ONEDNN_MAX_CPU_ISA=AVX2"),
    ("fpu avx2 avx512f avx512_bf16", {"DNNL_MAX_CPU_ISA": "avx512_core"}, "ONEDNN_MAX_CPU_ISA=AVX512_CORE"),
    ("fpu avx2 avx512f avx512_bf16", {"onednn": False}, "oneDNN kernels are off"),
    # an Intel Xeon with avx512_bf16 and no AMX, measured: bfloat16 at 0.64x the float32 step
    ("fpu avx2 avx512f avx512_bf16", {"speedup": 0.68}, "bottleneck blocks' training step at 0.68x float32's speed"),
    ("fpu avx2 avx512f amx_bf16", {"speedup": 1.05}, "at 1.05x float32's speed (kept only from 1.1x)"),
])
def test_float32_and_one_warning_line_where_bfloat16_would_be_slow(cpu, capsys, flags, env, why):
    cpu(flags, **env)
    assert runtime.set_precision(True) == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: mixed precision ignored") and why in err


def test_the_bfloat16_measurement_times_both_precisions_and_leaves_the_policy_alone():
    before = keras.mixed_precision.global_policy().name
    speedup = runtime.bfloat16_speedup.__wrapped__()  # uncached: a real measurement on this CPU
    assert 0.01 < speedup < 100 and keras.mixed_precision.global_policy().name == before
    assert runtime._bottleneck_step_seconds("mixed_bfloat16", size=8, channels=16, repeats=1) > 0


def test_the_bfloat16_measurement_weighs_every_resnet50_stage_by_its_blocks(monkeypatch):
    """On an Intel Xeon with AMX the first stage's block ran no faster in bfloat16 (1.00) while the later stages
    did (1.33-1.84) and the whole network's step 1.64x: a check of the first block alone refused that gain."""
    measured = {(64, 256): 1.00, (32, 512): 1.33, (16, 1024): 1.57, (16, 2048): 1.84}  # bfloat16 speedups there
    float32_seconds = {(64, 256): 0.064, (32, 512): 0.042, (16, 1024): 0.034, (16, 2048): 0.108}
    timed = []

    def fake_seconds(policy, size, channels):
        timed.append((policy, size, channels))
        seconds = float32_seconds[size, channels]
        return seconds if policy == "float32" else seconds / measured[size, channels]

    monkeypatch.setattr(runtime, "_bottleneck_step_seconds", fake_seconds)
    speedup = runtime.bfloat16_speedup.__wrapped__()
    assert sorted(set(timed)) == sorted((p, s, c) for p in ("float32", "mixed_bfloat16") for s, c in measured)
    blocks = {(64, 256): 3, (32, 512): 4, (16, 1024): 6, (16, 2048): 3}
    float32 = sum(blocks[k] * float32_seconds[k] for k in blocks)
    assert speedup == pytest.approx(float32 / sum(blocks[k] * float32_seconds[k] / measured[k] for k in blocks))
    assert speedup > runtime.MIN_BFLOAT16_SPEEDUP > measured[64, 256]  # kept, where the first block alone was not


def test_float32_asked_is_float32_without_warning(cpu, capsys):
    cpu("fpu avx2")
    assert runtime.set_precision(False) == "float32" and capsys.readouterr().err == ""


def test_float16_on_gpu(monkeypatch):
    monkeypatch.setattr(runtime.tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"])
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set())
    try:
        assert runtime.set_precision(True) == "mixed_float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\n")
    assert runtime.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512_bf16"}
    assert runtime.cpu_flags(str(tmp_path / "missing")) == set()


def test_onednn_turned_on_before_tensorflow_loads_on_x86_linux_unless_the_user_chose():
    from surrogate_supervision.models.cpu import enable_onednn

    env = {}
    assert enable_onednn(env, "x86_64", "linux") and env == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    env = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert not enable_onednn(env, "x86_64", "linux") and env == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    for machine, system in (("aarch64", "linux"), ("AMD64", "win32")):
        env = {}
        assert not enable_onednn(env, machine, system) and env == {}
    assert runtime.onednn_enabled() == (os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0")


@pytest.mark.parametrize("flags, env, why", [
    ("fpu avx2 fma", {}, "no AVX-512"),
    ("fpu avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "avx2"}, "ONEDNN_MAX_CPU_ISA=AVX2"),
    ("fpu avx2 avx512f avx512_bf16", {}, None),
    ("fpu avx2 avx512f", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, None),
    ("fpu avx2 fma", {"onednn": False}, None),  # Eigen's fused kernels: the remapper is TensorFlow's default there
    ("", {}, None),  # not x86 (no "flags" line in /proc/cpuinfo)
])
def test_fused_inference_is_slow_below_avx512_with_onednn(cpu, flags, env, why):
    cpu(flags, **env)
    reason = runtime.slow_fused_inference_reason()
    assert reason is None if why is None else why in reason


@pytest.fixture
def optimizer_options(monkeypatch):
    """TensorFlow's process-wide Grappler options, replaced by a dict for the test."""
    options = {}
    monkeypatch.setattr(runtime.tf.config.optimizer, "get_experimental_options", lambda: dict(options))
    monkeypatch.setattr(runtime.tf.config.optimizer, "set_experimental_options", options.update)
    return options


@pytest.mark.parametrize("flags, env, remapping", [
    ("fpu avx2 fma", {}, False),
    ("fpu avx2 avx512f avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
    ("fpu avx2 avx512f avx512_bf16", {}, None),
])
def test_configure_switches_the_remapper_off_where_its_fusions_are_slow(cpu, optimizer_options, flags, env,
                                                                       remapping):
    cpu(flags, **env)
    runtime.configure(seed=0)
    assert optimizer_options.get("remapping") is remapping


def test_a_remapper_setting_the_user_made_is_kept(cpu, optimizer_options):
    cpu("fpu avx2 fma")
    optimizer_options["remapping"] = True
    assert runtime.avoid_slow_fused_inference() == "this CPU has no AVX-512"
    assert optimizer_options == {"remapping": True}
