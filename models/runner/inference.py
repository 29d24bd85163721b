"""The one inference path: how a trained network turns an image of any size into logits.

Validation and test scoring (`finetune/segment.py`), `finetune/predict.py`, `finetune/export.py`'s agreement
check and the pretraining probe (`pretrain/probe.py`) all predict through `Predictor` with the scheme a run
recorded in its metrics.json (`InferenceScheme`), so the labels a user gets are the labels the metrics scored.

The default scheme was chosen by measurement on trained cells of two datasets
(experiments/results/inference_geometry.md): whole images, padded to the output-stride grid, with the dilated
taps that training could not reach set to zero. Those taps read only padding on the training crop's feature map
(a 129 crop gives a 9×9 map at output stride 16, on which the rate-12 and rate-18 taps off the centre fall
outside), so they get no gradient and keep their random initial values; on a larger image they would act on
real features with weights no training touched. Zeroing them is a no-op where the crop's map reaches every
tap (the reference 513 crop), leaves training unchanged (they never contributed there), and makes every
prediction depend on trained weights only. Validation zeroes them in the training model itself, so the
checkpoints and best.weights.h5 of runs trained since hold them as zero; older runs get them zeroed on load.
"""

import dataclasses
from dataclasses import dataclass

from surrogate_supervision.models.atrous import reachable_taps
from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.rundir import METRICS_FILE
from surrogate_supervision.models.runner.runtime import avoid_slow_fused_inference

import keras
import numpy as np
import tensorflow as tf

from surrogate_supervision.datasets import pad_to_grid

UNTRAINED_TAPS = ("zero", "keep")


def to_network_input(image_uint8):
    """uint8 RGB → float32 in [-1, 1]."""
    return np.asarray(image_uint8, np.float32) / 127.5 - 1.0


