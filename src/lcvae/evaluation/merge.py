"""Merging the shards of an evaluation: per-clip records in clip order, feature statistics summed, rFVD.

Under torchrun every rank gathers every shard, so all ranks return the same result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lcvae.data.datasets import ClipDataset
from lcvae.evaluation.protocol import EvalOptions, EvalResult, ShardResult
from lcvae.evaluation.report import summarise
from lcvae.evaluation.setup import MetricNetworks
from lcvae.metrics import FeatureStats, fvd_from_features, reference_fvd_mean_over_batches
from lcvae.perceptual.i3d import MIN_FRAMES
from lcvae.train.distributed import get_world_size, is_distributed


def fvd_skip_reason(networks: MetricNetworks, frames: int) -> str | None:
    if networks.extractor is None:
        return networks.fvd_skipped or "no feature extractor"
    if frames < MIN_FRAMES:
        return f"I3D needs clips of at least {MIN_FRAMES} frames; these have {frames}"
    return None


def _fvd_entry(
    real: str, shards: list[ShardResult], options: EvalOptions, networks: MetricNetworks, skip: str | None
) -> dict[str, Any]:
    if skip is not None:
        return {"skipped": skip}
    stats = {k: FeatureStats(networks.extractor.dim) for k in (real, "recon")}
    for shard in shards:
        for k in stats:
            stats[k].merge(shard.stats[k])
    if stats["recon"].n < 2:
        return {"skipped": f"rFVD needs at least 2 clips, got {stats['recon'].n}"}
    entry = {"extractor": networks.extractor.name, "clips": stats["recon"].n}
    if networks.fvd_note:
        entry["note"] = networks.fvd_note
    dataset_level = fvd_from_features(stats[real], stats["recon"])
    if options.protocol == "standard":
        return {"value": dataset_level, "kind": "dataset-level", **entry}

    def ordered(k: str) -> Tensor:
        pairs = sorted((p for s in shards for p in s.features[k]), key=lambda p: p[0])
        return torch.stack([f for _, f in pairs])

    value = reference_fvd_mean_over_batches(ordered(real), ordered("recon"), options.reference_fvd_batch)
    return {
        "value": value,
        "kind": f"mean of per-batch FVDs over {options.reference_fvd_batch} videos (biased)",
        "dataset_level": dataset_level,
        **entry,
    }


def merge_shards(
    shards: list[ShardResult], dataset: ClipDataset, options: EvalOptions, networks: MetricNetworks
) -> EvalResult:
    """Combine the shards of all ranks (in rank order) into the dataset's result."""
    records = sorted((r for s in shards for r in s.records), key=lambda r: r.index)
    skipped = sorted((k for s in shards for k in s.skipped), key=lambda k: k.index)
    fvd_skip = fvd_skip_reason(networks, dataset.num_frames)
    metric_sets: dict[str, dict[str, dict[str, Any]]] = {}
    for name in options.metric_sets:
        entry = {m: summarise([r.metrics[name][m] for r in records]) for m in ("psnr", "ssim")}
        if networks.lpips is not None:
            entry["lpips"] = {"name": networks.lpips_name, **summarise([r.metrics[name]["lpips"] for r in records])}
        else:
            entry["lpips"] = {"skipped": networks.lpips_skipped or "not requested"}
        entry["rfvd"] = _fvd_entry("clean" if name == "vs_clean" else "input", shards, options, networks, fvd_skip)
        metric_sets[name] = entry
    notes = [networks.fvd_note] if networks.fvd_note and fvd_skip is None else []
    if not records:
        notes.append("every clip was skipped: no metric could be computed")
    return EvalResult(
        options.protocol,
        metric_sets,
        records,
        skipped,
        world_size=len(shards),
        seconds=max(s.seconds for s in shards),
        notes=notes,
    )


def all_gather(shard: ShardResult) -> list[ShardResult]:
    if not is_distributed():
        return [shard]
    shards: list[Any] = [None] * get_world_size()
    dist.all_gather_object(shards, shard)
    return shards
