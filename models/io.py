"""The toolkit's one way of writing a file: beside it under a temporary name, then renamed over it.

A crash or Ctrl-C therefore never leaves a half-written weights file, JSON record, PNG or export; readers see
the old file or the new one. Every layer above (`models.runner`, the scripts) writes through these functions.
"""

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

from surrogate_supervision.datasets.errors import FileError, read_text


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` to write (a file or a folder), then swaps it in.

    The temporary name keeps `path`'s suffix (`.tmp.<pid>.<random>.best.weights.h5`), since some writers check
    it, and is unique to this call: the workers of a multi-worker run may write the same file at once, and a
    shared temporary name let one rename away the file another was still writing. If the block raises, the
    temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{os.getpid()}.{uuid.uuid4().hex[:8]}.{path.name}")
    try:
        yield tmp
        if tmp.is_dir() or path.is_dir():  # os.replace cannot put a folder over a folder, or a file over one
            _remove(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_atomic(path, data):
    """Writes `data` (str or bytes) to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def file_sha256(path):
    """The SHA-256 of a file's bytes, hex: names exactly which weights a run started from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path, default=None):
    """A JSON file's content, or `default` when the file does not exist.

    A file that is not UTF-8 or not JSON (a truncated copy, a hand edit gone wrong) raises FileError naming
    it: `json`'s own message ("Expecting property name ...") says what is wrong but not where.
    """
    path = Path(path)
    if not path.is_file():
        return default
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise FileError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None


def write_json(path, obj, indent=2):
    return write_atomic(path, json.dumps(obj, indent=indent, default=str) + "\n")
