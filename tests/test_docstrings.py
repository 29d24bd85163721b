"""Comments and docstrings say what the code does and why; lab notebooks live in experiments/results/ (issue #49).

    python -m pytest -q tests/test_docstrings.py

A measurement's date and commit belong with the measurement, in a note under experiments/results/ that the code
links by path, not in the code: a dated figure in a docstring goes stale without anyone noticing. Reads every .py
file of the package folders with `tokenize` (comments) and `ast` (docstrings, and any other string standing alone
as a statement), so it needs no TensorFlow; strings in code (a help text, a hash the code checks) are not read.
"""

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datasets", "models", "pretrain", "finetune", "experiments")
ISO_DATE = re.compile(r"(?<!\d)20\d\d-\d\d-\d\d(?!\d)")
# A commit as the notes cite one: 7 to 40 lowercase hex digits, standing alone (not part of a longer word, nor a
# literal written 0x… or #… such as a colour), at least one of them a digit, so that English words spelled in hex
# letters ("defaced", "effaced") do not count.
COMMIT = re.compile(r"(?<![\w#])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w])")


def package_files():
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))


def prose(source):
    """(line, text) for every comment and every standalone string (docstrings) in `source`, line by line."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for offset, line in enumerate(node.value.value.splitlines()):
                yield node.lineno + offset, line


def notebook_entries(source):
    """(line, what, text) for every date or commit-looking token in a comment or docstring of `source`."""
    found = []
    for line, text in prose(source):
        found += [(line, "date", m.group()) for m in ISO_DATE.finditer(text)]
        found += [(line, "commit", m.group()) for m in COMMIT.finditer(text)]
    return sorted(found)


def test_the_scan_reads_comments_and_docstrings_and_not_code():
    source = '''"""Module docstring, measured 2026-11-25 at 0e515d2."""
X = "4d473c1dd8becc155b73f8504c6f6626"  # a hash in code is data; this comment has b82724b
COLOUR = "#1f77b4ff"  # colours such as #1f77b4ff or 0x1f77b4ff are not commits, nor are defaced or 1,000,000


def f():
    """First line.

    Since 2026-12-02 (a5ee59a1c0ffee)."""
    return "2026-12-03 in a string the code uses"
'''
    assert notebook_entries(source) == [(1, "commit", "0e515d2"), (1, "date", "2026-11-25"),
                                        (2, "commit", "b82724b"), (9, "commit", "a5ee59a1c0ffee"),
                                        (9, "date", "2026-12-02")]


@pytest.mark.parametrize("path", package_files(), ids=lambda path: str(path.relative_to(REPO)))
def test_no_dates_or_commits_in_comments_or_docstrings(path):
    """Move the entry, verbatim with its date, commit and machine, into a note under experiments/results/ (or link
    the note that already has it), and say here in words what was decided and why."""
    found = notebook_entries(path.read_text(encoding="utf-8"))
    assert not found, "\n".join(f"{path.relative_to(REPO)}:{line}: {what} {text}" for line, what, text in found)


def test_every_package_folder_is_scanned():
    files = {str(path.relative_to(REPO)) for path in package_files()}
    assert {"experiments/presets.py", "models/cpu.py", "models/runner/runtime.py"} <= files
    assert {path.split("/")[0] for path in files} == set(PACKAGES)
