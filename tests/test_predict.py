"""finetune/predict.py on a tiny trained run: masks, overlays, an RLE CSV that decodes back, tiles, errors.

`trained_run` (two steps at width 0.125, crop 65) is shared with tests/test_export.py by its path: the second
module to ask for it finds the run finished. Predict runs call `main` in-process through `models.runner.cli.run`,
as the script's `__main__` does; one test runs the script itself.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from surrogate_supervision.models import ARCHITECTURE_FILE, Architecture, build_deeplabv3plus
from surrogate_supervision.models.metrics import confusion_matrix
from surrogate_supervision.models.rundir import BEST_WEIGHTS, CONFIG_FILE, TEST_COUNTS_FILE
from surrogate_supervision.models.runner.cli import run
from surrogate_supervision.models.runner.inference import DEFAULT_SCHEME, InferenceScheme, Predictor, _starts
from surrogate_supervision.models.runner.runs import load_run

import cv2
import keras
import numpy as np
import pytest

import surrogate_supervision.finetune.predict as predict
import surrogate_supervision.finetune.segment as segment
from surrogate_supervision.datasets import load_labeled, read_image, read_rle_csv
from surrogate_supervision.datasets.synthetic import make_scene

REPO = Path(__file__).resolve().parents[1]
WIDTH, CROP = 0.125, 65
RUN_FLAGS = ["--width", str(WIDTH), "--crop", str(CROP), "--batch", "2", "--steps", "2", "--eval-every", "2",
             "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def trained_run(synthetic_root, tmp_path_factory):
    """A finished five-class segmentation run; one directory per session, whichever module makes it first."""
    out = tmp_path_factory.getbasetemp() / "predict_run_w0.125_c65"
    assert segment.main(segment.parse_args(["--data", str(synthetic_root), "--out", str(out), *RUN_FLAGS])) == 0
    return out


@pytest.fixture(scope="module")
def bce_run(trained_run, synthetic_root, tmp_path_factory):
    """A one-output (--loss bce, two-class) run directory, its logits shifted so both labels occur.

    Returns (run directory, the model its weights came from).
    """
    out = tmp_path_factory.mktemp("bce_run")
    config = json.loads((trained_run / CONFIG_FILE).read_text())
    config.update(loss="bce", classes=["background", "lesion"])
    (out / CONFIG_FILE).write_text(json.dumps(config))
    keras.utils.set_random_seed(0)
    model = build_deeplabv3plus(1, width=WIDTH)
    logits = Predictor(model, train_crop=CROP).logits(read_image(sorted((synthetic_root / "images").iterdir())[0]))
    bias = model.get_layer("logits").bias
    bias.assign(bias.numpy() - np.median(logits))
    model.save_weights(out / BEST_WEIGHTS)
    return out, model


def image_files(root, n):
    return sorted((root / "images").iterdir())[:n]


def predict_args(run_dir, out, *extra):
    return predict.parse_args([str(run_dir), "--out", str(out), *extra])


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_masks_overlays_and_rle_csv_that_decodes_back_to_the_masks(bce_run, synthetic_root, tmp_path):
    run_dir, model = bce_run
    files = image_files(synthetic_root, 4)
    folder = tmp_path / "folder"
    folder.mkdir()
    for file in files[:3]:
        shutil.copy(file, folder / file.name)
    out, csv = tmp_path / "out", tmp_path / "submission.csv"

    assert run(predict.main, predict_args(run_dir, out, "--images", str(folder), str(files[3]), "--rle", str(csv))) == 0

    shapes, foreground, predictor = {}, 0, Predictor(model, train_crop=CROP)
    for file in files:
        image = read_image(file)
        mask = cv2.imread(str(out / "masks" / f"{file.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask, predictor.labels(image))  # logit > 0
        assert read_image(out / "overlays" / f"{file.stem}.png").shape == image.shape
        shapes[file.stem] = mask.shape
        foreground += int(mask.sum())
    assert 0 < foreground < sum(h * w for h, w in shapes.values())  # both labels occur: the RLE is not trivial
    decoded = read_rle_csv(csv, shapes)
    assert list(decoded) == [f.stem for f in files]
    for stem, mask in decoded.items():
        np.testing.assert_array_equal(mask, cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED))
    config = json.loads((out / "config.json").read_text())
    assert (config["inference"], config["classes"]) == (DEFAULT_SCHEME.as_dict(), ["background", "lesion"])


def test_multiclass_masks_hold_class_ids_and_the_rle_encodes_one_class(trained_run, synthetic_root, tmp_path):
    files = image_files(synthetic_root, 2)
    out, csv = tmp_path / "out", tmp_path / "sub.csv"

    assert run(predict.main, predict_args(trained_run, out, "--images", *map(str, files), "--rle", str(csv),
                                          "--rle-class", "3")) == 0

    masks = {f.stem: cv2.imread(str(out / "masks" / f"{f.stem}.png"), cv2.IMREAD_UNCHANGED) for f in files}
    assert all(mask.max() < 5 for mask in masks.values())
    decoded = read_rle_csv(csv, {stem: mask.shape for stem, mask in masks.items()})
    for stem, mask in masks.items():
        np.testing.assert_array_equal(decoded[stem], mask == 3)


def tile_cores(length, tile, overlap, margin):
    """Pixels at least `margin` inside some tile: away from every seam that tile's blending could show."""
    core = np.zeros(length, bool)
    for start in _starts(length, tile, max(1, int(tile * (1 - overlap)))):
        core[start + margin:start + tile - margin] = True
    return core


