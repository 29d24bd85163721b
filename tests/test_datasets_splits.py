"""Seeded splits written once and reused, nested label fractions, and unlabeled source listing."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from surrogate_supervision.datasets import (
    DatasetError,
    LabeledDataset,
    drop_bad,
    list_unlabeled,
    load_labeled,
    load_or_make_splits,
    select_count,
    select_fraction,
)
from surrogate_supervision.datasets.checks import Problem


def fake_dataset(root: Path, n: int) -> LabeledDataset:
    stems = [f"s{i:03d}" for i in range(n)]
    return LabeledDataset(root, stems, {s: root / f"{s}.png" for s in stems}, {}, ["bg", "fg"])


def test_seeded_draw_sizes_and_purity(tmp_path):
    ds = fake_dataset(tmp_path, 100)
    splits = load_or_make_splits(ds, tmp_path / "run_a", seed=3)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [80, 10, 10]
    assert sorted(sum(splits.values(), [])) == ds.stems
    shuffled = fake_dataset(tmp_path, 100)
    shuffled.stems.reverse()  # the draw depends on the set of stems and the seed, not on their order
    assert load_or_make_splits(shuffled, tmp_path / "run_b", seed=3) == splits
    assert load_or_make_splits(ds, tmp_path / "run_c", seed=4)["test"] != splits["test"]


def test_split_files_written_and_reused(tmp_path):
    ds = fake_dataset(tmp_path, 30)
    run = tmp_path / "run"
    splits = load_or_make_splits(ds, run, seed=0)
    for name in ("train", "val", "test"):
        assert (run / "splits" / f"{name}.txt").read_text().split() == splits[name]
    (run / "splits" / "test.txt").write_text("s000\ns001\n")  # a resumed run reads the files, whatever the seed
    (run / "splits" / "val.txt").write_text("s002\n")
    (run / "splits" / "train.txt").write_text("s003\n")
    assert load_or_make_splits(ds, run, seed=99) == {"train": ["s003"], "val": ["s002"], "test": ["s000", "s001"]}
    (run / "splits" / "val.txt").unlink()
    with pytest.raises(DatasetError, match="val.txt: missing split file"):
        load_or_make_splits(ds, run)


def test_dataset_split_files(tmp_path):
    ds = fake_dataset(tmp_path, 20)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test.txt").write_text("s000\ns001\ns002\n")
    splits = load_or_make_splits(ds, tmp_path / "run", seed=0)
    assert splits["test"] == ["s000", "s001", "s002"] and len(splits["val"]) == 2 and len(splits["train"]) == 15
    (tmp_path / "splits" / "val.txt").write_text("s002\n")
    with pytest.raises(DatasetError, match="val.txt and test.txt share 1 stem"):
        load_or_make_splits(ds, tmp_path / "run2")
    (tmp_path / "splits" / "val.txt").write_text("nope\n")
    with pytest.raises(DatasetError, match=r"val.txt: 1 stem\(s\) not in the dataset, e.g. 'nope'"):
        load_or_make_splits(ds, tmp_path / "run3")


def test_drop_bad_does_not_reshuffle(tmp_path):
    ds = fake_dataset(tmp_path, 50)
    full = load_or_make_splits(ds, tmp_path / "full", seed=1)
    bad = full["train"][0]
    reduced = load_or_make_splits(drop_bad(ds, [Problem(tmp_path / bad, "broken", bad)]), tmp_path / "red", seed=1)
    assert reduced["test"] == full["test"] and reduced["val"] == full["val"]
    assert reduced["train"] == full["train"][1:]


def test_too_few_images(tmp_path):
    with pytest.raises(DatasetError, match="too few"):
        load_or_make_splits(fake_dataset(tmp_path, 2), tmp_path / "run")


def test_fractions_nested_stable_and_at_least_one():
    train = [f"t{i}" for i in range(30)]
    subsets = {frac: select_fraction(train, frac, seed=7) for frac in (1.0, 0.5, 0.25, 0.1)}
    assert [len(subsets[f]) for f in (0.1, 0.25, 0.5, 1.0)] == [3, 8, 15, 30]  # ceil, no float drift
    assert set(subsets[0.1]) <= set(subsets[0.25]) <= set(subsets[0.5]) <= set(subsets[1.0]) == set(train)
    assert select_fraction(list(reversed(train)), 0.25, seed=7) == subsets[0.25]  # any call or list order
    assert select_fraction(train, 0.25, seed=8) != subsets[0.25]
    assert len(select_fraction(train, 0.001, seed=0)) == 1


def test_label_counts_nest_and_agree_with_fractions():
    """For a seed, 8 images lie inside 20, and --frac f picks the images of --labels ceil(f·n)."""
    train = [f"t{i}" for i in range(40)]
    subsets = {n: select_count(train, n, seed=7) for n in (8, 20, 40)}
    assert [len(subsets[n]) for n in (8, 20, 40)] == [8, 20, 40]
    assert set(subsets[8]) < set(subsets[20]) < set(subsets[40]) == set(train)
    assert select_count(list(reversed(train)), 8, seed=7) == subsets[8]  # any list order
    assert select_count(train, 8, seed=8) != subsets[8]
    for frac, count in ((0.5, 20), (0.2, 8), (0.1, 4), (0.01, 1)):
        assert select_fraction(train, frac, seed=7) == select_count(train, count, seed=7)


@pytest.mark.parametrize("count", [0, -1, 41, 2.5, True])
def test_bad_label_count_names_the_parameter(count):
    with pytest.raises(DatasetError, match=r"^labels .*: must be a whole number from 1 to the 40 images") as error:
        select_count([f"t{i}" for i in range(40)], count, seed=0)
    assert error.value.param == "labels"


@pytest.mark.parametrize("frac", [0, -0.5, 1.5, float("nan"), "half"])
def test_bad_fraction(frac):
    with pytest.raises(DatasetError, match=r"^frac must be in \(0, 1\], got") as error:
        select_fraction(["a", "b"], frac, seed=0)
    assert error.value.param == "frac"


def write_video(path: Path, frames: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 10 * i, np.uint8))
    writer.release()


def test_list_folders_videos_and_files(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for name in ("a/x.jpg", "a/deep/y.PNG", "a/z.webp", "a/w.tif", "a/.hidden.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    write_video(tmp_path / "clip.avi", 25)
    sources = list_unlabeled([tmp_path / "a", tmp_path / "clip.avi"], video_every=10)
    names = [Path(s.split("#")[0]).name for s in sources]
    assert sorted(names[:4]) == ["w.tif", "x.jpg", "y.PNG", "z.webp"]
    assert sources[4:] == [f"{tmp_path / 'clip.avi'}#frame={i}" for i in (0, 10, 20)]
    assert list_unlabeled([tmp_path / "a"]) == list_unlabeled([tmp_path / "a"])


def test_list_errors(tmp_path):
    with pytest.raises(DatasetError, match="missing: not found"):
        list_unlabeled([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: no images or video frames found"):
        list_unlabeled([tmp_path / "empty"])


def test_labeled_root_minus_test_split_plus_unlabeled(synthetic_root, tmp_path):
    sources = list_unlabeled([synthetic_root], seed=0)
    test = load_or_make_splits(load_labeled(synthetic_root), tmp_path / "run", seed=0)["test"]
    listed_stems = {Path(s).stem for s in sources}
    assert test and not listed_stems & set(test)
    assert len(sources) == 24 - len(test) + 12
    assert sum("/unlabeled/" in s for s in sources) == 12
