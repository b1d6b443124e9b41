"""FVD between two folders of videos (``lcvae fvd``), e.g. real clips and generated samples.

Each video gives one clip: its first ``frames`` frames (FVD16: 16), every frame resized to
224×224 (bilinear, aspect ratio not kept), as the StyleGAN-V detector's ``resize=True`` does,
values in [-1, 1]. Features are I3D logits; the FVD is the dataset-level Fréchet distance of
the two feature Gaussians (``lcvae.metrics``). Videos that cannot give the clip (unreadable,
too short) are skipped and counted, never replaced.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lcvae.data.datasets import Skipped, VideoFolder, collate
from lcvae.evaluation.setup import RANDOM_I3D_NOTE, random_i3d
from lcvae.metrics import FeatureStats, fvd_from_features
from lcvae.perceptual import VideoFeatureExtractor, load_i3d, preprocess_clips
from lcvae.perceptual.i3d import INPUT_SIZE, MIN_FRAMES
from lcvae.progress import progress as progress_iter

logger = logging.getLogger(__name__)


def folder_features(
    folder: str | Path,
    extractor: VideoFeatureExtractor,
    frames: int = 16,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[FeatureStats, int, list[Skipped]]:
    """Feature statistics of every video under ``folder`` (recursive): (stats, used, skipped)."""
    dataset = VideoFolder(folder, num_frames=frames, start_frame=0)
    # Videos differ in size, so clips are loaded one at a time and batched after the resize.
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=collate)
    stats, skipped, pending = FeatureStats(extractor.dim), [], []

    def flush() -> None:
        if pending:
            stats.update(extractor(torch.cat(pending).to(device)).double().cpu())
            pending.clear()

    with torch.no_grad():
        for batch in progress_iter(loader, f"features {Path(folder).name}", unit="video", enabled=progress):
            skipped.extend(batch["skipped"])
            if batch["path"]:
                pending.append(preprocess_clips(batch["video"], INPUT_SIZE))
            if len(pending) >= batch_size:
                flush()
        flush()
    return stats, stats.n, skipped


def _side(folder: str | Path, used: int, skipped: list[Skipped]) -> dict[str, Any]:
    return {"dir": str(folder), "used": used, "skipped": len(skipped), "skipped_reasons": [asdict(s) for s in skipped]}


def folder_fvd(
    real_dir: str | Path,
    fake_dir: str | Path,
    *,
    frames: int = 16,
    i3d: str | None = None,
    i3d_random: bool = False,
    extractor: VideoFeatureExtractor | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Dataset-level FVD between the videos of two folders, as a JSON-ready dict.

    Features come from ``extractor`` when given, else from the I3D weight file ``i3d`` (None:
    torch's hub cache; WeightsUnavailable when absent), or from a random-weight I3D with
    ``i3d_random`` (labelled in the result: pipeline testing only).
    """
    if frames < MIN_FRAMES:
        raise ValueError(f"I3D needs at least {MIN_FRAMES} frames per clip, got {frames}; FVD16 uses 16")
    note = None
    if extractor is None:
        if i3d is not None and i3d_random:
            raise ValueError("give an I3D weight file or ask for random weights, not both")
        extractor = random_i3d() if i3d_random else load_i3d(i3d)
        note = RANDOM_I3D_NOTE if i3d_random else None
    extractor = extractor.to(device)
    sides = {}
    for name, folder in (("real", real_dir), ("fake", fake_dir)):
        stats, used, skipped = folder_features(folder, extractor, frames, batch_size, num_workers, device, progress)
        if used < 2:
            raise ValueError(
                f"FVD needs at least 2 usable videos per folder; the {name} folder {folder} "
                f"gave {used} ({len(skipped)} skipped: see the log)"
            )
        sides[name] = (stats, _side(folder, used, skipped))
    result: dict[str, Any] = {
        "fvd": fvd_from_features(sides["real"][0], sides["fake"][0]),
        "kind": "dataset-level",
        "frames": frames,
        "resize": f"{INPUT_SIZE}x{INPUT_SIZE} bilinear",
        "extractor": extractor.name,
        "real": sides["real"][1],
        "fake": sides["fake"][1],
    }
    if note:
        result["note"] = note
    logger.info(
        "FVD%d = %.3f (%d real, %d fake videos)", frames, result["fvd"], result["real"]["used"], result["fake"]["used"]
    )
    return result
