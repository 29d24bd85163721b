"""The conditional PatchGAN discriminator of the reference study (pix2pix, Isola et al., CVPR 2017).

It judges an RGB image (real or colorized) together with the grayscale image it was made from, both at the
generator's stride-4 resolution (129×129 for a 513 crop), and answers with a map of patch logits.
"""

from surrogate_supervision.models.batchnorm import batch_norm

import keras
from keras import layers


def build_discriminator(*, input_size=None, filters=64, layers_count=3):
    """Conditional PatchGAN: [rgb (B,h,w,3), gray (B,h,w,3)] → patch logits, float32.

    pix2pix's 70×70 PatchGAN (`layers_count=3`): 4×4 convolutions C64–C128–C256 at stride 2 and C512 at
    stride 1, BatchNorm on all but the first, LeakyReLU 0.2, then a 4×4 convolution to one logit per patch.
    Each logit sees 70×70 pixels of the stride-4 images (a quarter of a 513 crop); the loss is taken per
    patch (see `models.gan`). `layers_count=1` is the shallower C64–C128 (22×22 patches) of earlier versions.

    Example:
        >>> build_discriminator()([np.zeros((1, 129, 129, 3))] * 2).shape
        TensorShape([1, 17, 17, 1])
    """
    shape = (input_size, input_size, 3)
    rgb = keras.Input(shape, name="rgb")
    gray = keras.Input(shape, name="gray")
    x = layers.Concatenate(name="disc_concat")([rgb, gray])
    x = layers.Conv2D(filters, 4, strides=2, padding="same", name="disc_conv1")(x)
    x = layers.LeakyReLU(0.2, name="disc_lrelu1")(x)
    for n in range(1, layers_count + 1):
        last = n == layers_count and n > 1
        channels = filters * min(2 ** n, 8)
        x = layers.Conv2D(channels, 4, strides=1 if last else 2, padding="same", use_bias=False,
                          name=f"disc_conv{n + 1}")(x)
        x = batch_norm(f"disc_conv{n + 1}_bn", 1e-5)(x)
        x = layers.LeakyReLU(0.2, name=f"disc_lrelu{n + 1}")(x)
    logits = layers.Conv2D(1, 4, padding="same", dtype="float32", name="disc_logits")(x)
    return keras.Model([rgb, gray], logits, name="discriminator")
