"""Exports a trained run's best checkpoint to a CPU inference format and checks it against Keras.

    python finetune/export.py RUN --format savedmodel|tflite|onnx [--out PATH] [--size N]

Every format maps float32 RGB images in [-1, 1], NHWC, to logits at input resolution: one channel per class
(label = argmax), or one channel for a --loss bce run (label = logit > 0). SavedModel (endpoint `serve`) and
ONNX take any batch and image size; padding sides to 16k + 1 with 1.0, as models/runner/inference.py does,
reproduces the run's own evaluation. TFLite needs static shapes, so its input is fixed at
1 x SIZE x SIZE x 3 (--size, default the run's --crop). ONNX needs the optional packages tf2onnx and
onnxruntime.

After exporting, the artifact is loaded back and both it and the Keras model predict --samples images
(--images, else the run's test split, else synthetic scenes) resized to SIZE x SIZE through the one inference
path the run's metrics used (`models.runner.inference.Predictor` with the run's recorded scheme; its untrained
dilated taps are zeroed before export, so the artifact holds them as zero). The predicted labels must agree
on at least 99.9 % of pixels, or the script exits 1. It prints median CPU latency per image (batch 1) for
both and writes the numbers to OUT.json.
"""

import importlib.util
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

from surrogate_supervision.models.io import atomic_path, write_json
from surrogate_supervision.models.runner.cli import parser, run
from surrogate_supervision.models.runner.inference import Predictor, labels_from_logits, run_predictor, to_network_input
from surrogate_supervision.models.runner.runs import RunError, list_images, load_run

import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from surrogate_supervision.datasets import FlagError, read_image
from surrogate_supervision.datasets.labeled import list_files_by_stem
from surrogate_supervision.datasets.synthetic import default_synthetic_root, make_scene

MIN_AGREEMENT = 0.999
DEFAULT_OUT = {"savedmodel": "export/saved_model", "tflite": "export/model.tflite", "onnx": "export/model.onnx"}
FILE_SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}  # the exporters refuse other names
ONNX_PACKAGES = ("tf2onnx", "onnxruntime")
GRID = 16  # Predictor pads sides to 16k + 1


