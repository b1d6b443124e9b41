"""Generating videos with a trained denoiser and a VAE, and scoring them with FVD16.

    noise -> reverse diffusion (DDPM 250 respaced steps, or DDIM) -> normalised packed latent
          -> LCVAE.decode_latent (un-normalise, zero-pad the dropped coefficients, Multi-IWT, decoder)
          -> video (B, 3, T, H, W) in [-1, 1] -> mp4 files and a PNG grid

Seeds. Video i starts from noise drawn by its own generator (seeded by (seed, i)), and its DDPM
step noise comes from the same generator, so a video does not depend on the batch size or on
which other videos are generated with it.

FVD16 (SPEC §6): I3D features of the first 16 frames of every generated video against 16-frame
real clips (start frame 0, short side resized and centre-cropped to the generated size), compared
as dataset-level Gaussians. An I3D with random weights is allowed only when asked for; its FVD is a
pipeline check, not a number comparable with any published FVD, and is labelled so.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lcvae.data.datasets import SkipCounter, collate
from lcvae.data.transforms import center_crop, resize_short_side
from lcvae.data.video import to_uint8, write_video
from lcvae.diffusion import GaussianDiffusion, model_fn
from lcvae.latent_cache import open_video_dataset, vae_fingerprint
from lcvae.metrics import FeatureStats, fvd_from_features
from lcvae.models.denoisers import build_denoiser
from lcvae.models.lcvae import LCVAE
from lcvae.train.checkpoint import latest_checkpoint, load_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "LoadedDenoiser", "resolve_checkpoint", "load_denoiser", "video_generator", "sample_latents",
    "decode_latents", "write_videos", "write_grid", "write_png", "random_i3d", "real_clip_features",
    "video_features", "generate", "RANDOM_I3D_NOTE",
]

RANDOM_I3D_NOTE = "I3D with RANDOM weights: a pipeline check, not comparable to any published FVD"


# ------------------------------------------------------------------------------------- the model


@dataclass
class LoadedDenoiser:
    model: nn.Module  # eval mode
    spec: dict[str, Any]  # {"kind", "config"} (see lcvae.models.denoisers)
    diffusion: GaussianDiffusion
    step: int
    vae_fingerprint: dict[str, str]
    video_shape: tuple[int, int, int]  # (T, H, W) of the training clips
    fps: float
    path: Path

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        c = self.spec["config"]
        return (c["in_channels"], c["num_frames"], *c["input_size"])

    @property
    def num_classes(self) -> int:
        return int(self.spec["config"]["num_classes"])


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (holds state.pt), or a run folder / checkpoints folder -> its latest checkpoint."""
    path = Path(path)
    if (path / "state.pt").is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise FileNotFoundError(f"{path}: no checkpoint (a step_* folder with state.pt, or a run folder holding them)")


def load_denoiser(path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True) -> LoadedDenoiser:
    """A denoiser checkpoint written by ``lcvae train-latte`` (EMA weights unless ``use_ema=False``)."""
    ckpt = load_checkpoint(resolve_checkpoint(path))
    state = ckpt.state
    if "denoiser" not in state:
        raise ValueError(f"{ckpt.path} is not a train-latte checkpoint (no denoiser spec in state.pt)")
    model = build_denoiser(state["denoiser"])
    group = "ema" if use_ema else "model"
    model.load_state_dict(ckpt.weights[group], strict=True)
    d = state["diffusion"]
    diffusion = GaussianDiffusion(d["num_timesteps"], d["beta_start"], d["beta_end"],
                                  learn_sigma=bool(state["denoiser"]["config"]["learn_sigma"]))
    logger.info("denoiser %s (%s weights) from %s, step %d", state["denoiser"]["kind"], group, ckpt.path, ckpt.step)
    return LoadedDenoiser(model.to(device).eval(), state["denoiser"], diffusion, ckpt.step, dict(state["vae_fingerprint"]),
                          tuple(state["video_shape"]), float(state["fps"]), ckpt.path)


# -------------------------------------------------------------------------------------- sampling


def video_generator(seed: int, i: int) -> torch.Generator:
    """CPU generator of video i for a run seeded with `seed`."""
    state = np.random.SeedSequence([seed, i]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))


