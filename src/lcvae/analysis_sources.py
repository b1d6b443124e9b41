"""Where the analysed latents come from: a model's encoder over videos or a dataset, or saved latent files.

Each gives backbone latents (B, C, T', H', W') before any compression, the input of ``lcvae.analysis``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import Tensor


def model_latents(model, videos: Iterable[Tensor], device: str = "cpu", chunk: int | None = None) -> Iterator[Tensor]:
    """Posterior means of videos (B, 3, T, H, W) in [-1, 1] under ``model`` (an LCVAE, in whatever dtype
    it was cast to): the backbone latent z (B, C, T', H', W') before any compression, in float32 on the CPU."""
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for x in videos:
            yield model.encode(x.to(device=device, dtype=dtype), chunk).mode().float().cpu()


def dataset_videos(
    dataset,
    batch_size: int = 1,
    max_clips: int | None = None,
    progress: bool = True,
    counter=None,
    paths: list[str] | None = None,
) -> Iterator[Tensor]:
    """Video batches (B, 3, T, H, W) in [-1, 1] from a ``lcvae.data`` dataset in order, with a progress
    bar; skipped clips are counted in ``counter`` (a ``SkipCounter``), the used clips' paths appended
    to ``paths``; stops after ``max_clips``."""
    from lcvae.data import SkipCounter, make_loader
    from lcvae.progress import Progress

    counter = counter if counter is not None else SkipCounter()
    total = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    seen = 0
    with Progress(total, "clips", unit="clip", enabled=progress) as bar:
        for batch in make_loader(dataset, batch_size, shuffle=False):
            good = counter.update(batch)
            bar.update(good + len(batch["skipped"]))
            if good == 0:
                continue
            video = batch["video"]
            if max_clips is not None:
                video = video[: max_clips - seen]
            seen += video.shape[0]
            if paths is not None:
                paths.extend(batch["path"][: video.shape[0]])
            yield video
            if max_clips is not None and seen >= max_clips:
                return


def read_latent_files(paths: Iterable[str | Path]) -> tuple[list[Tensor], bool]:
    """Backbone latents saved by ``lcvae encode --raw`` (safetensors ``latent`` (1, C, T', h, w) with the
    model config in the metadata) -> (latents, causal). Diffusion latents are refused: they are packed
    and normalised, not the backbone latent this analysis is about."""
    from safetensors import safe_open

    from lcvae.models.lcvae import LCVAEConfig

    latents, causal = [], set()
    for path in paths:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            latent = f.get_tensor("latent")
        if meta.get("kind") != "raw":
            raise ValueError(
                f"{path} holds a {meta.get('kind', 'unlabelled')} latent; the analysis needs the backbone "
                "latent: encode with `lcvae encode --raw`"
            )
        if "config" not in meta:
            raise ValueError(
                f"{path} has no model config in its metadata, so its frame rule (causal or not) is unknown"
            )
        causal.add(LCVAEConfig.from_dict(json.loads(meta["config"])).backbone.causal)
        latents.append(latent)
    if not latents:
        raise ValueError("no latent files given")
    if len(causal) > 1:
        raise ValueError("the latent files mix causal and non-causal models; analyse them separately")
    return latents, causal.pop()
