"""A finished segmentation run loaded back: the network its config.json describes, with best.weights.h5.

    run = load_run("runs/segment_surrogate_25")
    labels = run_predictor(run).labels(image)        # models/runner/inference.py; run.class_names[i] names label i

Shared by finetune/predict.py and finetune/export.py, so both rebuild the network exactly as
finetune/segment.py built it for training (its architecture.json; for runs written before it existed, the
flags in config.json), and list their input images the same way.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from surrogate_supervision.models import Architecture, build_segmenter
from surrogate_supervision.models.conv_bias import load_weights
from surrogate_supervision.models.io import read_json
from surrogate_supervision.models.rundir import ARCHITECTURE_FILE, BEST_WEIGHTS, CONFIG_FILE
from surrogate_supervision.models.runner.runtime import avoid_slow_fused_inference

import keras

from surrogate_supervision.datasets import DatasetError, ToolkitError
from surrogate_supervision.datasets.images import IMAGE_EXTENSIONS
from surrogate_supervision.datasets.labeled import list_files_by_stem

RUN_KEYS = ("loss", "classes")
ARCHITECTURE_KEYS = ("backbone", "width", "output_stride", "regular_conv")  # runs without architecture.json


class RunError(ToolkitError):
    """A run directory that cannot be loaded; the message names it and says what is missing."""


@dataclass
class TrainedRun:
    path: Path
    model: keras.Model
    class_names: list
    config: dict = field(repr=False)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def crop(self):
        return int(self.config.get("crop", 513))

    @property
    def output_stride(self):
        return int(self.config["output_stride"])


def read_run_config(run_dir):
    """The run's config.json, checked for the keys that rebuild its network."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise RunError(f"{run_dir}: no {CONFIG_FILE}; not a finetune/segment.py run directory")
    try:
        config = read_json(path)  # damaged JSON raises FileError naming the file
    except OSError as error:
        raise RunError(f"{path}: unreadable ({error})") from None
    needed = RUN_KEYS if (run_dir / ARCHITECTURE_FILE).is_file() else RUN_KEYS + ARCHITECTURE_KEYS
    missing = [key for key in needed if key not in config]
    if missing:
        raise RunError(f"{path}: lacks {', '.join(missing)}; not a finetune/segment.py run configuration")
    return config


def load_run(run_dir):
    """Rebuilds a segmentation run's network from `config.json` and loads `best.weights.h5` into it.

    Raises RunError (a ToolkitError, so scripts print one line) when either file is missing or the weights
    do not fit the network the configuration describes. Weights written before the backbone's convolutions lost
    their bias load too, folded into its BatchNorms (`models/conv_bias.py`). The run is loaded for inference,
    so TensorFlow's remapper is switched off where its fused convolutions are slow
    (`runtime.avoid_slow_fused_inference`).
    """
    avoid_slow_fused_inference()
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    weights = run_dir / BEST_WEIGHTS
    if not weights.is_file():
        raise RunError(f"{run_dir}: no {BEST_WEIGHTS}; the run has not validated yet "
                       "(train longer than its validation interval, or wait for it to finish)")
    model = build_segmenter(len(config["classes"]), loss=config["loss"], architecture=run_architecture(run_dir, config))
    # Keras warns, and may go on, when it skips part of a weights file: a partial load is refused here too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_weights(model, weights)
            problem = ""
        except (ValueError, OSError) as error:
            problem = str(error) or type(error).__name__
    skipped = [str(w.message) for w in caught if Path(w.filename).parent.name == "saving"]  # keras/src/saving
    if problem or skipped:
        lines = [line.strip() for line in (problem or skipped[0]).splitlines() if line.strip()]
        detail = " ".join(lines[:2])  # Keras' summary line, then its first example
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        raise RunError(f"{weights}: does not fit the network in {CONFIG_FILE}: {detail}")
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return TrainedRun(run_dir, model, list(config["classes"]), config)


def run_architecture(run_dir, config):
    """The network of a run: its architecture.json, or for runs written before it, the flags in config.json."""
    try:
        architecture = Architecture.load(run_dir)
    except ValueError as error:
        raise RunError(f"{Path(run_dir) / ARCHITECTURE_FILE}: {error}") from None
    return architecture.body() if architecture is not None else Architecture.from_config(config)


def list_images(paths):
    """{stem: path} of image files and folders of images (not recursive), in the order given, folders sorted.

    Stems name the outputs, so two inputs with one stem are an error rather than one overwriting the other.
    """
    found = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = [p for _, p in sorted(list_files_by_stem(path).items())]
            if not files:
                raise DatasetError(f"{path}: no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        elif path.is_file():
            files = [path]
        else:
            raise DatasetError(f"{path}: no such file or folder")
        for file in files:
            if file.stem in found and found[file.stem] != file:
                raise DatasetError(f"{file}: same stem as {found[file.stem]}; outputs are named by stem")
            found[file.stem] = file
    return found
