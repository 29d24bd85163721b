"""colorize.py --colour-loss classify with the downstream probe, and segment.py --surrogate-checkpoint.

One tiny classify run with a probe every 2 steps is shared by the module (width 0.125, crop 65, synthetic data).
"""

import csv
import json
import math

from surrogate_supervision.models import build_deeplabv3plus, build_generator
from surrogate_supervision.models.deeplab import HEAD_LAYER
from surrogate_supervision.models.rundir import BEST_PROBE_FILE, BINS_FILE, GENERATOR_FILE, PROBE_FILE
from surrogate_supervision.models.surrogate_checkpoints import choose_surrogate
from surrogate_supervision.models.transfer import TransferError, load_generator

import keras
import numpy as np
import pytest

import surrogate_supervision.finetune.segment as segment
import surrogate_supervision.pretrain.colorize as colorize
from surrogate_supervision.pretrain.probe import Probe, ProbeSettings
from tests.test_pretrain import FLAGS, event_values

TINY_PROBE = ProbeSettings(train_images=4, crops_per_image=1, val_images=4, steps=20)


def probe_rows(out):
    with (out / PROBE_FILE).open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def classify_run(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("classify_probe")
    args = colorize.parse_args(["--data", str(synthetic_root), "--out", str(out), *FLAGS, "--steps", "4",
                                "--colour-loss", "classify", "--gan-weight", "0.5", "--probe-data",
                                str(synthetic_root), "--probe-every", "2"])
    assert colorize.main(args) == 0
    return out


def test_classify_run_records_its_recipe_and_bins(classify_run):
    config = json.loads((classify_run / "config.json").read_text())
    assert config["colour_loss"] == "classify" and config["predict"] == "classify" and config["gan_weight"] == 0.5
    assert config["probe_every"] == 2 and config["probe_data"]
    bins = json.loads((classify_run / BINS_FILE).read_text())
    used = np.array(bins["used"], bool)
    assert 0 < used.sum() < len(used) and sum(bins["counts"]) > 0
    assert np.sum(np.array(bins["prior"]) * np.array(bins["weights"])) == pytest.approx(1)
    generator = load_generator(classify_run)  # the mask of used bins travels with the weights
    np.testing.assert_array_equal(generator.get_layer("chroma").used.numpy() > 0, used)
    metrics = json.loads((classify_run / "pretrain_metrics.json").read_text())
    assert metrics["bin_ce_colorized"] > 0 and metrics["bin_ce_prior"] > 0  # the classification view of colour
    tags = event_values(classify_run / "logs")
    assert {"train/g_ce", "train/g_l1", "train/g_adv", "probe/dice_mean"} <= set(tags)


def test_probe_scores_the_initial_body_and_every_interval(classify_run):
    rows = probe_rows(classify_run)
    assert [r["step"] for r in rows] == [0, 2, 4]  # step 0: the random body, the baseline
    assert all(0 <= r["dice_mean"] <= 1 and r["probe_seconds"] > 0 for r in rows)
    assert event_values(classify_run / "logs")["probe/dice_mean"] == pytest.approx([r["dice_mean"] for r in rows])
    baseline = event_values(classify_run / "logs" / "probe_baseline")["probe/dice_mean"]
    assert baseline == pytest.approx([rows[0]["dice_mean"]] * 3)  # a flat line at the random body's Dice
    cost = json.loads((classify_run / "pretrain_metrics.json").read_text())["probe_cost"]
    assert cost["probes"] == 3 and 0 < cost["fraction"] < 1
    assert (classify_run / "probe" / "splits" / "train.txt").is_file()


def test_best_probe_generator_is_kept_beside_the_final_one(classify_run):
    assert (classify_run / BEST_PROBE_FILE).is_file() and (classify_run / GENERATOR_FILE).is_file()
    best = load_generator(classify_run / BEST_PROBE_FILE)
    assert best.architecture.output == "classify"


def test_resume_probes_only_new_steps(classify_run, synthetic_root):
    args = colorize.parse_args(["--data", str(synthetic_root), "--out", str(classify_run), *FLAGS, "--steps", "6",
                                "--colour-loss", "classify", "--gan-weight", "0.5", "--probe-data",
                                str(synthetic_root), "--probe-every", "2"])
    assert colorize.main(args) == 0
    assert [r["step"] for r in probe_rows(classify_run)] == [0, 2, 4, 6]


def test_best_probe_file_follows_the_best_later_step(synthetic_root, tmp_path):
    probe = Probe(synthetic_root, tmp_path, crop=65, settings=TINY_PROBE)
    generator = build_generator(width=0.125)
    scores = iter([0.9, 0.3, 0.5, 0.4])
    probe.score = lambda g: next(scores)
    kernel = generator.get_layer("logits").kernel
    stamps = []
    for step, value in zip([0, 10, 20, 30], [0.0, 1.0, 2.0, 3.0]):
        kernel.assign(np.full(kernel.shape, value, np.float32))
        probe(generator, step)
        stamps.append(load_generator(tmp_path / BEST_PROBE_FILE).get_layer("logits").kernel.numpy()[0, 0, 0, 0]
                      if (tmp_path / BEST_PROBE_FILE).exists() else None)
    # step 0 (the baseline) is never chosen; 20 beats 10; 30 does not beat 20
    assert stamps == [None, 1.0, 2.0, 2.0]


def colour_body():
    """A 'generator' whose body is the image itself at stride 4 (what the probe's head sees), with a head layer."""
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Lambda(lambda x: x[:, ::4, ::4, :])(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name=HEAD_LAYER)(features))


