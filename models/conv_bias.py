"""Weights whose backbone convolutions have a bias: recognised, and folded into the BatchNorm that follows.

The backbone's convolutions have no bias (`models/resnet.py`), but two sources of weights have one: Keras'
ImageNet ResNet50 files, and the `.weights.h5` files this toolkit wrote before its backbone dropped them. Every
such convolution feeds a BatchNorm with moving mean m, and

    training:   BN(conv(x) + b) = BN(conv(x))              the batch mean takes b with it, exactly
    inference:  BN(conv(x) + b; m) = BN(conv(x); m − b)

so dropping b and moving m to m − b keeps the network the same function in both modes, with the same kernel
gradients; training keeps the relation too, since the moving mean follows the batch mean, which is b lower.
This module is the one place that knows the old layout: `fold_conv_biases` for layer name → arrays (ImageNet),
`load_weights` for weight files, `with_conv_bias` to build the old network (for reading its files, and in tests).
"""

import warnings

from surrogate_supervision.models.resnet import batch_norm_after

import keras
import numpy as np


def fold_conv_biases(weights):
    """Layer name → arrays, each backbone convolution's [kernel, bias] made [kernel] with its bias subtracted from
    the moving mean of the BatchNorm after it ([gamma, beta, moving mean, moving variance]); the rest as given.

    Arrays of another layout (a file for another network) are left as they are, for the shape checks of the
    caller to report against the layer they belong to.
    """
    folded = dict(weights)
    for name, arrays in weights.items():
        bn = batch_norm_after(name)
        if bn is None or len(arrays) != 2 or len(weights.get(bn, ())) != 4:
            continue
        kernel, bias = arrays
        gamma, beta, mean, variance = weights[bn]
        mean = np.asarray(mean)
        if np.shape(bias) != mean.shape:
            continue
        folded[name] = [kernel]
        folded[bn] = [gamma, beta, (mean.astype(np.float64) - np.asarray(bias, np.float64)).astype(mean.dtype),
                      variance]
    return folded


def with_conv_bias(model):
    """A copy of `model`, fresh weights, whose backbone convolutions have a bias: the layout of old weight files."""
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D) and batch_norm_after(layer.name):
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def load_weights(model, path):
    """Loads a `.weights.h5` file into `model`, whether its backbone convolutions have biases or not; returns True
    when they had (and were folded into the BatchNorms).

    The file's own content says which layout it is in: one that Keras refuses for `model` (the biases have no
    variables to go to) but accepts for `with_conv_bias(model)` has biases. A marker beside the file could not
    say this for a bare weights file copied out of its run, nor for a run folder holding files of two versions.
    A file that fits neither raises Keras' error for today's layout. Keras' warnings (it warns where it skips
    part of a file) are passed on from the attempt that loaded, so callers can still refuse partial loads.
    """
    error, caught = _try_load(model, path)
    if error is None:
        _pass_on(caught)
        return False
    old = with_conv_bias(model)
    old_error, old_caught = _try_load(old, path)
    if old_error is not None:
        raise error
    _pass_on(old_caught)
    weights = fold_conv_biases({layer.name: [w.numpy() for w in layer.weights] for layer in old.layers})
    for layer in model.layers:
        values = weights[layer.name]
        if len(values) != len(layer.weights):
            raise ValueError(f"{path}: layer {layer.name} has {len(values)} arrays once folded, "
                             f"the network needs {len(layer.weights)}")
        for variable, value in zip(layer.weights, values):
            variable.assign(value)
    return True


def _try_load(model, path):
    """(Keras' ValueError or None, the warnings it gave) for loading `path` into `model`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except ValueError as error:
            return error, caught
    return None, caught


def _pass_on(caught):
    for warning in caught:  # as Keras gave them (its file and line), for callers that filter on them
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
