"""Generating videos with a trained denoiser and a VAE, and scoring them with FVD16.

    noise -> reverse diffusion (DDPM 250 respaced steps, or DDIM) -> normalised packed latent
          -> LCVAE.decode_latent (un-normalise, zero-pad the dropped coefficients, Multi-IWT, decoder)
          -> video (B, 3, T, H, W) in [-1, 1] -> mp4 files and a PNG grid

Seeds. Video i starts from noise drawn by its own generator (seeded by (seed, i)), and its DDPM
step noise comes from the same generator, so a video does not depend on the batch size or on
which other videos are generated with it.

FVD16 (docs/evaluation.md#metrics) is ``lcvae fvd``'s computation (``lcvae.evaluation.folder_fvd``) between the real
videos and the written samples: the first 16 frames of every video, resized to 224, I3D logits,
dataset-level Fréchet distance. An I3D with random weights is used only when asked for; the result
then carries a note that the number is a pipeline check, comparable to nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lcvae.data.video import to_uint8, write_video
from lcvae.diffusion import GaussianDiffusion, model_fn
from lcvae.latent_cache import vae_fingerprint
from lcvae.models.denoisers import build_denoiser
from lcvae.models.lcvae import LCVAE
from lcvae.progress import Progress
from lcvae.train.checkpoint import load_checkpoint, resolve_checkpoint

logger = logging.getLogger(__name__)

__all__ = [
    "LoadedDenoiser",
    "resolve_checkpoint",
    "load_denoiser",
    "video_generator",
    "sample_latents",
    "decode_latents",
    "write_videos",
    "write_grid",
    "generate",
]


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
    diffusion = GaussianDiffusion(
        d["num_timesteps"], d["beta_start"], d["beta_end"], learn_sigma=bool(state["denoiser"]["config"]["learn_sigma"])
    )
    logger.info("denoiser %s (%s weights) from %s, step %d", state["denoiser"]["kind"], group, ckpt.path, ckpt.step)
    return LoadedDenoiser(
        model.to(device).eval(),
        state["denoiser"],
        diffusion,
        ckpt.step,
        dict(state["vae_fingerprint"]),
        tuple(state["video_shape"]),
        float(state["fps"]),
        ckpt.path,
    )


# -------------------------------------------------------------------------------------- sampling


def video_generator(seed: int, i: int) -> torch.Generator:
    """CPU generator of video i for a run seeded with `seed`."""
    state = np.random.SeedSequence([seed, i]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))


@torch.no_grad()
def sample_latents(
    model: nn.Module,
    diffusion: GaussianDiffusion,
    latent_shape: tuple[int, ...],
    indices: range | list[int],
    *,
    seed: int,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    steps: int = 250,
    method: str = "ddpm",
    device: torch.device | str = "cpu",
    on_step: Callable[[], None] | None = None,
) -> Tensor:
    """Latents (len(indices), C, F, h, w) on the CPU for videos `indices` of the run `seed`, in one batch.

    labels: (len(indices),) class labels for class-conditional models, else None. guidance != 1
    applies classifier-free guidance. `on_step` is called after each denoising step (progress).
    The model must be in eval mode.
    """
    if model.training:
        raise ValueError(
            "put the denoiser in eval mode (model.eval()) before sampling: label dropout is a training behaviour"
        )
    gens = [video_generator(seed, i) for i in indices]
    noise = torch.stack([torch.randn(tuple(latent_shape), generator=g) for g in gens])
    y = None if labels is None else labels.to(device)
    fn = model_fn(model, y, guidance)
    if on_step is not None:
        denoise = fn

        def fn(x: Tensor, t: Tensor) -> Tensor:
            out = denoise(x, t)
            on_step()
            return out

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


def write_grid(videos: Tensor, path: str | Path, frames: int = 8, max_videos: int = 16, pad: int = 2) -> Path:
    """A PNG with one row per video (at most `max_videos`) and `frames` evenly spaced frames per row."""
    from lcvae.evaluation.report import write_png

    v = videos[:max_videos]
    t = v.shape[2]
    picks = torch.linspace(0, t - 1, min(frames, t)).round().long()
    b, _, _, h, w = v.shape
    grid = np.full((b * (h + pad) + pad, len(picks) * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(b):
        clip = to_uint8(v[i][:, picks]).numpy()  # (frames, h, w, 3)
        for j in range(len(picks)):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top : top + h, left : left + w] = clip[j]
    return write_png(path, grid)


# ---------------------------------------------------------------------------------- the command


def generate(
    latte: str | Path,
    vae: LCVAE,
    out_dir: str | Path,
    *,
    n: int,
    seed: int = 0,
    batch_size: int = 4,
    guidance: float = 1.0,
    steps: int = 250,
    method: str = "ddpm",
    class_label: int | None = None,
    device: torch.device | str = "cpu",
    use_ema: bool = True,
    fps: float | None = None,
    grid: bool = True,
    fvd_real: str | Path | None = None,
    i3d: str | None = None,
    i3d_random: bool = False,
    fvd_extractor: Any = None,
    fvd_frames: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample `n` videos with the denoiser checkpoint `latte`, decode them with `vae` (which must be the
    VAE the denoiser was trained on: checked by fingerprint), and write mp4 files and grid.png to
    `out_dir`. Class-conditional models get `class_label` for every video, else labels 0, 1, 2, ...

    With `fvd_real` (a folder of real videos) the FVD of the first `fvd_frames` frames is computed
    between it and the written samples by ``lcvae.evaluation.folder_fvd``, with I3D weights `i3d`,
    a random-weight I3D (`i3d_random`, labelled in the result), or any `fvd_extractor`.
    `progress`: denoising steps done, rate and time left (:mod:`lcvae.progress`).
    Returns a summary (also written to out_dir/summary.json).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    den = load_denoiser(latte, device, use_ema)
    if vae_fingerprint(vae) != den.vae_fingerprint:
        raise ValueError(
            f"{den.path} was trained on latents of another VAE (fingerprint mismatch); pass the VAE "
            f"its latent cache was made with"
        )
    if den.num_classes == 0 and (class_label is not None or guidance != 1.0):
        raise ValueError("this denoiser is unconditional: drop --class-label and use --guidance 1")
    if class_label is not None and not 0 <= class_label < den.num_classes:
        raise ValueError(f"class label must be in [0, {den.num_classes - 1}], got {class_label}")
    out_dir = Path(out_dir)
    labels_all = None
    if den.num_classes:
        labels_all = torch.full((n,), class_label) if class_label is not None else torch.arange(n) % den.num_classes
    names = [f"video_{i:05d}" + ("" if labels_all is None else f"_class{int(labels_all[i])}") for i in range(n)]
    if fvd_real is not None:
        # FVD reads every video in out_dir, so it must hold this run's samples only
        foreign = sorted(p.name for p in out_dir.glob("*.mp4") if p.stem not in set(names)) if out_dir.is_dir() else []
        if foreign:
            raise ValueError(
                f"{out_dir} holds other videos ({foreign[0]}, ...) that FVD would count; use an empty --out"
            )
    vae = vae.to(device).eval()
    written, preview, seconds = [], [], 0.0
    batches = range(0, n, batch_size)
    with Progress(len(batches) * steps, "sample", "step", enabled=progress) as bar:
        for start in batches:
            idx = list(range(start, min(start + batch_size, n)))
            labels = None if labels_all is None else labels_all[idx]
            tic = time.perf_counter()
            bar.set_postfix(f"videos {start + 1}-{idx[-1] + 1} of {n}")
            z = sample_latents(
                den.model,
                den.diffusion,
                den.latent_shape,
                idx,
                seed=seed,
                labels=labels,
                guidance=guidance,
                steps=steps,
                method=method,
                device=device,
                on_step=bar.update,
            )
            videos = decode_latents(vae, z, device)
            seconds += time.perf_counter() - tic
            written += write_videos(videos, out_dir, fps or den.fps, [names[i] for i in idx])
            preview += list(videos[: max(16 - len(preview), 0)])
            logger.info("sampled %d/%d videos", len(written), n)
    summary: dict[str, Any] = {
        "checkpoint": str(den.path),
        "step": den.step,
        "n": n,
        "seed": seed,
        "steps": steps,
        "method": method,
        "guidance": guidance,
        "video_shape": list(videos.shape[1:]),
        "seconds_per_video": seconds / n,  # sampling and decoding
        "files": [p.name for p in written],
    }
    if grid:
        summary["grid"] = write_grid(torch.stack(preview), out_dir / "grid.png").name
    if fvd_real is not None:
        from lcvae.evaluation import folder_fvd

        summary["fvd"] = folder_fvd(
            fvd_real,
            out_dir,
            frames=fvd_frames,
            i3d=i3d,
            i3d_random=i3d_random,
            extractor=fvd_extractor,
            batch_size=batch_size,
            device=str(device),
            progress=False,
        )
    tmp = out_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    tmp.replace(out_dir / "summary.json")
    return summary
