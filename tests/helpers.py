"""Small helpers several test modules share."""

import numpy as np


def randomize(model, seed):
    """Distinct values everywhere, BN statistics included (fresh BN layers of two models would otherwise agree)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        low = 0.5 if variable.path.endswith("moving_variance") else -1.0
        variable.assign(rng.uniform(low, 1.0, tuple(variable.shape)).astype(variable.dtype))


def layer_weights(model):
    """Layer name → its weights as arrays, for every layer that has weights."""
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}
