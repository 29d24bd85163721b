"""experiments/speed/benchmark.py runs at tiny sizes and reports sane fields (no speed assertions)."""

import json

from surrogate_supervision.models import conv_grad

import pytest

from surrogate_supervision.experiments.speed.benchmark import main


def run(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("task", ["segment", "colorize"])
def test_train_step_reports_throughput_and_memory(capsys, task):
    result = run(capsys, "train-step", "--task", task, "--size", "64", "--batch", "2", "--width", "0.125",
                 "--warmup", "1", "--repeats", "2", "--steps", "1")
    assert result["task"] == task and result["batch"] == 2 and result["precision"] == "float32"
    assert result["seconds_per_step"] > 0 and len(result["repeats_seconds_per_step"]) == 2
    assert result["images_per_second"] == pytest.approx(2 / result["seconds_per_step"])
    assert result["parameters"] > 100_000 and result["peak_rss_mb"] > 100
    assert result["cpu_model"] and isinstance(result["cpu_isa"], list) and result["onednn_max_cpu_isa"]
    assert isinstance(result["tensorflow_onednn"], bool)


def test_train_step_reports_model_flops_utilisation(capsys):
    result = run(capsys, "train-step", "--size", "64", "--batch", "2", "--width", "0.125", "--warmup", "1",
                 "--repeats", "1", "--steps", "1", "--peak-tflops", "0.5")
    assert result["gflop_per_step"] > 0
    assert result["tflops_per_second"] == pytest.approx(result["gflop_per_step"] / 1e3 / result["seconds_per_step"])
    assert result["model_flops_utilisation"] == pytest.approx(result["tflops_per_second"] / 0.5)


def test_data_pipeline_reports_images_per_second(capsys, synthetic_root):
    result = run(capsys, "data", "--data", str(synthetic_root), "--crop", "65", "--batch", "2", "--warmup", "1",
                 "--repeats", "2", "--steps", "1")
    assert result["images_per_second"] > 0 and result["crop"] == 65


def test_predict_reports_latency(capsys):
    result = run(capsys, "predict", "--size", "65", "--width", "0.125", "--warmup", "1", "--repeats", "1",
                 "--steps", "1")
    assert result["seconds_per_image"] > 0


@pytest.mark.parametrize("matmul_weight_gradients", [False, True])
def test_profile_splits_step_time_by_op_type_and_network_part(capsys, monkeypatch, matmul_weight_gradients):
    """Also where the backbone's weight gradients are matmuls (`conv_grad`, CPUs below AVX-512)."""
    monkeypatch.setattr(conv_grad, "slow_onednn_kernels", lambda: matmul_weight_gradients)
    result = run(capsys, "profile", "--task", "segment", "--size", "65", "--batch", "2", "--width", "0.125",
                 "--warmup", "1", "--steps", "1")
    assert result["op_seconds_per_step"] > 0
    assert sum(result["percent_by_part"].values()) == pytest.approx(100, abs=0.5)
    assert {"backbone", "aspp", "decoder", "optimizer"} <= set(result["percent_by_part"])
    assert any("Conv2D" in op for op in result["percent_by_op_type"])
    assert result["percent_by_op_type"].get("ResourceApplyAdam", 0) > 0  # the fused Adam kernel runs
    rates = result["convolution_rates"]  # each kind of convolution timed, at the rate its FLOPs ran
    weight_gradient = "MatMul" if matmul_weight_gradients else "Conv2DBackpropFilter 3x3"
    assert {"Conv2D 1x1", weight_gradient, "Conv2DBackpropInput 1x1"} <= set(rates)
    assert all(kind["gflops_per_second"] > 0 for kind in rates.values())


def test_roofline_puts_both_steps_on_the_matmul_scale(capsys):
    import importlib.util

    if not (importlib.util.find_spec("torch") and importlib.util.find_spec("segmentation_models_pytorch")):
        pytest.skip("the peer needs torch and segmentation_models_pytorch (the `bench` extra)")
    result = run(capsys, "roofline", "--size", "64", "--batch", "2", "--warmup", "1", "--repeats", "2", "--steps", "1")
    assert result["forward_gflop_per_image"]["peer"] == pytest.approx(result["forward_gflop_per_image"]["ours"],
                                                                      rel=0.01)
    for side, seconds in (("ours", result["ours_seconds_per_step"]), ("peer", result["seconds_per_step"])):
        assert result["gflops_per_second"][side] == pytest.approx(result["gflop_per_step"] / seconds)
    ceiling = result["matmul_gflops_per_second"]
    assert result["fraction_of_matmul_rate"]["ours"] == pytest.approx(result["gflops_per_second"]["ours"] / ceiling)
    assert result["ratio_ours_to_peer_at_matmul_rate"] == pytest.approx(ceiling / result["gflops_per_second"]["peer"])


def test_each_command_keeps_its_own_steps_default():
    """`scale` times 500 steps by default, every other command 3: one command's default must not leak into the
    others' (argparse shares a parent parser's actions, and `set_defaults` on one child once changed them all)."""
    from surrogate_supervision.experiments.speed.benchmark import parse_args

    assert {command: parse_args([command]).steps for command in ("train-step", "peer", "roofline", "profile",
                                                                 "predict", "scale")} == {
        "train-step": 3, "peer": 3, "roofline": 3, "profile": 3, "predict": 3, "scale": 500}
    assert parse_args(["data", "--data", "x"]).steps == 3


def test_peer_in_a_process_of_its_own_answers_each_step():
    """`peer --peer-process own`: the step runs in a child process, whose library output stays off the protocol."""
    import os

    from surrogate_supervision.experiments.speed.benchmark import PeerProcess

    peer = PeerProcess(16, 2, builder="tests.helpers:stand_in_peer")
    assert {k: peer.info[k] for k in ("framework", "size", "batch")} == {"framework": "stand-in", "size": 16,
                                                                          "batch": 2}
    assert peer.info["pid"] == peer.child.pid != os.getpid()
    for _ in range(3):
        peer()
    peer.close()
    assert peer.child.returncode == 0


def test_peer_process_that_cannot_build_its_step_says_so():
    from surrogate_supervision.experiments.speed.benchmark import PeerProcess

    with pytest.raises(SystemExit, match="could not build its step"):
        PeerProcess(16, 2, builder="tests.helpers:no_such_builder")


def test_peer_own_process_reports_the_peer_beside_ours(capsys):
    import importlib.util

    if not (importlib.util.find_spec("torch") and importlib.util.find_spec("segmentation_models_pytorch")):
        pytest.skip("the peer needs torch and segmentation_models_pytorch (the `bench` extra)")
    result = run(capsys, "peer", "--peer-process", "own", "--size", "64", "--batch", "2", "--warmup", "1",
                 "--repeats", "2", "--steps", "1")
    assert result["peer_process"] == "own" and result["framework"].startswith("torch")
    assert len(result["repeats_seconds_per_step"]) == len(result["ours_repeats_seconds_per_step"]) == 2
    assert result["ratio_ours_to_peer"] == pytest.approx(result["seconds_per_step"] / result["ours_seconds_per_step"])


@pytest.mark.parametrize("command", ["profile", "predict"])
def test_mixed_precision_flag_acts_in_profile_and_predict(capsys, command):
    """Both commands took --mixed-precision and silently measured float32.

    Only where this CPU trains in bfloat16 (`slow_low_precision_reason` is None): forcing it elsewhere asked
    TensorFlow for kernels that some CPUs lack (CI's CPU: "Conv2DBackpropInput" InvalidArgumentError in the
    profile's step; under ONEDNN_MAX_CPU_ISA=AVX2: no oneDNN convolution primitive). The float32 fallback there is
    tests/test_runner_runtime.py's."""
    from surrogate_supervision.models.runner.runtime import slow_low_precision_reason

    import keras

    reason = slow_low_precision_reason()
    if reason:
        pytest.skip(f"--mixed-precision trains in float32 on this CPU: {reason}")
    try:
        result = run(capsys, command, "--size", "65", "--batch", "1", "--width", "0.125", "--warmup", "1",
                     "--repeats", "1", "--steps", "1", "--mixed-precision")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result["precision"] == "mixed_bfloat16"
    if command == "profile":
        assert "Cast" in result["percent_by_op_type"]
