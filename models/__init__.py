"""Networks, their losses and weight transfer: DeepLabV3+ ResNet50 (segmenter and colorization generator),
the conditional PatchGAN discriminator, the colorization GAN, segmentation losses, and `--init` transfers.

Below `models/runner/` (the run plumbing: a subpackage that imports these modules, never the reverse) and the
scripts; above `datasets/`. Nothing here reads flags.
"""

from models import cpu  # noqa: F401  (first: settings TensorFlow reads when it loads)
from models.architecture import ARCHITECTURE_FILE, Architecture
from models.deeplab import build_deeplabv3plus, build_generator
from models.discriminator import build_discriminator
from models.gan import ColorizationGAN
from models.losses import LOSSES, make_loss
from models.segmenter import build_segmenter
from models.transfer import INITS, TransferError, TransferReport, transfer_weights

__all__ = [
    "ARCHITECTURE_FILE",
    "INITS",
    "LOSSES",
    "Architecture",
    "ColorizationGAN",
    "TransferError",
    "TransferReport",
    "build_deeplabv3plus",
    "build_discriminator",
    "build_generator",
    "build_segmenter",
    "make_loss",
    "transfer_weights",
]
