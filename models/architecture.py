"""One value for a network's shape: what rebuilds it, saved as `architecture.json` beside its weights."""

import dataclasses
from pathlib import Path

from surrogate_supervision.models.io import read_json, write_json
from surrogate_supervision.models.rundir import ARCHITECTURE_FILE


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The arguments that fix a network's weights layout; every builder takes one, every loader reads one.

    Args:
        backbone: "resnet50" (the 7×7 stem, ImageNet-compatible) or "resnet50_beta" (three 3×3 convolutions).
        width: channel multiplier (1.0 is the real model).
        output_stride: the backbone's output stride, 16 or 8.
        separable: atrous depthwise-separable 3×3 convolutions in ASPP and decoder (False: regular ones).
        atrous_rates: ASPP rates at output stride 16 (doubled at 8).
        outputs: channels of the head (classes, 1 for a sigmoid head, 3 for an RGB generator); None for
            the shared body alone.
        output: what a generator predicts ("rgb", "chroma", "gray", "classify", "classify_gray"); None for a
            segmenter.

    Example:
        >>> arch = Architecture(width=0.25, separable=False)
        >>> model = build_segmenter(3, architecture=arch)
        >>> model.architecture.outputs
        3
    """

    backbone: str = "resnet50"
    width: float = 1.0
    output_stride: int = 16
    separable: bool = True
    atrous_rates: tuple = (6, 12, 18)
    outputs: int | None = None
    output: str | None = None

    def __post_init__(self):
        normal = dict(width=float(self.width), output_stride=int(self.output_stride), separable=bool(self.separable),
                      atrous_rates=tuple(int(r) for r in self.atrous_rates),
                      outputs=None if self.outputs is None else int(self.outputs))
        for name, value in normal.items():
            object.__setattr__(self, name, value)

    def body(self):
        """The layout a segmenter and a generator share (everything but the head): what surrogate init checks."""
        return dataclasses.replace(self, outputs=None, output=None)

    def to_dict(self):
        return {**dataclasses.asdict(self), "atrous_rates": list(self.atrous_rates)}

    @classmethod
    def from_dict(cls, values):
        """From `to_dict`'s keys; also reads the files of earlier versions (`num_outputs` for `outputs`)."""
        values = dict(values)
        if "num_outputs" in values:
            values.setdefault("outputs", values.pop("num_outputs"))
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown architecture keys {unknown}, supported: {', '.join(sorted(fields))}")
        return cls(**values)

    @classmethod
    def from_config(cls, config, outputs=None):
        """From a run's config.json flags (runs written before architecture.json existed)."""
        return cls(backbone=config.get("backbone", "resnet50"), width=config.get("width", 1.0),
                   output_stride=config.get("output_stride", 16), separable=not config.get("regular_conv", False),
                   outputs=outputs)

    def save(self, folder):
        """Writes `<folder>/architecture.json` (beside the weights files in `folder`)."""
        return write_json(Path(folder) / ARCHITECTURE_FILE, self.to_dict())

    @classmethod
    def load(cls, folder):
        """`<folder>/architecture.json`, or None when there is none (weights written by earlier versions)."""
        values = read_json(Path(folder) / ARCHITECTURE_FILE)
        return None if values is None else cls.from_dict(values)
