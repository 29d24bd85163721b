"""Networks, their losses and weight transfer: DeepLabV3+ ResNet50 (segmenter and colorization generator),
the conditional PatchGAN discriminator, the colorization GAN, segmentation losses, and `--init` transfers.

Below `models/runner/` (the run plumbing: a subpackage that imports these modules, never the reverse) and the
scripts; above `datasets/`. Nothing here reads flags.
"""

from surrogate_supervision.models import cpu  # noqa: F401  (first: settings TensorFlow reads when it loads)
from surrogate_supervision.models.architecture import ARCHITECTURE_FILE, Architecture
from surrogate_supervision.models.deeplab import build_deeplabv3plus, build_generator
from surrogate_supervision.models.discriminator import build_discriminator
from surrogate_supervision.models.gan import ColorizationGAN
from surrogate_supervision.models.losses import LOSSES, make_loss
from surrogate_supervision.models.segmenter import build_segmenter
from surrogate_supervision.models.transfer import INITS, TransferError, TransferReport, transfer_weights

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
