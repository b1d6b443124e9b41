"""Masks, coefficient index bookkeeping and the compression config of the Multi-WT.

The layout (see :mod:`lcvae.compression` for the transform): per group of 8 latent frames there are
32C coefficient channels, channel i = 4C*j + C*sp + c with leaf block j = 4*b2 + 2*b1 + b0 and
spatial subband sp = 2*h_hi + w_hi. A mask is the sorted list of kept channels; it lives in the
config (``CompressionConfig``), never in a file read at run time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lcvae.utils import suggest

logger = logging.getLogger(__name__)

GROUP_FRAMES = 8
BANDS = 32  # coefficient channels per latent channel (8 leaves x 4 spatial subbands)
LEAF_NAMES = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")
MASKS = ("paper", "keep25", "keep75", "reference", "custom")
_MASK_BLOCKS = {"paper": (0, 1, 2, 4), "keep25": (0, 1), "keep75": (0, 1, 2, 3, 4, 5)}
_REFERENCE_COUNTS = {
    8: (32, 30, 30, 2, 30, 2, 2, 0),
    16: (64, 60, 60, 4, 60, 4, 4, 0),
    32: (124, 124, 124, 4, 124, 4, 4, 4),
}

# ---------------------------------------------------------------- index bookkeeping


def leaf_block(b2: int, b1: int, b0: int) -> int:
    """Leaf block of the temporal bands (second split, first split, 3D level); 0 = LLL ... 7 = HHH."""
    return 4 * b2 + 2 * b1 + b0


def coefficient_index(latent_channels: int, block: int, subband: int, channel: int) -> int:
    """Coefficient channel of (leaf block j, spatial subband 2*h_hi + w_hi, latent channel c)."""
    return 4 * latent_channels * block + latent_channels * subband + channel


def split_index(latent_channels: int, index: int) -> tuple[int, int, int]:
    """Inverse of :func:`coefficient_index`: (block, subband, channel)."""
    block, rest = divmod(index, 4 * latent_channels)
    subband, channel = divmod(rest, latent_channels)
    return block, subband, channel


def walsh_signs(bits: int) -> Tensor:
    """Unnormalised (+-1) Kronecker power of [[1, 1], [1, -1]]: entry (r, k) = (-1)^popcount(r & k).

    Row bits are bands and column bits positions in the same order, so for bits = 5 the rows are
    (b2, b1, b0, h_hi, w_hi) = 4*j + sp and the columns (n2, n1, n0, p, q) of an 8x2x2 cell.
    """
    n = 1 << bits
    r = torch.arange(n)
    both = r.view(-1, 1) & r.view(1, -1)
    parity = torch.zeros(n, n, dtype=torch.long)
    for bit in range(bits):
        parity ^= (both >> bit) & 1
    return (1 - 2 * parity).to(torch.float32)


# ---------------------------------------------------------------- masks


def block_mask(latent_channels: int, blocks: tuple[int, ...] | list[int]) -> list[int]:
    """All 4C coefficient channels of the given leaf blocks, sorted."""
    bad = [j for j in blocks if not 0 <= j < 8]
    if bad:
        raise ValueError(f"leaf blocks are 0..7 ({', '.join(LEAF_NAMES)}), got {bad}")
    n = 4 * latent_channels
    return [n * j + k for j in sorted(set(blocks)) for k in range(n)]


def paper_mask(latent_channels: int) -> list[int]:
    """The paper's mask (Eq. 5): blocks LLL, LLH, LHL, HLL, i.e. half of the 32C coefficients."""
    return block_mask(latent_channels, _MASK_BLOCKS["paper"])


def reference_mask(latent_channels: int) -> list[int]:
    """The reference code's handcrafted mask: the first n_j channels of each leaf block j."""
    counts = _REFERENCE_COUNTS.get(latent_channels)
    if counts is None:
        raise ValueError(
            f"the reference mask exists for latent_channels in {sorted(_REFERENCE_COUNTS)}, got "
            f"{latent_channels}; use mask='paper' (same size) for other channel counts"
        )
    n = 4 * latent_channels
    return [n * j + k for j, count in enumerate(counts) for k in range(count)]


