"""A downstream probe during pretraining: does the pretext's body already help segmentation?

Every `--probe-every` steps `colorize.py` freezes the generator's body (every layer up to the 1×1 head, in
inference mode), fits a light head on it, a 1×1 convolution on the standardised stride-4 decoder features
(a linear probe), for a fixed number of full-batch Adam steps on fixed crops of a small labeled subset of the
probe root's training split, and scores mean Dice on whole images of its validation split through the one
inference path fine-tuning's metrics use (`models.runner.inference.Predictor`, default scheme). The scores
go to `probe.csv`, TensorBoard (`probe/dice_mean`; the step-0 body, random for `--init scratch`, is the
`probe_baseline` line on the same chart), and the best step's generator to `generator_best_probe.weights.h5`,
which `segment.py --surrogate-checkpoint best-probe` uses.
"""

import csv
import dataclasses
import io
import time
from pathlib import Path

from surrogate_supervision.models.deeplab import HEAD_LAYER, ResizeLike
from surrogate_supervision.models.io import write_atomic
from surrogate_supervision.models.metrics import confusion_matrix, parse_groups, segmentation_metrics
from surrogate_supervision.models.rundir import BEST_PROBE_FILE, LOGS_DIR, PROBE_DIR, PROBE_FILE, save_weights
from surrogate_supervision.models.runner.inference import DEFAULT_SCHEME, Predictor

import keras
import numpy as np
import tensorflow as tf

from surrogate_supervision import datasets
from surrogate_supervision.datasets import IGNORE_ID
from surrogate_supervision.datasets.splits import seeded_order

COLUMNS = ("step", "dice_mean", "probe_seconds")


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """What one probe fits and scores; fixed so that probes of different steps and runs compare."""

    train_images: int = 32
    crops_per_image: int = 2
    val_images: int = 64
    steps: int = 200
    lr: float = 0.01
    seed: int = 0
    chunk: int = 16


def read_rows(path):
    path = Path(path)
    if not path.is_file():
        return []
    with path.open() as f:
        return [{"step": int(r["step"]), "dice_mean": float(r["dice_mean"]), "probe_seconds": float(r["probe_seconds"])}
                for r in csv.DictReader(f)]


def write_rows(path, rows):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["step"]))
    write_atomic(path, buffer.getvalue())


def _stack(dataset, limit):
    images, masks = [], []
    for image, mask in dataset.take(limit):
        images.append(image.numpy())
        masks.append(mask.numpy())
    return np.stack(images), np.stack(masks)


def fit_linear_head(features, labels, num_classes, *, steps, lr):
    """A 1×1 convolution (kernel, bias) fitted by full-batch Adam on pixel cross-entropy (255 ignored)."""
    keep = labels.reshape(-1) != IGNORE_ID
    x = tf.constant(features.reshape(-1, features.shape[-1])[keep])
    y = tf.constant(labels.reshape(-1)[keep].astype(np.int32))
    kernel = tf.Variable(tf.zeros([features.shape[-1], num_classes]))
    bias = tf.Variable(tf.zeros([num_classes]))
    optimizer = keras.optimizers.Adam(lr)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, x @ kernel + bias))
        optimizer.apply_gradients(zip(tape.gradient(loss, [kernel, bias]), [kernel, bias]))

    for _ in range(steps):
        step()
    return kernel.numpy(), bias.numpy()