@dataclass(frozen=True)
class InferenceScheme:
    """The geometry of inference, recorded in every run's metrics.json under "inference".

    Args:
        tile: None predicts each image whole, padded to the grid; a side (e.g. the training crop) predicts by
            overlapping tiles of that side, their logits blended with weights falling towards each tile's border.
        max_side: whole images with a longer side are tiled at (max_side + 1) // 2, so memory stays bounded.
        overlap: fraction of a tile shared with its neighbour.
        untrained_taps: "zero" sets to zero the dilated taps that cannot touch the feature map of a training
            crop (they never trained); "keep" uses their initial values.
    """

    tile: int | None = None
    max_side: int = 1025
    overlap: float = 0.25
    untrained_taps: str = "zero"

    def __post_init__(self):
        if self.tile is not None and self.tile < 1:
            raise ValueError(f"tile must be positive or None, got {self.tile}")
        if self.max_side < 1:
            raise ValueError(f"max_side must be positive, got {self.max_side}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.untrained_taps not in UNTRAINED_TAPS:
            raise ValueError(f"untrained_taps must be one of {', '.join(UNTRAINED_TAPS)}, got {self.untrained_taps!r}")

    def replace(self, **changes):
        """A copy with the given fields changed; None values leave a field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def describe(self):
        where = "whole images" if self.tile is None else f"tiles of {self.tile} px"
        return f"{where} (tiled above {self.max_side} px), untrained taps {self.untrained_taps}"


DEFAULT_SCHEME = InferenceScheme()


def untrained_tap_masks(model, crop):
    """[(layer, mask)] for each dilated convolution with taps that read only padding on a crop × crop input.

    `mask` (kernel-shaped, broadcastable) is 1 on the taps that reach the layer's feature map at that crop
    (`models.atrous.reachable_taps`) and 0 on the others, which receive no gradient in training.
    """
    dilated = [layer for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
               and any(rate > 1 for rate in layer.dilation_rate)]
    if not dilated:
        return []
    if crop is None:
        raise ValueError("train_crop is needed to find the dilated taps training could not reach (or use a scheme "
                         "with untrained_taps='keep')")
    shapes = keras.Model(model.inputs, [layer.input for layer in dilated]).compute_output_shape((1, crop, crop, 3))
    shapes = [shapes] if len(dilated) == 1 else shapes
    masks = []
    for layer, shape in zip(dilated, shapes):
        (top, bottom), (left, right) = [reachable_taps(k, rate, side) for k, rate, side
                                        in zip(layer.kernel_size, layer.dilation_rate, shape[1:3])]
        mask = np.zeros(layer.kernel_size, np.float32)
        mask[top:bottom + 1, left:right + 1] = 1
        if not mask.all():
            masks.append((layer, mask[:, :, None, None]))
    return masks


class Predictor:
    """Logits for images of any size, through one `InferenceScheme`.

    Args:
        model: images in [-1, 1] → logits at input resolution (a Keras model).
        train_crop: the crop the model trained on; needed to find the untrained taps (scheme "zero").
        scheme: the geometry (`DEFAULT_SCHEME` unless a run recorded another).
        forward: instead of the model, a function from a float32 NHWC batch to logits (an exported artifact),
            run with the same geometry; its taps are whatever its export holds.
        stride: sides are padded to stride·k + 1 (513, 193 ... as training crops are), with the training padding
            value, so every output-stride feature sees image on both sides as in training.

    Switches TensorFlow's remapper off on CPUs where its fused convolutions are slow
    (`models.runner.runtime.avoid_slow_fused_inference`).
    """

    def __init__(self, model=None, *, train_crop=None, scheme=DEFAULT_SCHEME, forward=None, stride=16):
        if (model is None) == (forward is None):
            raise ValueError("Predictor takes a model or a forward function, not both or neither")
        avoid_slow_fused_inference()
        self.model, self.scheme, self.stride = model, scheme, stride
        self.masks = []
        if model is not None:
            if scheme.untrained_taps == "zero":
                self.masks = untrained_tap_masks(model, train_crop)
            self.zero_untrained_taps()
            # Traced once for every image size (a trace of the whole network takes seconds, per size otherwise).
            self.traced = tf.function(lambda x: model(x, training=False),
                                      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
            forward = lambda x: self.traced(tf.constant(x)).numpy()
        self._forward = forward

    def zero_untrained_taps(self):
        """Sets the untrained taps to zero. Done before every prediction, as a checkpoint restored since (in
        training, or a best checkpoint loaded back) brings their initial values back; idempotent and cheap."""
        for layer, mask in self.masks:
            layer.kernel.assign(layer.kernel * mask)

    def _whole(self, image):
        padded, (h, w) = pad_to_grid(image, self.stride)
        return np.asarray(self._forward(np.ascontiguousarray(padded[None], np.float32)))[0, :h, :w]

    def _tiled(self, image, tile):
        h, w = image.shape[:2]
        stride = max(1, int(tile * (1 - self.scheme.overlap)))
        ramp = np.minimum(np.arange(tile) + 1, np.arange(tile)[::-1] + 1).astype(np.float32)
        weight = np.minimum.outer(ramp, ramp)[..., None]
        logits, total = None, np.zeros((h, w, 1), np.float32)
        for top in _starts(h, tile, stride):
            for left in _starts(w, tile, stride):
                out = self._whole(image[top:top + tile, left:left + tile])
                ph, pw = out.shape[:2]
                if logits is None:
                    logits = np.zeros((h, w, out.shape[-1]), np.float32)
                logits[top:top + ph, left:left + pw] += out * weight[:ph, :pw]
                total[top:top + ph, left:left + pw] += weight[:ph, :pw]
        return logits / total

    def tile_for(self, shape):
        """The tile side an image of `shape` is predicted with, or None when it is predicted whole."""
        if self.scheme.tile is not None and max(shape[:2]) > self.scheme.tile:
            return self.scheme.tile
        if self.scheme.tile is None and max(shape[:2]) > self.scheme.max_side:
            return (self.scheme.max_side + 1) // 2
        return None

    def logits(self, image_uint8):
        self.zero_untrained_taps()
        image = to_network_input(image_uint8)
        tile = self.tile_for(image.shape)
        return self._whole(image) if tile is None else self._tiled(image, tile)

    def labels(self, image_uint8):
        """Class ids (H, W): argmax, or sigmoid > 0.5 for a one-output (binary) model."""
        return labels_from_logits(self.logits(image_uint8))


def run_scheme(trained):
    """The scheme a trained run was scored with (its metrics.json), else the default one."""
    recorded = read_json(trained.path / METRICS_FILE, {}).get("inference")
    return InferenceScheme.from_dict(recorded) if recorded else DEFAULT_SCHEME


def run_predictor(trained, **changes):
    """The Predictor of a loaded run (`models.runner.runs.load_run`): its model, crop and recorded scheme, with
    `changes` (InferenceScheme fields; None keeps the run's) applied."""
    return Predictor(trained.model, train_crop=trained.crop, scheme=run_scheme(trained).replace(**changes))


def labels_from_logits(logits):
    """Class ids (..., H, W) from logits (..., H, W, C): argmax, or logit > 0 (sigmoid > 0.5) when C is 1."""
    logits = np.asarray(logits)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.uint8)
    return logits.argmax(-1).astype(np.uint8)


def _starts(length, tile, stride):
    """Tile origins covering [0, length) with the last tile flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]
