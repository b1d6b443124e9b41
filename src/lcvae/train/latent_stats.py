"""Diffusion-latent statistics: ``lcvae latent-stats``.

Diffusion wants its latent normalised per channel. ``measure_latent_stats`` streams clips through
the encoder (posterior mean unless asked to sample), packs the kept coefficients into the diffusion
latent (B, C', F, h, w) *before* any normalisation, and accumulates per channel the count, sum and
sum of squares in float64; mean = sum / n and std = sqrt(sum_sq / n - mean^2) (population).
``write_latent_stats`` stores them in the folder's config.json as ``latent_mean`` / ``latent_std``;
``LCVAE.diffusion_latent`` then returns (packed - mean) / std, about zero mean and unit variance per
channel on that data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lcvae.data import collate
from lcvae.data.sources import resolve_kind
from lcvae.inference import parse_dtype
from lcvae.models.io import CONFIG_NAME, from_pretrained, load_config
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.progress import Progress
from lcvae.train.vae_config import DataSection
from lcvae.train.vae_data import build_eval_dataset
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["ChannelStats", "measure_latent_stats", "write_latent_stats", "latent_stats", "stats_data_section"]


class ChannelStats:
    """Streaming per-channel mean and population std of tensors (B, C, ...), in float64."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64)
        self.sum_sq = torch.zeros(channels, dtype=torch.float64)

    def update(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.sum.numel():
            raise ValueError(f"expected (B, {self.sum.numel()}, ...), got {tuple(x.shape)}")
        v = x.detach().double().cpu().transpose(0, 1).reshape(x.shape[1], -1)  # (C, everything else)
        self.count += v.shape[1]
        self.sum += v.sum(1)
        self.sum_sq += v.pow(2).sum(1)

    @property
    def mean(self) -> Tensor:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> Tensor:
        return (self.sum_sq / max(self.count, 1) - self.mean.pow(2)).clamp_min(0.0).sqrt()


@torch.no_grad()
def measure_latent_stats(
    model: LCVAE, videos: Iterable[Tensor], device: str | torch.device = "cpu", sample: bool = False, seed: int = 0
) -> ChannelStats:
    """Per-channel statistics of the packed diffusion latent (before normalisation) over ``videos``,
    each (B, 3, T, H, W) in [-1, 1], cast to the model's dtype. ``sample``: posterior samples
    instead of the mean. Sums are float64 whatever the model's dtype."""
    raw = model.config.latent_mean is None
    if not raw:
        raise ValueError("measure on a model without latent_mean/latent_std (see latent_stats, which strips them)")
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed) if sample else None
    stats = ChannelStats(model.config.diffusion_channels)
    model = model.to(device).eval()
    dtype = next(model.parameters()).dtype
    for video in videos:
        latent = model.diffusion_latent(video.to(device, dtype), sample=sample, generator=generator)
        stats.update(latent.float())
    if stats.count == 0:
        raise ValueError("no clips were measured; check the data path")
    return stats


def write_latent_stats(folder: str | Path, mean: list[float], std: list[float]) -> LCVAEConfig:
    """Store the statistics in ``folder/config.json`` (atomically); returns the new config."""
    folder = Path(folder)
    raw = json.loads((folder / CONFIG_NAME).read_text())
    if raw.get("format") != "lcvae":
        raise ValueError(
            f"{folder} is not one of our folders (format 'lcvae'); export or save it with save_pretrained first"
        )
    bad = [i for i, s in enumerate(std) if not s > 0]
    if bad:
        raise ValueError(f"latent channels {bad} have zero spread over the data; measure over more (or real) clips")
    config = replace(
        LCVAEConfig.from_dict(raw["config"]), latent_mean=[float(m) for m in mean], latent_std=[float(s) for s in std]
    )
    if len(mean) != config.diffusion_channels or len(std) != config.diffusion_channels:
        raise ValueError(
            f"this model's diffusion latent has {config.diffusion_channels} channels; got {len(mean)} means and {len(std)} stds"
        )
    raw["config"] = config.to_dict()
    write_json(folder / CONFIG_NAME, raw)
    return config


def latent_stats(
    folder: str | Path,
    data: DataSection,
    *,
    max_clips: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    sample: bool = False,
    dtype: str = "fp32",
    progress: bool = True,
) -> dict:
    """Measure the diffusion latent's per-channel statistics of the model in ``folder`` over the
    deterministic clips of ``data`` (``data.root``; first frames, centre crop) and write them into
    its config. ``dtype``: the model's precision while measuring ("fp32", "bf16" or "fp16"; the
    weights are cast, no autocast). ``progress``: clips done, rate and time left (:mod:`lcvae.progress`). Returns
    {"clips", "values", "mean", "std"}; a ValueError listing the skipped videos when none could be read."""
    config = load_config(folder)
    model = from_pretrained(folder, config=replace(config, latent_mean=None, latent_std=None))
    model = model.to(parse_dtype(dtype))
    dataset = build_eval_dataset(data, data.root)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=data.num_workers, collate_fn=collate)
    clips, skipped = 0, []
    total = len(dataset) if max_clips is None else min(len(dataset), max_clips)
    bar = Progress(total, "latent-stats", "clip", enabled=progress)

    def videos() -> Iterable[Tensor]:
        nonlocal clips
        for batch in loader:
            skipped.extend(batch["skipped"])
            bar.update(len(batch["skipped"]))
            video = batch["video"]
            if max_clips is not None:
                video = video[: max_clips - clips]
            if len(video):
                clips += len(video)
                yield video
                bar.update(len(video))
            if max_clips is not None and clips >= max_clips:
                return

    with bar:
        try:
            stats = measure_latent_stats(model, videos(), device, sample)
        except ValueError:
            if clips or not skipped:
                raise
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:10])
            raise ValueError(f"no clips were measured: every video was skipped ({len(skipped)}): {reasons}") from None
    mean, std = stats.mean.tolist(), stats.std.tolist()
    write_latent_stats(folder, mean, std)
    logger.info(
        "wrote latent statistics of %d clips (%d values per channel) to %s",
        clips,
        stats.count,
        Path(folder) / CONFIG_NAME,
    )
    return {"clips": clips, "values": stats.count, "mean": mean, "std": std}


def stats_data_section(
    folder: str | Path,
    data: str | None,
    kind: str | None = None,
    frames: int | None = None,
    size: int = 256,
    workers: int = 2,
) -> DataSection:
    """The DataSection ``lcvae latent-stats`` reads: kind inferred from ``data`` as
    :func:`lcvae.data.sources.resolve_kind` does (a file is a manifest, a folder a video folder),
    frames default to the model's smallest training clip."""
    if kind is None:
        if data is None:
            raise ValueError(
                "give the videos to measure (a folder or manifest), or --kind samples for the built-in clips"
            )
        kind = resolve_kind(data)
        if kind == "file":
            raise ValueError(
                f"{data} is a single video; latent statistics need many clips: give a folder of videos or a manifest"
            )
    if kind != "samples" and data is None:
        raise ValueError(f"--kind {kind} needs the data path")
    config = load_config(folder)
    if frames is None:
        frames = config.frame_rule.frames(1)
    return DataSection(kind=kind, root=data, num_frames=frames, short_side=size, crop=size, num_workers=workers)