@torch.no_grad()
def sample_latents(
    model: nn.Module, diffusion: GaussianDiffusion, latent_shape: tuple[int, ...], indices: range | list[int], *,
    seed: int, labels: Tensor | None = None, guidance: float = 1.0, steps: int = 250, method: str = "ddpm",
    device: torch.device | str = "cpu",
) -> Tensor:
    """Latents (len(indices), C, F, h, w) on the CPU for videos `indices` of the run `seed`, in one batch.

    labels: (len(indices),) class labels for class-conditional models, else None. guidance != 1
    applies classifier-free guidance. The model must be in eval mode.
    """
    if model.training:
        raise ValueError("put the denoiser in eval mode (model.eval()) before sampling: label dropout is a training behaviour")
    gens = [video_generator(seed, i) for i in indices]
    noise = torch.stack([torch.randn(tuple(latent_shape), generator=g) for g in gens])
    y = None if labels is None else labels.to(device)
    fn = model_fn(model, y, guidance)
    x = diffusion.sample(fn, noise.shape, steps=steps, method=method, generator=gens, noise=noise, device=device)
    return x.float().cpu()


@torch.no_grad()
def decode_latents(vae: LCVAE, latents: Tensor, device: torch.device | str = "cpu") -> Tensor:
    """Normalised diffusion latents (B, C', F, h, w) -> videos (B, 3, T, H, W) in [-1, 1] on the CPU."""
    return vae.decode_latent(latents.to(device)).float().clamp(-1.0, 1.0).cpu()


def write_videos(videos: Tensor, folder: str | Path, fps: float, names: list[str]) -> list[Path]:
    """Write (B, 3, T, H, W) videos in [-1, 1] as H.264 mp4 files folder/<name>.mp4 (atomically)."""
    folder = Path(folder)
    return [write_video(folder / f"{name}.mp4", to_uint8(v), fps) for v, name in zip(videos, names)]


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W, 3) RGB image as PNG (stdlib zlib; no imaging library needed), atomically."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"write_png needs uint8 (H, W, 3), got {image.dtype} {image.shape}")
    h, w, _ = image.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 3)], axis=1)  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return path


def write_grid(videos: Tensor, path: str | Path, frames: int = 8, max_videos: int = 16, pad: int = 2) -> Path:
    """A PNG with one row per video (at most `max_videos`) and `frames` evenly spaced frames per row."""
    v = videos[:max_videos]
    t = v.shape[2]
    picks = torch.linspace(0, t - 1, min(frames, t)).round().long()
    b, _, _, h, w = v.shape
    grid = np.full((b * (h + pad) + pad, len(picks) * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(b):
        clip = to_uint8(v[i][:, picks]).numpy()  # (frames, h, w, 3)
        for j in range(len(picks)):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top:top + h, left:left + w] = clip[j]
    return write_png(path, grid)


# -------------------------------------------------------------------------------------------- FVD


def random_i3d(seed: int = 0):
    """An I3D feature extractor with random (seeded) weights, named as such. Only for pipeline checks.

    Convolutions get He-normal weights so the signal keeps its scale through the 20-odd ReLU layers
    (PyTorch's default init shrinks it until every clip gets the same features, and every FVD is 0).
    """
    from lcvae.perceptual.i3d import I3DExtractor, InceptionI3d

    g = torch.Generator().manual_seed(seed)
    model = InceptionI3d()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 5:  # conv weight (out, in, t, h, w)
                fan_in = p[0].numel()
                gain = 1.0 if name.startswith("logits") else 2.0  # no ReLU after the logits
                p.copy_(torch.randn(p.shape, generator=g) * (gain / fan_in) ** 0.5)
            elif name.endswith("bias"):
                p.zero_()
    return I3DExtractor(model, name="i3d-RANDOM-weights")


def video_features(extractor, videos: Tensor, frames: int = 16, batch_size: int = 4,
                   device: torch.device | str = "cpu") -> Tensor:
    """(N, D) features of the first `frames` frames of (N, 3, T, H, W) videos in [-1, 1]."""
    if videos.shape[2] < frames:
        raise ValueError(f"FVD{frames} needs at least {frames} frames per video, got {videos.shape[2]}")
    out = [extractor(videos[i:i + batch_size, :, :frames].to(device)).cpu() for i in range(0, len(videos), batch_size)]
    return torch.cat(out)


def real_clip_features(dataset, extractor, size: tuple[int, int], batch_size: int = 4,
                       max_videos: int | None = None, device: torch.device | str = "cpu") -> tuple[FeatureStats, int]:
    """Features of real clips from a ``lcvae.data`` dataset (clips (3, T, H0, W0) in [-1, 1]) after a
    short-side resize and centre crop to `size`; returns (stats, number of skipped videos)."""
    count = len(dataset) if max_videos is None else min(max_videos, len(dataset))
    stats, skips = FeatureStats(extractor.dim), SkipCounter()
    for start in range(0, count, batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, count))])
        if not skips.update(batch):
            continue
        clips = torch.stack([center_crop(resize_short_side(v, max(size)), size) for v in batch["video"]])
        stats.update(extractor(clips.to(device)).cpu())
    if skips.count:
        logger.warning("FVD real clips: %s", skips.summary())
    return stats, skips.count


