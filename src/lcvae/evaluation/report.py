"""Evaluation outputs: metrics.json, per_clip.jsonl, a markdown table, sample videos and frame grids.

Every file is written atomically (``lcvae.utils.atomic_write``: a temporary file in the same
folder, then ``os.replace``), so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import torch
from torch import Tensor

from lcvae.data.video import to_uint8, write_video
from lcvae.utils import atomic_write, write_text

if TYPE_CHECKING:
    from lcvae.evaluation.reconstruction import EvalResult

GRID_COLUMNS = 8
ERROR_GAIN = 4  # the error row shows |reconstruction − target| × 4


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """uint8 (H, W, 3) RGB -> PNG through PyAV's png encoder (no extra dependency)."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png expects uint8 (H, W, 3), got {image.dtype} {image.shape}")

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format="image2") as container:
            stream = container.add_stream("png")
            stream.height, stream.width = image.shape[:2]
            stream.pix_fmt = "rgb24"
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)

    return atomic_write(path, write)


def frame_grid(panels: dict[str, Tensor], columns: int = GRID_COLUMNS) -> np.ndarray:
    """Rows: each panel, then the error of the last panel against the first; columns: up to
    ``columns`` evenly spaced frames. Panels (3, T, H, W) in [-1, 1] -> uint8 (rows·H, cols·W, 3)."""
    clips = list(panels.values())
    t = clips[0].shape[1]
    picks = np.unique(np.linspace(0, t - 1, min(columns, t)).round().astype(int))
    error = ((clips[-1] - clips[0]).abs() * ERROR_GAIN - 1).clamp(-1, 1)
    rows = [to_uint8(c[:, picks]).numpy() for c in [*clips, error]]  # each (cols, H, W, 3)
    return np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)


def write_sample(folder: str | Path, index: int, panels: dict[str, Tensor], fps: float) -> list[Path]:
    """``clip{index}.mp4`` (panels side by side) and ``clip{index}.png`` (frame grid).

    panels: name -> (3, T, H, W) in [-1, 1], in display order (target first, reconstruction last).
    """
    folder = Path(folder)
    stem = folder / f"clip{index:05d}"
    side_by_side = torch.cat(list(panels.values()), dim=-1)
    mp4 = write_video(stem.with_suffix(".mp4"), to_uint8(side_by_side), fps)
    png = write_png(stem.with_suffix(".png"), frame_grid(panels))
    names = list(panels)
    write_text(
        stem.with_suffix(".txt"),
        f"mp4 panels, left to right: {', '.join(names)}\n"
        f"png rows, top to bottom: {', '.join(names)}, |{names[-1]} - {names[0]}| x{ERROR_GAIN}\n",
    )
    return [mp4, png]


def summarise(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (n − 1; None for one value), min, max and count."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


_LABELS = {
    "psnr": ("PSNR (dB)", "↑", 2),
    "ssim": ("SSIM", "↑", 4),
    "lpips": ("LPIPS", "↓", 4),
    "rfvd": ("rFVD", "↓", 2),
}
_SET_TITLES = {"vs_input": "vs input", "vs_degraded": "vs degraded input", "vs_clean": "vs clean clip"}


def _fmt(v: float, digits: int) -> str:
    """Fixed digits, or three significant ones for values too small to show that way."""
    return f"{v:.{digits}f}" if v == 0 or abs(v) >= 10**-digits else f"{v:.3g}"


def _cell(entry: dict[str, Any], digits: int, notes: list[str]) -> str:
    if "skipped" in entry:
        if entry["skipped"] not in notes:
            notes.append(entry["skipped"])
        return f"skipped [{notes.index(entry['skipped']) + 1}]"
    if "value" in entry:
        extra = f" (dataset-level {_fmt(entry['dataset_level'], digits)})" if "dataset_level" in entry else ""
        return _fmt(entry["value"], digits) + extra
    if entry["mean"] is None:
        return "–"
    spread = "" if entry["std"] is None else f" ± {_fmt(entry['std'], digits)}"
    return _fmt(entry["mean"], digits) + spread


def format_table(result: EvalResult) -> str:
    """A markdown report: header facts, one row per metric, one column per reference clip set."""
    sets = list(result.metric_sets)
    notes: list[str] = []
    lines = [f"protocol: {result.protocol}", f"clips: {result.clips_used} used, {result.clips_skipped} skipped", ""]
    lines.append("| metric | " + " | ".join(_SET_TITLES.get(s, s) for s in sets) + " |")
    lines.append("|---" * (len(sets) + 1) + "|")
    first = result.metric_sets[sets[0]]
    for key, (label, arrow, digits) in _LABELS.items():
        if key not in first:
            continue
        name = first[key].get("name") or label
        if key == "rfvd" and "extractor" in first[key]:
            name = f"rFVD [{first[key]['extractor']}, {first[key]['kind']}]"
        cells = [_cell(result.metric_sets[s][key], digits, notes) for s in sets]
        lines.append(f"| {name} {arrow} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± sample std over clips; rFVD is one number over all clips.")
    for i, note in enumerate(notes, 1):
        lines.append(f"[{i}] {note}")
    lines.extend(f"note: {n}" for n in result.notes)
    if result.skipped:
        lines.append("skipped clips:")
        lines.extend(f"- {s.path}: {s.reason}" for s in result.skipped)
    return "\n".join(lines) + "\n"


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null rather than as invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def write_report(result: EvalResult, folder: str | Path, context: dict[str, Any] | None = None) -> dict[str, Path]:
    """metrics.json (summary + ``context``, e.g. model and data), per_clip.jsonl, metrics.md."""
    folder = Path(folder)
    summary = {**(context or {}), **result.to_dict(), "per_clip": "per_clip.jsonl"}
    per_clip = "".join(json.dumps(_finite(r.to_dict())) + "\n" for r in result.records)
    return {
        "metrics": write_text(folder / "metrics.json", json.dumps(_finite(summary), indent=2) + "\n"),
        "per_clip": write_text(folder / "per_clip.jsonl", per_clip),
        "table": write_text(folder / "metrics.md", format_table(result)),
    }
