"""Challenging-content subsets (supplement D.2, Table 7): texture-heavy and fast-motion clips.

Each clip (the dataset's clip: its frame count, start frame and resolution) gets three scores,
computed on the luma Y = 0.299 R + 0.587 G + 0.114 B with values in [0, 1]:

* texture: spatial high-frequency energy per pixel. One orthonormal 2D Haar level per frame; the
  score is the mean over frames and pixels of the detail energy (LH^2 + HL^2 + HH^2) / 4 per 2x2
  block, which equals the mean variance of the luma inside 2x2 pixel blocks. Flat frames score 0;
  fine detail (foliage, fabric, noise) scores high.
* motion: mean inter-frame displacement in pixels. Consecutive frames are cut into non-overlapping
  ``block`` x ``block`` tiles; the shift of each tile is the peak of its phase correlation
  (Hann-windowed, peak refined to sub-pixel by a parabola through the neighbours along each axis),
  which measures displacements up to ``block / 2`` pixels per frame. A tile pair counts only when
  its motion is measurable and coherent:

  - texture: the luma standard deviation is at least ``min_std`` in both frames, and the texture
    has structure in two directions: the gradient structure tensor's eigenvalues satisfy
    sqrt(l_min / l_max) >= ``min_isotropy`` in both frames. A lone straight edge (a flat object's
    side) only shows motion across itself (the aperture problem) and is left out.
  - a clear peak: the correlation peak stands at least ``min_peak`` standard deviations above the
    mean of the rest of the surface (the peak's 3x3 neighbourhood excluded), its peak-to-
    sidelobe ratio. A true translation gives a sharp peak (about ``0.8 * block`` for a 4 px pan at
    ``block`` 32); unrelated content (i.i.d. noise, the frame pair across a scene cut) gives a
    surface whose maximum is only the largest of ``block^2`` random values (3 to 6.5 at 32).

  The score is the mean displacement magnitude over the counted tiles and all frame pairs (0 when
  none counts). Unlike a frame difference it does not grow with texture, and brightness flicker
  (a gain and offset per frame) leaves the phase correlation unchanged, so it scores about 0.
  ``block`` should be at least 16: smaller surfaces make noise peaks as tall as true ones.
* frame_difference: mean absolute luma difference between consecutive frames (reported, not used
  for selection: it mixes motion with texture and brightness changes).

Scores depend on the resolution, so compare clips at one resolution (the dataset's ``short_side``
and ``crop``). A subset is the top ``k`` clips by a score, or the clips at or above the
``quantile`` of that score (e.g. 0.8: the top fifth). Subsets are written as JSON-lines manifests
(``lcvae.data.VideoManifest``: ``path``, ``caption``, ``label``, plus the scores, which the reader
ignores), with ``subsets.json`` recording the criteria, thresholds and clip options to evaluate
them with.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lcvae.utils import write_json, write_text
from lcvae.wavelets import haar2d

logger = logging.getLogger(__name__)

SUBSETS = {"texture_heavy": "texture", "fast_motion": "motion"}
_LUMA = (0.299, 0.587, 0.114)


def luma(video: Tensor) -> Tensor:
    """(3, T, H, W) in [-1, 1] -> luma (T, H, W) in [0, 1]."""
    if video.dim() != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a clip (3, T, H, W), got shape {tuple(video.shape)}")
    rgb = (video.double() + 1) / 2
    weights = torch.tensor(_LUMA, dtype=torch.float64).view(3, 1, 1, 1)
    return (rgb * weights).sum(0)


def texture_score(video: Tensor) -> float:
    """Mean detail energy per pixel of a one-level 2D Haar of the luma (module docstring)."""
    y = luma(video)
    t, h, w = y.shape
    y = y[:, : h - h % 2, : w - w % 2]  # an odd last row or column has no 2x2 block
    if y.shape[1] < 2 or y.shape[2] < 2:
        raise ValueError(f"frames must be at least 2x2 to score texture, got {h}x{w}")
    bands = haar2d(y.view(1, 1, t, *y.shape[1:]))  # (1, 4, T, H/2, W/2): LL, high-H, high-W, HH
    return float(bands[:, 1:].pow(2).sum(1).mean() / 4)


def _hann(n: int) -> Tensor:
    k = torch.arange(n, dtype=torch.float64)
    w = 0.5 - 0.5 * torch.cos(2 * math.pi * (k + 0.5) / n)
    return w.view(-1, 1) * w.view(1, -1)


def _tiles(y: Tensor, block: int) -> Tensor:
    """(T, H, W) -> (T, nh, nw, block, block), cropping the ragged right/bottom edge."""
    t, h, w = y.shape
    nh, nw = h // block, w // block
    if nh == 0 or nw == 0:
        raise ValueError(f"frames of {h}x{w} are smaller than one {block}x{block} motion block; use a smaller block")
    y = y[:, : nh * block, : nw * block].reshape(t, nh, block, nw, block)
    return y.permute(0, 1, 3, 2, 4)


def _peak_offset(left: Tensor, centre: Tensor, right: Tensor) -> Tensor:
    denom = left - 2 * centre + right
    safe = torch.where(denom.abs() > 1e-12, denom, torch.ones_like(denom))
    return torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / safe, torch.zeros_like(denom)).clamp(-0.5, 0.5)


MIN_PEAK = 8.0
MIN_ISOTROPY = 0.2


def _isotropy(tiles: Tensor) -> Tensor:
    """sqrt(l_min / l_max) of each tile's gradient structure tensor (forward differences); (..., B, B) -> (...).

    1 for texture alike in every direction, 0 for a straight edge or a flat tile.
    """
    gy = tiles[..., 1:, :-1] - tiles[..., :-1, :-1]
    gx = tiles[..., :-1, 1:] - tiles[..., :-1, :-1]
    a, b, c = (gx * gx).mean((-2, -1)), (gx * gy).mean((-2, -1)), (gy * gy).mean((-2, -1))
    half_trace, spread = (a + c) / 2, torch.sqrt(((a - c) / 2) ** 2 + b * b)
    lmax = half_trace + spread
    return ((half_trace - spread).clamp_min(0) / lmax.clamp_min(1e-30)).sqrt() * (lmax > 1e-30)


def block_displacements(
    video: Tensor,
    block: int = 32,
    min_std: float = 0.02,
    min_peak: float = MIN_PEAK,
    min_isotropy: float = MIN_ISOTROPY,
) -> tuple[Tensor, Tensor]:
    """Per-tile displacement between consecutive frames by phase correlation.

    video: (3, T, H, W) in [-1, 1], T >= 2. Returns (shifts (T-1, nh, nw, 2) as (dy, dx) in pixels,
    positive = content moved down/right; valid (T-1, nh, nw) bool: tile pairs whose motion is
    measurable and coherent, by the texture and peak rules of the module docstring).
    """
    y = luma(video)
    if y.shape[0] < 2:
        raise ValueError(f"motion needs at least 2 frames, got {y.shape[0]}")
    tiles = _tiles(y, block)
    std = tiles.std(dim=(-2, -1))
    iso = _isotropy(tiles)
    valid = (std[:-1] >= min_std) & (std[1:] >= min_std) & (iso[:-1] >= min_isotropy) & (iso[1:] >= min_isotropy)
    spec = torch.fft.fft2((tiles - tiles.mean(dim=(-2, -1), keepdim=True)) * _hann(block))
    cross = spec[:-1].conj() * spec[1:]
    surface = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-12)).real  # (T-1, nh, nw, B, B)
    values = surface.flatten(-2)
    peak = values.argmax(-1)
    py, px = peak // block, peak % block

    def take(dy: int, dx: int) -> Tensor:  # the surface at the peak's (cyclic) neighbour
        index = ((py + dy) % block) * block + (px + dx) % block
        return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    centre = take(0, 0)
    # Peak-to-sidelobe ratio: the surface without the peak's 3x3 neighbourhood (cyclic) is the background.
    grid = torch.arange(block * block)
    near_y = ((grid // block - py.unsqueeze(-1) + 1) % block) <= 2
    near_x = ((grid % block - px.unsqueeze(-1) + 1) % block) <= 2
    background = values.masked_fill(near_y & near_x, float("nan"))
    mean = background.nanmean(-1)
    spread = (
        ((background - mean.unsqueeze(-1)) ** 2).nansum(-1).div(block * block - 9).sqrt()
    )  # population std, as numpy
    valid &= (centre - mean) >= min_peak * spread
    sub_y = _peak_offset(take(-1, 0), centre, take(1, 0))
    sub_x = _peak_offset(take(0, -1), centre, take(0, 1))
    signed = lambda p: torch.where(p > block // 2, p - block, p).double()  # noqa: E731
    shifts = torch.stack((signed(py) + sub_y, signed(px) + sub_x), -1)
    return shifts, valid


def _isotropy_reference(a: np.ndarray) -> float:
    gy, gx = np.diff(a, axis=0)[:, :-1], np.diff(a, axis=1)[:-1, :]
    tensor = np.array([[np.mean(gx * gx), np.mean(gx * gy)], [np.mean(gx * gy), np.mean(gy * gy)]])
    low, high = np.linalg.eigvalsh(tensor)
    return float(np.sqrt(max(low, 0.0) / high)) if high > 1e-30 else 0.0


def block_displacements_reference(
    video: Tensor,
    block: int = 32,
    min_std: float = 0.02,
    min_peak: float = MIN_PEAK,
    min_isotropy: float = MIN_ISOTROPY,
) -> tuple[Tensor, Tensor]:
    """Plain twin of :func:`block_displacements`: one tile pair at a time with numpy."""
    y = luma(video).numpy()
    t, h, w = y.shape
    nh, nw = h // block, w // block
    window = _hann(block).numpy()
    shifts = np.zeros((t - 1, nh, nw, 2))
    valid = np.zeros((t - 1, nh, nw), dtype=bool)
    for f in range(t - 1):
        for i in range(nh):
            for j in range(nw):
                a = y[f, i * block : (i + 1) * block, j * block : (j + 1) * block]
                b = y[f + 1, i * block : (i + 1) * block, j * block : (j + 1) * block]
                textured = all(x.std(ddof=1) >= min_std and _isotropy_reference(x) >= min_isotropy for x in (a, b))
                cross = np.conj(np.fft.fft2((a - a.mean()) * window)) * np.fft.fft2((b - b.mean()) * window)
                r = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
                p = np.unravel_index(np.argmax(r), r.shape)
                rest = np.roll(r, (1 - p[0], 1 - p[1]), axis=(0, 1)).copy()  # the peak moves to (1, 1)
                rest[:3, :3] = np.nan
                valid[f, i, j] = textured and r[p] - np.nanmean(rest) >= min_peak * np.nanstd(rest)
                for axis in range(2):
                    step = [0, 0]
                    step[axis] = 1
                    lo = r[(p[0] - step[0]) % block, (p[1] - step[1]) % block]
                    hi = r[(p[0] + step[0]) % block, (p[1] + step[1]) % block]
                    denom = lo - 2 * r[p] + hi
                    sub = float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5)) if abs(denom) > 1e-12 else 0.0
                    whole = p[axis] - block if p[axis] > block // 2 else p[axis]
                    shifts[f, i, j, axis] = whole + sub
    return torch.from_numpy(shifts), torch.from_numpy(valid)


def motion_score(
    video: Tensor,
    block: int = 32,
    min_std: float = 0.02,
    min_peak: float = MIN_PEAK,
    min_isotropy: float = MIN_ISOTROPY,
) -> float:
    """Mean displacement magnitude (pixels per frame) over the counted tiles and frame pairs (module
    docstring); 0 if none counts."""
    shifts, valid = block_displacements(video, block, min_std, min_peak, min_isotropy)
    if not bool(valid.any()):
        return 0.0
    return float(shifts.norm(dim=-1)[valid].mean())


def frame_difference(video: Tensor) -> float:
    """Mean absolute luma difference between consecutive frames (values in [0, 1])."""
    y = luma(video)
    if y.shape[0] < 2:
        raise ValueError(f"frame difference needs at least 2 frames, got {y.shape[0]}")
    return float((y[1:] - y[:-1]).abs().mean())


def clip_scores(video: Tensor, block: int = 32, min_std: float = 0.02) -> dict[str, float]:
    """All three scores of one clip (3, T, H, W) in [-1, 1]."""
    return {
        "texture": texture_score(video),
        "motion": motion_score(video, block, min_std),
        "frame_difference": frame_difference(video),
    }


def score_dataset(
    dataset, block: int = 32, min_std: float = 0.02, max_clips: int | None = None, progress: bool = True
) -> tuple[list[dict[str, Any]], int]:
    """Score every clip of a ``lcvae.data`` dataset in order. Returns (rows, skipped count); a row is
    {path (absolute), caption, label, index, start, texture, motion, frame_difference}."""
    from lcvae.data import SkipCounter, make_loader
    from lcvae.progress import Progress

    counter, rows = SkipCounter(), []
    total = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    with Progress(total, "scoring", unit="clip", enabled=progress) as bar:
        for batch in make_loader(dataset, 1, shuffle=False):
            counter.update(batch)
            bar.update(1)
            if batch["path"]:
                rows.append(
                    {
                        "path": str(Path(batch["path"][0]).resolve()),
                        "caption": batch["caption"][0],
                        "label": int(batch["label"][0]),
                        "index": int(batch["index"][0]),
                        "start": int(batch["start"][0]),
                        **clip_scores(batch["video"][0], block, min_std),
                    }
                )
            if max_clips is not None and len(rows) >= max_clips:
                break
    if counter.count:
        logger.warning("subsets: %s", counter.summary())
    return rows, counter.count


def select(
    rows: list[dict[str, Any]], key: str, top_k: int | None = None, quantile: float | None = None
) -> tuple[list[dict[str, Any]], float]:
    """The rows with the highest ``key``: the top ``top_k``, or those >= the ``quantile`` of the scores
    (linear interpolation). Returns (rows in descending score order, threshold score)."""
    if (top_k is None) == (quantile is None):
        raise ValueError("give exactly one of top_k (a count) or quantile (in [0, 1))")
    if not rows:
        raise ValueError("no clips to select from: the dataset gave no scorable clips")
    ranked = sorted(rows, key=lambda r: (-r[key], r["path"]))  # ties: by path, reproducibly
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        chosen = ranked[:top_k]
        return chosen, float(chosen[-1][key])
    if not 0 <= quantile < 1:
        raise ValueError(f"quantile must be in [0, 1), got {quantile}; e.g. 0.8 keeps the top fifth")
    threshold = float(np.quantile([r[key] for r in rows], quantile))
    return [r for r in ranked if r[key] >= threshold], threshold


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    return write_text(path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))


def write_subsets(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    top_k: int | None = None,
    quantile: float | None = None,
    clip_options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``scores.jsonl`` (every clip), one manifest per subset and ``subsets.json``; returns the latter."""
    out = Path(out_dir)
    manifest_keys = ("path", "caption", "label", "start", "texture", "motion", "frame_difference")
    _write_jsonl(out / "scores.jsonl", rows)
    summary: dict[str, Any] = {
        "clips_scored": len(rows),
        "clip_options": clip_options or {},
        **(extra or {}),
        "criteria": {
            "texture": "mean detail energy (LH^2 + HL^2 + HH^2)/4 of a one-level orthonormal 2D Haar of the luma in [0, 1], per pixel",
            "motion": "mean phase-correlation displacement magnitude (pixels per frame) over textured tiles and consecutive frame pairs",
            "selection": f"top {top_k} by score" if top_k is not None else f"score >= the {quantile} quantile",
        },
        "subsets": {},
    }
    for name, key in SUBSETS.items():
        chosen, threshold = select(rows, key, top_k, quantile)
        path = _write_jsonl(out / f"{name}.jsonl", ({k: r[k] for k in manifest_keys} for r in chosen))
        summary["subsets"][name] = {
            "manifest": path.name,
            "score": key,
            "threshold": threshold,
            "count": len(chosen),
            "median_all": float(np.median([r[key] for r in rows])),
            "median_subset": float(np.median([r[key] for r in chosen])),
        }
    write_json(out / "subsets.json", summary)
    return summary