# ---------------------------------------------------------------------------------- the command


def generate(
    latte: str | Path, vae: LCVAE, out_dir: str | Path, *, n: int, seed: int = 0, batch_size: int = 4,
    guidance: float = 1.0, steps: int = 250, method: str = "ddpm", class_label: int | None = None,
    device: torch.device | str = "cpu", use_ema: bool = True, fps: float | None = None, grid: bool = True,
    fvd_real: str | Path | None = None, fvd_real_kind: str = "folder", i3d: Any = None, fvd_frames: int = 16,
    fvd_max_real: int | None = None,
) -> dict[str, Any]:
    """Sample `n` videos with the denoiser checkpoint `latte`, decode them with `vae` (which must be the
    VAE the denoiser was trained on: checked by fingerprint), write mp4 files (and grid.png) to
    `out_dir`, and optionally FVD against the real videos at `fvd_real` (a dataset of kind `fvd_real_kind`,
    see ``open_video_dataset``) with the feature extractor `i3d` (``lcvae.perceptual.i3d.load_i3d`` or
    ``random_i3d``).
    Class-conditional models get `class_label` for every video, else labels 0, 1, 2, ... in turn.
    Returns a summary (also written to out_dir/summary.json)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    den = load_denoiser(latte, device, use_ema)
    if vae_fingerprint(vae) != den.vae_fingerprint:
        raise ValueError(f"{den.path} was trained on latents of another VAE (fingerprint mismatch); pass the VAE "
                         f"its latent cache was made with")
    if den.num_classes == 0 and (class_label is not None or guidance != 1.0):
        raise ValueError("this denoiser is unconditional: drop --class-label and use --guidance 1")
    if class_label is not None and not 0 <= class_label < den.num_classes:
        raise ValueError(f"class label must be in [0, {den.num_classes - 1}], got {class_label}")
    if (fvd_real is None) != (i3d is None):
        raise ValueError("FVD needs both real clips and an I3D extractor")
    vae = vae.to(device).eval()
    out_dir = Path(out_dir)
    fps = fps or den.fps
    labels_all = None
    if den.num_classes:
        labels_all = (torch.full((n,), class_label) if class_label is not None else torch.arange(n) % den.num_classes)
    fake = FeatureStats(i3d.dim) if i3d is not None else None
    written, preview, seconds = [], [], 0.0
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        labels = None if labels_all is None else labels_all[idx]
        tic = time.perf_counter()
        z = sample_latents(den.model, den.diffusion, den.latent_shape, idx, seed=seed, labels=labels,
                           guidance=guidance, steps=steps, method=method, device=device)
        videos = decode_latents(vae, z, device)
        seconds += time.perf_counter() - tic
        names = [f"video_{i:05d}" + ("" if labels is None else f"_class{int(labels[k])}") for k, i in enumerate(idx)]
        written += write_videos(videos, out_dir, fps, names)
        if fake is not None:
            fake.update(video_features(i3d, videos, fvd_frames, batch_size, device))
        if len(preview) < 16:
            preview += list(videos[:16 - len(preview)])
        logger.info("sampled %d/%d videos", len(written), n)
    summary: dict[str, Any] = {
        "checkpoint": str(den.path), "step": den.step, "n": n, "seed": seed, "steps": steps, "method": method,
        "guidance": guidance, "video_shape": list(videos.shape[1:]),
        "seconds_per_video": seconds / n,  # sampling and decoding, not I3D
        "files": [p.name for p in written],
    }
    if grid:
        summary["grid"] = write_grid(torch.stack(preview), out_dir / "grid.png").name
    if fake is not None:
        size = tuple(videos.shape[-2:])
        real_set = open_video_dataset(fvd_real_kind, fvd_real, num_frames=fvd_frames, short_side=max(size))
        real, skipped = real_clip_features(real_set, i3d, size, batch_size, fvd_max_real, device)
        summary.update({f"fvd{fvd_frames}": fvd_from_features(real, fake), "fvd_real_videos": real.n,
                        "fvd_fake_videos": fake.n, "fvd_real_skipped": skipped, "i3d": i3d.name})
        if "RANDOM" in i3d.name:
            summary["i3d_note"] = RANDOM_I3D_NOTE
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
