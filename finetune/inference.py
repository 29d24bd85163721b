"""Whole-image prediction: pad to the network's training grid, or cut overlapping tiles when an image is too big.

Tiles overlap and their logits are blended with a weight that falls towards each tile's border, so seams
do not show and memory stays bounded by the tile size whatever the image size.
"""

from models.runner.runtime import avoid_slow_fused_inference

import numpy as np
import tensorflow as tf

from datasets import pad_to_grid


def to_network_input(image_uint8):
    """uint8 RGB → float32 in [-1, 1]."""
    return np.asarray(image_uint8, np.float32) / 127.5 - 1.0


class Predictor:
    """Logits for whole images of any size from a segmentation model.

    Args:
        model: images in [-1, 1] → logits at input resolution.
        stride: pad sides to stride·k + 1 (513, 193 ... as training crops are), with the training padding
            value, so every feature of the output-stride map sees image on both sides as in training.
        max_side: images with a longer side are predicted by tiles of `tile` pixels.
        overlap: fraction of a tile shared with its neighbour.

    Switches TensorFlow's remapper off on CPUs where its fused convolutions are slow
    (`models.runner.runtime.avoid_slow_fused_inference`: 10× on an AVX2 CPU).
    """

    def __init__(self, model, *, stride=16, max_side=1025, tile=513, overlap=0.25):
        avoid_slow_fused_inference()
        self.model = model
        self.stride = stride
        self.max_side = max_side
        self.tile = tile
        self.overlap = overlap
        self._forward = tf.function(self._inference, reduce_retracing=True)

    def _inference(self, x):
        return self.model(x, training=False)

    def _whole(self, image):
        padded, (h, w) = pad_to_grid(image, self.stride)
        return self._forward(padded[None]).numpy()[0, :h, :w]

    def _tiled(self, image):
        h, w = image.shape[:2]
        tile, stride = self.tile, max(1, int(self.tile * (1 - self.overlap)))
        ramp = np.minimum(np.arange(tile) + 1, np.arange(tile)[::-1] + 1).astype(np.float32)
        weight = np.minimum.outer(ramp, ramp)[..., None]
        logits, total = None, np.zeros((h, w, 1), np.float32)
        for top in _starts(h, tile, stride):
            for left in _starts(w, tile, stride):
                patch = image[top:top + tile, left:left + tile]
                out = self._whole(patch)
                ph, pw = out.shape[:2]
                if logits is None:
                    logits = np.zeros((h, w, out.shape[-1]), np.float32)
                logits[top:top + ph, left:left + pw] += out * weight[:ph, :pw]
                total[top:top + ph, left:left + pw] += weight[:ph, :pw]
        return logits / total

    def logits(self, image_uint8):
        image = to_network_input(image_uint8)
        if max(image.shape[:2]) > self.max_side:
            return self._tiled(image)
        return self._whole(image)

    def labels(self, image_uint8):
        """Class ids (H, W): argmax, or sigmoid > 0.5 for a one-output (binary) model."""
        return labels_from_logits(self.logits(image_uint8))


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
