"""tf.data pipelines for segmentation and colorization, deterministic and resumable.

Element k of a training stream (k = step * batch + i) is a pure function of (seed, k): it reads file
perm_e[k mod n] where perm_e is a stateless shuffle for epoch e = k // n, and its crop and flip come from
stateless ops seeded by (seed, k). So start_index=k resumes exactly, without decoding anything before k.
Files are decoded by OpenCV in parallel (tf.numpy_function); crop, pad, flip, gray and resize are TF ops.
"""

import hashlib
import logging
import re
import threading

import tensorflow as tf

from surrogate_supervision.datasets.errors import DatasetError
from surrogate_supervision.datasets.images import read_image
from surrogate_supervision.datasets.masks import IGNORE_ID, read_pair

_ALG = "philox"  # pinned, so streams do not depend on the device that auto_select would pick
_PERMUTATION, _AUGMENT = 1, 2  # seed tags, so epoch shuffles and element augmentations never share a seed
_MAX_ATTEMPTS = 16
_ENDLESS = 2**40  # epochs in an "infinite" stream
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601


class SkipCounter:
    """Files a pipeline skipped with skip_bad=True; thread-safe, as decoding runs in parallel.

    Example:
        counter = SkipCounter()
        data = segmentation_dataset(images, masks, skip_bad=True, counter=counter)
        ...
        print(f"skipped {counter.count} bad files")
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.messages: dict[str, str] = {}  # file -> why it was skipped
        self.events = 0  # skips including repeats of the same file in later epochs

    def add(self, path: str, message: str) -> None:
        with self._lock:
            self.events += 1
            if path not in self.messages:
                self.messages[path] = message
                logging.warning("skipping bad file: %s", message)

    @property
    def count(self) -> int:
        return len(self.messages)


def unwrap_dataset_error(error: Exception) -> DatasetError | None:
    """The one-line DatasetError inside a tf.errors.OpError from a pipeline (TF wraps the Python exception
    in a long message with a traceback), or None; lets a script exit with "error: FILE: what is wrong"."""
    match = re.search(r"DatasetError: ([^\n]*)", str(error))
    return DatasetError(match.group(1)) if match else None


def stream_seed(seed: int, tag: int, value) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, tag], tf.int64), value, alg=_ALG)


def element_indices(n: int, *, seed: int, start_index: int, training: bool) -> tf.data.Dataset:
    """(k, file index) pairs from element start_index on: endless and reshuffled per epoch when training,
    one pass in list order otherwise. Skipping within an epoch moves over indices only, nothing is decoded."""
    if not training:
        return tf.data.Dataset.range(start_index, n).map(lambda k: (k, k))
    start_epoch, offset = divmod(start_index, n)

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=stream_seed(seed, _PERMUTATION, e), alg=_ALG)
        return tf.data.Dataset.from_tensor_slices((e * n + tf.range(n, dtype=tf.int64), order))

    return tf.data.Dataset.range(start_epoch, _ENDLESS).flat_map(epoch).skip(offset)


def robust_reader(read_one, names, *, seed, skip_bad, counter):
    """Wrap read_one(index) for tf.numpy_function. With skip_bad a bad file is counted and replaced by a
    file chosen from (seed, k, attempt), so element k stays a pure function of (seed, k) and resuming works."""
    counter = counter if counter is not None else SkipCounter()

    def read(k, index):
        k, index = int(k), int(index)
        for attempt in range(_MAX_ATTEMPTS):
            try:
                return read_one(index)
            except DatasetError as error:
                if not skip_bad:
                    raise
                counter.add(names[index], str(error))
                digest = hashlib.blake2b(f"{seed}:{k}:{attempt}".encode(), digest_size=8).digest()
                index = int.from_bytes(digest, "little") % len(names)
        raise DatasetError(f"{_MAX_ATTEMPTS} bad files in a row at element {k}, e.g. {names[index]}")

    return read


def crop_with_padding(x, top, left, size: int, fill: int):
    """x[top:top+size, left:left+size], padded with `fill` where the window hangs over the border."""
    height, width = tf.shape(x)[0], tf.shape(x)[1]
    y0, y1 = tf.maximum(top, 0), tf.minimum(top + size, height)
    x0, x1 = tf.maximum(left, 0), tf.minimum(left + size, width)
    paddings = [[y0 - top, top + size - y1], [x0 - left, left + size - x1]] + [[0, 0]] * (len(x.shape) - 2)
    return tf.pad(x[y0:y1, x0:x1], paddings, constant_values=fill)


def crop_window(shape, k, *, crop: int, seed: int, training: bool, flip: bool):
    """(top, left, flipped): a crop whose centre is uniform over the image's pixels (training) or is the
    image centre (evaluation); the centre pixel of the crop is at offset crop // 2."""
    height, width = shape[0], shape[1]
    if not training:
        return height // 2 - crop // 2, width // 2 - crop // 2, tf.constant(False)
    seeds = tf.random.experimental.stateless_split(stream_seed(seed, _AUGMENT, k), 3, alg=_ALG)
    centre_y = tf.random.stateless_uniform([], seeds[0], 0, height, tf.int32, alg=_ALG)
    centre_x = tf.random.stateless_uniform([], seeds[1], 0, width, tf.int32, alg=_ALG)
    flipped = tf.random.stateless_uniform([], seeds[2], alg=_ALG) < 0.5 if flip else tf.constant(False)
    return centre_y - crop // 2, centre_x - crop // 2, flipped


