"""The conditional PatchGAN discriminator of the reference study (pix2pix, Isola et al., CVPR 2017).

It judges an RGB image (real or colorized) together with the grayscale image it was made from, both at the
generator's stride-4 resolution (129×129 for a 513 crop), and answers with a map of patch logits.
"""

import keras
from keras import layers

from models.batchnorm import batch_norm


def build_discriminator(*, input_size=None, filters=64):
    """Conditional PatchGAN: [rgb (B,h,w,3), gray (B,h,w,3)] → patch logits (B,h/4,w/4,1), float32.

    4×4 strided convolutions 64 → 128 (with BatchNorm) and LeakyReLU 0.2, then a 4×4 convolution to one
    logit per patch. The per-image score is the mean over the map (see `models.gan`).

    Example:
        >>> build_discriminator()([np.zeros((1, 129, 129, 3))] * 2).shape
        TensorShape([1, 33, 33, 1])
    """
    shape = (input_size, input_size, 3)
    rgb = keras.Input(shape, name="rgb")
    gray = keras.Input(shape, name="gray")
    x = layers.Concatenate(name="disc_concat")([rgb, gray])
    x = layers.Conv2D(filters, 4, strides=2, padding="same", name="disc_conv1")(x)
    x = layers.LeakyReLU(0.2, name="disc_lrelu1")(x)
    x = layers.Conv2D(2 * filters, 4, strides=2, padding="same", use_bias=False, name="disc_conv2")(x)
    x = batch_norm("disc_conv2_bn", 1e-5)(x)
    x = layers.LeakyReLU(0.2, name="disc_lrelu2")(x)
    logits = layers.Conv2D(1, 4, padding="same", dtype="float32", name="disc_logits")(x)
    return keras.Model([rgb, gray], logits, name="discriminator")
