"""What every video VAE here shares: the frame rule, the posterior and the encoder/decoder outputs.

:class:`FrameRule` is the one place that knows which video sizes a model accepts and what latent
they give. A backbone compresses ``temporal_factor`` x ``spatial_factor`` x ``spatial_factor``
(t x s x s: 4 x 8 x 8 for WF-VAE and Wan 2.1, 4 x 16 x 16 for Wan 2.2 and HunyuanVideo 1.5, 8 x 32 x 32
for LTX-2); a causal one encodes the first frame alone, so it takes 1 + t*k frames (k >= 0) and gives
1 + k latent frames, a non-causal one t*k frames (k >= 1) -> k. The latent compressor groups latents
further (8 latent frames, 2 x 2 latent pixels), so an LC-VAE takes 1 + 8t*k (causal) or 8t*k frames
of 2s-pixel multiples (1 + 32k frames of 16-pixel multiples on WF-VAE): the same rule with coarser
steps (:meth:`FrameRule.grouped`). Backbones, ``LCVAEConfig``, inference, evaluation, training and the
CLI all ask ``config.frame_rule`` / ``model.frame_rule``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    moments: Tensor  # (B, 2C, T', H/s, W/s): mean then log-variance
    w2: Tensor | None = None  # WF-VAE level-2 energy-flow coefficients (B, 12, T2, H/4, W/4)
    w3: Tensor | None = None  # WF-VAE level-3 energy-flow coefficients (B, 24, T', H/8, W/8)


@dataclass
class DecoderOutput:
    sample: Tensor  # (B, 3, T, H, W)
    w2: Tensor | None = None
    w3: Tensor | None = None


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) from encoder moments (B, 2C, ...); log-variance clamped to [-30, 20]."""

    def __init__(self, moments: Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """mean + std * noise; ``noise`` (standard normal, the mean's shape) is drawn when not given."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean)

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL to N(0, I), summed over all latent elements: (B,), in float32 at least (exp(20) and the
        sum over a latent overflow fp16)."""
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


@dataclass(frozen=True)
class FrameRule:
    """Valid video sizes and latent shapes of a model.

    causal: the first frame is encoded alone. temporal_factor / spatial_factor: video frames per
    latent frame and pixels per latent pixel. latent_frames_step / latent_pixels_step: how many
    latent frames / pixels must come together (1 for a backbone; 8 and 2 under the compressor).
    Valid frame counts are 1 + k*frame_step (k >= 0) when causal, else k*frame_step (k >= 1);
    heights and widths are positive multiples of pixel_step.
    """

    causal: bool
    temporal_factor: int = 4
    spatial_factor: int = 8
    latent_frames_step: int = 1
    latent_pixels_step: int = 1

    def grouped(self, frames: int, pixels: int) -> FrameRule:
        """The rule once latents are cut into groups of ``frames`` latent frames and ``pixels`` x
        ``pixels`` latent pixels (a causal head frame stays outside the groups)."""
        return replace(
            self,
            latent_frames_step=self.latent_frames_step * frames,
            latent_pixels_step=self.latent_pixels_step * pixels,
        )

    @property
    def frame_step(self) -> int:
        """Video frames between two valid counts (t for a backbone, 8t with compression)."""
        return self.temporal_factor * self.latent_frames_step

    @property
    def pixel_step(self) -> int:
        """Multiple of height and width (s for a backbone, 2s with compression)."""
        return self.spatial_factor * self.latent_pixels_step

    def describe(self) -> str:
        """The frame rule in words, e.g. "1 + 32k frames"."""
        return f"1 + {self.frame_step}k frames" if self.causal else f"{self.frame_step}k frames"

    # -- frames -------------------------------------------------------------------------------
    def frames(self, steps: int) -> int:
        """The valid frame count spanning ``steps`` frame steps (causal: plus the first frame)."""
        return 1 + steps * self.frame_step if self.causal else steps * self.frame_step

    def is_valid(self, frames: int) -> bool:
        if self.causal:
            return frames >= 1 and (frames - 1) % self.frame_step == 0
        return frames >= self.frame_step and frames % self.frame_step == 0

    def nearest_valid(self, frames: int) -> tuple[int | None, int]:
        """(the largest valid count <= frames or None if there is none, the smallest valid count >= frames)."""
        offset = 1 if self.causal else 0
        k_low = (frames - offset) // self.frame_step
        low = self.frames(k_low) if frames >= self.frames(0 if self.causal else 1) else None
        high = low if low == frames else self.frames(max(k_low + 1, 0 if self.causal else 1))
        return low, high

    def at_least(self, frames: int) -> int:
        """The shortest valid count >= ``frames``."""
        return self.nearest_valid(frames)[1]

    def latent_frames(self, frames: int) -> int:
        """T' for T video frames (T valid for the backbone)."""
        return (frames - 1) // self.temporal_factor + 1 if self.causal else frames // self.temporal_factor

    def video_frames(self, latent_frames: int) -> int:
        """T for T' latent frames: the inverse of :meth:`latent_frames`."""
        return self.temporal_factor * (latent_frames - 1) + 1 if self.causal else self.temporal_factor * latent_frames

    # -- checks -------------------------------------------------------------------------------
    def check_frames(self, frames: int) -> None:
        """Raise ValueError naming the rule and the nearest valid counts unless ``frames`` is valid."""
        if self.is_valid(frames):
            return
        low, high = self.nearest_valid(frames)
        if self.causal:
            rule = f"{self.describe()} (causal: the first frame is encoded alone)"
        else:
            rule = f"a multiple of {self.frame_step} frames (non-causal)"
        fix = f"use {low} or {high}" if low else f"use {high}"
        raise ValueError(f"this model needs {rule}, got {frames}; {fix}")

    def check_size(self, height: int, width: int) -> None:
        m = self.pixel_step
        if height % m or width % m or height <= 0 or width <= 0:
            fix = lambda n: max(m, round(n / m) * m)  # noqa: E731
            raise ValueError(
                f"height and width must be multiples of {m}, got {height}x{width}; "
                f"resize or crop to {fix(height)}x{fix(width)}"
            )

    def check(self, video: Tensor) -> None:
        """Check a video (B, 3, T, H, W) against the rule."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"expected a video (B, 3, T, H, W), got shape {tuple(video.shape)}")
        self.check_frames(video.shape[2])
        self.check_size(video.shape[3], video.shape[4])

    # -- shapes -------------------------------------------------------------------------------
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', h, w) of the latent of a (T, H, W) video (checked)."""
        self.check_frames(frames)
        self.check_size(height, width)
        return self.latent_frames(frames), height // self.spatial_factor, width // self.spatial_factor

    def pad_amounts(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Frames and pixels to append to reach the next valid (T, H, W): (dt, dh, dw), zero when valid."""
        up = lambda n, m: max(m, -(-n // m) * m) - n  # noqa: E731
        return self.at_least(frames) - frames, up(height, self.pixel_step), up(width, self.pixel_step)

    # -- tiling -------------------------------------------------------------------------------
    def default_overlap(self, tile: int, latent: bool = False) -> int:
        """Default overlap of spatial tiles: a quarter tile, on the stride grid.

        ``tile`` in pixels gives a multiple of ``spatial_factor`` pixels; with ``latent`` the tile
        is in latent pixels and the overlap (at least 1) too.
        """
        if latent:
            return max(1, tile // 4)
        return tile // 4 // self.spatial_factor * self.spatial_factor
