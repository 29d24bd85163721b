"""DeepLabV3+ (Chen et al., ECCV 2018) on a ResNet50, as a segmenter and as a colorization generator.

Both share every layer but the head (``logits``), which is what makes surrogate init a plain copy by name.
"""

import dataclasses

from surrogate_supervision.models.architecture import Architecture
from surrogate_supervision.models.atrous import Conv2D, DepthwiseConv2D
from surrogate_supervision.models.batchnorm import batch_norm
from surrogate_supervision.models.colour_bins import NUM_BINS, AnnealedMeanChroma
from surrogate_supervision.models.resnet import apply_resnet50, scaled

import keras
import tensorflow as tf
from keras import layers

HEAD_LAYER = "logits"  # the only layer surrogate init does not copy
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="surrogate")
class ResizeLike(layers.Layer):
    """Bilinear upsampling of `x`, a map at `ratio` times the stride of `reference`, to `reference`'s size.

    Every strided layer here pads explicitly and uses "valid" windows, so at any input size feature j of a
    stride-s map sits on input pixel s·j. Output pixel p therefore samples `x` at p / ratio: corner-aligned
    resizing onto ratio·(m − 1) + 1 pixels, then the last row and column repeated over the few pixels that
    lie past the last feature. At DeepLab's 16k + 1 sizes (513, 193) that is plain `align_corners=True`; at
    any other size it stays exact, where resizing corner to corner would shift features by up to ratio − 1
    pixels towards the bottom right.
    """

    def __init__(self, ratio, **kwargs):
        super().__init__(**kwargs)
        self.ratio = int(ratio)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}

    def call(self, x, reference):
        return tf.cast(upsample_on_grid(x, tf.shape(reference)[1:3], self.ratio), self.compute_dtype)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def upsample_on_grid(x, size, ratio):
    """(B, m, n, C) with x[j] on output pixel ratio·j → (B, *size, C), bilinear, clamped past the last sample."""
    grid = (tf.shape(x)[1:3] - 1) * ratio + 1
    x = tf.raw_ops.ResizeBilinear(images=x, size=tf.minimum(grid, size), align_corners=True)
    rows, cols = tf.maximum(size[0] - grid[0], 0), tf.maximum(size[1] - grid[1], 0)
    x = tf.concat([x, tf.repeat(x[:, -1:], rows, axis=1)], axis=1)
    return tf.concat([x, tf.repeat(x[:, :, -1:], cols, axis=2)], axis=2)


@keras.saving.register_keras_serializable(package="surrogate")
class LumaChromaToRGB(layers.Layer):
    """RGB in [-1, 1] from predicted chroma (Cb, Cr) and the luma of the gray input at the chroma's grid
    (every 4th pixel: stride-4 feature j sits on input pixel 4j). ITU-R 601 YCbCr, linear, so it works in
    [-1, 1].
    """

    def call(self, chroma, image):
        chroma = tf.cast(chroma, "float32")
        y = tf.reduce_mean(tf.cast(image[:, ::4, ::4], "float32"), axis=-1, keepdims=True)
        cb, cr = chroma[..., :1], chroma[..., 1:]
        rgb = tf.concat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
        return tf.clip_by_value(rgb, -1.0, 1.0)

    def compute_output_shape(self, chroma_shape, image_shape):
        return chroma_shape[:3] + (3,)


