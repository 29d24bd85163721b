"""Bias-free backbone convolutions: the same function as the old layout with its biases folded into BatchNorm,
and every source of old-layout weights (weight files, ImageNet files, surrogates) converted on load."""

import json

from surrogate_supervision.models import build_deeplabv3plus, build_generator, transfer_weights
from surrogate_supervision.models.conv_bias import fold_conv_biases, load_weights, with_conv_bias
from surrogate_supervision.models.resnet import batch_norm_after
from surrogate_supervision.models.rundir import BEST_WEIGHTS, CONFIG_FILE, GENERATOR_FILE
from surrogate_supervision.models.runner.runs import load_run
from surrogate_supervision.models.transfer import fold_caffe_preprocessing, load_generator

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import build_resnet50, layer_weights, randomize, write_legacy_h5

WIDTH = 0.125
ATOL = 1e-4  # relative to the largest output: float32 sums over many taps, in another order


def assert_close(actual, expected, atol=ATOL, name=""):
    actual, expected = keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=atol * np.abs(expected).max(), err_msg=name)


def backbone_convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and batch_norm_after(layer.name)]


def old_and_new(new, seed):
    """(`new`'s old-layout twin with random weights, `new` holding the same weights with the biases folded)."""
    old = with_conv_bias(new)
    randomize(old, seed)
    for name, values in fold_conv_biases(layer_weights(old)).items():
        new.get_layer(name).set_weights(values)
    return old, new


def images(seed, shape=(2, 65, 65, 3)):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.mark.parametrize("backbone", ["resnet50", "resnet50_beta"])
def test_every_backbone_convolution_is_bias_free_and_feeds_its_batch_norm(backbone):
    model = build_resnet50(width=WIDTH, backbone=backbone)
    convs = backbone_convs(model)
    assert len(convs) == (53 if backbone == "resnet50" else 55)
    for conv in convs:
        assert not conv.use_bias and [w.name for w in conv.weights] == ["kernel"], conv.name
        bn = model.get_layer(batch_norm_after(conv.name))
        assert bn.input is conv.output, conv.name  # what makes the fold exact
    old = with_conv_bias(model)
    assert all(conv.use_bias for conv in backbone_convs(old)) and len(old.weights) == len(model.weights) + len(convs)


def test_inference_equals_the_old_layout_with_biases_folded():
    old, new = old_and_new(build_resnet50(width=WIDTH), seed=1)
    x = images(2)
    for got, want in zip(new(x, training=False), old(x, training=False)):
        assert_close(got, want)


def test_training_mode_outputs_kernel_gradients_and_moving_means_equal_the_old_layout():
    """In training mode the batch mean absorbs the bias: same outputs, same kernel gradients, a bias gradient of
    zero, and moving means that keep differing by exactly the bias after the update."""
    old, new = old_and_new(build_resnet50(width=WIDTH), seed=3)
    x = images(4)
    rng = np.random.default_rng(5)
    projection = [rng.normal(size=o.shape).astype("float32") for o in new(x, training=False)]

    def forward(model):
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            loss = sum(tf.reduce_sum(o * p) for o, p in zip(outputs, projection))
        variables = [w for conv in backbone_convs(model) for w in conv.weights]
        return outputs, dict(zip([w.path for w in variables], tape.gradient(loss, variables)))

    (new_outputs, new_grads), (old_outputs, old_grads) = forward(new), forward(old)
    for got, want in zip(new_outputs, old_outputs):
        assert_close(got, want)
    for conv in backbone_convs(new):
        path = f"{conv.name}/kernel"
        assert_close(new_grads[path], old_grads[path], atol=1e-3, name=path)
        scale = np.abs(old_grads[path]).max()
        assert np.abs(old_grads[f"{conv.name}/bias"]).max() < 1e-3 * scale, conv.name
        bias = old.get_layer(conv.name).bias.numpy()
        bn = batch_norm_after(conv.name)
        assert_close(new.get_layer(bn).moving_mean, old.get_layer(bn).moving_mean.numpy() - bias, atol=1e-5, name=bn)


@pytest.fixture(scope="module")
def old_segmentation_run(tmp_path_factory):
    """A finetune/segment.py run directory as an earlier version left it: best.weights.h5 with biases.

    Returns (run directory, the old-layout network its weights came from)."""
    run = tmp_path_factory.mktemp("old_segment_run")
    new = build_deeplabv3plus(3, width=WIDTH)
    old = with_conv_bias(new)
    randomize(old, seed=7)
    old.save_weights(run / BEST_WEIGHTS)
    new.architecture.save(run)
    (run / CONFIG_FILE).write_text(json.dumps({"loss": "ce", "classes": ["a", "b", "c"], "output_stride": 16}))
    return run, old


