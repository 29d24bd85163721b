"""How a network starts (`--init`): scratch, ImageNet, or a colorization generator (surrogate).

Every transfer copies whole layers by name, checks every shape, and reports what it copied and skipped.
Nothing is loaded partially in silence: a file that does not fit the network is an error.
"""

import dataclasses
import sys
from pathlib import Path

from models.architecture import ARCHITECTURE_FILE, Architecture
from models.conv_bias import fold_conv_biases, load_weights
from models.deeplab import HEAD_LAYER, build_generator
from models.io import atomic_path, file_sha256, read_json
from models.resnet import is_backbone_layer

import h5py
import keras
import numpy as np

INITS = ("scratch", "imagenet", "surrogate", "imagenet+surrogate", "control")  # control: a --predict gray generator
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_HASH = "4d473c1dd8becc155b73f8504c6f6626"
GENERATOR_FILE = "generator.weights.h5"
RUN_CONFIG_FILE = "config.json"  # a pretraining run's flags, beside its generator
# The pretext each generator-based init expects: `control` must start from the no-colour (gray) target, the
# colour arms from a colour one, or the grid would compare an arm with itself.
PRETEXT_INITS = ("surrogate", "imagenet+surrogate", "control")


class TransferError(ValueError):
    """A weights source that cannot initialise the network as asked."""


@dataclasses.dataclass
class TransferReport:
    init: str
    source: str = ""
    copied: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    source_sha256: str = ""  # the source file's hash: a regenerated pretraining run shows as a different file

    def summary(self):
        return f"init {self.init}: copied {len(self.copied)} layers, skipped {len(self.skipped)}" + (
            f" from {self.source}" if self.source else ""
        )


