"""Scale: tf.distribute (mirrored on logical CPU devices, two workers on localhost) and mixed precision."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--width", "0.125", "--crop", "65", "--batch", "2"]

# Runs in a fresh interpreter: logical CPU devices must be configured before TensorFlow starts.
MIRRORED_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    keras.config.set_floatx("float64")
    from surrogate_supervision.models import build_deeplabv3plus
    from surrogate_supervision.models.batchnorm import BatchNormalization
    from surrogate_supervision.models.losses import make_loss
    from surrogate_supervision.models.runner.training import make_distributed_step

    x = tf.random.stateless_uniform((4, 65, 65, 3), [1, 2], -1, 1, dtype="float64")
    y = tf.random.stateless_uniform((4, 65, 65), [3, 4], 0, 5, tf.int32)

    def one_step(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build_deeplabv3plus(5, width=0.125)
            model.get_layer("aspp_dropout").rate = 0.0  # dropout masks differ per replica by design
            model.compile(optimizer=keras.optimizers.SGD(1e-2), loss=make_loss("ce", 5))
            model.optimizer.build(model.trainable_variables)
        before = [v.numpy() for v in model.trainable_variables]
        data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((x, y)))
        logs = make_distributed_step(model.train_step, strategy)(next(iter(data)))
        updates = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
        bn = model.get_layer("conv2_block1_1_bn")
        return (strategy.num_replicas_in_sync, float(logs["loss"]), updates, bn.moving_mean.numpy(),
                bn.moving_variance.numpy())

    def synchronised_normalisation_error(strategy):
        # float32 BatchNorm across replicas on channels whose mean is 30 times their spread
        data = np.random.default_rng(0).normal(30, 1, (4, 8, 8, 16)).astype("float32")
        with strategy.scope():
            bn = BatchNormalization(epsilon=1e-5, synchronized=True, dtype="float32")
            bn.build(data.shape)
        batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(data))))
        out = strategy.run(lambda t: bn(t, training=True), args=(batch,))
        y = np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])
        exact = (data - data.astype("float64").mean((0, 1, 2))) / np.sqrt(data.astype("float64").var((0, 1, 2)) + 1e-5)
        return float(np.abs(y - exact).max())

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = one_step(tf.distribute.get_strategy())
    mirrored = one_step(strategy)
    relative = [float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
                for a, b in zip(single[2], mirrored[2]) if np.abs(a).max() > 1e-6]
    print(json.dumps({"replicas": mirrored[0], "loss": [single[1], mirrored[1]],
                      "update_relative_difference": max(relative),
                      "moving_mean": float(np.abs(single[3] - mirrored[3]).max()),
                      "moving_variance": float(np.abs(single[4] - mirrored[4]).max()),
                      "synchronised_normalisation_error": synchronised_normalisation_error(strategy)}))
""")


def test_mirrored_on_two_logical_cpus_matches_a_single_device_step():
    result = subprocess.run([sys.executable, "-c", MIRRORED_CHECK], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["loss"][0] == pytest.approx(report["loss"][1], rel=1e-12)
    # The same update from the same global batch: summed replica gradients equal the single-device gradient.
    # In float64, because in float32 this step is chaotic: ReLU and max-pool decisions flip under round-off,
    # so a 1e-7 relative change of the input alone moves some updates by 6 % (and by 7-20 % between the
    # fused and the synchronised BatchNorm, depending on the CPU). In float64 they agree to ~1e-11.
    assert report["update_relative_difference"] < 1e-8, report
    assert report["moving_mean"] < 1e-12 and report["moving_variance"] < 1e-12, report  # synchronised BatchNorm
    # Synchronised statistics in two passes: E[x²] − E[x]² (Keras' one pass) is off by ~2e-4 here.
    assert report["synchronised_normalisation_error"] < 2e-5, report


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(command):
    """Starts the same command as worker 0 (chief) and worker 1 of a localhost cluster; waits for both."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        tails = [f"worker {i} (exit {p.wait()}): {p.communicate()[1][-1500:]}" for i, p in enumerate(processes)]
        pytest.fail("a worker of the localhost cluster hung for 10 minutes (collective op waiting on its peer)\n"
                    + "\n".join(tails))
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs


def test_two_workers_on_localhost_pretrain_then_finetune(synthetic_root, tmp_path):
    colorize = tmp_path / "colorize"
    run_two_workers([sys.executable, "pretrain/colorize.py", "--data", str(synthetic_root), "--out", str(colorize),
                     "--steps", "2", "--checkpoint-every", "2", "--sample-every", "2", "--distribute", "multiworker",
                     *TINY])
    assert (colorize / "generator.weights.h5").is_file() and list((colorize / "samples").glob("*.png"))
    assert json.loads((colorize / "config.json").read_text())["replicas"] == 2
    assert not list((colorize / ".workers").glob("*/ckpt-*")), "only the chief keeps checkpoints"

    segment = tmp_path / "segment"
    run_two_workers([sys.executable, "finetune/segment.py", "--data", str(synthetic_root), "--out", str(segment),
                     "--steps", "2", "--checkpoint-every", "2", "--eval-every", "2", "--init", "surrogate",
                     "--surrogate", str(colorize), "--distribute", "multiworker", *TINY])
    metrics = json.loads((segment / "metrics.json").read_text())
    assert metrics["steps"] == 2 and 0 <= metrics["dice_mean"] <= 1


def test_mixed_precision_trains_finite_steps(synthetic_root, tmp_path):
    import keras

    from surrogate_supervision.pretrain.colorize import main, parse_args

    out = tmp_path / "colorize_mp"
    try:
        assert main(parse_args(["--data", str(synthetic_root), "--out", str(out), "--steps", "3",
                                "--checkpoint-every", "3", "--sample-every", "3", "--mixed-precision", *TINY])) == 0
    finally:
        keras.mixed_precision.set_global_policy("float32")
    config = json.loads((out / "config.json").read_text())
    from surrogate_supervision.models.runner.runtime import (
        slow_low_precision_reason,  # a CPU without native bfloat16 falls back to float32
    )
    assert config["precision"] in (("float32",) if slow_low_precision_reason() else ("mixed_bfloat16", "mixed_float16"))
    scores = json.loads((out / "pretrain_metrics.json").read_text())
    assert np.isfinite(scores["l1_colorized"])
