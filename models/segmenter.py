"""The segmentation network as fine-tuning trains it: DeepLabV3+ with the head its loss needs."""

from surrogate_supervision.models.architecture import Architecture
from surrogate_supervision.models.deeplab import build_deeplabv3plus
from surrogate_supervision.models.resnet import is_backbone_layer

from surrogate_supervision.datasets import ToolkitError


def build_segmenter(num_classes, *, loss="ce", freeze_encoder=False, architecture=None):
    """DeepLabV3+ for `num_classes` classes: one logit per class, or one sigmoid logit for `loss="bce"`.

    Args:
        num_classes: classes of the dataset, background included.
        loss: "ce", "dice", "ce+dice" or "bce" (`models.losses.LOSSES`); "bce" is for two-class datasets.
        freeze_encoder: keep the backbone's weights and BatchNorm statistics fixed.
        architecture: an `Architecture` (default: the reference network, ResNet50 at width 1.0, stride 16).

    Example:
        >>> model = build_segmenter(3, architecture=Architecture(width=0.25))
        >>> model.architecture.outputs
        3
    """
    if loss == "bce" and num_classes != 2:
        raise ToolkitError(f"bce is for two-class datasets; this one has {num_classes} classes", param="loss")
    model = build_deeplabv3plus(1 if loss == "bce" else num_classes, architecture=architecture or Architecture())
    if freeze_encoder:
        for layer in model.layers:
            if is_backbone_layer(layer.name):
                layer.trainable = False  # Keras 3: a frozen BatchNorm also runs in inference mode
    return model