def _weighted_layers(model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def _copy_layers(model, source_weights, names, source):
    """Copies `source_weights[name]` (list of arrays) into each named layer, after checking every shape."""
    layers = _weighted_layers(model)
    for name in names:
        targets, values = layers[name].weights, source_weights[name]
        shapes = [tuple(v.shape) for v in targets], [tuple(np.shape(v)) for v in values]
        if shapes[0] != shapes[1]:
            raise TransferError(f"{source}: layer {name} has shapes {shapes[1]}, the network needs {shapes[0]}")
    for name in names:
        for variable, value in zip(layers[name].weights, source_weights[name]):
            variable.assign(value)


def read_legacy_h5(path):
    """Layer name → arrays from a Keras 2 HDF5 weights file (the format of Keras' ImageNet downloads)."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in group.attrs:
            raise TransferError(f"{path}: not a Keras HDF5 weights file (no layer_names)")
        weights = {}
        for raw in group.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            names = [n.decode() if isinstance(n, bytes) else n for n in group[name].attrs["weight_names"]]
            if names:
                weights[name] = [np.asarray(group[name][n]) for n in names]
        return weights


def _layer_weights(model):
    return {name: [v.numpy() for v in layer.weights] for name, layer in _weighted_layers(model).items()}


def read_imagenet_weights(path):
    """Layer name → arrays from either Keras' legacy ImageNet file or a Keras 3 `.weights.h5` of ResNet50, in
    Keras' layout (convolutions with [kernel, bias]; `load_imagenet` folds the biases)."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"--imagenet-weights {path}: no such file")
    if path.name.endswith(".weights.h5"):
        reference = keras.applications.ResNet50(include_top=False, weights=None)
        try:
            reference.load_weights(path)
        except Exception as error:  # Keras raises several types for layout mismatches
            raise TransferError(f"{path}: not the weights of keras.applications.ResNet50 "
                                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
        return _layer_weights(reference)
    return read_legacy_h5(path)


def download_imagenet_weights():
    """Keras' own download and cache (~/.keras/models); a clear error when offline."""
    try:
        return keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_HASH)
    except Exception as error:
        raise TransferError(
            f"could not download ImageNet weights ({type(error).__name__}); without network access pass "
            f"--imagenet-weights PATH to a local {IMAGENET_FILE} or ResNet50 .weights.h5"
        ) from None


# Keras' ResNet50 ImageNet weights expect "caffe" input: BGR, 0-255, minus these channel means (B, G, R).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
FIRST_CONV = "conv1_conv"


def fold_caffe_preprocessing(kernel, bias):
    """conv1's (kernel, bias) for RGB input in [-1, 1] from those trained on caffe input (Keras' layout, with a
    bias: the constant it gains then moves into conv1_bn's moving mean with the bias, in `fold_conv_biases`).

    caffe_k = 127.5·(x_rgb(k) + 1) − mean_k for BGR channel k, so the kernel's input channels are reversed
    and scaled by 127.5 and the constant 127.5 − mean_k moves into the bias. Exact wherever the 7×7 window
    lies inside the image; on the outer 2 output rows and columns the folded bias assumes image where
    the zero padding is (our padding is pixel 127.5, Keras' is the ImageNet mean colour), a difference
    of at most 24 grey levels on the few padded taps.
    """
    kernel = np.asarray(kernel, np.float64)
    folded_bias = np.asarray(bias, np.float64) + np.einsum("hwko,k->o", kernel, 127.5 - CAFFE_MEAN_BGR)
    return [(127.5 * kernel[:, :, ::-1]).astype(np.float32), folded_bias.astype(np.float32)]


def load_imagenet(model, weights_path=None):
    """Copies ImageNet ResNet50 weights into every backbone layer of `model`, with their caffe input
    convention folded into conv1, so the network keeps its one input contract (RGB in [-1, 1]), and every
    convolution's bias folded into the moving mean of the BatchNorm after it (our convolutions have none).

    The order matters: the caffe fold turns the mean colour into part of conv1's bias, which the second fold
    then moves into conv1_bn with the rest of it.
    """
    arch = getattr(model, "architecture", None) or Architecture()
    if weights_path is None and (arch.backbone != "resnet50" or arch.width != 1.0):
        raise TransferError(f"ImageNet weights exist for the standard 'resnet50' at width 1.0 only; this network is "
                            f"{arch.backbone} at width {arch.width} (pass --imagenet-weights to use "
                            f"a matching file of your own)")
    source = str(weights_path or download_imagenet_weights())
    weights = read_imagenet_weights(source)
    backbone = [name for name in _weighted_layers(model) if is_backbone_layer(name)]
    missing = [name for name in backbone if name not in weights]
    if missing:
        raise TransferError(
            f"{source}: has no weights for backbone layers {missing[:3]}... ImageNet weights exist for the "
            f"standard 'resnet50' backbone only; got {arch.backbone}"
        )
    weights = dict(weights)
    weights[FIRST_CONV] = fold_caffe_preprocessing(*weights[FIRST_CONV])
    weights = fold_conv_biases(weights)
    try:
        _copy_layers(model, weights, backbone, source)
    except TransferError as error:
        raise TransferError(f"{error} (ImageNet weights fit width 1.0 only)") from None
    skipped = [name for name in _weighted_layers(model) if name not in backbone]
    return TransferReport("imagenet", source, backbone, skipped)


def _body(model):
    """The layout a segmenter and a generator must share (everything but the head), or None if unknown."""
    arch = getattr(model, "architecture", None)
    return arch.body() if isinstance(arch, Architecture) else None


def save_generator(generator, path):
    """Writes generator weights and, beside them, the `Architecture` that rebuilds it (architecture.json)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        generator.save_weights(tmp)
    generator.architecture.save(path.parent)


def resolve_surrogate(path):
    """`--surrogate` may name a colorization run directory or its generator weights file."""
    path = Path(path)
    if path.is_dir():
        path = path / GENERATOR_FILE
    if not path.is_file():
        raise TransferError(f"--surrogate {path}: no such file (a colorization run writes {GENERATOR_FILE})")
    return path


def load_generator(path, architecture=None):
    """Rebuilds a colorization generator from its weights file (its `Architecture` from the file beside it;
    `architecture` only where there is none, as for weights written by earlier versions). Files written before
    the backbone lost its convolution biases load too, folded (`models/conv_bias.py`)."""
    path = resolve_surrogate(path)
    try:
        architecture = Architecture.load(path.parent) or architecture
    except ValueError as error:
        raise TransferError(f"--surrogate {path.parent / ARCHITECTURE_FILE}: {error}") from None
    if architecture is None:
        raise TransferError(f"--surrogate {path}: no {ARCHITECTURE_FILE} beside it to rebuild the generator")
    generator = build_generator(output=architecture.output or "rgb", architecture=architecture.body())
    try:
        load_weights(generator, path)
    except Exception as error:
        raise TransferError(f"--surrogate {path}: does not match a generator of {architecture.body().to_dict()} "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    return generator


def check_pretext(init, surrogate):
    """Refuses a generator trained for the other pretext (`control` needs a `--predict gray` run, the colour
    arms a colour one), and for `imagenet+surrogate` one whose pretraining did not start from ImageNet.

    The start is read from the pretraining run's config.json beside the weights file. A bare weights file,
    copied out of its run, has none: it is accepted with a warning on stderr, as the user vouches for it.
    """
    if init not in PRETEXT_INITS or surrogate is None:
        return
    path = resolve_surrogate(surrogate)
    arch = read_json(path.parent / ARCHITECTURE_FILE, {})
    output = arch.get("output") or "rgb"
    if (init == "control") != (output == "gray"):
        wanted = "a --predict gray (no-colour) run" if init == "control" else \
            "a colour run (--predict rgb or chroma, or --colour-loss classify)"
        raise TransferError(f"--surrogate {surrogate}: its generator was trained with --predict {output}; "
                            f"--init {init} needs {wanted}")
    if init != "imagenet+surrogate":
        return
    config = read_json(path.parent / RUN_CONFIG_FILE)
    if config is None or "init" not in config:
        print(f"warning: --init imagenet+surrogate: {path} has no pretraining {RUN_CONFIG_FILE} beside it, so "
              f"whether its pretraining started from ImageNet is not checked", file=sys.stderr)
    elif config["init"] != "imagenet":
        raise TransferError(f"--surrogate {surrogate}: its pretraining started from --init {config['init']}; "
                            f"--init imagenet+surrogate needs a generator pretrained from ImageNet "
                            f"(pretrain/colorize.py --init imagenet)")


def load_surrogate(model, surrogate_path, init="surrogate"):
    """Copies every generator layer except its head into `model`; refuses architectures that differ."""
    if surrogate_path is None:
        raise TransferError(f"--init {init} needs --surrogate PATH (a colorization run or its weights file)")
    check_pretext(init, surrogate_path)
    body = _body(model)
    generator = load_generator(surrogate_path, body)
    source = str(resolve_surrogate(surrogate_path))
    if body is not None and _body(generator) != body:
        raise TransferError(f"--surrogate {source}: generator architecture {_body(generator).to_dict()} differs "
                            f"from the network's {body.to_dict()}")
    source_layers = _weighted_layers(generator)
    names = [name for name in _weighted_layers(model) if name != HEAD_LAYER]
    missing = [name for name in names if name not in source_layers]
    if missing:
        raise TransferError(f"--surrogate {source}: generator lacks layers {missing[:3]}")
    _copy_layers(model, _layer_weights(generator), names, source)
    return TransferReport(init, source, names, [HEAD_LAYER])


def transfer_weights(model, init, *, imagenet_weights=None, surrogate=None):
    """Initialises `model` in place as `--init` asks; returns a `TransferReport`.

    Args:
        model: a network from `build_deeplabv3plus` or `build_generator`.
        init: one of INITS. "imagenet+surrogate" loads a generator that was itself trained from ImageNet
            (checked in the pretraining run's config.json), "control" a `--predict gray` generator.
        imagenet_weights: local ImageNet weights file; None downloads through Keras' cache.
        surrogate: colorization run directory or generator weights file.

    Example:
        >>> report = transfer_weights(model, "surrogate", surrogate="runs/colorize")
        >>> print(report.summary())
    """
    if init not in INITS:
        raise TransferError(f"Wrong --init {init!r}, supported: {', '.join(INITS)}")
    if init == "scratch":
        return TransferReport("scratch", skipped=list(_weighted_layers(model)))
    report = load_imagenet(model, imagenet_weights) if init == "imagenet" else load_surrogate(model, surrogate, init)
    report.source_sha256 = file_sha256(report.source)
    return report
