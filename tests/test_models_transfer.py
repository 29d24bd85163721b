"""`--init` transfers on tiny networks: surrogate (generator → segmenter), scratch, and the error paths."""

import dataclasses
import hashlib
import json
import re

from surrogate_supervision.models import INITS, TransferError, build_deeplabv3plus, build_generator, transfer_weights
from surrogate_supervision.models.rundir import ARCHITECTURE_FILE, GENERATOR_FILE, save_weights

import h5py
import keras
import numpy as np
import pytest

from helpers import layer_weights, randomize

WIDTH = 0.125


def assert_same(actual, expected, name):
    assert len(actual) == len(expected), name
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e, err_msg=name)


@pytest.fixture(scope="module")
def surrogate_run(tmp_path_factory):
    """A colorization run directory holding a generator with random weights; yields (dir, weights)."""
    generator = build_generator(width=WIDTH)
    randomize(generator, seed=1)
    run = tmp_path_factory.mktemp("colorize")
    save_weights(generator, run / GENERATOR_FILE)
    return run, layer_weights(generator)


def build_segmenter():
    model = build_deeplabv3plus(4, width=WIDTH)
    randomize(model, seed=2)
    return model


@pytest.fixture(scope="module")
def segmenter():
    """Shared by the tests that must leave it unchanged (they check that they do)."""
    return build_segmenter()


def assert_unchanged(model, before):
    for name, values in layer_weights(model).items():
        assert_same(values, before[name], name)


def test_save_generator_writes_architecture(surrogate_run):
    run, _ = surrogate_run
    assert (run / GENERATOR_FILE).is_file()
    arch = json.loads((run / ARCHITECTURE_FILE).read_text())
    assert arch == {"backbone": "resnet50", "output_stride": 16, "width": WIDTH, "separable": True,
                    "atrous_rates": [6, 12, 18], "outputs": 3, "output": "rgb"}


@pytest.mark.parametrize("init, as_file", [("surrogate", False), ("surrogate", True), ("imagenet+surrogate", False)],
                         ids=["run_dir", "weights_file", "imagenet+surrogate"])
def test_surrogate_copies_all_but_head(surrogate_run, init, as_file):
    run, generator = surrogate_run
    segmenter = build_segmenter()
    before = layer_weights(segmenter)

    report = transfer_weights(segmenter, init, surrogate=run / GENERATOR_FILE if as_file else run)

    after = layer_weights(segmenter)
    assert report.init == init
    assert report.skipped == ["logits"]
    assert sorted(report.copied) == sorted(name for name in after if name != "logits")
    assert report.source == str(run / GENERATOR_FILE)
    assert report.source_sha256 == hashlib.sha256((run / GENERATOR_FILE).read_bytes()).hexdigest()
    assert "copied" in report.summary()
    for name in report.copied:
        assert_same(after[name], generator[name], name)
    assert_same(after["logits"], before["logits"], "logits")
    assert after["logits"][0].shape[-1] == 4 and generator["logits"][0].shape[-1] == 3


@pytest.mark.parametrize("arch", [{"width": 0.25}, {"backbone": "resnet50_beta"}], ids=["width", "backbone"])
def test_surrogate_of_another_architecture_is_refused(tmp_path, segmenter, arch):
    save_weights(build_generator(**{"width": WIDTH, **arch}), tmp_path / GENERATOR_FILE)
    before = layer_weights(segmenter)
    with pytest.raises(TransferError, match="differs"):
        transfer_weights(segmenter, "surrogate", surrogate=tmp_path)
    assert_unchanged(segmenter, before)  # nothing was half-loaded


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")  # Keras' own note before it raises
def test_surrogate_weights_without_architecture_file_must_fit(tmp_path, segmenter):
    build_generator(width=0.25).save_weights(tmp_path / GENERATOR_FILE)  # no architecture.json beside it
    with pytest.raises(TransferError, match="does not match"):
        transfer_weights(segmenter, "surrogate", surrogate=tmp_path / GENERATOR_FILE)


@pytest.mark.parametrize("relative", ["missing_dir", "empty_dir", "missing.weights.h5"])
def test_missing_surrogate_names_the_path(tmp_path, segmenter, relative):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(TransferError, match="no such file") as error:
        transfer_weights(segmenter, "surrogate", surrogate=tmp_path / relative)
    assert str(tmp_path / relative) in str(error.value) and error.value.param == "surrogate"


