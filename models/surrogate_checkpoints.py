"""Which generator of a colorization run initialises segmentation (`segment.py --surrogate-checkpoint`).

A run writes `generator.weights.h5` at its last step and, with a downstream probe (`colorize.py --probe-data`),
`generator_best_probe.weights.h5` at the step whose frozen body segmented the probe's validation images best.
"""

from pathlib import Path

from surrogate_supervision.models.rundir import BEST_PROBE_FILE, GENERATOR_FILE
from surrogate_supervision.models.transfer import TransferError

SURROGATE_CHECKPOINTS = {"final": GENERATOR_FILE, "best-probe": BEST_PROBE_FILE}


def choose_surrogate(surrogate, checkpoint="final"):
    """The weights file the colorization run `surrogate` means under `checkpoint` (a file is taken as given)."""
    if checkpoint not in SURROGATE_CHECKPOINTS:
        raise TransferError(f"{checkpoint!r} unknown, supported: {', '.join(SURROGATE_CHECKPOINTS)}",
                            param="surrogate_checkpoint")
    if surrogate is None or not Path(surrogate).is_dir():
        if checkpoint != "final" and surrogate is not None:
            raise TransferError(f"{checkpoint} needs the surrogate to be a run directory, got the file {surrogate}",
                                param="surrogate_checkpoint")
        return surrogate
    path = Path(surrogate) / SURROGATE_CHECKPOINTS[checkpoint]
    if not path.is_file():
        hint = " (pretraining with a downstream probe writes it)" if checkpoint == "best-probe" else ""
        raise TransferError(f"{checkpoint}: {surrogate} has no {path.name}{hint}", param="surrogate_checkpoint")
    return path
