"""One evaluation run from names and paths: what ``lcvae eval`` calls, alone or under torchrun."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from lcvae.evaluation.reconstruction import EvalOptions, EvalResult, check_model_and_data, evaluate
from lcvae.evaluation.report import write_report
from lcvae.evaluation.setup import load_networks, open_dataset, with_compression
from lcvae.inference import load_model
from lcvae.models.lcvae import LCVAEConfig
from lcvae.train.distributed import cleanup_distributed, init_distributed, is_distributed

logger = logging.getLogger(__name__)


def default_frames(config: LCVAEConfig, at_least: int = 16) -> int:
    """The shortest clip of at least ``at_least`` frames the model accepts (e.g. 32 or 33 with
    compression, 16 or 17 without)."""
    return config.frame_rule.at_least(at_least)


EVAL_FRAMES = 33
"""Clip length of ``lcvae eval`` unless given: the same for every model, so two models are scored on
the same clips. 33 = 1 + 32 is valid for every causal model (1 + 4k WF-VAE, 1 + 32k LC-VAE);
non-causal models (4k / 32k frames) need an explicit count, e.g. 32."""


def eval_frames(config: LCVAEConfig, frames: int | None, pad: bool = False) -> int:
    """``frames``, or :data:`EVAL_FRAMES` when None; checked against the model's frame rule (any
    count with ``pad``) with an error that says what to pass."""
    rule = config.frame_rule
    if frames is not None:
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if not pad and not rule.is_valid(frames):
            low, high = rule.nearest_valid(frames)
            raise ValueError(
                f"this model needs {rule.describe()}, got {frames} frames per clip; pass --frames "
                f"{low or high}, or --pad to pad each clip to {high} and score the output cropped back"
            )
        return frames
    if not pad and not rule.is_valid(EVAL_FRAMES):
        low, high = rule.nearest_valid(EVAL_FRAMES)
        raise ValueError(
            f"eval scores {EVAL_FRAMES}-frame clips by default (the same clips for every model), and "
            f"this model needs {rule.describe()}; pass --frames {low or high} (and the same count "
            f"for the models you compare it with), or --pad"
        )
    return EVAL_FRAMES


def describe_clips(
    frames: int, size: int | None, fit: str, frame_stride: int = 1, start_frame: int = 0, pad: bool = False
) -> str:
    """The clips an evaluation scores, in words (printed by ``lcvae eval`` and kept in metrics.json)."""
    if size is not None:
        space = f"short side resized to {size}, centre-cropped to {size}x{size}"
    elif fit == "crop":
        space = "stored size, centre-cropped to the model's spatial multiple"
    else:
        space = "stored size (no resize or crop)"
    padding = (
        (
            "; padded for the model to its next valid length and size (edge replication), scored on the "
            "output cropped back"
        )
        if pad
        else ""
    )
    return f"{frames} frames from frame {start_frame}, stride {frame_stride}; {space}{padding}"


def evaluate_checkpoint(
    model: str,
    data: str,
    out_dir: str | Path,
    options: EvalOptions,
    *,
    data_format: str = "auto",
    frames: int | None = None,
    size: int | None = None,
    fit: str = "error",
    frame_stride: int = 1,
    start_frame: int = 0,
    split_file: str | None = None,
    compress: str | None = None,
    random_weights: bool = False,
) -> tuple[EvalResult, dict[str, Path]]:
    """Load ``model`` (checkpoint folder, or a preset with ``random_weights``), optionally put a
    compression mask around its backbone, evaluate ``data`` and write the report to ``out_dir``.

    Clips: ``frames`` (default :data:`EVAL_FRAMES`); ``size``: short side resized and centre-cropped
    to ``size``x``size``; without it frames keep their stored size, ``fit="crop"`` centre-crops them
    to the model's spatial multiple, and a clip of another size is skipped with the reason.

    Under torchrun every rank evaluates its shard; rank 0 writes the files (the returned paths
    are empty on other ranks). Sample clips go to ``out_dir/samples``.
    """
    if fit not in ("error", "crop"):
        raise ValueError(f"fit must be 'error' or 'crop' (resize with a size instead), got {fit!r}")
    if size is not None and fit != "error":
        raise ValueError(
            "give a size (resize and crop to it) or fit crop (stored size cropped to the model's multiple), not both"
        )
    owns_group = not is_distributed()
    dist_info = init_distributed()
    try:
        if dist_info.world_size > 1 and options.device.startswith("cuda"):
            options = dataclasses.replace(options, device=str(dist_info.device))
        with torch.random.fork_rng(devices=[]):  # random weights must agree across ranks
            torch.manual_seed(0)
            vae = load_model(model, options.device, random_weights)
        if compress is not None:
            vae = with_compression(vae, compress)
        frames = eval_frames(vae.config, frames, options.pad)
        dataset = open_dataset(
            data,
            data_format,
            frames=frames,
            size=size,
            frame_stride=frame_stride,
            start_frame=start_frame,
            split_file=split_file,
            multiple=vae.frame_rule.pixel_step if fit == "crop" else None,
        )
        check_model_and_data(vae, dataset, options.pad)  # before loading the metric networks
        if options.samples and options.sample_dir is None:
            options = dataclasses.replace(options, sample_dir=str(Path(out_dir) / "samples"))
        networks = load_networks(options.lpips, options.lpips_backbone, options.i3d, options.i3d_random, options.device)
        result = evaluate(vae, dataset, options, networks)
        if not dist_info.is_main:
            return result, {}
        context: dict[str, Any] = {
            "model": {
                "source": model,
                "random_weights": random_weights,
                "compress_override": compress,
                "config": vae.config.to_dict(),
            },
            "data": {
                "path": str(data),
                "format": data_format,
                "clips_in_dataset": len(dataset),
                "frames": frames,
                "size": size,
                "fit": fit,
                "frame_stride": frame_stride,
                "start_frame": start_frame,
                "degrade_qp": options.degrade_qp,
                "clips": describe_clips(frames, size, fit, frame_stride, start_frame, options.pad),
                "frame_sizes": sorted({f"{r.height}x{r.width}" for r in result.records}),
            },
            "options": dataclasses.asdict(options),
        }
        return result, write_report(result, out_dir, context)
    finally:
        if owns_group:
            cleanup_distributed()
