"""How a network starts (`--init`): scratch, ImageNet, a colorization generator (surrogate), or a trained
segmentation run (segmentation).

Every transfer copies whole layers by name, checks every shape, and reports what it copied and skipped.
Nothing is loaded partially in silence: a file that does not fit the network is an error.
"""

import dataclasses
import sys
import warnings
from pathlib import Path

from surrogate_supervision.models.architecture import Architecture
from surrogate_supervision.models.conv_bias import fold_conv_biases, load_weights
from surrogate_supervision.models.deeplab import HEAD_LAYER, build_deeplabv3plus, build_generator
from surrogate_supervision.models.io import file_sha256, read_json
from surrogate_supervision.models.resnet import is_backbone_layer
from surrogate_supervision.models.rundir import (
    ARCHITECTURE_FILE,
    BEST_WEIGHTS,
    CONFIG_FILE,
    GENERATOR_FILE,
    METRICS_FILE,
    is_finished,
)

import h5py
import keras
import numpy as np

from surrogate_supervision.datasets import ToolkitError

# control: a --predict gray generator; segmentation: a finished finetune/segment.py run
INITS = ("scratch", "imagenet", "surrogate", "imagenet+surrogate", "control", "segmentation")
IMAGENET_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + IMAGENET_FILE
IMAGENET_HASH = "4d473c1dd8becc155b73f8504c6f6626"
# The pretext each generator-based init expects: `control` must start from the no-colour (gray) target, the
# colour arms from a colour one, or the grid would compare an arm with itself.
PRETEXT_INITS = ("surrogate", "imagenet+surrogate", "control")
GRAY_OUTPUTS = ("gray", "classify_gray")  # the no-colour generators, L1 or binned: the sources of `control`


class TransferError(ToolkitError):
    """A weights source that cannot initialise the network as asked."""


@dataclasses.dataclass
class TransferReport:
    init: str
    source: str = ""
    copied: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    source_sha256: str = ""  # the source file's hash: a regenerated pretraining run shows as a different file
    note: str = ""  # why a layer was not copied, where that was a choice (a head of other classes)

    def summary(self):
        return f"init {self.init}: copied {len(self.copied)} layers, skipped {len(self.skipped)}" + (
            f" from {self.source}" if self.source else ""
        ) + (f"; {self.note}" if self.note else "")


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
        raise TransferError(f"{path}: no such file", param="imagenet_weights")
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
            f"not given, and ImageNet weights could not be downloaded ({type(error).__name__}); without network "
            f"access give the path of a local {IMAGENET_FILE} or ResNet50 .weights.h5", param="imagenet_weights"
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
        raise TransferError(f"not given, and ImageNet weights exist for the standard 'resnet50' at width 1.0 only; "
                            f"this network is {arch.backbone} at width {arch.width} (give a matching file of your "
                            f"own)", param="imagenet_weights")
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


def resolve_surrogate(path):
    """`--surrogate` may name a colorization run directory or its generator weights file."""
    path = Path(path)
    if path.is_dir():
        path = path / GENERATOR_FILE
    if not path.is_file():
        raise TransferError(f"{path}: no such file (a colorization run writes {GENERATOR_FILE})", param="surrogate")
    return path


def load_generator(path, architecture=None):
    """Rebuilds a colorization generator from its weights file (its `Architecture` from the file beside it;
    `architecture` only where there is none, as for weights written by earlier versions). Files written before
    the backbone lost its convolution biases load too, folded (`models/conv_bias.py`)."""
    path = resolve_surrogate(path)
    try:
        architecture = Architecture.load(path.parent) or architecture
    except ValueError as error:
        raise TransferError(f"{path.parent / ARCHITECTURE_FILE}: {error}", param="surrogate") from None
    if architecture is None:
        raise TransferError(f"{path}: no {ARCHITECTURE_FILE} beside it to rebuild the generator", param="surrogate")
    generator = build_generator(output=architecture.output or "rgb", architecture=architecture.body())
    try:
        load_weights(generator, path)
    except Exception as error:
        raise TransferError(f"{path}: does not match a generator of {architecture.body().to_dict()} "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})",
                            param="surrogate") from None
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
    if (init == "control") != (output in GRAY_OUTPUTS):
        wanted = f"a no-colour run (output {' or '.join(GRAY_OUTPUTS)})" if init == "control" else \
            "a colour run (output rgb, chroma or classify)"
        raise TransferError(f"{surrogate}: its generator was trained to predict {output}; the {init} init needs "
                            f"{wanted}", param="surrogate")
    if init != "imagenet+surrogate":
        return
    config = read_json(path.parent / CONFIG_FILE)
    if config is None or "init" not in config:
        print(f"warning: init imagenet+surrogate: {path} has no pretraining {CONFIG_FILE} beside it, so "
              f"whether its pretraining started from ImageNet is not checked", file=sys.stderr)
    elif config["init"] != "imagenet":
        raise TransferError(f"{surrogate}: its pretraining started from init {config['init']}; the "
                            f"imagenet+surrogate init needs a generator pretrained from ImageNet (init imagenet)",
                            param="surrogate")