@pytest.mark.parametrize("init", ["surrogate", "imagenet+surrogate"])
def test_surrogate_init_needs_a_path(segmenter, init):
    with pytest.raises(TransferError, match=f"^surrogate not given; the {re.escape(init)} init needs") as error:
        transfer_weights(segmenter, init)
    assert error.value.param == "surrogate"


def test_scratch_changes_nothing(segmenter):
    before = layer_weights(segmenter)
    report = transfer_weights(segmenter, "scratch")
    assert report.copied == [] and sorted(report.skipped) == sorted(before)
    assert_unchanged(segmenter, before)


def test_unknown_init_lists_valid_ones(segmenter):
    with pytest.raises(TransferError, match="bogus") as error:
        transfer_weights(segmenter, "bogus")
    for init in INITS:
        assert init in str(error.value)


def test_missing_imagenet_file_names_the_path(tmp_path, segmenter):
    path = tmp_path / "nowhere" / "resnet50.h5"
    with pytest.raises(TransferError, match="no such file") as error:
        transfer_weights(segmenter, "imagenet", imagenet_weights=path)
    assert str(path) in str(error.value)


def test_imagenet_without_file_or_network(monkeypatch, segmenter):
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(TransferError, match="width 1.0 only"):  # small width: refused before any download
        transfer_weights(segmenter, "imagenet")
    assert calls == []
    monkeypatch.setattr(segmenter, "architecture", dataclasses.replace(segmenter.architecture, width=1.0))
    with pytest.raises(TransferError, match="^imagenet_weights not given, and ImageNet weights could not be downl"):
        transfer_weights(segmenter, "imagenet")
    assert len(calls) == 1


def test_non_keras_h5_is_refused(tmp_path, segmenter):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(TransferError, match="layer_names"):
        transfer_weights(segmenter, "imagenet", imagenet_weights=path)


def test_surrogate_from_a_chroma_generator(tmp_path):
    segmenter = build_segmenter()
    generator = build_generator(width=WIDTH, output="chroma")
    randomize(generator, seed=2)
    save_weights(generator, tmp_path / GENERATOR_FILE)
    assert json.loads((tmp_path / ARCHITECTURE_FILE).read_text())["output"] == "chroma"
    report = transfer_weights(segmenter, "surrogate", surrogate=tmp_path)
    assert report.skipped == ["logits"]
    expected = layer_weights(generator)
    assert_same(segmenter.get_layer("decoder_conv2_pointwise").get_weights(), expected["decoder_conv2_pointwise"],
                "decoder_conv2_pointwise")


def _pretraining_run(tmp_path, init):
    """A generator saved as colorize.py saves it, with its run's config.json (None: a bare weights file)."""
    run = tmp_path / f"from_{init}"
    save_weights(build_generator(width=WIDTH), run / GENERATOR_FILE)
    if init is not None:
        (run / "config.json").write_text(json.dumps({"init": init}))
    return run


def test_imagenet_plus_surrogate_refuses_a_generator_pretrained_from_scratch(tmp_path, segmenter):
    run = _pretraining_run(tmp_path, "scratch")
    with pytest.raises(TransferError, match="started from init scratch; the imagenet\\+surrogate init needs"):
        transfer_weights(build_deeplabv3plus(4, width=WIDTH), "imagenet+surrogate", surrogate=run)
    with pytest.raises(TransferError, match="started from init scratch"):  # the file inside the run too
        transfer_weights(build_deeplabv3plus(4, width=WIDTH), "imagenet+surrogate", surrogate=run / GENERATOR_FILE)
    report = transfer_weights(build_deeplabv3plus(4, width=WIDTH), "surrogate", surrogate=run)  # plain surrogate: fine
    assert report.skipped == ["logits"]


def test_imagenet_plus_surrogate_accepts_imagenet_and_warns_on_a_bare_file(tmp_path, capsys):
    report = transfer_weights(build_deeplabv3plus(4, width=WIDTH), "imagenet+surrogate",
                              surrogate=_pretraining_run(tmp_path, "imagenet"))
    assert report.init == "imagenet+surrogate" and capsys.readouterr().err == ""
    bare = _pretraining_run(tmp_path, None)
    transfer_weights(build_deeplabv3plus(4, width=WIDTH), "imagenet+surrogate", surrogate=bare)
    assert "is not checked" in capsys.readouterr().err


CLASSES = ["background", "skin", "hair", "cloth"]


