"""The evaluation protocols, their options, and the records a reconstruction evaluation returns.

What ``standard`` and ``reference`` mean is in ``lcvae.evaluation.reconstruction``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

from lcvae.data.datasets import Skipped
from lcvae.metrics import FeatureStats

PROTOCOLS = {
    "standard": {
        "model_input": "[-1, 1]",
        "posterior": "mode",
        "precision": "fp32",
        "lpips_input": "[-1, 1]",
        "rfvd": "dataset-level",
    },
    "reference": {
        "model_input": "[0, 1] (the model was trained on [-1, 1]; the authors' evaluation quirk)",
        "posterior": "sampled, one generator per clip seeded by (seed, clip index)",
        "precision": "bf16 autocast",
        "lpips_input": "[0, 1] frames passed as if [-1, 1] (no input normalisation)",
        "rfvd": "mean of per-batch FVDs over consecutive videos (biased); dataset-level beside it",
    },
}


@dataclass
class EvalOptions:
    protocol: str = "standard"  # "standard" | "reference"
    batch_size: int = 1
    num_workers: int = 0
    device: str = "cpu"
    chunk: int | None = None  # encoder chunk in frames (causal models)
    decode_chunk: int | None = None  # decoder chunk in latent frames
    tile: int | None = None  # spatial tile in pixels
    lpips: str = "alex"  # see setup.load_networks
    lpips_backbone: str | None = None
    i3d: str | None = None
    i3d_random: bool = False
    degrade_qp: int | None = None
    max_clips: int | None = None  # the first N clips of the dataset only
    samples: int = 4  # clips 0 .. samples-1 are written side by side
    sample_dir: str | None = None  # None: write no samples
    sample_fps: float = 8.0
    seed: int = 0  # posterior samples (reference protocol)
    reference_fvd_batch: int = 10
    progress: bool = True
    pad: bool = False  # pad clips to the model's next valid length and size, score the output cropped back

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {self.protocol!r}")
        if self.batch_size < 1 or self.num_workers < 0 or self.samples < 0 or self.reference_fvd_batch < 2:
            raise ValueError(
                "need batch_size >= 1, num_workers >= 0, samples >= 0, reference_fvd_batch >= 2; got "
                f"{self.batch_size}, {self.num_workers}, {self.samples}, {self.reference_fvd_batch}"
            )
        if self.degrade_qp is not None and not 0 <= self.degrade_qp <= 51:
            raise ValueError(f"degrade_qp is a libx264 QP in [0, 51] (30 in the paper), got {self.degrade_qp}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1 (or None for all), got {self.max_clips}")

    @property
    def metric_sets(self) -> tuple[str, ...]:
        return ("vs_degraded", "vs_clean") if self.degrade_qp is not None else ("vs_input",)


@dataclass
class ClipRecord:
    index: int
    path: str
    start: int
    height: int  # of the clip as scored
    width: int
    metrics: dict[str, dict[str, float]]  # metric set -> metric -> value

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": self.path,
            "start": self.start,
            "height": self.height,
            "width": self.width,
            **self.metrics,
        }


@dataclass
class ShardResult:
    """One rank's part: per-clip records, skipped clips, feature statistics (and, for the
    reference protocol's per-batch FVD, the per-clip features as (index, (D,)) pairs)."""

    records: list[ClipRecord] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    stats: dict[str, FeatureStats] = field(default_factory=dict)
    features: dict[str, list[tuple[int, Tensor]]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class EvalResult:
    protocol: str
    metric_sets: dict[str, dict[str, dict[str, Any]]]  # set -> metric -> summary or {"skipped": why}
    records: list[ClipRecord]
    skipped: list[Skipped]
    world_size: int = 1
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def clips_used(self) -> int:
        return len(self.records)

    @property
    def clips_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": {"name": self.protocol, **PROTOCOLS[self.protocol]},
            "clips": {
                "used": self.clips_used,
                "skipped": self.clips_skipped,
                "skipped_reasons": [asdict(s) for s in self.skipped],
            },
            "metrics": self.metric_sets,
            "world_size": self.world_size,
            "seconds": self.seconds,
            "clips_per_second": self.clips_used / self.seconds if self.seconds > 0 else None,
            "notes": self.notes,
        }
