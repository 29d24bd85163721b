"""Networks and weight transfer: DeepLabV3+ ResNet50 (segmenter and colorization generator), the conditional
PatchGAN discriminator, the colorization GAN, and `--init` transfers."""

from models import cpu  # noqa: F401  (first: settings TensorFlow reads when it loads)
from models.deeplab import build_deeplabv3plus, build_generator
from models.discriminator import build_discriminator
from models.gan import ColorizationGAN
from models.transfer import INITS, TransferError, TransferReport, transfer_weights

__all__ = [
    "INITS",
    "ColorizationGAN",
    "TransferError",
    "TransferReport",
    "build_deeplabv3plus",
    "build_discriminator",
    "build_generator",
    "transfer_weights",
]
