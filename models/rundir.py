"""The run directory: every file and folder a run writes is named here, and nowhere else.

A pretraining run (pretrain/colorize.py) and a fine-tuning run (finetune/segment.py) each own one folder, --out:

    RUN/
    ├── config.json                       CONFIG_FILE: the flags, command, commit and machine (both kinds)
    ├── architecture.json                 ARCHITECTURE_FILE: what rebuilds the network, beside its weights
    ├── checkpoints/                      CHECKPOINTS_DIR: the last two training states; resuming starts here
    ├── .workers/<id>/                    WORKERS_DIR: a multi-worker run's non-chief saves, deleted as written
    ├── logs/                             LOGS_DIR: TensorBoard (logs/probe_baseline: the probe's step-0 line)
    │   pretraining (pretrain/colorize.py, pretrain/evaluate.py, pretrain/probe.py)
    ├── generator.weights.h5              GENERATOR_FILE: the generator at the last step, written last
    ├── generator_best_probe.weights.h5   BEST_PROBE_FILE: the generator the downstream probe scored best
    ├── pretrain_metrics.json             PRETRAIN_METRICS_FILE: held-out colorization scores
    ├── colour_bins.json                  BINS_FILE: the colour bins' statistics (--colour-loss classify)
    ├── colour_by_class.json              COLOUR_BY_CLASS_FILE: chroma L1 per class (pretrain/evaluate.py)
    ├── probe.csv                         PROBE_FILE: the downstream probe's score at each step
    ├── probe/                            PROBE_DIR: the probe dataset's splits
    ├── samples/                          SAMPLES_DIR: gray | colorized | real grids, one PNG a sample step
    │   fine-tuning (finetune/segment.py)
    ├── splits/                           the train/val/test stems (datasets.splits.load_or_make_splits)
    ├── train_stems.txt                   TRAIN_STEMS_FILE: the labeled images this run trained on
    ├── init.json                         INIT_FILE: what --init copied, from which file (its SHA-256)
    ├── best.json                         BEST_FILE: the best validation step and the patience clock
    ├── best.weights.h5                   BEST_WEIGHTS: the network at the best validation step
    ├── test_counts.json                  TEST_COUNTS_FILE: each test image's confusion matrix
    ├── predictions.png                   PREDICTIONS_FILE: image | truth | prediction for a few test images
    └── metrics.json                      METRICS_FILE: the test scores, written last: the run is finished

Why one module: runs outlive the code that wrote them. A resumed run, a segmentation run started from a
pretraining run (`models.transfer`), a prediction (`models.runner.runs`) and the experiment reports all read files
another script wrote, so a name spelled twice is a name that can drift apart and silently stop a run from resuming
or loading. Whether a run is fresh, started or finished, and its latest step, are decided here too, once.

splits/ is the one name not defined here: `datasets.splits` (the layer below this one, which may not import it)
writes it, under the same name as a dataset root's own splits/ folder.
"""

from pathlib import Path

from surrogate_supervision.models.io import atomic_path

import keras
import tensorflow as tf

# Both kinds of run
CONFIG_FILE = "config.json"
ARCHITECTURE_FILE = "architecture.json"
CHECKPOINTS_DIR = "checkpoints"
WORKERS_DIR = ".workers"
LOGS_DIR = "logs"
# Pretraining runs (pretrain/colorize.py)
GENERATOR_FILE = "generator.weights.h5"
BEST_PROBE_FILE = "generator_best_probe.weights.h5"
PRETRAIN_METRICS_FILE = "pretrain_metrics.json"
BINS_FILE = "colour_bins.json"
COLOUR_BY_CLASS_FILE = "colour_by_class.json"
PROBE_FILE = "probe.csv"
PROBE_DIR = "probe"
SAMPLES_DIR = "samples"
# Fine-tuning runs (finetune/segment.py)
TRAIN_STEMS_FILE = "train_stems.txt"
INIT_FILE = "init.json"
BEST_FILE = "best.json"
BEST_WEIGHTS = "best.weights.h5"
TEST_COUNTS_FILE = "test_counts.json"
PREDICTIONS_FILE = "predictions.png"
METRICS_FILE = "metrics.json"


def checkpoints_dir(run_dir):
    """RUN/checkpoints: the training states a run resumes from."""
    return Path(run_dir) / CHECKPOINTS_DIR


def _latest_checkpoint(run_dir):
    return tf.train.latest_checkpoint(str(checkpoints_dir(run_dir)))


def latest_step(run_dir):
    """The step of the run's latest checkpoint (TensorFlow names it ckpt-<step>); 0 when it has none."""
    last = _latest_checkpoint(run_dir)
    return int(last.rsplit("-", 1)[1]) if last else 0


def is_fresh(run_dir):
    """Whether the run has no checkpoint to resume from: training starts at step 0, where `--init` applies."""
    return _latest_checkpoint(run_dir) is None


def is_started(run_dir):
    """Whether the run has begun training: its config.json and checkpoints/ folder exist. A resumed run must then
    keep the flags that fix what it computes (`models.runner.cli.check_resume`), even one stopped before its first
    checkpoint could be read back."""
    run = Path(run_dir)
    return (run / CONFIG_FILE).is_file() and checkpoints_dir(run).is_dir()


def is_finished(run_dir, steps=None):
    """Whether a run has written its final file, so that re-running it has nothing left to do.

    A fine-tuning run (`steps` None) is finished once its metrics.json exists: it is written last, after the test
    split was scored with the final best.weights.h5. A pretraining run (`steps`: its --steps) is finished once its
    generator.weights.h5 exists and its latest checkpoint has reached `steps`, so that a re-run with a larger
    --steps trains on.
    """
    run = Path(run_dir)
    if steps is None:
        return (run / METRICS_FILE).is_file()
    return (run / GENERATOR_FILE).is_file() and not is_fresh(run) and latest_step(run) >= steps


def network_only(model):
    """A view of a compiled model's layers without its optimizer, whose state Keras would otherwise save
    alongside the weights (three times their size with Adam); loading through it updates `model`."""
    return keras.Model(model.inputs, model.outputs, name=model.name)


def save_weights(model, path):
    """Writes a network's weights to `path` atomically (without optimizer state) and, beside them, its
    architecture.json: the `Architecture` that rebuilds the network to load them. For a segmenter's
    best.weights.h5 and a generator's generator.weights.h5 alike. Returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        network_only(model).save_weights(tmp)
    model.architecture.save(path.parent)
    return path
