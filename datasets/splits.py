"""Seeded train/val/test splits, written once per run, and nested label fractions.

Orders come from SHA-256 of (purpose, seed, stem), not from a RNG: they depend only on the set of stems
and the seed, are identical across numpy/TensorFlow versions and machines, and give nested subsets.
"""

import hashlib
import math
import os
import shutil
from pathlib import Path

from surrogate_supervision.datasets.errors import DatasetError

SPLIT_NAMES = ("train", "val", "test")


def seeded_order(stems, seed: int, purpose: str) -> list[str]:
    """A permutation of sorted(set(stems)) that is a pure function of (stems, seed, purpose)."""
    return sorted(sorted(set(stems)), key=lambda s: hashlib.sha256(f"{purpose}:{seed}:{s}".encode()).digest())


def _split_size(fraction: float, n: int, name: str) -> int:
    if not 0 <= fraction < 1:
        raise DatasetError(f"fraction must be in [0, 1), got {fraction}", param=name)
    return max(1, math.floor(fraction * n + 0.5)) if fraction > 0 else 0


def assign_splits(universe, given=None, *, seed=0, val=0.1, test=0.1) -> dict[str, list[str]]:
    """Complete the splits in `given` ({name: stems} read from files) by a seeded draw.

    Missing test/val are drawn (sizes relative to the whole universe) from the given train list, or, without
    one, from the stems no file lists; train is what remains. With nothing given this is the plain draw.
    """
    universe, given = sorted(set(universe)), dict(given or {})
    listed = {stem for stems in given.values() for stem in stems}
    pool = given.get("train", [stem for stem in universe if stem not in listed])
    order, position = seeded_order(pool, seed, "split"), 0
    for name, fraction in (("test", test), ("val", val)):
        if name not in given:
            size = _split_size(fraction, len(universe), name)
            given[name], position = order[position : position + size], position + size
    given["train"] = order[position:]
    if not given["train"]:
        raise DatasetError(f"{len(universe)} images are too few for val={val}, test={test}")
    return {name: sorted(given[name]) for name in SPLIT_NAMES}


def read_split_file(path: Path, known: set) -> list[str]:
    stems = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    unknown = [stem for stem in stems if stem not in known]
    if unknown:
        raise DatasetError(f"{path}: {len(unknown)} stem(s) not in the dataset, e.g. {unknown[0]!r}")
    return stems


def read_split_folder(folder: Path, known: set, *, require_all: bool) -> dict[str, list[str]]:
    splits = {}
    for name in SPLIT_NAMES:
        path = folder / f"{name}.txt"
        if path.is_file():
            splits[name] = read_split_file(path, known)
        elif require_all:
            raise DatasetError(f"{path}: missing split file")
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(set(splits[first]) & set(splits[second]))
            if shared:
                raise DatasetError(f"{folder}: {first}.txt and {second}.txt share {len(shared)} stem(s), "
                                   f"e.g. {shared[0]!r}")
    return splits


def write_splits(splits: dict, folder: Path) -> None:
    """Write all three files into a temporary folder, then rename it, so a crash never leaves half a split."""
    temporary = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name in SPLIT_NAMES:
        (temporary / f"{name}.txt").write_text("".join(f"{stem}\n" for stem in splits[name]))
    try:
        os.rename(temporary, folder)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not folder.is_dir():
            raise


def dataset_splits(ds, *, seed=0, val=0.1, test=0.1) -> dict[str, list[str]]:
    """The dataset's own train/val/test stems, no run directory involved: DATASET_ROOT/splits completed by the
    seeded draw (over every stem, including pairs removed by drop_bad, which are then taken out)."""
    universe = set(ds.stems) | set(ds.dropped)
    given = read_split_folder(ds.root / "splits", universe, require_all=False) \
        if (ds.root / "splits").is_dir() else {}
    return _without(assign_splits(universe, given, seed=seed, val=val, test=test), ds.dropped)


def _without(splits, dropped):
    dropped = set(dropped)
    return {name: [stem for stem in stems if stem not in dropped] for name, stems in splits.items()}


def load_or_make_splits(ds, run_dir, *, seed=0, val=0.1, test=0.1) -> dict[str, list[str]]:
    """The run's train/val/test stems, saved in RUN_DIR/splits/ and read back on resume.

    Order of precedence: RUN_DIR/splits (a resumed run), DATASET_ROOT/splits (completed by the seeded draw if
    some files are missing), the seeded draw. The draw is over every image stem, including pairs removed by
    drop_bad, which are then taken out, so --skip-bad does not reshuffle the split.
    """
    run_splits = Path(run_dir) / "splits"
    if run_splits.is_dir():
        splits = _without(read_split_folder(run_splits, set(ds.stems) | set(ds.dropped), require_all=True),
                          ds.dropped)
    else:
        splits = dataset_splits(ds, seed=seed, val=val, test=test)
    if not splits["train"]:
        raise DatasetError(f"{run_splits}: the train split is empty")
    if not run_splits.is_dir():
        write_splits(splits, run_splits)
    return splits


def select_fraction(train_stems, frac, seed) -> list[str]:
    """The first ceil(frac * n) stems (at least one) of a seeded order of the training stems, sorted.

    The order does not depend on frac, so for one seed the 10 % subset lies inside the 25 % one, and so on.
    """
    try:
        frac = float(frac)
    except (TypeError, ValueError):
        raise DatasetError(f"must be in (0, 1], got {frac}", param="frac") from None
    if not 0 < frac <= 1:
        raise DatasetError(f"must be in (0, 1], got {frac}", param="frac")
    n = len(set(train_stems))
    if not n:
        raise DatasetError(f"{frac}: the training split is empty", param="frac")
    return select_count(train_stems, max(1, math.ceil(frac * n - 1e-9)), seed)


def select_count(train_stems, count, seed) -> list[str]:
    """The first `count` stems of the seeded order `select_fraction` takes its fractions from, sorted.

    One order for both, so for a seed 8 images lie inside 20, and a fraction f selects the same images as the
    count ceil(f·n): label counts and fractions are two views of one nested family of subsets.
    """
    order = seeded_order(train_stems, seed, "fraction")
    if isinstance(count, bool) or int(count) != count or not 1 <= count <= len(order):
        raise DatasetError(f"{count}: must be a whole number from 1 to the {len(order)} images of the training "
                           f"split", param="labels")
    return sorted(order[: int(count)])