def test_large_image_goes_through_tiles_and_matches_whole_image_prediction(trained_run, tmp_path, monkeypatch):
    image, _ = make_scene(np.random.default_rng(7), 64)
    image = cv2.resize(image, (260, 300), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(tmp_path / "large.png"), image[..., ::-1])
    tiles = []
    whole_image = Predictor._whole
    monkeypatch.setattr(Predictor, "_whole", lambda self, x: tiles.append(x.shape[:2]) or whole_image(self, x))

    assert run(predict.main, predict_args(trained_run, tmp_path / "tiled", "--images", str(tmp_path / "large.png"),
                                          "--max-side", "100", "--tile", "65")) == 0
    n_tiled = len(tiles)
    assert run(predict.main, predict_args(trained_run, tmp_path / "whole", "--images", str(tmp_path / "large.png"),
                                          "--max-side", "400")) == 0

    assert n_tiled == len(_starts(300, 65, 48)) * len(_starts(260, 65, 48)) == 36
    assert all(max(shape) <= 65 for shape in tiles[:n_tiled])
    assert tiles[n_tiled:] == [(300, 260)]
    tiled, whole = (cv2.imread(str(tmp_path / name / "masks" / "large.png"), cv2.IMREAD_UNCHANGED)
                    for name in ("tiled", "whole"))
    assert tiled.shape == whole.shape == (300, 260)
    # DeepLab sees less context in a tile (image pooling, receptive field), so only near-agreement is expected
    # of a real network; tests/test_runner_inference.py checks that blending itself is exact.
    core = tile_cores(300, 65, 0.25, 16)[:, None] & tile_cores(260, 65, 0.25, 16)[None, :]
    assert (tiled == whole)[core].mean() >= 0.95


