"""Speed measurements: training steps, the input pipeline, the PyTorch peer, and inference.

    python experiments/speed/benchmark.py train-step --task segment --size 256 --batch 4
    python experiments/speed/benchmark.py train-step --task colorize --size 256 --batch 4
    python experiments/speed/benchmark.py data --data ROOT --crop 513
    python experiments/speed/benchmark.py peer --size 256 --batch 4      # needs the `bench` extra (torch, smp)
    python experiments/speed/benchmark.py peer --peer-process own        # the peer in a process of its own
    python experiments/speed/benchmark.py predict --size 513
    python experiments/speed/benchmark.py scale --files 330000          # streaming: first step and memory
    python experiments/speed/benchmark.py profile --task segment --size 256 --batch 4   # where a step's time goes
    python experiments/speed/benchmark.py roofline --size 256 --batch 4  # peer, FLOPs and the machine's matmul rate

JSON on stdout, a readable table on stderr. Timings are the median of several timed repeats after warm-up.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is imported later, inside the commands


def timed(run_once, *, warmup, repeats, steps):
    """Median seconds per step over `repeats` timings of `steps` steps, after `warmup` steps."""
    for _ in range(warmup):
        run_once()
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        for _ in range(steps):
            run_once()
        times.append((time.perf_counter() - tick) / steps)
    return statistics.median(times), times


def peak_memory_mb():
    """Peak resident memory of this process (CPU) and, when present, peak GPU memory."""
    import tensorflow as tf

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if tf.config.list_physical_devices("GPU"):
        out["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return out


def cmd_train_step(args):
    from surrogate_supervision.models.runner.runtime import set_precision

    precision = set_precision(args.mixed_precision)
    from surrogate_supervision.experiments.speed.train_step import build_step

    run_once, model = build_step(args.task, args.size, args.batch, args.width, args.xla)
    seconds, times = timed(run_once, warmup=args.warmup, repeats=args.repeats, steps=args.steps)
    arithmetic = {}
    if args.flops or args.peak_tflops:
        from surrogate_supervision.experiments.speed.flops import step_flops

        flop = sum(step_flops(args.task, args.size, args.batch, args.width).values())
        arithmetic = {"gflop_per_step": flop / 1e9, "tflops_per_second": flop / seconds / 1e12}
        if args.peak_tflops:
            arithmetic["model_flops_utilisation"] = flop / seconds / 1e12 / args.peak_tflops
    return {**arithmetic, "benchmark": "train-step", "task": args.task, "size": args.size, "batch": args.batch,
            "width": args.width, "mixed_precision_flag": args.mixed_precision, "precision": precision,
            "xla": args.xla, "remapping": remapping(), "seconds_per_step": seconds,
            "images_per_second": args.batch / seconds, "repeats_seconds_per_step": times,
            "parameters": sum(int(np.prod(v.shape)) for v in model.trainable_variables), **peak_memory_mb(),
            **machine()}


def cmd_data(args):
    from surrogate_supervision import (
        datasets,
        models,  # noqa: F401  (before datasets imports TensorFlow: oneDNN on, as in training)
    )

    ds = datasets.load_labeled(args.data)
    pipeline = datasets.segmentation_dataset([ds.image_paths[s] for s in ds.stems],
                                             [ds.mask_paths[s] for s in ds.stems], crop=args.crop,
                                             batch=args.batch, num_classes=ds.num_classes)
    if args.task == "colorize":
        sources = datasets.list_unlabeled([args.data])
        pipeline = datasets.colorization_dataset(sources, crop=args.crop, batch=args.batch)
    iterator = iter(pipeline)
    seconds, times = timed(lambda: next(iterator), warmup=args.warmup * 5, repeats=args.repeats, steps=args.steps * 5)
    return {"benchmark": "data", "task": args.task, "data": str(args.data), "crop": args.crop, "batch": args.batch,
            "seconds_per_batch": seconds, "images_per_second": args.batch / seconds, **peak_memory_mb(), **machine()}


def _allow_cpu_torchvision(torch):
    """Lets PyPI's torchvision (built for CUDA torch) import beside a CPU-only torch.

    Its C extension cannot load there, and its import then stops at registering fake kernels for two ops
    that extension would have defined. smp needs only torchvision's Python ResNet, so defining those two
    schemas (never run) is enough.
    """
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    if spec is None or hasattr(torch.ops, "torchvision") and hasattr(torch.ops.torchvision, "nms"):
        return
    try:
        torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), "_C.so"))
    except (OSError, RuntimeError):
        global _TORCHVISION_SHIM
        _TORCHVISION_SHIM = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _TORCHVISION_SHIM.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def build_peer(size, batch):
    """segmentation_models_pytorch's DeepLabV3+ ResNet50 training step, set up as ours: a function that runs one
    step on a random batch, the model, and the frameworks' versions."""
    try:
        import torch

        _allow_cpu_torchvision(torch)
        import segmentation_models_pytorch as smp
    except ImportError:
        raise SystemExit("error: peer needs torch and segmentation-models-pytorch: pip install -e '.[bench]'") from None
    torch.manual_seed(0)
    model = smp.DeepLabV3Plus("resnet50", encoder_weights=None, encoder_output_stride=16,
                              decoder_atrous_rates=(6, 12, 18), classes=9)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, 9, (batch, size, size))
    model.train()

    def run_once():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return run_once, model, f"torch {torch.__version__}, smp {smp.__version__}"


