"""ResNet50 backbones for DeepLabV3+: the Keras-compatible one and DeepLab's "beta" variant.

Layer names are those of `keras.applications.ResNet50` (``conv1_conv``, ``conv2_block1_1_conv`` ...), so
ImageNet weights transfer by name. For output stride 16 or 8 the last stages keep their resolution and
dilate their 3×3 convolutions instead of striding, as DeepLab does.

Every convolution is followed by BatchNorm and has no bias, unlike Keras' ResNet50: BatchNorm subtracts
whatever constant a bias adds, so it only cost time (its gradient is a reduction fused into every weight-gradient
kernel: about 4.6 % of an fp32 training step on AVX-512). Weights with a bias (Keras' ImageNet files, weight
files written by earlier versions of this toolkit) are folded into the BatchNorm on load: `models/conv_bias.py`.
"""

from surrogate_supervision.models.batchnorm import batch_norm
from surrogate_supervision.models.conv_grad import Conv2D

from keras import layers

BACKBONES = ("resnet50", "resnet50_beta")
# Stage name, bottleneck width, number of blocks, stride of its first block (at output stride 32).
RESNET50_STAGES = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2), ("conv5", 512, 3, 2))
BN_EPSILON = 1.001e-5  # keras.applications' value: ImageNet statistics were trained with it.
def scaled(channels, width):
    """Channel count under a width multiplier (at least 8, a multiple of 8 below full width)."""
    if width == 1.0:
        return channels
    return max(8, int(round(channels * width / 8)) * 8)


def stage_strides_and_rates(output_stride):
    """Per-stage (stride, dilation rate) that gives the requested output stride."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    strides, rates, current, rate = [], [], 4, 1
    for _, _, _, stride in RESNET50_STAGES:
        if current * stride > output_stride:
            rate *= stride
            stride = 1
        current *= stride
        strides.append(stride)
        rates.append(rate)
    return strides, rates


def _conv_bn(x, filters, kernel, name, *, strides=1, dilation=1, relu=True):
    padding = "same" if strides == 1 else "valid"
    x = Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding=padding, use_bias=False,
               name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn", BN_EPSILON)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def apply_bottleneck(x, filters, name, *, stride=1, dilation=1, shortcut_conv=False):
    """A ResNet v1 bottleneck (stride on the first 1×1, as in keras.applications)."""
    if shortcut_conv:
        shortcut = _conv_bn(x, 4 * filters, 1, f"{name}_0", strides=stride, relu=False)
    else:
        shortcut = x
    x = _conv_bn(x, filters, 1, f"{name}_1", strides=stride)
    x = _conv_bn(x, filters, 3, f"{name}_2", dilation=dilation)
    x = _conv_bn(x, 4 * filters, 1, f"{name}_3", relu=False)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def apply_stem(x, backbone, width):
    """Stride-4 stem: Keras' 7×7 convolution, or DeepLab beta's three 3×3 convolutions."""
    if backbone == "resnet50":
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = _conv_bn(x, scaled(64, width), 7, "conv1", strides=2)
    elif backbone == "resnet50_beta":
        x = layers.ZeroPadding2D(1, name="conv1_1_pad")(x)
        x = _conv_bn(x, scaled(64, width), 3, "conv1_1", strides=2)
        x = _conv_bn(x, scaled(64, width), 3, "conv1_2")
        x = _conv_bn(x, scaled(128, width), 3, "conv1_3")
    else:
        raise ValueError(f"Wrong backbone name {backbone!r}, supported: {', '.join(BACKBONES)}")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def apply_resnet50(x, *, backbone="resnet50", output_stride=16, width=1.0):
    """Runs the backbone on `x`; returns (stride-4 features, features at `output_stride`)."""
    x = apply_stem(x, backbone, width)
    strides, rates = stage_strides_and_rates(output_stride)
    low_level = None
    for (stage, filters, blocks, _), stride, rate in zip(RESNET50_STAGES, strides, rates):
        filters = scaled(filters, width)
        for block in range(1, blocks + 1):
            first = block == 1
            x = apply_bottleneck(
                x, filters, f"{stage}_block{block}", stride=stride if first else 1, dilation=rate, shortcut_conv=first
            )
        if stage == "conv2":
            low_level = x
    return low_level, x


def is_backbone_layer(name):
    """True for layers of the ResNet50 body (what ImageNet init copies)."""
    return name.startswith(("conv1", "conv2_", "conv3_", "conv4_", "conv5_", "pool1"))


def batch_norm_after(name):
    """The BatchNorm layer that follows backbone convolution `name` (``conv2_block1_1_conv`` →
    ``conv2_block1_1_bn``), or None when `name` is not a backbone convolution."""
    if is_backbone_layer(name) and name.endswith("_conv"):
        return name.removesuffix("_conv") + "_bn"
    return None