class StandardisedLinearHead(keras.layers.Layer):
    """The probe's head as a layer: features standardised by the training features' statistics, then a 1×1
    convolution; `set` puts a fit's values in."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, shape):
        channels = shape[-1]
        add = lambda name, size: self.add_weight(name=name, shape=size, initializer="zeros", trainable=False)
        self.mean, self.std = add("mean", (channels,)), add("std", (channels,))
        self.kernel, self.bias = add("kernel", (channels, self.num_classes)), add("bias", (self.num_classes,))

    def set(self, mean, std, kernel, bias):
        for variable, value in zip((self.mean, self.std, self.kernel, self.bias), (mean, std, kernel, bias)):
            variable.assign(value)

    def call(self, x):
        x = (keras.ops.cast(x, "float32") - self.mean) / self.std
        return keras.ops.matmul(x, self.kernel) + self.bias


class Probe:
    """Fits and scores the probe on a generator; `probe(generator, step)` records and returns mean Dice."""

    def __init__(self, root, out, *, crop, split_seed=0, writer=None, settings=ProbeSettings()):
        tick = time.perf_counter()
        self.out, self.settings, self.writer = Path(out), settings, writer
        ds = datasets.load_labeled(root)
        splits = datasets.load_or_make_splits(ds, self.out / PROBE_DIR, seed=split_seed)
        train = seeded_order(splits["train"], settings.seed, "probe")[: settings.train_images]
        val = seeded_order(splits["val"] or splits["train"], settings.seed, "probe-val")[: settings.val_images]
        kwargs = dict(crop=crop, num_classes=ds.num_classes, palette=ds.palette, seed=settings.seed)
        paths = lambda stems: ([ds.image_paths[s] for s in stems], [ds.mask_paths[s] for s in stems])
        self.train = _stack(datasets.segmentation_dataset(*paths(train), batch=1, **kwargs).unbatch(),
                            len(train) * settings.crops_per_image)
        self.val = [ds.read_pair(stem) for stem in val]  # whole images, scored as fine-tuning scores them
        self.crop = crop
        self.num_classes, self.class_names = ds.num_classes, ds.class_names
        self.groups = parse_groups(None, ds.class_names)
        self.baseline = tf.summary.create_file_writer(str(self.out / LOGS_DIR / "probe_baseline")) if writer else None
        self.session = []  # this process's probes: (step, seconds)
        self._body = self._predictor = None
        self.setup_seconds = time.perf_counter() - tick

    def features(self, generator, images):
        """The frozen body's stride-4 decoder features (the head's input), in inference mode."""
        if self._body is None or self._body[0] is not generator:  # one traced function per generator
            body = keras.Model(generator.input, generator.get_layer(HEAD_LAYER).input)
            self._body = generator, tf.function(lambda x: body(x, training=False), reduce_retracing=True)
        chunk = self.settings.chunk
        return np.concatenate([self._body[1](tf.constant(images[i:i + chunk])).numpy().astype(np.float32)
                               for i in range(0, len(images), chunk)])

    def score(self, generator):
        """Mean Dice on the validation crops of a linear head fitted on the frozen body's features."""
        train_features = self.features(generator, self.train[0])
        size = train_features.shape[1]
        stride = (self.train[1].shape[1] - 1) // (size - 1)  # aligned corners: every 4th pixel
        mean = train_features.mean(axis=(0, 1, 2))
        std = train_features.std(axis=(0, 1, 2)) + 1e-6
        kernel, bias = fit_linear_head((train_features - mean) / std, self.train[1][:, ::stride, ::stride],
                                       self.num_classes, steps=self.settings.steps, lr=self.settings.lr)
        predictor, head = self.predictor(generator)
        head.set(mean, std, kernel, bias)
        matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        for image, mask in self.val:
            matrix += confusion_matrix(mask, predictor.labels(image), self.num_classes)
        return segmentation_metrics(matrix, self.class_names, self.groups)["dice_mean"]

    def predictor(self, generator):
        """(Predictor, head) of the frozen body with the probe's head, images → logits at input size; built and
        traced once per generator, the head's weights set after each fit."""
        if self._predictor is None or self._predictor[0] is not generator:
            features = generator.get_layer(HEAD_LAYER).input
            head = StandardisedLinearHead(self.num_classes, name="probe_head")
            logits = ResizeLike(4, name="probe_upsample", dtype="float32")(head(features), generator.input)
            network = keras.Model(generator.input, logits)
            self._predictor = generator, Predictor(network, train_crop=self.crop, scheme=DEFAULT_SCHEME), head
        return self._predictor[1:]

    def __call__(self, generator, step):
        tick = time.perf_counter()
        dice = self.score(generator)
        seconds = time.perf_counter() - tick
        self.session.append((step, seconds))
        path = self.out / PROBE_FILE
        rows = [r for r in read_rows(path) if r["step"] < step]  # a resumed run redoes later steps
        best = max((r["dice_mean"] for r in rows if r["step"] > 0), default=-1.0)
        write_rows(path, rows + [{"step": step, "dice_mean": dice, "probe_seconds": seconds}])
        if self.writer is not None:
            with self.writer.as_default(step=step):
                tf.summary.scalar("probe/dice_mean", dice)
            baseline = next((r["dice_mean"] for r in rows if r["step"] == 0), dice if step == 0 else None)
            if baseline is not None:
                with self.baseline.as_default(step=step):
                    tf.summary.scalar("probe/dice_mean", baseline)
        if step > 0 and dice > best:  # the step-0 body is the baseline, never the chosen checkpoint
            save_weights(generator, self.out / BEST_PROBE_FILE)
        return dice

    def has(self, step):
        return any(r["step"] == step for r in read_rows(self.out / PROBE_FILE))

    def cost(self, session_seconds):
        """The share of this process's wall time (training and probes) that its probes (and reading the probe's
        images once) took."""
        spent = self.setup_seconds + float(sum(seconds for _, seconds in self.session))
        return {"probes": len(self.session), "probe_seconds": spent, "session_seconds": float(session_seconds),
                "fraction": spent / session_seconds if session_seconds > 0 else None}