def test_probe_fits_a_head_that_beats_chance_on_easy_features(synthetic_root, tmp_path):
    """The linear probe itself works: features that are the image's colours separate the synthetic classes
    (each has a characteristic colour) far better than a constant body does."""
    probe = Probe(synthetic_root, tmp_path, crop=65, settings=ProbeSettings(train_images=8, val_images=4,
                                                                           steps=200, lr=0.05))
    constant = probe.score(build_generator(width=0.125))
    colour = probe.score(colour_body())
    assert math.isfinite(constant) and colour > constant + 0.1


@pytest.mark.parametrize("choice", ["final", "best-probe"])
def test_segment_starts_from_the_chosen_checkpoint(classify_run, synthetic_root, tmp_path, choice):
    out = tmp_path / choice
    args = segment.parse_args(["--data", str(synthetic_root), "--out", str(out), "--width", "0.125", "--crop", "65",
                               "--batch", "2", "--steps", "0", "--eval-every", "1", "--init", "surrogate",
                               "--surrogate", str(classify_run), "--surrogate-checkpoint", choice])
    expected = classify_run / (GENERATOR_FILE if choice == "final" else BEST_PROBE_FILE)
    assert choose_surrogate(classify_run, choice) == expected
    model = build_deeplabv3plus(2, width=0.125)
    from surrogate_supervision.models import transfer_weights

    report = transfer_weights(model, "surrogate", surrogate=choose_surrogate(args.surrogate, args.surrogate_checkpoint))
    assert report.source == str(expected)
    generator = load_generator(expected)
    np.testing.assert_array_equal(model.get_layer("decoder_conv2_pointwise").kernel.numpy(),
                                  generator.get_layer("decoder_conv2_pointwise").kernel.numpy())


def test_best_probe_without_a_probed_run_is_a_one_line_error(tmp_path):
    (tmp_path / GENERATOR_FILE).write_bytes(b"")
    with pytest.raises(TransferError, match=r"^surrogate_checkpoint best-probe: .* has no "
                                            r"generator_best_probe.weights.h5 \(pretraining with a downstream probe"):
        choose_surrogate(tmp_path, "best-probe")
    with pytest.raises(TransferError, match="best-probe needs the surrogate to be a run directory") as error:
        choose_surrogate(tmp_path / GENERATOR_FILE, "best-probe")
    assert error.value.param == "surrogate_checkpoint"
    assert choose_surrogate(tmp_path / GENERATOR_FILE, "final") == tmp_path / GENERATOR_FILE


@pytest.mark.parametrize("flags, message", [
    (["--colour-loss", "classify", "--l1-weight", "100"], "--l1-weight 100.0: weights the L1"),
    (["--colour-loss", "classify", "--predict", "rgb"], "--predict rgb: --colour-loss classify"),
    (["--gan-weight", "-1"], "--gan-weight must be >= 0"),
    (["--probe-every", "0"], "--probe-every must be >= 1"),
])
def test_parser_rejects_inconsistent_pretext_flags(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        colorize.parse_args(["--out", "x", *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err
