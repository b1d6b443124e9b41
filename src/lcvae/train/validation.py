"""Reconstruction metrics of a model on a few clips: PSNR, SSIM and (ST-)LPIPS, plus a preview image.

Used by the training recipe's validation (the EMA model on held-out clips) and by the quickstart's
table. Reconstructions are clamped to [-1, 1] first, as writing them to a video file would.
The perceptual metric is LPIPS (AlexNet) when torchvision AlexNet weights are given, else ST-LPIPS
(AlexNet), whose weights ship with stlpips-pytorch; its name travels with the numbers
(``LPIPS.name``), so the two are never mixed up in logs or tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor

from lcvae.metrics import psnr, ssim
from lcvae.models.lcvae import LCVAE
from lcvae.perceptual import LPIPS, load_lpips, load_st_lpips, lpips_video

__all__ = ["load_metric_lpips", "reconstruct", "evaluate_clips", "preview_image"]


def load_metric_lpips(weights: str | None = None) -> LPIPS:
    """LPIPS (alex) from torchvision AlexNet weights when given, else ST-LPIPS (alex); frozen, eval."""
    return load_lpips("alex", weights) if weights else load_st_lpips("alex")


@torch.no_grad()
def reconstruct(model: LCVAE, video: Tensor, device: torch.device | str = "cpu", bf16: bool = False) -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> reconstruction of the posterior mean, clamped to [-1, 1], fp32, on the CPU."""
    device = torch.device(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast:
        out = model.reconstruct(video.to(device))
    return out.float().clamp(-1.0, 1.0).cpu()


@torch.no_grad()
def evaluate_clips(
    model: LCVAE,
    clips: Sequence[Tensor],
    lpips: LPIPS,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    keep_reconstructions: bool = False,
) -> dict:
    """Mean PSNR (dB), SSIM and perceptual distance over clips, each (3, T, H, W) in [-1, 1].

    Returns {"psnr", "ssim", <lpips.name lower-cased>: float, "metric": lpips.name, "per_clip": [...]},
    plus "reconstructions" (one (3, T, H, W) clip each, clamped, CPU) when ``keep_reconstructions``.
    """
    if not clips:
        raise ValueError("evaluate_clips needs at least one clip")
    was_training = model.training
    model.eval()
    key = lpips.name.lower()
    lpips = lpips.to(device)
    rows, kept = [], []
    try:
        for clip in clips:
            x = clip.unsqueeze(0).float()
            x_hat = reconstruct(model, x, device, bf16)
            dist = lpips_video(lpips, x.to(device), x_hat.to(device)).cpu()
            rows.append({"psnr": float(psnr(x, x_hat)[0]), "ssim": float(ssim(x, x_hat)[0]), key: float(dist[0])})
            if keep_reconstructions:
                kept.append(x_hat[0])
    finally:
        model.train(was_training)
    means = {name: sum(r[name] for r in rows) / len(rows) for name in ("psnr", "ssim", key)}
    out = {**means, "metric": lpips.name, "per_clip": rows}
    if keep_reconstructions:
        out["reconstructions"] = kept
    return out


def preview_image(x: Tensor, x_hat: Tensor) -> Tensor:
    """Middle frame of input and reconstruction side by side: (3, H, 2W) in [0, 1] for TensorBoard.

    x, x_hat: (3, T, H, W) in [-1, 1].
    """
    t = x.shape[1] // 2
    pair = torch.cat([x[:, t], x_hat[:, t]], dim=-1)  # (3, H, 2W)
    return ((pair.float() + 1.0) / 2.0).clamp(0.0, 1.0)
