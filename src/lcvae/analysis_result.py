"""The result of the latent analysis: subband names, ``LatentAnalysis`` and its JSON form.

Subband s of a one-level 3D Haar is ``SUBBAND_NAMES[s]``, s = 4*t_hi + 2*h_hi + w_hi (``lcvae.analysis``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lcvae.masks import LEAF_NAMES

SUBBAND_NAMES = tuple("LH"[(s >> 2) & 1] + "LH"[(s >> 1) & 1] + "LH"[s & 1] for s in range(8))
SPATIAL_NAMES = ("LL", "LH", "HL", "HH")  # sp = 2*h_hi + w_hi inside a leaf block


def subband_index(t_hi: int, h_hi: int, w_hi: int) -> int:
    """Subband of a one-level 3D Haar from its (t, h, w) bands: 4*t_hi + 2*h_hi + w_hi."""
    return 4 * t_hi + 2 * h_hi + w_hi


@dataclass
class LatentAnalysis:
    """Results of :func:`analyze_latents`; tensors are float64 on the CPU.

    subband_energy / subband_autocorrelation: (8, C), rows SUBBAND_NAMES.
    leaf_energy / leaf_autocorrelation: (8, 4, C) = (leaf, spatial subband, channel), or None.
    head_energy: (C,) for causal latents, else None. subband_images: (8, C, H'/2, W'/2), the first
    coefficient frame of the first clip (for Figs. 13-14).
    """

    channels: int
    clips: int
    causal: bool
    frames: list[int]
    subband_energy: Tensor
    subband_autocorrelation: Tensor
    subband_pairs: int
    channel_mean: Tensor
    channel_energy: Tensor
    head_energy: Tensor | None
    leaf_energy: Tensor | None
    leaf_autocorrelation: Tensor | None
    leaf_pairs: int
    kept_share: dict[str, float | None]
    subband_images: Tensor | None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def subband_share(self) -> Tensor:
        """(8,) share of the total latent energy in each subband."""
        per = self.subband_energy.sum(1)
        return per / per.sum()

    @property
    def leaf_share(self) -> Tensor | None:
        """(8,) share of the total energy in each Multi-WT leaf."""
        if self.leaf_energy is None:
            return None
        per = self.leaf_energy.sum((1, 2))
        return per / per.sum()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (NaN becomes None)."""
        share = self.subband_share
        out: dict[str, Any] = {
            "latent": {
                "channels": self.channels,
                "clips": self.clips,
                "causal": self.causal,
                "frames_per_clip": sorted(set(self.frames)),
                "channel_mean": _list(self.channel_mean),
                "channel_energy": _list(self.channel_energy),
                "head_energy": None if self.head_energy is None else _list(self.head_energy),
            },
            "subbands": {
                "names": list(SUBBAND_NAMES),
                "letters": "temporal, height, width band (L low, H high); index s = 4*t_hi + 2*h_hi + w_hi",
                "energy": _list(self.subband_energy),
                "energy_share": _list(share),
                "temporal_low_share": float(share[:4].sum()),
                "autocorrelation": _list(self.subband_autocorrelation),
                "autocorrelation_channel_mean": _list(_nanmean(self.subband_autocorrelation, 1)),
                "pairs_per_cell": self.subband_pairs,
            },
            "leaves": None,
            "notes": self.notes,
        }
        if self.leaf_energy is not None:
            out["leaves"] = {
                "names": list(LEAF_NAMES),
                "letters": "temporal bands of the second split, first split and 3D level (b2 b1 b0)",
                "spatial_names": list(SPATIAL_NAMES),
                "energy": _list(self.leaf_energy),
                "energy_share": _list(self.leaf_share),
                "kept_share": self.kept_share,
                "autocorrelation": _list(self.leaf_autocorrelation),
                "pairs_per_cell": self.leaf_pairs,
            }
        return out


def _list(x: Tensor) -> Any:
    """Nested lists of floats with NaN as None."""
    if x.dim() == 0:
        v = float(x)
        return None if math.isnan(v) else v
    return [_list(v) for v in x]


def _nanmean(x: Tensor, dim: int) -> Tensor:
    ok = ~torch.isnan(x)
    total = torch.where(ok, x, torch.zeros_like(x)).sum(dim)
    count = ok.sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))