def crop_and_flip(x, window, crop: int, fill: int):
    top, left, flipped = window
    x = crop_with_padding(x, top, left, crop, fill)
    return tf.cond(flipped, lambda: tf.reverse(x, [1]), lambda: x)


def to_unit_range(image_uint8):
    """uint8 [0, 255] -> float32 [-1, 1] (so 255 padding becomes exactly 1.0)."""
    return tf.cast(image_uint8, tf.float32) / 127.5 - 1.0


def luma(rgb):
    """ITU-R 601 luma, repeated to three channels; works on [-1, 1] inputs since the weights sum to 1."""
    gray = tf.tensordot(rgb, tf.constant(LUMA_WEIGHTS, rgb.dtype), axes=[[-1], [0]])
    return tf.repeat(gray[..., None], 3, axis=-1)


def stride4_view(images):
    """Every 4th pixel, from the first: where the generator's stride-4 outputs sit (feature j on pixel 4j), at
    any crop size; for 513 → 129 it equals a corner-aligned resize."""
    return images[:, ::4, ::4]


def _check_common(n, crop, batch, start_index):
    if n == 0:
        raise DatasetError("no files to build a pipeline from")
    for name, value, low in (("crop", crop, 1), ("batch", batch, 1), ("start_index", start_index, 0)):
        if int(value) != value or value < low:
            raise DatasetError(f"must be an integer >= {low}, got {value}", param=name)


def segmentation_dataset(image_paths, mask_paths, *, crop=513, batch=4, seed=0, training=True, flip=True,
                         start_index=0, skip_bad=False, num_classes=None, palette=None, counter=None):
    """Batches of (images float32 (B, crop, crop, 3) in [-1, 1], masks int32 (B, crop, crop)).

    Training: endless, reshuffled per epoch, random crop (centre uniform inside the image, image padded with
    255 -> 1.0, mask with 255 = ignore) and random horizontal flip. training=False: one pass in list order,
    centre crops, last batch may be smaller. num_classes=2 thresholds 0/255 masks; with num_classes, ids
    outside range(num_classes) (other than 255) make a file bad. Bad files raise a DatasetError naming the
    file, or with skip_bad are replaced and counted in `counter` (a SkipCounter).
    """
    image_paths, mask_paths = [str(p) for p in image_paths], [str(p) for p in mask_paths]
    if len(image_paths) != len(mask_paths):
        raise DatasetError(f"{len(image_paths)} images but {len(mask_paths)} masks")
    _check_common(len(image_paths), crop, batch, start_index)
    binary = num_classes == 2
    read = robust_reader(
        lambda i: read_pair(image_paths[i], mask_paths[i], palette=palette, binary=binary,
                            num_classes=num_classes),
        image_paths, seed=seed, skip_bad=skip_bad, counter=counter)

    def load(k, index):
        image, mask = tf.numpy_function(read, [k, index], [tf.uint8, tf.uint8], name="read_pair")
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        window = crop_window(tf.shape(mask), k, crop=crop, seed=seed, training=training, flip=flip)
        image = crop_and_flip(image, window, crop, 255)
        mask = crop_and_flip(mask, window, crop, IGNORE_ID)
        image.set_shape([crop, crop, 3])
        mask.set_shape([crop, crop])
        return to_unit_range(image), tf.cast(mask, tf.int32)

    data = element_indices(len(image_paths), seed=seed, start_index=start_index, training=training)
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return data.batch(batch, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def colorization_dataset(sources, *, crop=513, batch=4, seed=0, start_index=0, skip_bad=False, flip=True,
                         counter=None, target="rgb"):
    """Endless batches of dict(gray, rgb, gray_small, rgb_small), float32 in [-1, 1].

    gray is the ITU-R 601 luma of the padded crop repeated to 3 channels; rgb the crop itself (padding 1.0);
    the *_small tensors are the same at the generator's stride-4 grid, every 4th pixel ((crop - 1) // 4 + 1
    of them: 129 for 513). Sources are image paths or "video#frame=N" strings.
    target="gray" is the no-colour control: rgb and rgb_small, what the GAN learns to produce, are the gray
    views, so the pretext keeps everything (images, crops, order, losses) but the colour.
    """
    if target not in ("rgb", "gray"):
        raise ValueError(f"colorization target {target!r}: expected 'rgb' or 'gray'")
    sources = [str(s) for s in sources]
    _check_common(len(sources), crop, batch, start_index)
    read = robust_reader(lambda i: read_image(sources[i]), sources, seed=seed, skip_bad=skip_bad,
                         counter=counter)

    def load(k, index):
        image = tf.numpy_function(read, [k, index], tf.uint8, name="read_image")
        image.set_shape([None, None, 3])
        window = crop_window(tf.shape(image), k, crop=crop, seed=seed, training=True, flip=flip)
        image = crop_and_flip(image, window, crop, 255)
        image.set_shape([crop, crop, 3])
        return to_unit_range(image)

    def add_views(rgb):
        small = stride4_view(rgb)
        views = {"gray": luma(rgb), "rgb": rgb, "gray_small": luma(small), "rgb_small": small}
        if target == "gray":
            views.update(rgb=views["gray"], rgb_small=views["gray_small"])
        return views

    data = element_indices(len(sources), seed=seed, start_index=start_index, training=True)
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    data = data.batch(batch, drop_remainder=True)
    return data.map(add_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