def parse_args(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finetune/segment.py run directory (config.json and best.weights.h5)")
    p.add_argument("--format", required=True, choices=tuple(DEFAULT_OUT), help="export format")
    p.add_argument("--out", type=Path, default=None,
                   help="exported model: a folder for savedmodel, a file otherwise; None: RUN/" +
                        ", RUN/".join(DEFAULT_OUT.values()))
    p.add_argument("--size", type=int, default=None,
                   help="side of the square check images, and TFLite's fixed input size; None: the run's --crop")
    p.add_argument("--images", nargs="+", type=Path, default=None,
                   help="check images: files and/or folders; None: the run's test split, else synthetic scenes")
    p.add_argument("--samples", type=int, default=4, help="number of check images")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per check image (the median is reported)")
    args = p.parse_args(argv)
    suffix = FILE_SUFFIX.get(args.format)
    if args.out is not None and suffix and args.out.suffix != suffix:
        p.error(f"--out {args.out}: a {args.format} export is one file ending in {suffix}, "
                f"e.g. --out {args.out / ('model' + suffix)}")
    for name in ("size", "samples", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    return args


def keras_export(model, out, keras_format, shape):
    """Keras 3's own exporter (`Model.export`): SavedModel, LiteRT (TFLite) and ONNX (through tf2onnx)."""
    signature = [tf.TensorSpec(shape, tf.float32, name="images")]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)  # Keras' tf2onnx shim
        with atomic_path(out) as tmp:
            model.export(tmp, format=keras_format, input_signature=signature, verbose=False)


def export_savedmodel(model, out, size):
    keras_export(model, out, "tf_saved_model", (None, None, None, 3))


def export_tflite(model, out, size):
    keras_export(model, out, "litert", (1, size, size, 3))


def export_onnx(model, out, size):
    keras_export(model, out, "onnx", (None, None, None, 3))


def keras_runner(model):
    """The reference: the Keras model in a tf.function, as models/runner/inference.py runs it."""

    @tf.function(autograph=False)
    def forward(x):
        return model(x, training=False)

    return lambda x: forward(tf.constant(x)).numpy()


def load_savedmodel(path):
    loaded = tf.saved_model.load(str(path))
    return lambda x: loaded.serve(tf.constant(x)).numpy()


def load_tflite(path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # TensorFlow's successor runtime, when installed
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: it still ships with TF 2.21
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def forward(x):
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return forward


def load_onnx(path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


FORMATS = {"savedmodel": (export_savedmodel, load_savedmodel), "tflite": (export_tflite, load_tflite),
           "onnx": (export_onnx, load_onnx)}


def check_onnx_available():
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise FlagError(f"--format onnx needs {' and '.join(missing)}: pip install {' '.join(ONNX_PACKAGES)}")


def sample_images(trained, args, size):
    """(source description, list of uint8 RGB images resized to size x size)."""
    if args.images:
        paths, source = list(list_images(args.images).values()), "--images"
    else:
        paths, source = test_split_images(trained), "the run's test split"
    if paths:
        images = [read_image(path) for path in paths[: args.samples]]
    else:
        rng = np.random.default_rng(0)
        images, source = [make_scene(rng, size)[0] for _ in range(args.samples)], "synthetic scenes"
    resized = [cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) for image in images]
    return f"{len(resized)} images from {source}", resized


def test_split_images(trained):
    """Paths of the run's test images when its dataset is still where config.json says, else []."""
    data = trained.config.get("data")
    root = Path(data[0]) if data else default_synthetic_root()
    split = trained.path / "splits" / "test.txt"
    if not split.is_file() or not (root / "images").is_dir():
        return []
    files = list_files_by_stem(root / "images")
    return [files[stem] for stem in split.read_text().split() if stem in files]


def median_latency(forward, inputs, repeats):
    """Median seconds per image over `repeats` timed calls per input, after one untimed warm-up call."""
    forward(inputs[0])
    times = []
    for x in inputs:
        for _ in range(repeats):
            tick = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


def compare(reference, exported, images, desc):
    """(fraction of pixels whose predicted label agrees, largest absolute logit difference) over `images`, each
    predicted by two `Predictor`s of one scheme."""
    agree, total, max_diff = 0, 0, 0.0
    for image in tqdm(images, desc=desc, unit="image", dynamic_ncols=True):
        expected, actual = reference.logits(image), exported.logits(image)
        if actual.shape != expected.shape:
            raise ValueError(f"the exported model's output shape {actual.shape} differs from Keras' {expected.shape}")
        agree += int((labels_from_logits(expected) == labels_from_logits(actual)).sum())
        total += expected.shape[0] * expected.shape[1]
        max_diff = max(max_diff, float(np.abs(expected - actual).max()))
    return agree / total, max_diff


def print_table(report):
    size, fmt = report["size"], report["format"]
    print(f"{'model':<12}{'input':>16}{'labels agree':>15}{'max |dlogit|':>14}{'CPU ms/image':>14}")
    for name, seconds in report["latency_s_per_image"].items():
        agree, diff = ("reference", "-") if name == "keras" else \
            (f"{100 * report['label_agreement']:.3f} %", f"{report['max_abs_logit_diff']:.1e}")
        print(f"{name:<12}{f'1x{size}x{size}x3':>16}{agree:>15}{diff:>14}{1000 * seconds:>14.1f}")
    print(f"{report['check_images']}; exported to {report['out']}, numbers in {report['out']}.json"
          + ("" if fmt == "tflite" else f"; the {fmt} model takes any N x H x W x 3"))


def main(args):
    if args.format == "onnx":
        check_onnx_available()
    trained = load_run(args.run)
    size = args.size or trained.crop
    out = args.out or trained.path / DEFAULT_OUT[args.format]
    export, load = FORMATS[args.format]
    if args.format == "tflite" and (size - 1) % GRID:
        raise FlagError(f"--size {size}: TFLite's fixed input must be of the form {GRID}k + 1 (e.g. "
                         f"{(size - 1) // GRID * GRID + 1}), the grid every image is padded to")
    description, images = sample_images(trained, args, size)
    print(f"exporting {trained.path} to {args.format}, checking on {description} at {size}x{size}", file=sys.stderr)
    reference = run_predictor(trained)  # zeroes the untrained taps first: the export holds what the metrics used
    export(trained.model, out, size)

    runners = {"keras": keras_runner(trained.model), args.format: load(out)}
    exported = Predictor(forward=runners[args.format], scheme=reference.scheme)
    agreement, max_diff = compare(reference, exported, images, f"check {args.format}")
    inputs = [to_network_input(image)[None] for image in images]
    latency = {name: median_latency(forward, inputs, args.repeats) for name, forward in runners.items()}
    report = {"run": str(trained.path), "format": args.format, "out": str(out), "size": size,
              "check_images": description, "label_agreement": agreement, "max_abs_logit_diff": max_diff,
              "min_agreement": MIN_AGREEMENT, "inference": reference.scheme.as_dict(),
              "latency_s_per_image": latency, "batch": 1,
              "width": trained.config["width"], "num_outputs": int(trained.model.output_shape[-1]),
              "threads": os.cpu_count(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "tensorflow": tf.__version__, "command": " ".join([Path(sys.executable).name] + sys.argv)}
    write_json(Path(f"{out}.json"), report)
    print_table(report)
    if agreement < MIN_AGREEMENT:
        raise RunError(f"{out}: labels agree with Keras on {100 * agreement:.3f} % of pixels, "
                         f"below the required {100 * MIN_AGREEMENT:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, parse_args()))
