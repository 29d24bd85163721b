"""Check a labeled dataset before training and print a summary: python datasets/describe.py ROOT [--palette F]

Exit status: 0 clean, 1 problems found (each printed on one line naming the file), 2 unusable input.
"""

import argparse
import sys

from surrogate_supervision.datasets.checks import scan_labeled
from surrogate_supervision.datasets.errors import DatasetError
from surrogate_supervision.datasets.labeled import load_labeled


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Check a labeled dataset (images/, masks/, classes.txt) "
                                                 "and summarize it.")
    parser.add_argument("root", help="dataset root with images/ and masks/ (or masks.csv)")
    parser.add_argument("--palette", default=None, help="palette file for colour-coded masks: line i is "
                                                        "'r g b' of class i (default: ROOT/palette.txt)")
    parser.add_argument("--workers", type=int, default=8, help="reader threads")
    return parser.parse_args(argv)


def format_summary(summary: dict) -> str:
    lines = [
        f"dataset   {summary['root']}",
        f"images    {summary['n_images']}",
        f"masks     {summary['n_masks']}",
        f"bad pairs {summary['n_bad_pairs']}",
        f"size      H {summary['height'][0]}-{summary['height'][1]}, W {summary['width'][0]}-{summary['width'][1]}",
        f"classes   {len(summary['classes'])}",
        "   id  name                    pixels   images",
    ]
    for entry in summary["classes"]:
        lines.append(f"  {entry['id']:3d}  {entry['name'][:22]:22s} {100 * entry['pixel_fraction']:6.2f}%  "
                     f"{entry['n_images']:7d}")
    lines.append(f"  255  (ignore)               {100 * summary['ignore_fraction']:6.2f}%")
    return "\n".join(lines)


def main(args) -> int:
    try:
        ds = load_labeled(args.root, palette=args.palette)
        problems, summary = scan_labeled(ds, progress=True, workers=args.workers)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if not problems:
        print("no problems found")
        return 0
    print(f"{len(problems)} problem(s):")
    for problem in problems:
        print(f"  {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
