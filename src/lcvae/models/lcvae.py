"""LC-VAE: a video VAE backbone with the latent compressor between encoder and decoder.

    video -> encoder -> posterior -> z (sample when training, mode at inference)
          -> Multi-WT -> keep mask -> Multi-IWT -> decoder -> video

The KL term is on the full posterior. Diffusion sees only the kept coefficients, packed into a
video-shaped latent with half the backbone's channels (``diffusion_latent``); ``decode_latent``
zero-pads the dropped coefficients, inverts the transform and decodes. With ``compression=None``
the model is a plain backbone and the diffusion latent is z itself.

Per-channel statistics of the diffusion latent (``latent_mean`` / ``latent_std``, measured over a
dataset by ``lcvae latent-stats``) normalise it on the way out and are undone on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lcvae.compression import Coefficients, LatentCompressor
from lcvae.masks import GROUP_FRAMES, CompressionConfig
from lcvae.models.backbone import backbone_config_from_dict, backbone_config_to_dict, build_backbone
from lcvae.models.vae import DiagonalGaussian, FrameRule
from lcvae.models.wfvae import WFVAEConfig
from lcvae.utils import suggest


@dataclass
class LCVAEConfig:
    backbone: Any = field(default_factory=WFVAEConfig)  # any registered backbone config (models/backbone.py)
    compression: CompressionConfig | None = None
    latent_mean: list[float] | None = None  # per channel of the diffusion latent
    latent_std: list[float] | None = None

    def __post_init__(self) -> None:
        if (self.latent_mean is None) != (self.latent_std is None):
            raise ValueError("set both latent_mean and latent_std, or neither")

    def to_dict(self) -> dict:
        return {
            "backbone": backbone_config_to_dict(self.backbone),
            "compression": None if self.compression is None else self.compression.to_dict(),
            "latent_mean": self.latent_mean,
            "latent_std": self.latent_std,
        }

    @classmethod
    def from_dict(cls, d: dict) -> LCVAEConfig:
        known = ["backbone", "compression", "latent_mean", "latent_std"]
        for key in d:
            if key not in known:
                raise ValueError(f"unknown LCVAEConfig key {key!r}{suggest(key, known)}")
        backbone = backbone_config_from_dict(d.get("backbone", {}))
        comp = d.get("compression")
        return cls(
            backbone=backbone,
            compression=None if comp is None else _compression_from_dict(comp, backbone),
            latent_mean=d.get("latent_mean"),
            latent_std=d.get("latent_std"),
        )

    @property
    def diffusion_channels(self) -> int:
        if self.compression is None:
            return self.backbone.latent_channels
        return self.compression.packed_channels(self.backbone.latent_channels)

    @property
    def frame_rule(self) -> FrameRule:
        """The backbone's rule; with compression latents also come in groups of 8 frames and 2 x 2
        pixels (1 + 32k or 32k frames, 16-pixel multiples)."""
        rule = self.backbone.frame_rule
        return rule if self.compression is None else rule.grouped(GROUP_FRAMES, 2)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', h, w) of the backbone latent for a video of the given size (checked)."""
        return (self.backbone.latent_channels, *self.frame_rule.latent_shape(frames, height, width))

    def diffusion_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C', F, h, w) of the diffusion latent; causal compression spreads the image frame's C channels
        over C / C' pseudo-frames (2 with a 50 % mask)."""
        c, t, h, w = self.latent_shape(frames, height, width)
        if self.compression is not None and self.backbone.causal:
            t += c // self.diffusion_channels - 1
        return (self.diffusion_channels, t, h, w)


def _compression_from_dict(d: dict, backbone: Any) -> CompressionConfig:
    """Read a saved compression dict. Files written before the compressor took the latent width and
    causality from the backbone repeat them here: accepted when they agree with the backbone, dropped."""
    d = dict(d)
    for key in ("latent_channels", "causal"):
        if key in d:
            saved, own = d.pop(key), getattr(backbone, key)
            if saved != own:
                raise ValueError(
                    f"compression.{key} is {saved!r} but the backbone's {key} is {own!r}; the compressor "
                    f"takes it from the backbone, so drop compression.{key} or fix the backbone"
                )
    return CompressionConfig.from_dict(d)


@dataclass
class LCVAEOutput:
    reconstruction: Tensor  # (B, 3, T, H, W), unclamped
    posterior: DiagonalGaussian
    z: Tensor  # the latent fed to the compressor (sample or mode of the posterior)
    coefficients: Coefficients | None  # masked Multi-WT coefficients, when asked for
    z_hat: Tensor  # the latent the decoder saw
    encoder_flow: tuple[
        Tensor | None, Tensor | None
    ]  # (w2, w3) energy-flow coefficients (WF-VAE), for the wavelet loss
    decoder_flow: tuple[Tensor | None, Tensor | None]


