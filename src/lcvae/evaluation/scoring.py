"""One batch of clips under a protocol: degrade, reconstruct (padded or as they are), score per clip.

Videos are (B, 3, T, H, W) in [-1, 1]; the protocol rules are in ``lcvae.evaluation.reconstruction``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lcvae.data.datasets import item_generator
from lcvae.data.degrade import degrade_frames
from lcvae.data.video import to_tensor, to_uint8
from lcvae.evaluation.protocol import EvalOptions
from lcvae.evaluation.setup import MetricNetworks
from lcvae.inference import crop_video, pad_video
from lcvae.metrics import psnr, ssim
from lcvae.models.lcvae import LCVAE
from lcvae.perceptual import lpips_video


def size_mismatch(model: LCVAE, video: Tensor) -> str | None:
    """Why clips (B, 3, T, H, W) cannot go through the model as they are, or None."""
    h, w = video.shape[-2:]
    step = model.frame_rule.pixel_step
    if h % step == 0 and w % step == 0:
        return None
    return (
        f"{w}x{h} frames are not multiples of {step} (the model's spatial rule); evaluate at a size "
        f"(--size N: resize and centre-crop), crop to the multiple (--fit crop) or pad (--pad)"
    )


def degrade(clips: Tensor, qp: int) -> Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> the same clips after a libx264 constant-QP round trip."""
    return torch.stack([to_tensor(degrade_frames(to_uint8(c), qp=qp)) for c in clips])


def reconstruct(model: LCVAE, x: Tensor, indices: list[int], options: EvalOptions) -> Tensor:
    """x (B, 3, T, H, W) in [-1, 1] -> reconstruction in [-1, 1] (clamped), float32 on the CPU, of
    the same shape (with ``options.pad`` made on the padded clip and cropped back)."""
    if not options.pad:
        return _reconstruct_valid(model, x, indices, options)
    size = x.shape[2:]
    y = _reconstruct_valid(model, pad_video(x, *model.frame_rule.pad_amounts(*size)), indices, options)
    return crop_video(y, *size)


def _reconstruct_valid(model: LCVAE, x: Tensor, indices: list[int], options: EvalOptions) -> Tensor:
    """:func:`reconstruct` of clips the model takes as they are."""
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


def clip_metrics(target: Tensor, recon: Tensor, networks: MetricNetworks, options: EvalOptions) -> dict[str, Tensor]:
    values = {"psnr": psnr(target, recon), "ssim": ssim(target, recon)}
    if networks.lpips is not None:
        a, b = (target, recon) if options.protocol == "standard" else ((target + 1) / 2, (recon + 1) / 2)
        values["lpips"] = lpips_video(networks.lpips, a.to(options.device), b.to(options.device)).double().cpu()
    return values