def test_old_segmentation_weights_load_and_predict_the_same(old_segmentation_run):
    run, old = old_segmentation_run
    trained = load_run(run)  # what finetune/predict.py and finetune/export.py load
    x = images(8, (1, 97, 97, 3))
    assert_close(trained.model(x, training=False), old(x, training=False))
    assert all(not conv.use_bias for conv in backbone_convs(trained.model))


def test_load_weights_says_which_layout_it_read(old_segmentation_run, tmp_path):
    run, _ = old_segmentation_run
    model = build_deeplabv3plus(3, width=WIDTH)
    assert load_weights(model, run / BEST_WEIGHTS) is True
    model.save_weights(tmp_path / "new.weights.h5")
    again = build_deeplabv3plus(3, width=WIDTH)
    assert load_weights(again, tmp_path / "new.weights.h5") is False
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_file_that_fits_neither_layout_raises_the_error_for_todays(old_segmentation_run):
    run, _ = old_segmentation_run
    with pytest.raises(ValueError, match="could not be loaded"):
        load_weights(build_deeplabv3plus(3, width=0.25), run / BEST_WEIGHTS)


@pytest.fixture(scope="module")
def old_generator_run(tmp_path_factory):
    """A colorization run's generator.weights.h5 (and architecture.json) written by an earlier version."""
    run = tmp_path_factory.mktemp("old_colorize_run")
    new = build_generator(width=WIDTH)
    old = with_conv_bias(new)
    randomize(old, seed=9)
    old.save_weights(run / GENERATOR_FILE)
    new.architecture.save(run)
    return run, old


def test_old_generator_loads_and_colorizes_the_same(old_generator_run):
    run, old = old_generator_run
    generator = load_generator(run)
    x = images(10, (1, 65, 65, 3))
    assert_close(generator(x, training=False), old(x, training=False))


def test_surrogate_from_an_old_generator_copies_by_name_and_shape_with_biases_folded(old_generator_run):
    run, old = old_generator_run
    segmenter = build_deeplabv3plus(4, width=WIDTH)
    randomize(segmenter, seed=11)
    head = segmenter.get_layer("logits").get_weights()

    report = transfer_weights(segmenter, "surrogate", surrogate=run)

    expected = fold_conv_biases(layer_weights(old))
    after = layer_weights(segmenter)
    assert report.skipped == ["logits"] and sorted(report.copied) == sorted(set(after) - {"logits"})
    for name in report.copied:
        assert [a.shape for a in after[name]] == [np.shape(e) for e in expected[name]], name
        for actual, wanted in zip(after[name], expected[name]):
            np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-6, err_msg=name)
    for actual, before in zip(after["logits"], head):
        np.testing.assert_array_equal(actual, before)
    body = keras.Model(segmenter.input, segmenter.get_layer("decoder_conv2_pointwise_relu").output)
    old_body = keras.Model(old.input, old.get_layer("decoder_conv2_pointwise_relu").output)
    x = images(12, (1, 65, 65, 3))
    assert_close(body(x, training=False), old_body(x, training=False))


def test_imagenet_file_gives_the_outputs_it_gave_before_the_change(tmp_path):
    """A Keras 2 HDF5 file with conv kernels and biases (a small-width stand-in for Keras' ImageNet file): the
    bias-free network it initialises computes what the old layout did with the caffe fold on conv1 alone,
    and every moving mean is the file's minus its convolution's (folded) bias, computed here by hand."""
    model = build_deeplabv3plus(4, width=WIDTH)
    randomize(model, seed=13)
    old = with_conv_bias(model)
    randomize(old, seed=14)
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_h5(old, path)
    file = layer_weights(old)

    report = transfer_weights(model, "imagenet", imagenet_weights=path)

    assert "conv1_conv" in report.copied and "conv5_block3_3_bn" in report.copied
    conv1_kernel, conv1_bias = fold_caffe_preprocessing(*file["conv1_conv"])
    for conv in backbone_convs(model):
        kernel, bias = (conv1_kernel, conv1_bias) if conv.name == "conv1_conv" else file[conv.name]
        np.testing.assert_array_equal(conv.kernel.numpy(), kernel, err_msg=conv.name)
        bn = batch_norm_after(conv.name)
        gamma, beta, mean, variance = file[bn]
        got = model.get_layer(bn).get_weights()
        for actual, wanted in zip(got, [gamma, beta, mean.astype(np.float64) - bias, variance]):
            np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-6, err_msg=bn)
    old.get_layer("conv1_conv").set_weights([conv1_kernel, conv1_bias])  # the old loader's result
    backbone = keras.Model(model.input, model.get_layer("conv5_block3_out").output)
    old_backbone = keras.Model(old.input, old.get_layer("conv5_block3_out").output)
    x = images(15, (1, 65, 65, 3))
    assert_close(backbone(x, training=False), old_backbone(x, training=False))
