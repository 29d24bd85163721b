"""Which generator of a colorization run initialises segmentation (`segment.py --surrogate-checkpoint`).

A run writes `generator.weights.h5` at its last step and, with a downstream probe (`colorize.py --probe-data`),
`generator_best_probe.weights.h5` at the step whose frozen body segmented the probe's validation images best.
"""

from pathlib import Path

from surrogate_supervision.models.transfer import GENERATOR_FILE, TransferError

BEST_PROBE_FILE = "generator_best_probe.weights.h5"
SURROGATE_CHECKPOINTS = {"final": GENERATOR_FILE, "best-probe": BEST_PROBE_FILE}


def choose_surrogate(surrogate, checkpoint="final"):
    """The weights file `--surrogate RUN` means under `--surrogate-checkpoint` (a file is taken as given)."""
    if checkpoint not in SURROGATE_CHECKPOINTS:
        raise TransferError(f"Wrong --surrogate-checkpoint {checkpoint!r}, "
                            f"supported: {', '.join(SURROGATE_CHECKPOINTS)}")
    if surrogate is None or not Path(surrogate).is_dir():
        if checkpoint != "final" and surrogate is not None:
            raise TransferError(f"--surrogate-checkpoint {checkpoint} needs --surrogate to be a run directory, "
                                f"got the file {surrogate}")
        return surrogate
    path = Path(surrogate) / SURROGATE_CHECKPOINTS[checkpoint]
    if not path.is_file():
        hint = " (pretrain with --probe-data to write it)" if checkpoint == "best-probe" else ""
        raise TransferError(f"--surrogate-checkpoint {checkpoint}: {surrogate} has no {path.name}{hint}")
    return path
