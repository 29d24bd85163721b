"""ResNet50 backbone: output-stride dilation, the beta stem, the width multiplier (tiny widths only)."""

from surrogate_supervision.models.resnet import scaled, stage_strides_and_rates

import numpy as np
import pytest

from helpers import build_resnet50

WIDTH = 0.125


def _convs(model, prefix):
    return [layer for layer in model.layers if layer.name.startswith(prefix) and layer.name.endswith("_conv")]


@pytest.fixture(scope="module")
def backbone16():
    return build_resnet50(width=WIDTH, output_stride=16)


@pytest.fixture(scope="module")
def backbone8():
    return build_resnet50(width=WIDTH, output_stride=8)


@pytest.mark.parametrize(
    "output_stride, strides, rates",
    [(32, [1, 2, 2, 2], [1, 1, 1, 1]), (16, [1, 2, 2, 1], [1, 1, 1, 2]), (8, [1, 2, 1, 1], [1, 1, 2, 4])],
)
def test_stage_strides_and_rates(output_stride, strides, rates):
    assert stage_strides_and_rates(output_stride) == (strides, rates)


def test_unsupported_output_stride_is_rejected():
    with pytest.raises(ValueError, match="8, 16 or 32"):
        stage_strides_and_rates(4)


def test_output_stride_16_dilates_stage5(backbone16):
    assert backbone16.get_layer("conv4_block1_1_conv").strides == (2, 2)
    assert backbone16.get_layer("conv4_block1_0_conv").strides == (2, 2)
    for layer in _convs(backbone16, "conv4_"):
        assert layer.dilation_rate == (1, 1), layer.name
    assert backbone16.get_layer("conv5_block1_1_conv").strides == (1, 1)
    assert backbone16.get_layer("conv5_block1_0_conv").strides == (1, 1)
    stage5_3x3 = [layer for layer in _convs(backbone16, "conv5_") if layer.kernel_size == (3, 3)]
    assert [layer.name for layer in stage5_3x3] == [f"conv5_block{b}_2_conv" for b in (1, 2, 3)]
    for layer in stage5_3x3:
        assert layer.dilation_rate == (2, 2) and layer.strides == (1, 1), layer.name


def test_output_stride_8_dilates_stages_4_and_5(backbone8):
    assert backbone8.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert backbone8.get_layer("conv4_block1_1_conv").strides == (1, 1)
    assert backbone8.get_layer("conv5_block1_1_conv").strides == (1, 1)
    for stage, rate in (("conv4_", 2), ("conv5_", 4)):
        convs3x3 = [layer for layer in _convs(backbone8, stage) if layer.kernel_size == (3, 3)]
        assert len(convs3x3) == {"conv4_": 6, "conv5_": 3}[stage]
        for layer in convs3x3:
            assert layer.dilation_rate == (rate, rate) and layer.strides == (1, 1), layer.name


@pytest.mark.parametrize("output_stride, side", [(16, 5), (8, 9)])
def test_feature_sizes_follow_output_stride(backbone16, backbone8, output_stride, side):
    backbone = {16: backbone16, 8: backbone8}[output_stride]
    low_level, features = backbone(np.zeros((1, 65, 65, 3), "float32"))
    assert tuple(low_level.shape) == (1, 17, 17, 4 * scaled(64, WIDTH))
    assert tuple(features.shape) == (1, side, side, 4 * scaled(512, WIDTH))


def test_beta_stem_layers_and_output_shape(backbone16):
    beta = build_resnet50(width=WIDTH, backbone="resnet50_beta")
    names = {layer.name for layer in beta.layers}
    assert {"conv1_1_conv", "conv1_2_conv", "conv1_3_conv"} <= names
    assert "conv1_conv" not in names
    assert "conv1_1_conv" not in {layer.name for layer in backbone16.layers}
    for stem, kernel, stride in (("conv1_1", 3, 2), ("conv1_2", 3, 1), ("conv1_3", 3, 1)):
        conv = beta.get_layer(f"{stem}_conv")
        assert conv.kernel_size == (kernel, kernel) and conv.strides == (stride, stride)
    for side in (64, 65):
        image = np.zeros((1, side, side, 3), "float32")
        for standard, other in zip(backbone16(image), beta(image)):
            assert tuple(other.shape) == tuple(standard.shape)


def test_unknown_backbone_lists_supported():
    with pytest.raises(ValueError, match="resnet50, resnet50_beta"):
        build_resnet50(width=WIDTH, backbone="resnet101")


@pytest.mark.parametrize("channels, width, expected", [(64, 1.0, 64), (48, 1.0, 48), (256, 0.25, 64), (64, 0.125, 8),
                                                       (48, 0.125, 8), (2048, 0.125, 256)])
def test_scaled_channels(channels, width, expected):
    assert scaled(channels, width) == expected
