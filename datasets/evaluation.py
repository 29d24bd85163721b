"""Whole-image evaluation: validation and test metrics are computed on full images, not crops."""

import numpy as np


def pad_to_grid(image, stride: int, value=1.0):
    """Pad the bottom and right of an (H, W[, C]) or (B, H, W, C) array or tensor so that H and W are of the
    form stride·k + 1, the sizes DeepLab trains on (513, 193): every stride-s feature then has input pixels
    on both sides, as in a training crop. Returns (padded, (H, W)), to crop predictions back with [:H, :W].
    The default value 1.0 is the training padding (pixel 255 scaled to [-1, 1])."""
    spatial = (1, 2) if len(image.shape) == 4 else (0, 1)
    height, width = int(image.shape[spatial[0]]), int(image.shape[spatial[1]])
    paddings = [[0, 0] for _ in image.shape]
    paddings[spatial[0]][1], paddings[spatial[1]][1] = -(height - 1) % stride, -(width - 1) % stride
    if isinstance(image, np.ndarray):
        return np.pad(image, paddings, constant_values=value), (height, width)
    import tensorflow as tf  # only for tensor inputs, so this module stays importable without TensorFlow

    return tf.pad(image, paddings, constant_values=value), (height, width)
