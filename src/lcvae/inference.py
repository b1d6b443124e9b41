"""File-level inference: video files in, reconstructions, latent files and videos out.

Latent files are safetensors with one tensor ``latent`` (1, C, F, h, w) and metadata: ``kind``
("diffusion": the normalised packed latent diffusion sees; "raw": the backbone posterior mean),
the model config that made it, and the source video's fps and size, so ``decode`` can check that
the model it is given is the one that encoded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from lcvae.data.transforms import crop_to_multiple, resize_to_multiple
from lcvae.data.video import probe, read_video, to_tensor, to_uint8, write_video
from lcvae.models.backbone import backbone_type, build_backbone
from lcvae.models.io import from_pretrained, load_config
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS

logger = logging.getLogger(__name__)


@dataclass
class RunOptions:
    device: str = "cpu"
    dtype: str = "fp32"  # fp32 | bf16 (autocast)
    chunk: int | None = None  # encoder chunk in frames (causal models)
    decode_chunk: int | None = None  # decoder chunk in latent frames
    tile: int | None = None  # spatial tile in pixels
    lossless: bool = False  # write videos with lossless H.264 (libx264rgb, QP 0) instead of CRF 18


def load_model(source: str, device: str = "cpu", random_weights: bool = False) -> LCVAE:
    """A checkpoint folder / .ckpt, or a preset name with ``random_weights=True`` (demos, benchmarks)."""
    if source in PRESETS:
        if not random_weights:
            raise ValueError(f"{source!r} is a preset, not trained weights; pass a checkpoint folder, or --random-weights to try the architecture")
        model = LCVAE(PRESETS[source])
    else:
        model = from_pretrained(source)
    return model.to(device).eval()


def save_video(path: str | Path, video: Tensor, fps: float, opts: RunOptions) -> None:
    """(3, T, H, W) in [-1, 1] -> file; lossless when asked (for exact comparisons)."""
    frames = to_uint8(video.float().clamp(-1, 1).cpu())
    if opts.lossless:
        write_video(path, frames, fps, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    else:
        write_video(path, frames, fps)


def autocast(opts: RunOptions):
    if opts.dtype == "bf16":
        return torch.autocast(device_type=torch.device(opts.device).type, dtype=torch.bfloat16)
    if opts.dtype != "fp32":
        raise ValueError(f"dtype must be fp32 or bf16, got {opts.dtype!r}")
    return contextlib.nullcontext()


def load_video(path: str | Path, model: LCVAE, start: int = 0, frames: int | None = None,
               fit: str = "error", trim: bool = False) -> tuple[Tensor, float]:
    """Read a clip as (1, 3, T, H, W) in [-1, 1], checked against the model's frame and size rules.

    ``fit``: "error" (default), "crop" or "resize" to the model's spatial multiple. ``trim`` cuts
    the frame count down to the largest valid one. Nothing is changed unless asked.
    """
    info = probe(path)
    rule = model.frame_rule
    count = frames if frames is not None else info.frames - start
    if trim:
        count = rule.nearest_valid(count)[0]
        if count is None:
            raise ValueError(f"{path}: too few frames for this model ({rule.describe()})")
    rule.check_frames(count)
    video = to_tensor(read_video(path, start=start, num_frames=count))
    multiple = rule.pixel_step
    if fit == "crop":
        video = crop_to_multiple(video, multiple)
    elif fit == "resize":
        video = resize_to_multiple(video, multiple)
    elif fit != "error":
        raise ValueError(f"fit must be error, crop or resize, got {fit!r}")
    h, w = video.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{path}: {w}x{h} frames are not multiples of {multiple}; pass --fit crop or --fit resize")
    return video.unsqueeze(0), info.fps


def reconstruct_file(model: LCVAE, src: str | Path, dst: str | Path, opts: RunOptions, side_by_side: bool = False,
                     start: int = 0, frames: int | None = None, fit: str = "error", trim: bool = False) -> dict:
    """Encode and decode a video file; write the reconstruction (optionally beside the input)."""
    x, fps = load_video(src, model, start, frames, fit, trim)
    with torch.no_grad(), autocast(opts):
        y = model.reconstruct(x.to(opts.device), opts.chunk, opts.decode_chunk, opts.tile).float().cpu()
    y = y.clamp(-1, 1)
    mse = torch.mean(((y - x) / 2) ** 2).item()
    out = torch.cat([x, y], dim=-1) if side_by_side else y
    save_video(dst, out[0], fps, opts)
    return {"frames": x.shape[2], "height": x.shape[3], "width": x.shape[4], "psnr": 10 * math.log10(1 / max(mse, 1e-10))}


def encode_file(model: LCVAE, src: str | Path, dst: str | Path, opts: RunOptions, raw: bool = False,
                start: int = 0, frames: int | None = None, fit: str = "error", trim: bool = False) -> tuple[int, ...]:
    x, fps = load_video(src, model, start, frames, fit, trim)
    with torch.no_grad(), autocast(opts):
        mean = model.encode(x.to(opts.device), opts.chunk, opts.tile).mode()
        latent = mean if raw else model.latent_to_diffusion(mean)
    meta = {
        "kind": "raw" if raw else "diffusion",
        "config": json.dumps(model.config.to_dict()),
        "fps": str(fps), "frames": str(x.shape[2]), "height": str(x.shape[3]), "width": str(x.shape[4]),
    }
    save_file({"latent": latent.float().cpu().contiguous()}, str(dst), metadata=meta)
    return tuple(latent.shape)


def decode_file(model: LCVAE, src: str | Path, dst: str | Path, opts: RunOptions, fps: float | None = None) -> int:
    with safe_open(str(src), "pt") as f:
        meta = f.metadata() or {}
        latent = f.get_tensor("latent")
    if "config" in meta and LCVAEConfig.from_dict(json.loads(meta["config"])).backbone != model.config.backbone:
        raise ValueError(f"{src} was encoded by a different model configuration; decode it with the model that encoded it")
    with torch.no_grad(), autocast(opts):
        z = latent.to(opts.device)
        if meta.get("kind", "diffusion") == "diffusion":
            video = model.decode_latent(z, opts.decode_chunk)
        else:
            video = model.backbone.decode(z, opts.decode_chunk)
    save_video(dst, video[0], fps or float(meta.get("fps", 24)), opts)
    return video.shape[2]


def model_info(source: str, frames: int | None = None, height: int = 256, width: int = 256) -> dict:
    """Sizes and rules of a preset or checkpoint (built on the meta device: no weights are read)."""
    cfg = load_config(source)
    with torch.device("meta"):
        backbone = build_backbone(cfg.backbone)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    rule = cfg.frame_rule
    frames = frames or rule.frames(1)
    info = {
        "source": source,
        "backbone": backbone_type(cfg.backbone),
        "params_m": round(count(backbone) / 1e6, 2),
        "encoder_params_m": round(count(backbone.encoder) / 1e6, 2),
        "decoder_params_m": round(count(backbone.decoder) / 1e6, 2),
        "causal": cfg.backbone.causal,
        "frame_rule": rule.describe(),
        "latent_channels": cfg.backbone.latent_channels,
        "diffusion_channels": cfg.diffusion_channels,
        "compression": None if cfg.compression is None else {
            "mask": cfg.compression.mask,
            "kept": len(cfg.compression.resolved_indices(cfg.backbone.latent_channels)),
            "of": 32 * cfg.backbone.latent_channels,
            "adaptive": cfg.compression.adaptive,
        },
        "normalised": cfg.latent_mean is not None,
        "input": [3, frames, height, width],
    }
    info["latent_shape"] = list(cfg.latent_shape(frames, height, width))
    info["diffusion_shape"] = list(cfg.diffusion_shape(frames, height, width))
    return info