def load_surrogate(model, surrogate_path, init="surrogate"):
    """Copies every generator layer except its head into `model`; refuses architectures that differ."""
    if surrogate_path is None:
        raise TransferError(f"not given; the {init} init needs a colorization run or its generator weights file",
                            param="surrogate")
    check_pretext(init, surrogate_path)
    body = _body(model)
    generator = load_generator(surrogate_path, body)
    source = str(resolve_surrogate(surrogate_path))
    if body is not None and _body(generator) != body:
        raise TransferError(f"{source}: generator architecture {_body(generator).to_dict()} differs "
                            f"from the network's {body.to_dict()}", param="surrogate")
    source_layers = _weighted_layers(generator)
    names = [name for name in _weighted_layers(model) if name != HEAD_LAYER]
    missing = [name for name in names if name not in source_layers]
    if missing:
        raise TransferError(f"{source}: generator lacks layers {missing[:3]}", param="surrogate")
    _copy_layers(model, _layer_weights(generator), names, source)
    return TransferReport(init, source, names, [HEAD_LAYER])


def read_segmentation_run(source_run):
    """The config.json and `Architecture` (head included) of a finished finetune/segment.py run.

    Finished means its metrics.json exists: before that its best.weights.h5 may still be replaced, and a run
    started from it could not be reproduced. Runs written before architecture.json existed are rebuilt from
    the flags in their config.json, as `models.runner.runs` does."""
    run = Path(source_run)
    if not run.is_dir():
        raise TransferError(f"{run}: no such run directory")
    config = read_json(run / CONFIG_FILE)
    if (run / GENERATOR_FILE).is_file():
        raise TransferError(f"{run}: a colorization run, not a finetune/segment.py run (its generator starts "
                            f"the surrogate and control inits)")
    if config is None or not {"classes", "loss"} <= set(config):
        why = f"no {CONFIG_FILE}" if config is None else f"its {CONFIG_FILE} names no classes or loss"
        raise TransferError(f"{run}: not a finetune/segment.py run ({why})")
    if not is_finished(run) or not (run / BEST_WEIGHTS).is_file():
        raise TransferError(f"{run}: not finished (no {METRICS_FILE} or {BEST_WEIGHTS}); its best "
                            f"checkpoint may still change")
    outputs = 1 if config["loss"] == "bce" else len(config["classes"])
    try:
        architecture = Architecture.load(run)
    except ValueError as error:
        raise TransferError(f"{run / ARCHITECTURE_FILE}: {error}") from None
    architecture = Architecture.from_config(config, outputs) if architecture is None else architecture
    return config, dataclasses.replace(architecture, outputs=outputs)


def _architecture_differences(source, target):
    """'name source (this network: target)' for each field of the shared body that differs."""
    return [f"{field.name} {getattr(source, field.name)} (this network: {getattr(target, field.name)})"
            for field in dataclasses.fields(Architecture) if getattr(source, field.name) != getattr(target, field.name)]


