"""Adaptive top-k against the fixed mask (supplement D.1, Fig. 12): ``lcvae ablate adaptive``.

:func:`selection_summary` reads the coefficient channels an adaptive run selected at each logged
step and reports how often each was chosen and how much the selection overlaps the fixed mask of
the same size (the paper mask for a 50 % selection) over training.

Selection log: ``adaptive_selection.jsonl`` in the run folder, as ``lcvae.train.train_vae`` writes it
(one JSON object per logged step)::

    {"step": 1200, "overlap_paper": 0.97, "selection": [0, 1, 2, ...]}

``selection`` holds the sorted coefficient channels (0 .. 32C - 1, i = 4C*leaf + C*spatial subband
+ channel, see :mod:`lcvae.compression`) kept at that step; ``overlap_paper`` (optional) is the
trainer's own overlap with the paper mask, checked against the one computed here. C comes from
the run folder's ``config.json`` (its ``model`` section) unless given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lcvae.masks import BANDS, LEAF_NAMES, CompressionConfig
from lcvae.utils import write_json

__all__ = [
    "SELECTION_LOG",
    "find_selection_log",
    "read_selection_log",
    "run_latent_channels",
    "selection_summary",
    "adaptive_report",
]

SELECTION_LOG = "adaptive_selection.jsonl"
_SAME_SIZE_MASK = {8: "keep25", 16: "paper", 24: "keep75"}  # kept channels per latent channel -> fixed mask


def find_selection_log(path: str | Path) -> Path:
    """The selection log: the file itself, or ``adaptive_selection.jsonl`` inside a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = path / SELECTION_LOG
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(
        f"{path}: no {SELECTION_LOG}; train with an adaptive mask "
        "(compression.adaptive: true) or pass the log file itself"
    )


def read_selection_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows {"step", "selection" (sorted), "overlap_paper" (or None)} of a selection log, sorted by step."""
    path = find_selection_log(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON object ({err})") from None
        if not isinstance(row, dict) or "step" not in row or "selection" not in row:
            raise ValueError(
                f'{path}:{n}: expected {{"step": int, "selection": [int, ...]}}, got keys '
                f"{sorted(row) if isinstance(row, dict) else type(row).__name__}"
            )
        rows.append(
            {
                "step": int(row["step"]),
                "selection": sorted(int(i) for i in row["selection"]),
                "overlap_paper": row.get("overlap_paper"),
            }
        )
    if not rows:
        raise ValueError(f"{path}: no selections logged")
    return sorted(rows, key=lambda r: r["step"])


def run_latent_channels(run_dir: str | Path) -> int | None:
    """C of the VAE latent of a ``lcvae train-vae`` run, from its ``config.json``; None without one."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    from lcvae.train.vae_config import ModelSection, resolve_model_config
    from lcvae.utils import strict_from_dict

    section = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    return resolve_model_config(strict_from_dict(ModelSection, section)).backbone.latent_channels


def selection_summary(
    records: Sequence[dict[str, Any]], latent_channels: int, from_step: int | None = None, against: str | None = None
) -> dict[str, Any]:
    """Selection frequencies and overlap with the fixed mask of the same size.

    ``records``: rows of :func:`read_selection_log` (``overlap_paper``, when present, must agree with
    the overlap computed here against the paper mask, else C or the index layout is wrong).
    overlap(step) = |selected ∩ fixed| / K (K kept channels, the same count in both). The late window
    is the steps >= ``from_step`` (default: the last quarter of the logged step range); in it,
    ``late_frequency[i]`` is the fraction of logged steps that selected channel i and ``consensus``
    the K most frequently selected channels, whose overlap with the fixed mask is
    ``consensus_overlap`` (the paper's "98 % channel overlap" after 20k steps).
    """
    c = latent_channels
    total = BANDS * c
    sizes = {len(r["selection"]) for r in records}
    if len(sizes) != 1:
        raise ValueError(f"every logged selection must keep the same number of channels, got sizes {sorted(sizes)}")
    k = sizes.pop()
    bad = [i for r in records for i in r["selection"] if not 0 <= i < total]
    if bad:
        raise ValueError(
            f"selected index {bad[0]} is outside 0..{total - 1} for {c} latent channels; check latent_channels"
        )
    if against is None:
        against = _SAME_SIZE_MASK.get(k // c) if k % c == 0 else None
        if against is None:
            raise ValueError(f"no fixed mask keeps {k} of {total} channels; name one to compare with (against=...)")
    fixed = CompressionConfig(mask=against).resolved_indices(c)
    if len(fixed) != k:
        raise ValueError(
            f"mask {against!r} keeps {len(fixed)} channels, the selections {k}; compare masks of equal size"
        )
    fixed_set = set(fixed)
    steps = [r["step"] for r in records]
    chosen = torch.zeros(len(records), total, dtype=torch.float64)
    for row, r in enumerate(records):
        chosen[row, r["selection"]] = 1.0
    overlap = [len(fixed_set.intersection(r["selection"])) / k for r in records]
    paper = set(CompressionConfig(mask="paper").resolved_indices(c))
    for r in records:
        logged = r.get("overlap_paper")
        if logged is not None and len(paper) == k and abs(logged - len(paper.intersection(r["selection"])) / k) > 1e-6:
            raise ValueError(
                f"step {r['step']}: the log's overlap_paper {logged} differs from the overlap computed for "
                f"{c} latent channels; check latent_channels"
            )
    if from_step is None:
        from_step = steps[0] + math.ceil(0.75 * (steps[-1] - steps[0]))
    late = torch.tensor([s >= from_step for s in steps])
    if not bool(late.any()):
        raise ValueError(f"no logged step at or after from_step={from_step} (last step {steps[-1]})")
    late_freq = chosen[late].mean(0)
    consensus = sorted(torch.argsort(-late_freq, stable=True)[:k].tolist())
    leaf_share = chosen[late].view(-1, 8, 4 * c).sum(-1).mean(0) / k
    return {
        "latent_channels": c,
        "kept": k,
        "against": against,
        "steps": steps,
        "overlap": overlap,
        "frequency": chosen.mean(0).tolist(),
        "late_from_step": from_step,
        "last_step": steps[-1],
        "late_steps": int(late.sum()),
        "late_frequency": late_freq.tolist(),
        "late_mean_overlap": float(torch.tensor(overlap)[late].mean()),
        "final_overlap": overlap[-1],
        "consensus": consensus,
        "consensus_overlap": len(fixed_set.intersection(consensus)) / k,
        "late_leaf_share": dict(zip(LEAF_NAMES, leaf_share.tolist())),
    }


def adaptive_report(
    log: str | Path,
    out_dir: str | Path,
    latent_channels: int | None = None,
    from_step: int | None = None,
    against: str | None = None,
    figure: bool = True,
) -> dict[str, Any]:
    """Read a run's selection log, write ``selection.json`` (and ``selection.png``) to ``out_dir``."""
    path = find_selection_log(log)
    records = read_selection_log(path)
    c = latent_channels or run_latent_channels(path.parent)
    if c is None:
        raise ValueError(
            f"no config.json beside {path} to read the latent channel count from; pass latent_channels "
            "(--latent-channels, C of the VAE latent)"
        )
    summary = {"log": str(path), **selection_summary(records, c, from_step, against)}
    out = Path(out_dir)
    if figure:
        from lcvae.plots import selection_figure

        raster = torch.zeros(len(records), BANDS * c)
        for row, r in enumerate(records):
            raster[row, r["selection"]] = 1.0
        summary["figure"] = selection_figure(summary, out / "selection.png", raster).name
    write_json(out / "selection.json", summary)
    return summary
