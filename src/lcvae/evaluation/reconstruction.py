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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader

from lcvae.data.datasets import ClipDataset, Skipped, collate, item_generator
from lcvae.data.degrade import degrade_frames
from lcvae.data.video import to_tensor, to_uint8
from lcvae.evaluation.report import summarise, write_sample
from lcvae.evaluation.setup import MetricNetworks, load_networks
from lcvae.inference import crop_video, pad_video
from lcvae.metrics import FeatureStats, fvd_from_features, psnr, reference_fvd_mean_over_batches, ssim
from lcvae.models.lcvae import LCVAE
from lcvae.perceptual import lpips_video
from lcvae.perceptual.i3d import MIN_FRAMES
from lcvae.progress import Progress
from lcvae.train.distributed import get_rank, get_world_size, is_distributed

logger = logging.getLogger(__name__)

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


def _size_mismatch(model: LCVAE, video: Tensor) -> str | None:
    """Why clips (B, 3, T, H, W) cannot go through the model as they are, or None."""
    h, w = video.shape[-2:]
    step = model.frame_rule.pixel_step
    if h % step == 0 and w % step == 0:
        return None
    return (
        f"{w}x{h} frames are not multiples of {step} (the model's spatial rule); evaluate at a size "
        f"(--size N: resize and centre-crop), crop to the multiple (--fit crop) or pad (--pad)"
    )


def _fvd_skip_reason(networks: MetricNetworks, frames: int) -> str | None:
    if networks.extractor is None:
        return networks.fvd_skipped or "no feature extractor"
    if frames < MIN_FRAMES:
        return f"I3D needs clips of at least {MIN_FRAMES} frames; these have {frames}"
    return None


def _degrade(clips: Tensor, qp: int) -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> the same clips after a libx264 constant-QP round trip."""
    return torch.stack([to_tensor(degrade_frames(to_uint8(c), qp=qp)) for c in clips])


def _reconstruct(model: LCVAE, x: Tensor, indices: list[int], options: EvalOptions) -> Tensor:
    """x (B, 3, T, H, W) in [-1, 1] -> reconstruction in [-1, 1] (clamped), float32 on the CPU, of
    the same shape (with ``options.pad`` made on the padded clip and cropped back)."""
    if not options.pad:
        return _reconstruct_valid(model, x, indices, options)
    size = x.shape[2:]
    y = _reconstruct_valid(model, pad_video(x, *model.frame_rule.pad_amounts(*size)), indices, options)
    return crop_video(y, *size)


def _reconstruct_valid(model: LCVAE, x: Tensor, indices: list[int], options: EvalOptions) -> Tensor:
    """:func:`_reconstruct` of clips the model takes as they are."""
    device = torch.device(options.device)
    if options.protocol == "standard":
        y = model.reconstruct(x.to(device), options.chunk, options.decode_chunk, options.tile)
        return y.float().cpu().clamp(-1, 1)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        posterior = model.encode(((x + 1) / 2).to(device), options.chunk, options.tile)
        noise = torch.stack(
            [torch.randn(posterior.mean.shape[1:], generator=item_generator(options.seed, 0, i)) for i in indices]
        ).to(posterior.mean)
        z_hat, _ = model.compress(posterior.mean + posterior.std * noise)
        y = model.backbone.decode(z_hat, options.decode_chunk, tile=None if options.tile is None else options.tile // 8)
    return (2 * y.float().cpu() - 1).clamp(-1, 1)


def _clip_metrics(target: Tensor, recon: Tensor, networks: MetricNetworks, options: EvalOptions) -> dict[str, Tensor]:
    values = {"psnr": psnr(target, recon), "ssim": ssim(target, recon)}
    if networks.lpips is not None:
        a, b = (target, recon) if options.protocol == "standard" else ((target + 1) / 2, (recon + 1) / 2)
        values["lpips"] = lpips_video(networks.lpips, a.to(options.device), b.to(options.device)).double().cpu()
    return values


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
    extractor = networks.extractor if _fvd_skip_reason(networks, dataset.num_frames) is None else None
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
            wrong_size = None if options.pad else _size_mismatch(model, batch["video"])
            if wrong_size is not None:  # frames kept as stored (no crop size): batches hold one clip
                shard.skipped.append(Skipped(int(batch["index"][0]), batch["path"][0], wrong_size))
                logger.warning("skipping %s: %s", batch["path"][0], wrong_size)
                bar.update(1)
                continue
            clean = batch["video"]
            x = clean if options.degrade_qp is None else _degrade(clean, options.degrade_qp)
            idx = batch["index"].tolist()
            recon = _reconstruct(model, x, idx, options)
            targets = {"vs_input": x} if options.degrade_qp is None else {"vs_degraded": x, "vs_clean": clean}
            values = {name: _clip_metrics(t, recon, networks, options) for name, t in targets.items()}
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
    fvd_skip = _fvd_skip_reason(networks, dataset.num_frames)
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


def _all_gather(shard: ShardResult) -> list[ShardResult]:
    if not is_distributed():
        return [shard]
    shards: list[Any] = [None] * get_world_size()
    dist.all_gather_object(shards, shard)
    return shards


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
    result = merge_shards(_all_gather(shard), dataset, options, networks)
    logger.info("evaluated %d clips (%d skipped) in %.1f s", result.clips_used, result.clips_skipped, result.seconds)
    return result