def test_run_without_weights_exits_1_in_one_line(trained_run, synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "unfinished"
    run_dir.mkdir()
    shutil.copy(trained_run / CONFIG_FILE, run_dir / CONFIG_FILE)
    args = predict_args(run_dir, tmp_path / "out", "--images", str(image_files(synthetic_root, 1)[0]))

    assert run(predict.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and str(run_dir) in errors[0] and "best.weights.h5" in errors[0]
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_fit_the_config_exit_1_in_one_line(trained_run, synthetic_root, tmp_path, capsys):
    run_dir = tmp_path / "mismatch"
    run_dir.mkdir()
    config = json.loads((trained_run / CONFIG_FILE).read_text())
    (run_dir / CONFIG_FILE).write_text(json.dumps({**config, "classes": ["a", "b", "c"]}))
    shutil.copy(trained_run / BEST_WEIGHTS, run_dir / BEST_WEIGHTS)
    args = predict_args(run_dir, tmp_path / "out", "--images", str(image_files(synthetic_root, 1)[0]))

    assert run(predict.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "best.weights.h5: does not fit the network in config.json" in errors[0]


@pytest.mark.parametrize("extra, message", [
    (["--rle", "x.csv", "--rle-class", "5"], "--rle-class 5: the run has 5 classes"),
    (["--images", "no_such_folder"], "no_such_folder: no such file or folder"),
])
def test_bad_inputs_exit_1_in_one_line(trained_run, synthetic_root, tmp_path, capsys, extra, message):
    args = predict_args(trained_run, tmp_path / "out", "--images", str(image_files(synthetic_root, 1)[0]), *extra)

    assert run(predict.main, args) == 1

    errors = error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and message in errors[0]


def test_unreadable_image_exits_1_naming_it(trained_run, synthetic_root, tmp_path):
    good = image_files(synthetic_root, 1)[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    result = subprocess.run(
        [sys.executable, "finetune/predict.py", str(trained_run), "--images", str(good), str(bad),
         "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)

    assert result.returncode == 1, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and str(bad) in errors[0] and "--skip-bad" in errors[0]
    assert "Traceback" not in result.stderr


def test_skip_bad_predicts_the_readable_images_and_counts_the_rest(trained_run, synthetic_root, tmp_path, capsys):
    good = image_files(synthetic_root, 1)[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")

    assert run(predict.main, predict_args(trained_run, tmp_path / "out", "--images", str(good), str(bad),
                                          "--skip-bad")) == 0

    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [f"{good.stem}.png"]
    captured = capsys.readouterr()
    assert "skipped 1 unreadable images" in captured.out and str(bad) in captured.err


@pytest.mark.parametrize("flags, message", [
    (["--tile", "0"], "--tile must be positive"),
    (["--overlap", "1"], "--overlap must be in [0, 1)"),
])
def test_parser_rejects_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        predict.parse_args(["run", "--images", "x", "--out", "y", *flags])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_runs_are_rebuilt_from_architecture_json_and_older_runs_from_config(trained_run, bce_run):
    assert Architecture.load(trained_run) == load_run(trained_run).model.architecture  # written beside best weights
    old_run, _ = bce_run  # config.json and weights only, as runs written before architecture.json
    assert not (old_run / ARCHITECTURE_FILE).exists()
    assert load_run(old_run).model.architecture == Architecture(width=WIDTH, outputs=1)


def test_predict_gives_the_labels_the_test_metrics_scored(synthetic_root, tmp_path):
    """One inference path: predict.py's masks of a run's test images, scored against their truth, give exactly the
    per-image confusion counts segment.py's test evaluation wrote, on images (~64 px) several times the training
    crop (17 px), where tiling at the crop or keeping the untrained taps would change the labels."""
    run_dir = tmp_path / "run"
    flags = ["--width", str(WIDTH), "--crop", "17", "--batch", "4", "--steps", "40", "--eval-every", "20",
             "--checkpoint-every", "20", "--lr", "3e-3"]
    assert segment.main(segment.parse_args(["--data", str(synthetic_root), "--out", str(run_dir), *flags])) == 0
    stems = (run_dir / "splits" / "test.txt").read_text().split()
    files = {f.stem: f for f in (synthetic_root / "images").iterdir()}
    out = tmp_path / "predicted"

    assert run(predict.main, predict_args(run_dir, out, "--images", *(str(files[s]) for s in stems))) == 0

    evaluated = json.loads((run_dir / TEST_COUNTS_FILE).read_text())["confusion"]
    classes = json.loads((run_dir / CONFIG_FILE).read_text())["classes"]
    predicted_labels, trained = set(), load_run(run_dir)
    tiles_at_crop, differs = Predictor(trained.model, train_crop=17, scheme=InferenceScheme(tile=17)), False
    for stem in stems:
        image = read_image(files[stem])
        assert max(image.shape[:2]) > 2 * 17
        mask = cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        truth = load_labeled(synthetic_root).read_pair(stem)[1]
        np.testing.assert_array_equal(confusion_matrix(truth, mask, len(classes)), evaluated[stem])
        predicted_labels |= set(np.unique(mask).tolist())
        differs |= bool((tiles_at_crop.labels(image) != mask).any())
    assert len(predicted_labels) > 1  # a model that predicts something, not one constant label
    assert differs  # tiles at the crop (predict.py's former default) would have given other labels
    # the validation pass zeroed the taps the 17-px crop never reached before the best weights were written
    assert not any((layer.kernel.numpy() * (1 - mask)).any() for layer, mask in tiles_at_crop.masks)
    assert tiles_at_crop.masks
    assert json.loads((run_dir / "metrics.json").read_text())["inference"] == DEFAULT_SCHEME.as_dict()


def test_inference_geometry_table_scores_every_scheme_against_the_default(trained_run, tmp_path):
    """experiments/inference_geometry.py: one row per scheme, the default's Dice equal to the run's own test Dice
    (the same path), every other row a paired difference, and the provenance line."""
    from surrogate_supervision.experiments import inference_geometry

    out = tmp_path / "geometry.md"
    assert inference_geometry.main(inference_geometry.parse_args([str(trained_run), "--out", str(out)])) == 0

    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(inference_geometry.schemes(CROP))
    default = [row for row in rows if row.endswith("| default |")]
    assert len(default) == 1
    assert f"| {json.loads((trained_run / 'metrics.json').read_text())['dice_mean']:.3f} |" in default[0]
    assert all(" [" in row for row in rows if row not in default)
    assert "commit" in out.read_text() and "CPUs" in out.read_text()