def _bn_relu(x, name):
    x = batch_norm(f"{name}_bn", BN_EPSILON)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def apply_conv3x3(x, filters, name, *, rate=1, separable=True):
    """3×3 convolution + BN + ReLU; atrous depthwise-separable (DeepLab's default) or regular."""
    # Keras' Conv2D / DepthwiseConv2D (same weights and results) without the taps that can only read padding.
    if not separable:
        x = Conv2D(filters, 3, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_conv")(x)
        return _bn_relu(x, name)
    x = DepthwiseConv2D(3, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_depthwise")(x)
    x = _bn_relu(x, f"{name}_depthwise")
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)
    return _bn_relu(x, f"{name}_pointwise")


def apply_aspp(x, *, filters=256, rates=(6, 12, 18), separable=True, dropout=0.1):
    """Atrous spatial pyramid pooling: 1×1, three atrous 3×3 and image pooling, then a 1×1 projection."""
    branches = [_bn_relu(layers.Conv2D(filters, 1, use_bias=False, name="aspp_1x1_conv")(x), "aspp_1x1")]
    for rate in rates:
        branches.append(apply_conv3x3(x, filters, f"aspp_r{rate}", rate=rate, separable=separable))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = _bn_relu(layers.Conv2D(filters, 1, use_bias=False, name="aspp_pool_conv")(pooled), "aspp_pool")
    branches.append(ResizeLike(1, name="aspp_pool_resize")(pooled, x))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _bn_relu(layers.Conv2D(filters, 1, use_bias=False, name="aspp_proj_conv")(x), "aspp_proj")
    return layers.Dropout(dropout, name="aspp_dropout")(x)


def apply_decoder(x, low_level, *, ratio=4, filters=256, low_level_filters=48, separable=True):
    """Upsamples ASPP features (`ratio` times stride 4) to stride 4, joins a projection of the stride-4
    backbone features, refines."""
    low = layers.Conv2D(low_level_filters, 1, use_bias=False, name="decoder_proj_conv")(low_level)
    low = _bn_relu(low, "decoder_proj")
    x = ResizeLike(ratio, name="decoder_upsample")(x, low)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = apply_conv3x3(x, filters, "decoder_conv1", separable=separable)
    return apply_conv3x3(x, filters, "decoder_conv2", separable=separable)


def _architecture(architecture, arch_kwargs):
    if architecture is not None and arch_kwargs:
        raise TypeError(f"pass either architecture= or {', '.join(arch_kwargs)}, not both")
    return architecture if architecture is not None else Architecture(**arch_kwargs)


def _build(num_outputs, arch, input_shape, name, head):
    inputs = keras.Input(input_shape, name="image")
    low_level, x = apply_resnet50(inputs, backbone=arch.backbone, output_stride=arch.output_stride, width=arch.width)
    rates = list(arch.atrous_rates)
    if arch.output_stride == 8:
        rates = [2 * r for r in rates]  # same field of view on a twice-finer grid
    x = apply_aspp(x, filters=scaled(256, arch.width), rates=rates, separable=arch.separable)
    x = apply_decoder(
        x, low_level, ratio=arch.output_stride // 4, filters=scaled(256, arch.width),
        low_level_filters=scaled(48, arch.width), separable=arch.separable,
    )
    x = layers.Conv2D(num_outputs, 1, name=HEAD_LAYER)(x)
    outputs = head(x, inputs)
    model = keras.Model(inputs, outputs, name=name)
    model.architecture = arch  # the one value loaders and transfers read (frozen)
    return model


def build_deeplabv3plus(num_outputs, *, input_shape=(None, None, 3), architecture=None, **arch_kwargs):
    """DeepLabV3+ ResNet50 segmenter: images in [-1, 1] → float32 logits at input resolution.

    Args:
        num_outputs: classes (or 1 for a sigmoid binary head).
        input_shape: (H, W, 3); spatial dims may be None.
        architecture: an `Architecture`; or its fields as keyword arguments (**arch_kwargs): backbone
            ("resnet50" | "resnet50_beta"), output_stride (16 | 8), width (channel multiplier), separable
            (atrous depthwise-separable 3×3 in ASPP/decoder), atrous_rates.

    Example:
        >>> model = build_deeplabv3plus(6, width=0.25)
        >>> model(np.zeros((1, 65, 65, 3))).shape
        TensorShape([1, 65, 65, 6])
    """
    def head(x, inputs):
        return ResizeLike(4, name="upsample_logits", dtype="float32")(x, inputs)

    arch = dataclasses.replace(_architecture(architecture, arch_kwargs).body(), outputs=num_outputs)
    return _build(num_outputs, arch, input_shape, "deeplabv3plus", head)


GENERATOR_OUTPUTS = ("rgb", "chroma", "gray", "classify", "classify_gray")
GENERATOR_CHANNELS = {"rgb": 3, "chroma": 2, "gray": 3, "classify": NUM_BINS, "classify_gray": NUM_BINS}


def build_generator(*, input_shape=(None, None, 3), output="rgb", architecture=None, **arch_kwargs):
    """Colorization generator: grayscale (3 channels, [-1, 1]) → RGB in [-1, 1] at stride 4.

    The same network as `build_deeplabv3plus`, left at the decoder's stride-4 resolution (129×129 for a 513
    input), where the discriminator looks. `output="rgb"` (the reference) paints all three channels through
    tanh; `output="chroma"` predicts only Cb and Cr and keeps the input's own luma, as Lab-space colorization
    networks do, so the network spends itself on which colour things are rather than on copying brightness.
    `output="classify"` predicts a distribution over quantised chroma bins (`models/colour_bins.py`, Zhang
    et al. 2016), decoded to Cb/Cr by the annealed mean and joined to the input's luma.
    `output="gray"` is the rgb head, for the no-colour control: it is trained to give back its gray input.
    `output="classify_gray"` is the no-colour control matched to "classify": as many bins, over luma instead of
    chroma, decoded by the annealed mean to a gray image (the luma in all three channels).

    Example:
        >>> build_generator(width=0.25)(np.zeros((1, 513, 513, 3))).shape
        TensorShape([1, 129, 129, 3])
    """
    if output not in GENERATOR_OUTPUTS:
        raise ValueError(f"Wrong generator output {output!r}, supported: {', '.join(GENERATOR_OUTPUTS)}")

    def head(x, inputs):
        if output == "classify_gray":
            luma = AnnealedMeanChroma(space="luma", name="luma", dtype="float32")(x)
            return layers.Concatenate(name="colorized", dtype="float32")([luma, luma, luma])
        if output == "classify":
            x = AnnealedMeanChroma(name="chroma", dtype="float32")(x)
        else:
            x = layers.Activation("tanh", dtype="float32", name="chroma" if output == "chroma" else "colorized")(x)
        return LumaChromaToRGB(name="colorized", dtype="float32")(x, inputs) if output in ("chroma", "classify") else x

    channels = GENERATOR_CHANNELS[output]
    arch = dataclasses.replace(_architecture(architecture, arch_kwargs).body(), outputs=channels, output=output)
    return _build(channels, arch, input_shape, "generator", head)


def stride4_size(size):
    """Side of the stride-4 maps for an input side (129 for 513)."""
    size = (size + 6 - 7) // 2 + 1  # 7×7/2 stem (the beta stem gives the same size)
    return (size + 2 - 3) // 2 + 1  # 3×3/2 max pool
