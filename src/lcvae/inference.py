"""File-level inference: video files in, reconstructions, latent files and videos out.

Latent files are safetensors with one tensor ``latent`` (1, C, F, h, w) and metadata: ``kind``
("diffusion": the normalised packed latent diffusion sees; "raw": the backbone posterior mean),
the model config that made it, and the source video's fps and size, so ``decode`` can check that
the model it is given is the one that encoded, and crop a padded clip back to its size.

Padding (``pad=True``): a clip the model's rules do not accept is extended to the next valid
frame count and size by repeating its last frame and its bottom row / right column
(:func:`pad_video`); the output is cropped back to the input's (T, H, W). It is never done
unless asked, and the amounts are returned and logged.

Precision: the model's own dtype (:func:`load_model` casts the weights to ``RunOptions.dtype``);
inputs are cast to it and outputs come back as float32. There is no autocast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.nn import functional as F

from lcvae.data.transforms import crop_to_multiple, resize_to_multiple
from lcvae.data.video import probe, read_video, to_tensor, to_uint8, write_video
from lcvae.models.backbone import backbone_type, build_backbone
from lcvae.models.io import from_pretrained, load_config
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS, get_preset
from lcvae.progress import Progress

logger = logging.getLogger(__name__)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunOptions:
    device: str = "cpu"
    dtype: str = "fp32"  # the model's dtype for load_model: fp32 | bf16 | fp16 (see DTYPES)
    chunk: int | None = None  # encoder chunk in frames (causal models)
    decode_chunk: int | None = None  # decoder chunk in latent frames
    tile: int | None = None  # spatial tile in pixels
    lossless: bool = False  # write videos with lossless H.264 (libx264rgb, QP 0) instead of CRF 18
    progress: bool = True  # a bar on a terminal, log lines otherwise (lcvae.progress)

    @property
    def torch_dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype)


def parse_dtype(name: str) -> torch.dtype:
    """ "fp32", "bf16" or "fp16" -> the torch dtype (ValueError naming the choices otherwise)."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def load_model(source: str, device: str = "cpu", random_weights: bool = False, dtype: str = "fp32") -> LCVAE:
    """A checkpoint folder / .ckpt, or a preset name with ``random_weights=True`` (demos, benchmarks),
    in eval mode on ``device`` with its weights cast to ``dtype`` ("fp32", "bf16" or "fp16")."""
    torch_dtype = parse_dtype(dtype)
    if source in PRESETS:
        if not random_weights:
            raise ValueError(
                f"{source!r} is a preset, not trained weights; pass a checkpoint folder, or --random-weights to try the architecture"
            )
        model = LCVAE(get_preset(source))
    else:
        model = from_pretrained(source)
    return model.to(device=device, dtype=torch_dtype).eval()


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: that of the model's weights (set by :func:`load_model`)."""
    return next(model.parameters()).dtype