class LCVAE(nn.Module):
    """Backbone + latent compressor. Inputs are videos (B, 3, T, H, W) with values in [-1, 1]."""

    def __init__(self, config: LCVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        bb = config.backbone
        self.compressor = (
            None if config.compression is None else LatentCompressor(config.compression, bb.latent_channels, bb.causal)
        )
        mean = torch.tensor(config.latent_mean or [0.0] * config.diffusion_channels).view(1, -1, 1, 1, 1)
        std = torch.tensor(config.latent_std or [1.0] * config.diffusion_channels).view(1, -1, 1, 1, 1)
        if mean.shape[1] != config.diffusion_channels or std.shape[1] != config.diffusion_channels:
            raise ValueError(
                f"latent_mean/latent_std need {config.diffusion_channels} values (one per diffusion channel)"
            )
        self.register_buffer("latent_mean", mean, persistent=False)
        self.register_buffer("latent_std", std, persistent=False)

    # -- rules and shapes ---------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        return self.config.backbone.causal

    @property
    def frame_rule(self) -> FrameRule:
        return self.config.frame_rule

    @property
    def gradient_checkpointing(self) -> bool:
        return bool(getattr(self.backbone, "gradient_checkpointing", False))

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        """Recompute backbone blocks in backward instead of storing activations (training only)."""
        if not hasattr(self.backbone, "gradient_checkpointing"):
            raise ValueError(f"{type(self.backbone).__name__} has no gradient checkpointing; use a WF-VAE backbone")
        self.backbone.gradient_checkpointing = on

    def diffusion_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C', F, h, w) of the diffusion latent for a video of the given size (checked)."""
        return self.config.diffusion_shape(frames, height, width)

    @property
    def last_layer(self) -> Tensor:
        return self.backbone.last_layer

    # -- the training path --------------------------------------------------------------------
    def compress(self, z: Tensor, return_coefficients: bool = False) -> tuple[Tensor, Coefficients | None]:
        """z -> z_hat through Multi-WT, mask and Multi-IWT (identity without compression).

        The compressor's fused projection is used unless the masked coefficients are wanted too.
        """
        if self.compressor is None:
            return z, None
        if not return_coefficients:
            return self.compressor(z), None
        coeffs = self.compressor.mask(self.compressor.analysis(z))
        return self.compressor.synthesis(coeffs), coeffs

    def forward(
        self,
        x: Tensor,
        sample_posterior: bool = True,
        generator: torch.Generator | None = None,
        return_coefficients: bool = False,
        noise: Tensor | None = None,
    ) -> LCVAEOutput:
        """The training path. ``coefficients`` is filled only when ``return_coefficients`` is set.

        ``noise`` (B, C, T', h, w), standard normal: the posterior sample is mean + std * noise
        (instead of noise drawn from ``generator``); only with ``sample_posterior``.
        """
        if noise is not None and not sample_posterior:
            raise ValueError("noise is for the posterior sample; leave it unset with sample_posterior=False")
        self.frame_rule.check(x)
        enc = self.backbone.encode_moments(x)
        posterior = DiagonalGaussian(enc.moments)
        z = posterior.sample(generator, noise) if sample_posterior else posterior.mode()
        z_hat, coeffs = self.compress(z, return_coefficients)
        dec = self.backbone.decode_output(z_hat)
        return LCVAEOutput(dec.sample, posterior, z, coeffs, z_hat, (enc.w2, enc.w3), (dec.w2, dec.w3))

    # -- inference ----------------------------------------------------------------------------
    def encode(
        self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> DiagonalGaussian:
        """Posterior; ``chunk`` streams frames (causal models), ``tile``/``overlap`` (pixels) cut frames into tiles."""
        self.frame_rule.check(x)
        if tile is None:
            return self.backbone.encode(x, chunk)
        return self.backbone.encode(x, chunk, tile=tile, overlap=overlap)

    def reconstruct(
        self,
        x: Tensor,
        chunk: int | None = None,
        decode_chunk: int | None = None,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> Tensor:
        """Posterior mode through the compressor and back: (B, 3, T, H, W), unclamped.

        ``tile`` and ``overlap`` are in pixels; decoding uses the same tiling in latent pixels.
        """
        z_hat, _ = self.compress(self.encode(x, chunk, tile, overlap).mode())
        if tile is None:
            return self.backbone.decode(z_hat, decode_chunk)
        s = self.frame_rule.spatial_factor
        overlap = self.frame_rule.default_overlap(tile) if overlap is None else overlap
        return self.backbone.decode(z_hat, decode_chunk, tile=tile // s, overlap=max(1, overlap // s))

    def diffusion_latent(
        self, x: Tensor, sample: bool = False, chunk: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Video -> normalised diffusion latent (B, C', F, h, w): the packed kept coefficients."""
        posterior = self.encode(x, chunk)
        z = posterior.sample(generator) if sample else posterior.mode()
        return self.latent_to_diffusion(z)

    def latent_to_diffusion(self, z: Tensor) -> Tensor:
        packed = z if self.compressor is None else self.compressor.pack(self.compressor.analysis(z))
        return (packed - self.latent_mean.to(packed)) / self.latent_std.to(packed)

    def diffusion_to_latent(self, x: Tensor) -> Tensor:
        """Normalised diffusion latent -> backbone latent z_hat (dropped coefficients zero)."""
        packed = x * self.latent_std.to(x) + self.latent_mean.to(x)
        return packed if self.compressor is None else self.compressor.synthesis(self.compressor.unpack(packed))

    def decode_latent(self, x: Tensor, chunk: int | None = None) -> Tensor:
        """Diffusion latent -> video (B, 3, T, H, W)."""
        return self.backbone.decode(self.diffusion_to_latent(x), chunk)
