"""The real (width 1.0) network: parameter count, Keras ResNet50 layer names, and ImageNet init.

One full-width DeepLabV3+ is built for the whole module; one keras.applications.ResNet50 (weights=None,
nothing is downloaded) provides the reference names and the random "ImageNet" files in both formats.
"""

from surrogate_supervision.models import TransferError, build_deeplabv3plus, transfer_weights
from surrogate_supervision.models.conv_bias import fold_conv_biases
from surrogate_supervision.models.resnet import batch_norm_after, is_backbone_layer
from surrogate_supervision.models.transfer import fold_caffe_preprocessing

import keras
import numpy as np
import pytest

from helpers import layer_weights, randomize, write_legacy_h5

pytestmark = pytest.mark.slow  # the full-width network (setup.cfg); deselect with -m "not slow"

NUM_CLASSES = 9
SMP_PARAMS = 26.68e6  # segmentation_models_pytorch DeepLabV3Plus("resnet50", encoder_output_stride=16, classes=9)


@pytest.fixture(scope="module")
def segmenter():
    return build_deeplabv3plus(NUM_CLASSES)  # the only full-width build of the suite


@pytest.fixture(scope="module")
def reference():
    return keras.applications.ResNet50(include_top=False, weights=None)


@pytest.fixture(scope="module")
def imagenet_files(reference, tmp_path_factory):
    """{"legacy": (path, weights), "keras3": (path, weights)} holding different random values."""
    folder = tmp_path_factory.mktemp("imagenet")
    randomize(reference, seed=10)
    legacy = folder / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_legacy_h5(reference, legacy)
    files = {"legacy": (legacy, layer_weights(reference))}
    randomize(reference, seed=11)
    keras3 = folder / "resnet50.weights.h5"
    reference.save_weights(keras3)
    files["keras3"] = (keras3, layer_weights(reference))
    return files


def test_parameter_count_matches_smp(segmenter):
    assert abs(segmenter.count_params() - SMP_PARAMS) / SMP_PARAMS < 0.02, segmenter.count_params()


def test_decoder_widths_at_full_width(segmenter):
    assert segmenter.get_layer("decoder_proj_conv").filters == 48
    assert segmenter.get_layer("aspp_proj_conv").filters == 256
    assert segmenter.get_layer("conv5_block3_out").output.shape[-1] == 2048


def test_backbone_layer_names_match_keras_resnet50_less_the_conv_biases(segmenter, reference):
    def keras_layout(layer):  # Keras' convolutions have [kernel, bias], ours [kernel]
        return layer.weights[:1] if batch_norm_after(layer.name) else layer.weights

    ours = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in segmenter.layers
            if layer.weights and is_backbone_layer(layer.name)}
    keras_ = {layer.name: [tuple(w.shape) for w in keras_layout(layer)] for layer in reference.layers if layer.weights}
    assert len(keras_) == 106
    assert sum(len(reference.get_layer(name).weights) == 2 for name in keras_) == 53  # every conv, all dropped
    assert ours == keras_
    for name in keras_:  # same variable order too (kernel; gamma, beta, moving mean, variance)
        ours_names = [w.name for w in segmenter.get_layer(name).weights]
        assert ours_names == [w.name for w in keras_layout(reference.get_layer(name))]


@pytest.mark.parametrize("kind", ["legacy", "keras3"])
def test_imagenet_init_copies_the_whole_backbone_only(segmenter, imagenet_files, kind):
    path, expected = imagenet_files[kind]
    before = layer_weights(segmenter)

    report = transfer_weights(segmenter, "imagenet", imagenet_weights=path)

    after = layer_weights(segmenter)
    assert report.init == "imagenet" and report.source == str(path)
    assert sorted(report.copied) == sorted(expected)
    assert sorted(report.skipped) == sorted(set(after) - set(expected))
    assert "logits" in report.skipped and "aspp_proj_conv" in report.skipped and "decoder_proj_conv" in report.skipped
    expected = fold_conv_biases({**expected, "conv1_conv": fold_caffe_preprocessing(*expected["conv1_conv"])})
    for name, values in expected.items():
        assert len(after[name]) == len(values)
        for actual, wanted in zip(after[name], values):
            np.testing.assert_array_equal(actual, wanted, err_msg=name)
    for name in report.skipped:
        for actual, previous in zip(after[name], before[name]):
            np.testing.assert_array_equal(actual, previous, err_msg=name)


@pytest.mark.parametrize("arch, message", [({"width": 0.125}, "width 1.0"), ({"backbone": "resnet50_beta",
                                                                              "width": 0.125}, "'resnet50'")])
def test_imagenet_file_refuses_other_networks(imagenet_files, arch, message):
    model = build_deeplabv3plus(NUM_CLASSES, **arch)
    before = layer_weights(model)
    with pytest.raises(TransferError, match=message):
        transfer_weights(model, "imagenet", imagenet_weights=imagenet_files["legacy"][0])
    for name, values in layer_weights(model).items():  # refused before anything was copied
        for actual, previous in zip(values, before[name]):
            np.testing.assert_array_equal(actual, previous, err_msg=name)


@pytest.mark.parametrize("kind", ["legacy", "keras3"])
def test_imagenet_conv1_on_rgb_in_unit_range_equals_keras_on_caffe_input(segmenter, reference, imagenet_files, kind):
    """The folded conv1 and its BatchNorm (inference mode) see what Keras' ResNet50 sees after
    `preprocess_input` (BGR, 0-255, minus the ImageNet mean): the caffe fold and the bias fold composed.
    Compared where the 7×7 window lies inside the image: on the outer 2 rows and columns the zero padding
    means pixel 127.5 here and the mean colour there, by construction."""
    path, _ = imagenet_files[kind]
    transfer_weights(segmenter, "imagenet", imagenet_weights=path)
    randomize(reference, seed=10 if kind == "legacy" else 11)  # the values written to that file
    image = np.random.default_rng(0).integers(0, 256, (1, 69, 69, 3)).astype(np.uint8)
    ours = keras.Model(segmenter.inputs, segmenter.get_layer("conv1_bn").output)
    theirs = keras.Model(reference.inputs, reference.get_layer("conv1_bn").output)

    got = keras.ops.convert_to_numpy(ours(image.astype(np.float32) / 127.5 - 1.0))
    want = keras.ops.convert_to_numpy(theirs(keras.applications.resnet50.preprocess_input(image.astype(np.float32))))

    interior = (slice(None), slice(2, -2), slice(2, -2))
    assert got.shape == want.shape == (1, 35, 35, 64)
    np.testing.assert_allclose(got[interior], want[interior], rtol=1e-4, atol=1e-3 * np.abs(want).max())
    assert not np.allclose(got[:, 0], want[:, 0], rtol=1e-4, atol=1e-3 * np.abs(want).max())  # the border
