"""Spatial tiling for frames too large to encode or decode at once.

The frame is cut into overlapping tiles, each tile runs through the network alone, and the outputs
are blended with weights that ramp linearly across each overlap (the weights of all tiles sum to one
everywhere). Tiling is an approximation: convolutions near a tile edge see zero padding instead of
the neighbouring pixels, and the mid-level attention sees one tile instead of the whole frame. The
error against untiled inference is measured by ``benchmarks/bench_tiling.py``; use overlaps of at
least a quarter of the tile.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def tile_starts(size: int, tile: int, overlap: int, align: int) -> list[int]:
    """Start offsets covering [0, size) with tiles of ``tile`` overlapping by at least ``overlap``."""
    if tile >= size:
        return [0]
    if tile % align or overlap % align or overlap >= tile:
        raise ValueError(f"tile ({tile}) and overlap ({overlap}) must be multiples of {align} with overlap < tile")
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return [s - s % align for s in starts]


def _ramp(length: int, left: int, right: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """1D weight: rises over ``left`` samples, falls over ``right`` samples, 1 in between."""
    w = torch.ones(length, device=device, dtype=dtype)
    if left:
        w[:left] = torch.arange(1, left + 1, device=device, dtype=dtype) / (left + 1)
    if right:
        w[length - right :] = torch.arange(right, 0, -1, device=device, dtype=dtype) / (right + 1)
    return w


def tiled_apply(
    fn: Callable[[Tensor], Tensor], x: Tensor, tile: int, overlap: int, scale: float, align: int = 1
) -> Tensor:
    """Apply a spatially equivariant ``fn`` (output size = input size * ``scale``) tile by tile.

    ``x`` is (B, C, T, H, W); tiles are ``tile`` x ``tile`` input pixels overlapping by ``overlap``;
    ``align`` keeps tile starts on the network's stride grid.
    """
    h, w = x.shape[-2:]
    ys, xs = tile_starts(h, tile, overlap, align), tile_starts(w, tile, overlap, align)
    out = weight = None
    for i, y0 in enumerate(ys):
        for j, x0 in enumerate(xs):
            piece = fn(x[..., y0 : y0 + tile, x0 : x0 + tile])
            if out is None:
                # accumulate in fp32 at least: bf16 sums of overlapping tiles would round twice
                acc = torch.promote_types(piece.dtype, torch.float32)
                out = piece.new_zeros(*piece.shape[:-2], round(h * scale), round(w * scale), dtype=acc)
                weight = piece.new_zeros(round(h * scale), round(w * scale), dtype=acc)
            ph, pw = piece.shape[-2:]
            oy, ox = round(y0 * scale), round(x0 * scale)
            # overlap with the previous / next tile, in output pixels
            top = round((ys[i - 1] + tile - y0) * scale) if i > 0 else 0
            bottom = round((y0 + tile - ys[i + 1]) * scale) if i + 1 < len(ys) else 0
            left = round((xs[j - 1] + tile - x0) * scale) if j > 0 else 0
            right = round((x0 + tile - xs[j + 1]) * scale) if j + 1 < len(xs) else 0
            wy = _ramp(ph, top, bottom, piece.device, out.dtype)
            wx = _ramp(pw, left, right, piece.device, out.dtype)
            mask = wy[:, None] * wx[None, :]
            out[..., oy : oy + ph, ox : ox + pw] += piece * mask
            weight[oy : oy + ph, ox : ox + pw] += mask
    return (out / weight).to(piece.dtype)