def _load_exactly(model, path):
    """Loads a weights file and refuses one Keras would load only in part (it warns where it skips)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_weights(model, path)
        except (ValueError, OSError) as error:
            detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise TransferError(f"{path}: does not fit the network its run describes ({detail})") from None
    skipped = [str(w.message) for w in caught if Path(w.filename).parent.name == "saving"]  # keras/src/saving
    if skipped:
        raise TransferError(f"{path}: loads only in part into the network its run describes ({skipped[0][:200]})")


def load_segmentation_run(model, source_run, class_names=None):
    """Copies a finished finetune/segment.py run's body and decoder (every layer but the head) into `model`.

    The head is copied too when the run was trained on the same classes, by name and in the same order, with a
    head of the same shape (one logit per class, or one sigmoid logit for bce); otherwise it keeps its fresh
    initialisation and the report says why. Same count but other names also re-initialises it: logit i would
    start out meaning another class, a confident wrong start that a fresh head does not have. The networks must
    share one architecture (backbone, width, output stride, ASPP/decoder convolutions and rates), as for a
    surrogate; a difference is refused, naming the field.

    Args:
        model: a segmenter from `build_segmenter`, to initialise in place.
        source_run: the run directory (its config.json, architecture.json, best.weights.h5 and metrics.json).
        class_names: the classes `model` is trained on; None never matches, so the head is re-initialised.
    """
    if source_run is None:
        raise TransferError("init 'segmentation' needs source_run (a finished finetune/segment.py run directory)")
    config, architecture = read_segmentation_run(source_run)
    run = Path(source_run)
    body = _body(model)
    if body is not None and architecture.body() != body:
        raise TransferError(f"{run}: its network differs: "
                            f"{'; '.join(_architecture_differences(architecture.body(), body))}")
    source = build_deeplabv3plus(architecture.outputs, architecture=architecture.body())
    weights_path = run / BEST_WEIGHTS
    _load_exactly(source, weights_path)
    source_layers, layers = _layer_weights(source), _weighted_layers(model)
    names = [name for name in layers if name != HEAD_LAYER]
    missing = [name for name in names if name not in source_layers]
    if missing:
        raise TransferError(f"{weights_path}: lacks layers {missing[:3]}")
    source_classes = list(config["classes"])
    head_shapes = [tuple(v.shape) for v in layers[HEAD_LAYER].weights], [np.shape(v) for v in source_layers[HEAD_LAYER]]
    if class_names is None or list(class_names) != source_classes:
        note = (f"head re-initialised: the source run's classes {source_classes} are not this network's "
                f"{list(class_names) if class_names is not None else '(not given)'}")
    elif head_shapes[0] != head_shapes[1]:
        note = f"head re-initialised: the source run's head (loss {config['loss']}) has another shape"
    else:
        names, note = names + [HEAD_LAYER], "head copied: same classes"
    _copy_layers(model, source_layers, names, str(weights_path))
    return TransferReport("segmentation", str(weights_path), names, [n for n in layers if n not in names], note=note)


def transfer_weights(model, init, *, imagenet_weights=None, surrogate=None, source_run=None, class_names=None):
    """Initialises `model` in place as `--init` asks; returns a `TransferReport`.

    Args:
        model: a network from `build_deeplabv3plus` or `build_generator`.
        init: one of INITS. "imagenet+surrogate" loads a generator that was itself trained from ImageNet
            (checked in the pretraining run's config.json), "control" a `--predict gray` generator,
            "segmentation" a finished finetune/segment.py run (`load_segmentation_run`).
        imagenet_weights: local ImageNet weights file; None downloads through Keras' cache.
        surrogate: colorization run directory or generator weights file.
        source_run: with "segmentation", the run directory.
        class_names: with "segmentation", the classes `model` learns (the head is copied only for the same ones).

    Example:
        >>> report = transfer_weights(model, "surrogate", surrogate="runs/colorize")
        >>> print(report.summary())
    """
    if init not in INITS:
        raise TransferError(f"{init!r} unknown, supported: {', '.join(INITS)}", param="init")
    if init == "scratch":
        return TransferReport("scratch", skipped=list(_weighted_layers(model)))
    if init == "segmentation":
        report = load_segmentation_run(model, source_run, class_names)
    elif init == "imagenet":
        report = load_imagenet(model, imagenet_weights)
    else:
        report = load_surrogate(model, surrogate, init)
    report.source_sha256 = file_sha256(report.source)
    return report