def validate_indices(indices: list[int], latent_channels: int) -> list[int]:
    """Check a kept-index list: sorted, unique, in [0, 32C), count a positive multiple of 32 (so it packs)."""
    total = BANDS * latent_channels
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        raise ValueError("kept indices must be integers")
    if list(indices) != sorted(set(indices)):
        raise ValueError("kept indices must be sorted and unique; sort them and drop duplicates")
    if indices and not (0 <= indices[0] and indices[-1] < total):
        raise ValueError(f"kept indices must lie in [0, {total}) for {latent_channels} latent channels")
    if not indices or len(indices) % BANDS:
        lo = (len(indices) // BANDS) * BANDS
        raise ValueError(
            f"the kept count must be a positive multiple of {BANDS} so it packs into whole channels, "
            f"got {len(indices)}; use {lo or BANDS}" + (f" or {lo + BANDS}" if lo else "")
        )
    return list(indices)


def load_mask_json(path: str | Path, latent_channels: int) -> list[int]:
    """Read the reference mask format {"selected_indices": [sorted ints]}, validated.

    Returns the list to put in ``CompressionConfig(mask="custom", kept_indices=...)``.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "selected_indices" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'selected_indices' list")
    extra = sorted(set(data) - {"selected_indices"})
    if extra:
        logger.debug("%s: ignoring keys %s", path, extra)
    indices = data["selected_indices"]
    if not isinstance(indices, list):
        raise ValueError(f"{path}: 'selected_indices' must be a list of integers")
    try:
        return validate_indices(indices, latent_channels)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def packed_channels(kept: int) -> int:
    """C' = K / 32 for K kept coefficient channels; an error when K is not a multiple of 32."""
    if kept % BANDS:
        raise ValueError(
            f"packing needs a kept count that is a multiple of {BANDS}, got {kept} (e.g. an odd latent "
            f"channel count with a 50 % mask); use an even latent_channels or a custom mask"
        )
    return kept // BANDS


# ---------------------------------------------------------------- config


@dataclass
class CompressionConfig:
    """Latent compression settings, JSON/YAML-serialisable: what to keep, not what the latent is.

    mask: a named mask or "custom" (then kept_indices). adaptive: keep the top-K coefficient
    channels by batch energy instead of a fixed set (K from the mask). The latent width C and
    causality belong to the backbone; the compressor takes them from there
    (``LatentCompressor(config, latent_channels, causal)``). Normalisation statistics of the packed
    latent belong to the model (``LCVAEConfig``), not here.
    """

    mask: str = "paper"
    kept_indices: list[int] | None = None
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.mask == "keep50":
            raise ValueError("mask 'keep50' was removed: it kept the same blocks as 'paper'; use mask='paper'")
        if self.mask not in MASKS:
            raise ValueError(f"unknown mask {self.mask!r}{suggest(str(self.mask), MASKS, listing='choose one of')}")
        if (self.mask == "custom") != (self.kept_indices is not None):
            raise ValueError("kept_indices is required with mask='custom' and only allowed with it")

    def resolved_indices(self, latent_channels: int) -> list[int]:
        """The sorted kept coefficient channels this config means for a C-channel latent (validated)."""
        if not isinstance(latent_channels, int) or latent_channels < 1:
            raise ValueError(f"latent_channels must be a positive integer, got {latent_channels!r}")
        if self.mask == "custom":
            return validate_indices(list(self.kept_indices), latent_channels)
        if self.mask == "reference":
            return reference_mask(latent_channels)
        # Named block masks of an odd C keep 16C (or 8C) channels: fine for training, unpackable.
        return block_mask(latent_channels, _MASK_BLOCKS[self.mask])

    def packed_channels(self, latent_channels: int) -> int:
        """C', the channel count diffusion sees (K / 32); an error when K does not pack."""
        return packed_channels(len(self.resolved_indices(latent_channels)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CompressionConfig:
        """Read a saved config. The removed 'keep50' (identical to 'paper') is read as 'paper'."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ValueError(f"unknown compression config key {key!r}{suggest(key, names)}")
        if data.get("mask") == "keep50":
            logger.info("compression mask 'keep50' is read as 'paper' (they keep the same coefficients)")
            data = {**data, "mask": "paper"}
        return cls(**data)