def peer_info(model, framework):
    """What the peer's figures are of: framework versions, threads, ATen's instruction set, parameter count."""
    import torch

    return {"framework": framework, "threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "parameters": sum(p.numel() for p in model.parameters())}


def described_peer(size, batch):
    """The peer's step and its `peer_info`: what `PeerProcess` runs by default."""
    run_once, model, framework = build_peer(size, batch)
    return run_once, peer_info(model, framework)


def serve_peer(size, batch, builder="surrogate_supervision.experiments.speed.benchmark:described_peer"):
    """The child side of `PeerProcess`: builds the step (`builder`, "module:function", returns the step and a
    dict that describes it), writes that dict as one JSON line, then runs one step for every line read from
    stdin and answers each with "done". Anything the libraries print goes to stderr, so stdout carries the
    protocol alone."""
    import importlib

    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    module, function = builder.split(":")
    run_once, info = getattr(importlib.import_module(module), function)(size, batch)
    print(json.dumps(info), file=protocol, flush=True)
    for _ in sys.stdin:
        run_once()
        print("done", file=protocol, flush=True)


class PeerProcess:
    """The peer's training step in a process of its own, one step per call: `peer --peer-process own`.

    In one process PyTorch shares the cores with TensorFlow's thread pools, which can slow the peer and so flatter
    the ratio (measured: experiments/results/speed_notes.md); here only one framework's threads exist per process,
    while the rounds still alternate as in the shared-process protocol. Environment caps (ONEDNN_MAX_CPU_ISA,
    ATEN_CPU_CAPABILITY) reach the child as they are.
    """

    def __init__(self, size, batch, builder="surrogate_supervision.experiments.speed.benchmark:described_peer"):
        import subprocess

        # The repository root (experiments/speed/ is two folders down): `python -c` also imports from its cwd, which
        # is where a builder outside the package (tests.helpers) is found.
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (f"from surrogate_supervision.experiments.speed.benchmark import serve_peer; "
                f"serve_peer({int(size)}, {int(batch)}, {builder!r})")
        self.child = subprocess.Popen([sys.executable, "-c", code],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=repo)
        self.info = json.loads(self._reply("the peer's process could not build its step (see above)"))

    def _reply(self, failure):
        line = self.child.stdout.readline()
        if not line:
            raise SystemExit(f"error: {failure}; exit status {self.child.wait()}")
        return line

    def __call__(self):
        self.child.stdin.write("step\n")
        self.child.stdin.flush()
        reply = self._reply("the peer's process stopped during a step (see above)")
        if reply != "done\n":
            raise SystemExit(f"error: the peer's process answered {reply!r} instead of 'done'")

    def close(self):
        self.child.stdin.close()
        self.child.wait()


def cmd_peer(args):
    if args.peer_process == "own":
        run_once = PeerProcess(args.size, args.batch)
        info = run_once.info
    else:
        run_once, info = described_peer(args.size, args.batch)
    from surrogate_supervision.models.runner.runtime import set_precision

    precision = set_precision(args.mixed_precision)
    from surrogate_supervision.experiments.speed.train_step import build_step

    ours_once, ours_model = build_step("segment", args.size, args.batch, 1.0, args.xla)
    # Alternating rounds (peer, ours, ours, peer, ...), so that a load that comes and goes hits both alike.
    for _ in range(args.warmup):
        run_once(), ours_once()
    times = {"peer": [], "ours": []}
    for round_ in range(args.repeats):
        order = (("peer", run_once), ("ours", ours_once))
        for name, once in order if round_ % 2 == 0 else order[::-1]:
            times[name] += timed(once, warmup=0, repeats=1, steps=args.steps)[1]
    getattr(run_once, "close", lambda: None)()  # the peer's own process, when it has one
    peer_s, ours_s = statistics.median(times["peer"]), statistics.median(times["ours"])
    return {"benchmark": "peer", **info, "peer_process": args.peer_process,
            "size": args.size, "batch": args.batch, "seconds_per_step": peer_s,
            "images_per_second": args.batch / peer_s, "repeats_seconds_per_step": times["peer"],
            "ours_precision": precision,
            "ours_seconds_per_step": ours_s, "ours_images_per_second": args.batch / ours_s,
            "ours_repeats_seconds_per_step": times["ours"],
            "ours_parameters": sum(int(np.prod(v.shape)) for v in ours_model.trainable_variables),
            "ratio_ours_to_peer": peer_s / ours_s,
            "ratio_per_round": [p / o for p, o in zip(times["peer"], times["ours"])], **peak_memory_mb(), **machine()}


def cmd_roofline(args):
    """The peer comparison on the scale of the machine's arithmetic ceiling (see `experiments/speed/flops.py`).

    Both steps are credited with the FLOPs counted in our training step's graph: the networks are the same
    (their forward passes, counted separately, agree within 1 %: tests/test_experiments_flops.py checks it; the
    measured figures: experiments/results/speed_notes.md).
    """
    from surrogate_supervision.models import build_deeplabv3plus

    import tensorflow as tf
    import torch

    from surrogate_supervision.experiments.speed import flops

    result = cmd_peer(args)
    step = sum(flops.step_flops("segment", args.size, args.batch).values())
    spec = tf.TensorSpec((args.batch, args.size, args.size, 3))
    forward = {"ours": sum(flops.graph_flops(tf.function(build_deeplabv3plus(9)).get_concrete_function(spec).graph)
                           .values()),
               "peer": flops.torch_forward_flops(build_peer(args.size, args.batch)[1],
                                                 torch.zeros(args.batch, 3, args.size, args.size))}
    # The ceiling is oneDNN's sgemm (TensorFlow's MatMul): both frameworks' convolutions run on oneDNN, and
    # ONEDNN_MAX_CPU_ISA caps it. PyTorch's own matmul (its BLAS) is reported beside it; that cap does not reach it.
    ceiling = flops.tensorflow_matmul_gflops()
    rate = {name: step / result[key] / 1e9 for name, key in (("ours", "ours_seconds_per_step"),
                                                              ("peer", "seconds_per_step"))}
    return {**result, "benchmark": "roofline", "gflop_per_step": step / 1e9,
            "forward_gflop_per_image": {k: v / args.batch / 1e9 for k, v in forward.items()},
            "gflops_per_second": rate, "matmul_gflops_per_second": ceiling,
            "torch_matmul_gflops_per_second": flops.torch_matmul_gflops(),
            "fraction_of_matmul_rate": {k: v / ceiling for k, v in rate.items()},
            # the best ratio ours / peer can reach against this peer: our step at the matrix-multiply rate
            "ratio_ours_to_peer_at_matmul_rate": ceiling / rate["peer"]}


def cmd_predict(args):
    from surrogate_supervision.models import build_deeplabv3plus
    from surrogate_supervision.models.runner.runtime import set_precision

    import tensorflow as tf

    precision = set_precision(args.mixed_precision)  # the flag is every command's: here, too, it must act
    model = build_deeplabv3plus(9, width=args.width)

    def inference(x):
        return model(x, training=False)

    forward = tf.function(inference, jit_compile=args.xla or None)
    x = tf.random.uniform((1, args.size, args.size, 3), -1, 1)
    seconds, times = timed(lambda: forward(x).numpy(), warmup=args.warmup, repeats=args.repeats, steps=args.steps)
    return {"benchmark": "predict", "size": args.size, "width": args.width, "xla": args.xla,
            "precision": precision, "remapping": remapping(),
            "seconds_per_image": seconds, "seconds_per_repeat": times, **peak_memory_mb(), **machine()}


def remapping():
    """Whether Grappler's remapper runs: True, False, or "default" (TensorFlow's own default: on)."""
    import tensorflow as tf

    return tf.config.optimizer.get_experimental_options().get("remapping", "default")


def rss_mb():
    """Current resident memory of this process, from /proc (Linux)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def seconds_since_launch():
    """Seconds since this process started (so time-to-first-step includes imports, as a user sees it)."""
    start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    uptime = float(open("/proc/uptime").read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def make_image_folder(folder, count, size=48):
    """`count` small JPEGs (cached: made once, marked complete by a file written last)."""
    import cv2

    folder = os.path.expanduser(str(folder))
    marker = os.path.join(folder, ".complete")
    if os.path.exists(marker):
        return folder
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    for i in range(count):
        sub = os.path.join(folder, f"{i // 10_000:03d}")
        if i % 10_000 == 0:
            os.makedirs(sub, exist_ok=True)
        image = np.roll(base, (i * 7) % size, axis=i % 2)
        cv2.imwrite(os.path.join(sub, f"{i:07d}.jpg"), image)
    open(marker, "w").close()
    return folder


def cmd_scale(args):
    """Streams a huge unlabeled folder through colorization training: time to first step and flat memory."""
    from surrogate_supervision.models import ColorizationGAN, build_discriminator, build_generator
    from surrogate_supervision.models.optimizers import FusedAdam
    from surrogate_supervision.models.resnet import scaled

    import tensorflow as tf

    from surrogate_supervision import datasets

    folder = make_image_folder(args.folder or f"~/.cache/surrogate-supervision/scale_{args.files}", args.files)
    launch = seconds_since_launch()
    tick = time.perf_counter()
    sources = datasets.list_unlabeled([folder])
    listing = time.perf_counter() - tick
    phases, tick = {}, time.perf_counter()

    def phase(name):  # seconds spent since the previous phase ended
        nonlocal tick
        phases[name], tick = time.perf_counter() - tick, time.perf_counter()

    generator, discriminator = build_generator(width=args.width), build_discriminator(filters=scaled(64, args.width))
    gan = ColorizationGAN(generator, discriminator)
    gan.compile(FusedAdam(2e-4, beta_1=0.5), FusedAdam(2e-4, beta_1=0.5))
    gan.g_optimizer.build(generator.trainable_variables)  # as pretrain/colorize.py does, before tracing
    gan.d_optimizer.build(discriminator.trainable_variables)
    phase("build_models")
    iterator = iter(datasets.colorization_dataset(sources, crop=args.size, batch=args.batch))
    batch = next(iterator)
    phase("first_batch")
    step = tf.function(gan.train_step)
    step.get_concrete_function(batch)
    phase("trace_step")
    step(batch)
    first_step = seconds_since_launch()
    phase("first_step_run")
    memory = {}
    for i in range(2, args.steps + 1):
        step(next(iterator))
        if i == 2:
            phase("second_step_run")
        if i in (10, 100, args.steps):
            memory[i] = rss_mb()
    return {"benchmark": "scale", "files": len(sources), "listing_seconds": listing,
            "seconds_launch_to_listing": launch, "seconds_launch_to_first_step": first_step,
            "phase_seconds": phases, "rss_mb_at_step": memory,
            "rss_growth_mb_10_to_last": memory[args.steps] - memory[10],
            "steps": args.steps, "size": args.size, "batch": args.batch, "width": args.width, **machine()}


# Network parts by layer name, for the profile; gradient ops carry the forward layer's name in their scope.
PARTS = (("optimizer", ("ResourceApplyAdam", "Adam")), ("aspp", ("aspp_",)), ("decoder", ("decoder_",)),
         ("head+loss", ("logits", "upsample_logits", "colorized", "chroma", "sparse_categorical", "loss")),
         ("discriminator", ("discriminator",)),
         ("backbone", ("conv1_", "conv2_", "conv3_", "conv4_", "conv5_", "pool1")))


def op_times(trace_dir):
    """Milliseconds summed over the TensorFlow ops of a trace: by op type, by network part and by op name."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_type, by_part, by_name = {}, {}, {}
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if ":" not in meta.name or not meta.display_name:
                    continue
                ms = event.duration_ps / 1e9
                by_type[meta.display_name] = by_type.get(meta.display_name, 0.0) + ms
                part = next((p for p, keys in PARTS if any(k in meta.name for k in keys)), "other")
                by_part[part] = by_part.get(part, 0.0) + ms
                name = meta.name.rsplit(":", 1)[0]
                by_name[name] = by_name.get(name, 0.0) + ms
    return by_type, by_part, by_name


def cmd_profile(args):
    """Profiles training steps with TensorFlow's profiler: time by op type and by network part, and the rate
    (GFLOP/s) each kind of convolution runs at, from the FLOPs of the very graph that ran."""
    import tempfile

    from surrogate_supervision.models.runner.runtime import set_precision

    import tensorflow as tf

    from surrogate_supervision.experiments.speed.flops import op_kinds
    from surrogate_supervision.experiments.speed.train_step import build_traced_step

    precision = set_precision(args.mixed_precision)
    step, data, _ = build_traced_step(args.task, args.size, args.batch, args.width, args.xla)
    run_once = lambda: [float(value) for value in step(data).values()]  # noqa: E731
    seconds, _ = timed(run_once, warmup=args.warmup, repeats=1, steps=args.steps)
    trace_dir = tempfile.mkdtemp(prefix="profile_")
    tf.profiler.experimental.start(trace_dir)
    for _ in range(args.steps):
        run_once()
    tf.profiler.experimental.stop()
    by_type, by_part, by_name = op_times(trace_dir)
    total = sum(by_type.values())
    share = lambda d, n=None: {k: round(100 * v / total, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]}
    kinds = {}  # (op type, kernel size) → [milliseconds, FLOPs] over the ops the trace timed
    for name, (kind, flop) in op_kinds(step.get_concrete_function(data).graph).items():
        if name in by_name:
            ms_flop = kinds.setdefault(kind, [0.0, 0])
            ms_flop[0] += by_name[name]
            ms_flop[1] += flop * args.steps
    rates = {kind: {"percent_of_op_time": round(100 * ms / total, 1), "gflops_per_second": round(flop / ms / 1e6, 1)}
             for kind, (ms, flop) in sorted(kinds.items(), key=lambda kv: -kv[1][0])}
    return {"benchmark": "profile", "task": args.task, "size": args.size, "batch": args.batch, "width": args.width,
            "precision": precision, "seconds_per_step": seconds, "op_seconds_per_step": total / 1000 / args.steps,
            "percent_by_op_type": share(by_type, 15), "percent_by_part": share(by_part),
            "convolution_rates": rates, "trace_dir": trace_dir, **machine()}


def machine():
    """Where a figure was taken: CPU model, its vector ISA flags and any oneDNN / ATen instruction-set cap."""
    import platform

    from surrogate_supervision.models.runner.provenance import machine_summary
    from surrogate_supervision.models.runner.runtime import onednn_enabled

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs" + (f", {len(gpus)} GPU(s)" if gpus else ""),
            **machine_summary(), "tensorflow_onednn": onednn_enabled(),
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "native"),
            "load_average_1min": os.getloadavg()[0], "tensorflow": tf.__version__}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    # Each command gets its own timing flags: argparse shares a parent parser's actions between its children, so
    # a default changed on one command (set_defaults) would silently change every other's (scale's 500 --steps
    # would become every command's; tests/test_benchmark.py checks each keeps its own).
    def timing(steps):
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--warmup", type=int, default=2)
        parser.add_argument("--repeats", type=int, default=3)
        parser.add_argument("--steps", type=int, default=steps, help="steps per timed repeat")
        return parser

    for name, help_text in (("train-step", "images/s of a full training step"), ("peer", "the same step in smp"),
                            ("predict", "inference latency"), ("data", "input pipeline images/s"),
                            ("profile", "time by op type and network part"),
                            ("roofline", "peer, with both steps' FLOPs and the machine's matmul rate")):
        s = sub.add_parser(name, parents=[timing(steps=3)], help=help_text)
        s.add_argument("--size", type=int, default=256)
        s.add_argument("--batch", type=int, default=4)
        s.add_argument("--width", type=float, default=1.0)
        s.add_argument("--task", choices=("segment", "colorize"), default="segment")
        s.add_argument("--mixed-precision", action="store_true")
        s.add_argument("--xla", action="store_true")
        if name == "train-step":
            s.add_argument("--flops", action="store_true",
                           help="also count the step's FLOPs (from its traced graph) and report TFLOP/s")
            s.add_argument("--peak-tflops", type=float, default=None,
                           help="the device's peak for this precision, to report model-FLOPs utilisation (e.g. "
                                "989 for an H100/H200 SXM, 756 for an H100 PCIe, in dense bfloat16)")
        if name in ("predict", "train-step"):
            s.add_argument("--remapping", choices=("default", "on", "off"), default="default",
                           help="Grappler's remapper (fuses Conv2D + BatchNorm + ReLU for inference); default: "
                                "the toolkit's choice for this CPU")
        if name in ("peer", "roofline"):
            s.add_argument("--peer-process", choices=("same", "own"), default="same",
                           help="the peer's step in this process (the rounds alternate either way) or in a process "
                                "of its own, away from TensorFlow's thread pools")
        if name == "data":
            s.add_argument("--data", required=True)
            s.add_argument("--crop", type=int, default=513)
    s = sub.add_parser("scale", parents=[timing(steps=500)], help="stream a huge unlabeled folder: first step, memory")
    s.add_argument("--files", type=int, default=330_000)
    s.add_argument("--folder", default=None, help="existing folder of images (default: generated once, cached)")
    s.add_argument("--size", type=int, default=65)
    s.add_argument("--batch", type=int, default=4)
    s.add_argument("--width", type=float, default=0.125)
    return p.parse_args(argv)


COMMANDS = {"train-step": cmd_train_step, "data": cmd_data, "peer": cmd_peer, "roofline": cmd_roofline,
            "predict": cmd_predict, "scale": cmd_scale, "profile": cmd_profile}


def main(argv=None):
    args = parse_args(argv)
    if getattr(args, "remapping", "default") != "default":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"remapping": args.remapping == "on"})
    elif args.command in ("train-step", "predict", "peer", "roofline", "profile"):
        from surrogate_supervision.models.runner.runtime import avoid_slow_fused_inference

        avoid_slow_fused_inference()  # as the scripts do
    result = COMMANDS[args.command](args)
    print(json.dumps(result, indent=2))
    rows = [(f"{key}.{sub}", v) for key, value in result.items() if isinstance(value, dict) for sub, v in value.items()]
    rows = [(k, v) for k, v in result.items() if not isinstance(v, (list, dict))] + rows
    for key, value in rows:
        print(f"{key:>40}  {value:.4g}" if isinstance(value, float) else f"{key:>40}  {value}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
