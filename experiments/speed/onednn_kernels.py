"""oneDNN kernel time of one training step, by primitive, implementation and layout: ours or the PyTorch peer.

Why: both frameworks run their convolutions on oneDNN, so a speed gap between them is a gap between the kernels
each is given. This runs the third step of a fresh process with ONEDNN_VERBOSE=1 and sums the execution times.

    python experiments/speed/onednn_kernels.py --framework ours --isa AVX2
    python experiments/speed/onednn_kernels.py --framework peer --isa AVX2
"""

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root: experiments/speed/ is two folders down
STEP = {
    "ours": """
from surrogate_supervision.models.runner.runtime import avoid_slow_fused_inference
from surrogate_supervision.experiments.speed.train_step import build_step
avoid_slow_fused_inference()  # as the scripts do
run_once, _ = build_step("segment", {size}, {batch}, 1.0, False)
run_once(); run_once()
print("MARK", flush=True)
run_once()
""",
    "peer": """
from surrogate_supervision.experiments.speed.benchmark import build_peer
step = build_peer({size}, {batch})[0]
step(); step()
print("MARK", flush=True)
step()
""",
}


def layout(line):
    if "acdb" in line:
        return "nhwc"
    return "blocked" if re.search(r"aBcd|ABcd|Acdb", line) else "other"


def kernel_times(log):
    """{(primitive, implementation, propagation, layout): (milliseconds, calls)} from an ONEDNN_VERBOSE log."""
    times, calls = collections.Counter(), collections.Counter()
    for line in log.splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        try:
            ms = float(fields[-1])
        except ValueError:
            continue
        key = (fields[5], fields[6], fields[7], layout(line))
        times[key] += ms
        calls[key] += 1
    return {key: (ms, calls[key]) for key, ms in times.most_common()}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", choices=sorted(STEP), default="ours")
    p.add_argument("--isa", default=None, help="ONEDNN_MAX_CPU_ISA cap (AVX2, AVX512_CORE, ...); default: native")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--top", type=int, default=16)
    return p.parse_args(argv)


def main(args):
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    if args.isa:
        env.update(ONEDNN_MAX_CPU_ISA=args.isa, ATEN_CPU_CAPABILITY=args.isa.lower().split("_")[0])
    code = STEP[args.framework].format(size=args.size, batch=args.batch)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    if "MARK" not in done.stdout:
        raise SystemExit(f"error: the {args.framework} step failed: {done.stderr.strip().splitlines()[-1:]}")
    times = kernel_times(done.stdout.split("MARK", 1)[1])
    total = sum(ms for ms, _ in times.values())
    for (kind, impl, prop, lay), (ms, n) in list(times.items())[:args.top]:
        print(f"{ms:9.1f} ms {100 * ms / total:5.1f} %  {n:4d} calls  {kind} {prop} {impl} {lay}")
    print(f"{total:9.1f} ms in oneDNN ({args.framework}, cap {args.isa or 'native'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
