"""Which inference geometry should every score and prediction use? Test Dice of trained runs under each.

    python experiments/inference_geometry.py RUN [RUN ...] [--out experiments/results/inference_geometry.md]

For each finished `finetune/segment.py` run, predicts its test split under every scheme of `SCHEMES` (whole
images or tiles, at the training crop or larger, with the dilated taps that training could not reach kept or
set to zero; `models.runner.inference`), and prints a Markdown table: test mean Dice (over the split's summed
confusion counts, as metrics.json scores it) per scheme, and each scheme's paired difference to the default
with a 95 % bootstrap interval over test images. With --out the table is also written there, with the command,
commit and machine.
"""

import argparse
import sys
from pathlib import Path

from surrogate_supervision.models.metrics import confusion_matrix, parse_groups, segmentation_metrics
from surrogate_supervision.models.runner.inference import DEFAULT_SCHEME, InferenceScheme, Predictor
from surrogate_supervision.models.runner.provenance import code_version, machine_summary
from surrogate_supervision.models.runner.runs import load_run, read_run_config

import numpy as np
from tqdm import tqdm

from surrogate_supervision import datasets
from surrogate_supervision.experiments.stats import bootstrap, class_counts, verdict

RESAMPLES = 20_000


def schemes(crop):
    """(name, scheme) pairs: today's evaluation, the default, tiles at the crop and at about twice it."""
    larger = 2 * crop - 1
    return [("whole, taps kept", InferenceScheme(untrained_taps="keep")),
            ("whole, untrained taps zero", InferenceScheme(untrained_taps="zero")),
            (f"tiles {crop}", InferenceScheme(tile=crop, untrained_taps="keep")),
            (f"tiles {larger}, taps kept", InferenceScheme(tile=larger, untrained_taps="keep")),
            (f"tiles {larger}, untrained taps zero", InferenceScheme(tile=larger, untrained_taps="zero"))]


def per_image_confusion(run, scheme, ds, stems):
    """{stem: confusion counts} of `stems` under `scheme`, from a fresh load of the run's weights (zeroing taps
    changes the model, so every scheme starts from the file)."""
    trained = load_run(run)
    predictor = Predictor(trained.model, train_crop=trained.crop, scheme=scheme)
    confusion = {}
    for stem in tqdm(stems, desc=scheme.describe(), leave=False):
        image, mask = ds.read_pair(stem)
        confusion[stem] = confusion_matrix(mask, predictor.labels(image), ds.num_classes)
    return confusion


def measure(run):
    """Markdown rows for one run."""
    config = read_run_config(run)
    ds = datasets.load_labeled(Path(config["data"][0]) if config.get("data") else datasets.default_synthetic_root())
    stems = (Path(run) / "splits" / "test.txt").read_text().split()
    results = {name: (scheme, per_image_confusion(run, scheme, ds, stems))
               for name, scheme in schemes(int(config.get("crop", 513)))}
    default_name = next(name for name, (scheme, _) in results.items() if scheme == DEFAULT_SCHEME)
    groups = parse_groups(None, ds.class_names)
    counts = {name: class_counts(np.stack([c[s] for s in stems])[None], "dice_mean", groups)
              for name, (_, c) in results.items()}
    rows = []
    for name, (_, confusion) in results.items():
        dice = segmentation_metrics(sum(confusion.values()), ds.class_names, groups)["dice_mean"]
        if name == default_name:
            versus = "default"
        else:
            estimate, low, high, _ = bootstrap(counts[name], "dice_mean", counts[default_name], resamples=RESAMPLES)
            versus = f"{estimate:+.3f} [{low:+.3f}, {high:+.3f}] {verdict(low, high)}"
        rows.append(f"| {Path(ds.root).name} `{Path(run).name}` | {name} | {dice:.3f} | {versus} |")
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished finetune/segment.py run directories")
    p.add_argument("--out", type=Path, default=None, help="also write the table (with provenance) here")
    return p.parse_args(argv)


def main(args):
    lines = ["| run | scheme | test mean Dice | − default (95 % CI over test images) |", "| --- | --- | --- | --- |"]
    for run in args.runs:
        lines += measure(run)
    table = "\n".join(lines)
    print(table)
    if args.out:
        command = " ".join(["python experiments/inference_geometry.py", *map(str, sys.argv[1:])])
        version, machine = code_version() or {}, machine_summary()
        args.out.write_text(f"{table}\n\n`{command}`; commit {version.get('commit')} (dirty: {version.get('dirty')}); "
                            f"{machine['cpu_model']}, {machine['cpus']} CPUs, {', '.join(machine['cpu_isa'])}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