def _segmentation_run(folder, classes=CLASSES, *, finished=True, loss="ce", **arch):
    """A finished finetune/segment.py run as the script leaves it (config.json, architecture.json,
    best.weights.h5, metrics.json), holding a segmenter with random weights; returns (run, its weights)."""
    model = build_deeplabv3plus(1 if loss == "bce" else len(classes), **{"width": WIDTH, **arch})
    randomize(model, seed=3)
    save_weights(model, folder / "best.weights.h5")
    (folder / "config.json").write_text(json.dumps({"classes": classes, "loss": loss}))
    if finished:
        (folder / "metrics.json").write_text("{}")
    return folder, layer_weights(model)


def test_segmentation_run_copies_body_and_decoder_and_reinitialises_a_head_of_other_classes(tmp_path):
    run, source = _segmentation_run(tmp_path)
    model = build_deeplabv3plus(3, width=WIDTH)
    randomize(model, seed=2)
    before = layer_weights(model)

    report = transfer_weights(model, "segmentation", source_run=run, class_names=["background", "polyp", "tool"])

    after = layer_weights(model)
    assert report.init == "segmentation" and report.source == str(run / "best.weights.h5")
    assert report.source_sha256 == hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest()
    assert report.skipped == ["logits"] and sorted(report.copied) == sorted(n for n in after if n != "logits")
    assert any(name.startswith("aspp_") for name in report.copied)  # the decoder too, not the backbone alone
    assert any(name.startswith("decoder_") for name in report.copied)
    for name in report.copied:
        assert_same(after[name], source[name], name)
    assert_same(after["logits"], before["logits"], "logits")  # the head keeps its fresh initialisation...
    assert after["logits"][0].shape[-1] == 3 and source["logits"][0].shape[-1] == 4  # ...of the new classes
    assert "head re-initialised" in report.note and "re-initialised" in report.summary()


@pytest.mark.parametrize("classes, copied", [(CLASSES, True), (["background", "polyp", "tool", "lesion"], False)],
                         ids=["same classes", "same count, other names"])
def test_segmentation_run_head_is_copied_only_for_the_same_classes(tmp_path, classes, copied):
    run, source = _segmentation_run(tmp_path)
    model = build_deeplabv3plus(4, width=WIDTH)
    randomize(model, seed=2)
    before = layer_weights(model)

    report = transfer_weights(model, "segmentation", source_run=run, class_names=classes)

    head = layer_weights(model)["logits"]
    if copied:
        assert report.skipped == [] and "logits" in report.copied
        assert_same(head, source["logits"], "logits")
    else:  # logit i would start out meaning another class
        assert report.skipped == ["logits"] and "classes" in report.note
        assert_same(head, before["logits"], "logits")


@pytest.mark.parametrize("arch, field", [({"width": 0.25}, "width"), ({"output_stride": 8}, "output_stride"),
                                         ({"backbone": "resnet50_beta"}, "backbone"),
                                         ({"separable": False}, "separable")])
def test_segmentation_run_of_another_architecture_is_refused_naming_the_field(tmp_path, segmenter, arch, field):
    run, _ = _segmentation_run(tmp_path, **arch)
    before = layer_weights(segmenter)
    with pytest.raises(TransferError, match=f"{run}: its network differs: {field} ") as error:
        transfer_weights(segmenter, "segmentation", source_run=run, class_names=CLASSES)
    assert "\n" not in str(error.value)
    assert_unchanged(segmenter, before)  # nothing was half-loaded


def test_segmentation_run_refuses_what_is_not_a_finished_segmentation_run(tmp_path, surrogate_run, segmenter):
    unfinished, _ = _segmentation_run(tmp_path / "unfinished", finished=False)
    (tmp_path / "empty").mkdir()
    cases = [(None, "needs source_run"), (tmp_path / "missing", "no such run directory"),
             (tmp_path / "empty", "not a finetune/segment.py run \\(no config.json\\)"),
             (surrogate_run[0], "a colorization run"), (unfinished, "not finished \\(no metrics.json")]
    for source_run, message in cases:
        with pytest.raises(TransferError, match=message):
            transfer_weights(segmenter, "segmentation", source_run=source_run, class_names=CLASSES)


def test_matched_control_generator_starts_control_not_the_colour_arms(tmp_path):
    save_weights(build_generator(width=WIDTH, output="classify_gray"), tmp_path / GENERATOR_FILE)
    report = transfer_weights(build_deeplabv3plus(4, width=WIDTH), "control", surrogate=tmp_path)
    assert report.skipped == ["logits"] and len(report.copied) > 100
    with pytest.raises(TransferError, match="trained to predict classify_gray; the surrogate init needs a colour"):
        transfer_weights(build_deeplabv3plus(4, width=WIDTH), "surrogate", surrogate=tmp_path)