def save_video(path: str | Path, video: Tensor, fps: float, opts: RunOptions) -> None:
    """(3, T, H, W) in [-1, 1] -> file; lossless when asked (for exact comparisons)."""
    frames = to_uint8(video.float().clamp(-1, 1).cpu())
    if opts.lossless:
        write_video(path, frames, fps, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    else:
        write_video(path, frames, fps)


def pad_video(video: Tensor, frames: int, height: int, width: int) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T + frames, H + height, W + width) by edge replication: the last
    frame is repeated ``frames`` times, the bottom row ``height`` times and the right column
    ``width`` times (any dtype)."""
    if min(frames, height, width) < 0:
        raise ValueError(f"pad amounts must be >= 0, got {(frames, height, width)}")
    if frames == height == width == 0:
        return video
    return F.pad(video, (0, width, 0, height, 0, frames), mode="replicate")


def crop_video(video: Tensor, frames: int, height: int, width: int) -> Tensor:
    """(B, C, T, H, W) -> its first ``frames`` frames and top-left ``height`` x ``width`` pixels:
    the inverse of :func:`pad_video`."""
    return video[:, :, :frames, :height, :width]


def load_video(
    path: str | Path,
    model: LCVAE,
    start: int = 0,
    frames: int | None = None,
    fit: str = "error",
    trim: bool = False,
    pad: bool = False,
) -> tuple[Tensor, float]:
    """Read a clip as (1, 3, T, H, W) in [-1, 1], fitted when asked; :func:`model_input` then checks
    it against the model's rules (or pads it).

    ``fit``: "error" (default: keep the size), "crop" or "resize" to the model's spatial multiple.
    ``trim`` cuts the frame count down to the largest valid one; without it or ``pad`` (which
    keeps every frame) an invalid count is refused before decoding. Nothing is changed unless asked.
    """
    if trim and pad:
        raise ValueError("--trim drops frames and --pad adds them; give one of the two")
    info = probe(path)
    rule = model.frame_rule
    count = frames if frames is not None else info.frames - start
    if trim:
        count = rule.nearest_valid(count)[0]
        if count is None:
            raise ValueError(f"{path}: too few frames for this model ({rule.describe()}); use --pad")
    if not pad and not rule.is_valid(count):
        low, high = rule.nearest_valid(count)
        try:
            rule.check_frames(count)
        except ValueError as err:
            keep = f"--trim keeps {low}, " if low else ""
            raise ValueError(f"{path}: {err} ({keep}--pad pads to {high} and crops the output back)") from None
    video = to_tensor(read_video(path, start=start, num_frames=count))
    multiple = rule.pixel_step
    if fit == "crop":
        video = crop_to_multiple(video, multiple)
    elif fit == "resize":
        video = resize_to_multiple(video, multiple)
    elif fit != "error":
        raise ValueError(f"fit must be error, crop or resize, got {fit!r}")
    return video.unsqueeze(0), info.fps


def model_input(x: Tensor, model: LCVAE, pad: bool, source: str | Path = "input") -> tuple[Tensor, dict[str, int]]:
    """``x`` (1, 3, T, H, W) checked against the model's rules, or with ``pad`` extended to the next
    valid (T, H, W) by :func:`pad_video`. Returns (model input, {"frames", "height", "width"}: the
    amounts added, all 0 when nothing was padded)."""
    rule = model.frame_rule
    _, _, t, h, w = x.shape
    if not pad:
        rule.check_frames(t)
        if h % rule.pixel_step or w % rule.pixel_step:
            raise ValueError(
                f"{source}: {w}x{h} frames are not multiples of {rule.pixel_step}; "
                f"pass --fit crop, --fit resize or --pad"
            )
        return x, {"frames": 0, "height": 0, "width": 0}
    dt, dh, dw = rule.pad_amounts(t, h, w)
    if dt or dh or dw:
        logger.info(
            "%s: padded %d -> %d frames and %dx%d -> %dx%d by edge replication (%s); the output is "
            "cropped back to %d frames %dx%d",
            source,
            t,
            t + dt,
            w,
            h,
            w + dw,
            h + dh,
            rule.describe(),
            t,
            w,
            h,
        )
    return pad_video(x, dt, dh, dw), {"frames": dt, "height": dh, "width": dw}


@contextlib.contextmanager
def frames_progress(model: LCVAE, bar: Progress, encoder: bool = True, decoder: bool = True) -> Iterator[None]:
    """Advance ``bar`` by the video frames the backbone's encoder consumes and its decoder produces;
    chunked inference calls them once per chunk, so a long video shows its rate and time left.
    Backbones without separate ``encoder`` / ``decoder`` modules (diffusers adapters) advance nothing."""
    hooks = []
    enc, dec = getattr(model.backbone, "encoder", None), getattr(model.backbone, "decoder", None)
    if encoder and isinstance(enc, torch.nn.Module):
        hooks.append(enc.register_forward_hook(lambda m, args, out: bar.update(args[0].shape[2])))
    if decoder and isinstance(dec, torch.nn.Module):
        hooks.append(dec.register_forward_hook(lambda m, args, out: bar.update(getattr(out, "sample", out).shape[2])))
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def reconstruct_file(
    model: LCVAE,
    src: str | Path,
    dst: str | Path,
    opts: RunOptions,
    side_by_side: bool = False,
    start: int = 0,
    frames: int | None = None,
    fit: str = "error",
    trim: bool = False,
    pad: bool = False,
) -> dict:
    """Encode and decode a video file; write the reconstruction (optionally beside the input).

    Returns {"frames", "height", "width"} of the input (and output), "psnr" in dB over it, and
    "padded": the frames and pixels added before the model and cropped off after (see ``pad``)."""
    with Progress(None, f"reconstruct {Path(src).name}", "frame", opts.progress) as bar:
        bar.set_postfix("reading")
        x, fps = load_video(src, model, start, frames, fit, trim, pad)
        x_in, padded = model_input(x, model, pad, src)
        bar.set_total(None if opts.tile else 2 * x_in.shape[2])  # frames encoded, then decoded (tiles: rate only)
        bar.set_postfix(f"encoding and decoding {x_in.shape[2]} frames")
        with torch.no_grad(), frames_progress(model, bar):
            y = (
                model.reconstruct(x_in.to(opts.device, model_dtype(model)), opts.chunk, opts.decode_chunk, opts.tile)
                .float()
                .cpu()
            )
        bar.set_postfix("writing")
        y = crop_video(y, *x.shape[2:]).clamp(-1, 1)
        mse = torch.mean(((y - x) / 2) ** 2).item()
        out = torch.cat([x, y], dim=-1) if side_by_side else y
        save_video(dst, out[0], fps, opts)
    return {
        "frames": x.shape[2],
        "height": x.shape[3],
        "width": x.shape[4],
        "psnr": 10 * math.log10(1 / max(mse, 1e-10)),
        "padded": padded,
    }


def encode_file(
    model: LCVAE,
    src: str | Path,
    dst: str | Path,
    opts: RunOptions,
    raw: bool = False,
    start: int = 0,
    frames: int | None = None,
    fit: str = "error",
    trim: bool = False,
    pad: bool = False,
) -> tuple[tuple[int, ...], dict[str, int]]:
    """Video file -> latent file; returns (the latent's shape, the amounts padded as in
    :func:`model_input`). With ``pad`` the metadata keeps the input's frames, height and width
    (and the amounts padded), so :func:`decode_file` crops back."""
    with Progress(None, f"encode {Path(src).name}", "frame", opts.progress) as bar:
        bar.set_postfix("reading")
        x, fps = load_video(src, model, start, frames, fit, trim, pad)
        x_in, padded = model_input(x, model, pad, src)
        bar.set_total(None if opts.tile else x_in.shape[2])
        bar.set_postfix("encoding")
        with torch.no_grad(), frames_progress(model, bar, decoder=False):
            mean = model.encode(x_in.to(opts.device, model_dtype(model)), opts.chunk, opts.tile).mode()
            latent = mean if raw else model.latent_to_diffusion(mean)
        bar.set_postfix("writing")
        meta = {
            "kind": "raw" if raw else "diffusion",
            "config": json.dumps(model.config.to_dict()),
            "fps": str(fps),
            "frames": str(x.shape[2]),
            "height": str(x.shape[3]),
            "width": str(x.shape[4]),
            "padded": json.dumps(padded),
        }
        save_file({"latent": latent.float().cpu().contiguous()}, str(dst), metadata=meta)
    return tuple(latent.shape), padded


def decode_file(model: LCVAE, src: str | Path, dst: str | Path, opts: RunOptions, fps: float | None = None) -> dict:
    """Latent file -> video file. A latent of a padded clip (``encode_file(pad=True)``) is cropped
    back to the clip's frames and size from its metadata. Returns {"frames", "height", "width"}
    written and "decoded": the (T, H, W) the model produced before that crop."""
    with Progress(None, f"decode {Path(src).name}", "frame", opts.progress) as bar:
        bar.set_postfix("reading")
        with safe_open(str(src), "pt") as f:
            meta = f.metadata() or {}
            latent = f.get_tensor("latent")
        if "config" in meta and LCVAEConfig.from_dict(json.loads(meta["config"])).backbone != model.config.backbone:
            raise ValueError(
                f"{src} was encoded by a different model configuration; decode it with the model that encoded it"
            )
        bar.set_postfix("decoding")
        with torch.no_grad(), frames_progress(model, bar, encoder=False):
            z = latent.to(opts.device, model_dtype(model))
            if meta.get("kind", "diffusion") == "diffusion":
                z = model.diffusion_to_latent(z)  # what decode_latent does first
            bar.set_total(model.config.backbone.frame_rule.video_frames(z.shape[2]))
            video = model.backbone.decode(z, opts.decode_chunk)
        bar.set_postfix("writing")
        decoded = list(video.shape[2:])
        if any(json.loads(meta.get("padded", "{}")).values()):
            t, h, w = (int(meta[k]) for k in ("frames", "height", "width"))
            logger.info(
                "%s: the clip was padded before encoding; cropping %d frames %dx%d back to %d frames %dx%d",
                src,
                video.shape[2],
                video.shape[4],
                video.shape[3],
                t,
                w,
                h,
            )
            video = crop_video(video, t, h, w)
        save_video(dst, video[0], fps or float(meta.get("fps", 24)), opts)
    return {"frames": video.shape[2], "height": video.shape[3], "width": video.shape[4], "decoded": decoded}


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
        "compression": None
        if cfg.compression is None
        else {
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
