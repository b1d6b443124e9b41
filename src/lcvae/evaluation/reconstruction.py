"""Reconstruction evaluation: PSNR, SSIM, LPIPS and rFVD of a VAE over a dataset (docs/evaluation.md).

Protocols. ``standard``: inputs in [-1, 1], posterior mode, fp32, dataset-level rFVD.
``reference`` reproduces the authors' evaluation only to compare with the paper's tables:
the model gets [0, 1] inputs although it was trained on [-1, 1]; the posterior is sampled
(one generator per clip, seeded by (seed, clip index), so the draw does not depend on batching
or rank); the model runs under bf16 autocast (CPU too); LPIPS gets the [0, 1] frames as if they
were [-1, 1] (no input normalisation); rFVD is the mean of per-batch FVDs over 10 consecutive
videos (biased), with the dataset-level value reported beside it. In both, the reconstruction
is clamped to the input range (what a video file would hold) and metrics compare it with the
clip in that range; I3D always sees clips in [-1, 1].

Degradation (supplement D.3). With ``degrade_qp`` each clip is re-encoded with libx264 at that
QP after resizing and cropping; the model sees the degraded clip and every metric is computed
twice: against the degraded input (``vs_degraded``) and against the clean clip (``vs_clean``).
Without it the single set is ``vs_input``.

Padding. With ``pad`` a clip of a length or size the model does not take is extended to the next
valid one by edge replication (``lcvae.inference.pad_video``) and the reconstruction is cropped
back, so every metric compares clips of the length and size asked for (e.g. 17-frame clips for a
1 + 32k model, beside a WF-VAE that takes them as they are).

Distribution. Clips are sharded by striding (rank r takes clips r, r + W, ...: no padding, no
duplicates). Each rank keeps per-clip metrics and FeatureStats (n, Σx, Σxxᵀ) for its shard; the
shards are gathered and merged (records sorted by clip index, statistics summed), so W processes
give the result of one, up to float64 summation order in the FVD statistics.
:func:`evaluate_shard` + :func:`merge_shards` is that path without a process group.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lcvae.data.datasets import ClipDataset, Skipped, collate
from lcvae.evaluation.merge import all_gather, fvd_skip_reason, merge_shards
from lcvae.evaluation.protocol import PROTOCOLS, ClipRecord, EvalOptions, EvalResult, ShardResult
from lcvae.evaluation.report import write_sample
from lcvae.evaluation.scoring import clip_metrics, degrade, reconstruct, size_mismatch
from lcvae.evaluation.setup import MetricNetworks, load_networks
from lcvae.metrics import FeatureStats
from lcvae.models.lcvae import LCVAE
from lcvae.progress import Progress
from lcvae.train.distributed import get_rank, get_world_size

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOLS",
    "ClipRecord",
    "EvalOptions",
    "EvalResult",
    "ShardResult",
    "check_model_and_data",
    "evaluate",
    "evaluate_shard",
    "merge_shards",
]


def check_model_and_data(model: LCVAE, dataset: ClipDataset, pad: bool = False) -> None:
    """Refuse before the first clip when the clip length or crop breaks the model's rules (with
    ``pad`` any length and size is taken)."""
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() before evaluating")
    if pad:
        return
    try:
        model.frame_rule.check_frames(dataset.num_frames)
    except ValueError as err:
        raise ValueError(f"{err} (or --pad: pad each clip to the next valid length and crop the output back)") from None
    crop = dataset.transform.crop
    if crop is not None:
        model.frame_rule.check_size(crop, crop)


def _check_options(dataset: ClipDataset, options: EvalOptions) -> None:
    if dataset.transform.crop is None and options.batch_size > 1:
        raise ValueError(
            "clips keep their own frame sizes (no crop size), so they cannot be batched; "
            "use batch size 1 or give a size (--size)"
        )
    device_type = torch.device(options.device).type
    if options.protocol == "reference" and not torch.amp.is_autocast_available(device_type):
        raise ValueError(
            f"the reference protocol runs the model under bf16 autocast, which this torch does not "
            f"offer on {device_type}; use the standard protocol or another device"
        )


def evaluate_shard(
    model: LCVAE,
    dataset: ClipDataset,
    options: EvalOptions,
    networks: MetricNetworks,
    rank: int = 0,
    world_size: int = 1,
) -> ShardResult:
    """Evaluate clips rank, rank + world_size, ... of the dataset (the first ``max_clips``)."""
    check_model_and_data(model, dataset, options.pad)
    _check_options(dataset, options)
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    total = len(dataset) if options.max_clips is None else min(len(dataset), options.max_clips)
    indices = list(range(total))[rank::world_size]
    loader = DataLoader(
        dataset, batch_size=options.batch_size, sampler=indices, num_workers=options.num_workers, collate_fn=collate
    )
    extractor = networks.extractor if fvd_skip_reason(networks, dataset.num_frames) is None else None
    reference = options.protocol == "reference"
    feature_sets = ("input", "recon", *(("clean",) if options.degrade_qp is not None else ()))
    shard = ShardResult()
    if extractor is not None:
        shard.stats = {k: FeatureStats(extractor.dim) for k in feature_sets}
        shard.features = {k: [] for k in feature_sets} if reference else {}
    started, psnr_sum = time.perf_counter(), 0.0
    bar = Progress(
        len(indices),
        f"eval (rank {rank})" if world_size > 1 else "eval",
        "clip",
        enabled=options.progress and rank == 0,
    )
    with torch.no_grad(), bar:
        for batch in loader:
            shard.skipped.extend(batch["skipped"])
            bar.update(len(batch["skipped"]))
            if not batch["path"]:
                continue
            wrong_size = None if options.pad else size_mismatch(model, batch["video"])
            if wrong_size is not None:  # frames kept as stored (no crop size): batches hold one clip
                shard.skipped.append(Skipped(int(batch["index"][0]), batch["path"][0], wrong_size))
                logger.warning("skipping %s: %s", batch["path"][0], wrong_size)
                bar.update(1)
                continue
            clean = batch["video"]
            x = clean if options.degrade_qp is None else degrade(clean, options.degrade_qp)
            idx = batch["index"].tolist()
            recon = reconstruct(model, x, idx, options)
            targets = {"vs_input": x} if options.degrade_qp is None else {"vs_degraded": x, "vs_clean": clean}
            values = {name: clip_metrics(t, recon, networks, options) for name, t in targets.items()}
            for j, i in enumerate(idx):
                per_set = {s: {m: float(v[j]) for m, v in vals.items()} for s, vals in values.items()}
                shard.records.append(ClipRecord(i, batch["path"][j], int(batch["start"][j]), *x.shape[-2:], per_set))
            if extractor is not None:
                clips = {"input": x, "recon": recon, "clean": clean}
                for k in feature_sets:
                    feats = extractor(clips[k].to(options.device)).double().cpu()
                    shard.stats[k].update(feats)
                    if reference:
                        shard.features[k].extend(zip(idx, feats))
            _write_samples(x, clean, recon, batch, options)
            bar.update(len(idx))
            psnr_sum += float(values[options.metric_sets[0]]["psnr"].sum())
            bar.set_postfix(f"PSNR {psnr_sum / len(shard.records):.2f} dB")
    shard.seconds = time.perf_counter() - started
    return shard


def _write_samples(x: Tensor, clean: Tensor, recon: Tensor, batch: dict, options: EvalOptions) -> None:
    if options.sample_dir is None:
        return
    for j, i in enumerate(batch["index"].tolist()):
        if i >= options.samples:
            continue
        if options.degrade_qp is None:
            panels = {"input": x[j], "reconstruction": recon[j]}
        else:
            panels = {"clean": clean[j], f"degraded input (QP {options.degrade_qp})": x[j], "reconstruction": recon[j]}
        write_sample(options.sample_dir, i, panels, options.sample_fps)


def evaluate(
    model: LCVAE, dataset: ClipDataset, options: EvalOptions | None = None, networks: MetricNetworks | None = None
) -> EvalResult:
    """Reconstruct ``dataset`` with ``model`` and score it (every rank returns the same result).

    Under torchrun (a process group is initialised) each rank evaluates its shard and the shards
    are gathered; otherwise one process does all clips. ``networks`` defaults to what
    ``options`` names (``load_networks``); missing weights make that metric "skipped".
    """
    options = options or EvalOptions()
    if networks is None:
        networks = load_networks(options.lpips, options.lpips_backbone, options.i3d, options.i3d_random, options.device)
    shard = evaluate_shard(model, dataset, options, networks, get_rank(), get_world_size())
    result = merge_shards(all_gather(shard), dataset, options, networks)
    logger.info("evaluated %d clips (%d skipped) in %.1f s", result.clips_used, result.clips_skipped, result.seconds)
    return result
