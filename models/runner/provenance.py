"""Where a result came from: the code's git commit and the machine's CPU, recorded beside every run and figure.

A table is only comparable with another when both name the code that made them (a grid run from a pinned
worktree records that worktree's commit) and the CPU kind (speed and, through oneDNN's kernels, the last bits
of the numbers depend on its instruction set).
"""

import os
import subprocess
from pathlib import Path

from surrogate_supervision.models.cpu import cpu_flags, onednn_isa_cap

REPO = Path(__file__).resolve().parents[2]
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def code_version(repo=REPO):
    """{"commit": sha, "dirty": whether tracked files differ from it} of the checkout the code runs from; None
    where it is not a git checkout (an installed package) or git is missing."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != Path(repo).resolve():
            return None  # the package sits inside some other repository
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def machine_summary():
    """CPU model, core count, its vector instruction sets and any oneDNN cap on them."""
    flags = cpu_flags()
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "cpu_isa": [f for f in ISA_FLAGS if f in flags],
            "onednn_max_cpu_isa": onednn_isa_cap() or "native"}


def describe_provenance(codes, machine):
    """Two lines for a report: the commit(s) the code ran from, and the CPU. More than one commit means the
    results mix code versions, which the report must say."""
    def one(code):
        if not code:
            return "not recorded (not a git checkout)"
        return f"commit {code['commit'][:10]}" + (" with uncommitted changes" if code["dirty"] else "")

    if not codes:
        code_line = "not recorded (written before commits were recorded)"
    elif len(codes) == 1:
        code_line = one(codes[0])
    else:
        code_line = f"{len(codes)} code versions ran parts of it: " + "; ".join(one(c) for c in codes)
    cpu_line = (f"{machine['cpu_model']}, {machine['cpus']} CPUs, {' '.join(machine['cpu_isa']) or 'no AVX2'}, "
                f"oneDNN cap {machine['onednn_max_cpu_isa']}") if machine else "not recorded"
    return code_line, cpu_line
