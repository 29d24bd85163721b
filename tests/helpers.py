"""Small helpers several test modules share."""

from collections.abc import Mapping

from surrogate_supervision.models.resnet import apply_resnet50

import h5py
import keras
import numpy as np

from surrogate_supervision.datasets.labeled import LabeledDataset
from surrogate_supervision.datasets.masks import read_pair


def randomize(model, seed):
    """Distinct values everywhere, BN statistics included (fresh BN layers of two models would otherwise agree)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        low = 0.5 if variable.path.endswith("moving_variance") else -1.0
        variable.assign(rng.uniform(low, 1.0, tuple(variable.shape)).astype(variable.dtype))


def layer_weights(model):
    """Layer name → its weights as arrays, for every layer that has weights."""
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}


def write_legacy_h5(model, path):
    """Writes `model`'s weights in the Keras 2 HDF5 layout, as in Keras'
    resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers], dtype="S")
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for name, weight in zip(names, layer.weights):
                group.create_dataset(name, data=weight.numpy())


def build_resnet50(input_shape=(None, None, 3), **kwargs):
    """The backbone alone as a `keras.Model` (images in [-1, 1] → stride-4 and final features)."""
    inputs = keras.Input(input_shape, name="image")
    low_level, features = apply_resnet50(inputs, **kwargs)
    return keras.Model(inputs, [low_level, features], name=kwargs.get("backbone", "resnet50"))


def eval_examples(source, stems, *, num_classes=None, palette=None):
    """Yield (stem, image uint8 HxWx3 RGB, mask uint8 HxW) for each stem, in order.

    Args:
        source: a LabeledDataset, or (image_paths, mask_paths) as {stem: path} mappings or as lists
            aligned with `stems` (then pass num_classes / palette as for segmentation_dataset).
    """
    stems = list(stems)
    if isinstance(source, LabeledDataset):
        for stem in stems:
            yield (stem, *source.read_pair(stem))
        return
    image_paths, mask_paths = source
    if not isinstance(image_paths, Mapping):
        image_paths, mask_paths = dict(zip(stems, image_paths)), dict(zip(stems, mask_paths))
    for stem in stems:
        image, mask = read_pair(image_paths[stem], mask_paths[stem], palette=palette,
                                binary=num_classes == 2, num_classes=num_classes)
        yield stem, image, mask


def stand_in_peer(size, batch):
    """A stand-in for the PyTorch peer's step, for `experiments.speed.benchmark.PeerProcess` where torch is absent: a
    step that prints to stdout (which must not reach the protocol) and describes its process."""
    import os

    print("noise a library might print")

    def run_once():
        print("more noise")
        np.linalg.svd(np.ones((size, size)))

    return run_once, {"framework": "stand-in", "size": size, "batch": batch, "pid": os.getpid()}
