"""The Wan 2.1 and Wan 2.2 video VAEs (diffusers' ``AutoencoderKLWan``) as LC-VAE backbones (supplement E.2).

Wan 2.1's VAE is causal and compresses 4 x 8 x 8 like WF-VAE: 1 + 4k frames -> 1 + k latent frames
of z = 16 channels, the first latent frame encoding the first video frame alone. Wan 2.2's VAE
(``is_residual``, ``patch_size`` 2) is the same causal design with residual down/up blocks behind a
2 x 2 pixel patchify (RGB -> 12 channels): 4 x 16 x 16, z = 48; with compression it takes 1 + 32k
frames of 32-pixel multiples, and diffusion sees 24 channels with no widening. The paper trained
it into an LC-VAE with a widened latent, z = 32, whose Multi-WT keeps half the coefficients, so
diffusion sees 16 channels (the width of the original Wan latent); the first latent frame passes
the compressor uncompressed (docs/compression.md#causal-head-frame).

How the adapter maps Wan onto the backbone protocol:

* posterior: Wan's encoder + ``quant_conv`` give 2z channels, mean then log-variance, which is the
  layout of our moments; ``encode(x).latent_dist.parameters`` is used as is (log-variance clamped
  to [-30, 20] on both sides);
* streaming: Wan always runs its encoder on frame 0, then 4 frames at a time, and its decoder one
  latent frame at a time, with a feature cache of the last frames of every causal conv. Memory is
  therefore flat in the video length whatever ``chunk`` says; ``chunk`` is validated with the
  WF-VAE rule and does not change the result (there is no whole-video path to differ from);
* output: diffusers clamps the decoded video to [-1, 1], which would zero the gradient of every
  pixel outside that range during training. ``_decode`` runs the same per-frame decoder loop without
  the clamp; reconstructions are unclamped like WF-VAE's (video writers clamp);
* frame rule: Wan silently drops the frames after the last complete 4-frame chunk (10 frames encode
  like 9); here any count other than 1 + 4k is an error;
* last layer: the decoder's final causal conv (``decoder.conv_out``); Wan has no energy-flow
  shortcuts, so a non-zero wavelet-loss weight is an error in the loss;
* normalisation: Wan's ``latents_mean`` / ``latents_std`` are per-channel statistics of its z = 16
  latent, applied as (z - mean) / std before diffusion. They are the LCVAEConfig's ``latent_mean`` /
  ``latent_std`` when the model is the original Wan (no compression, native width). A widened or
  compressed model's diffusion latent is a different tensor (packed Multi-WT coefficients), so its
  statistics are dropped and must be measured again (``lcvae latent-stats``).

Widening (:func:`widen_wan_state`) loads a z0-channel Wan into a z-channel one so that the z0 old
channels behave exactly as before and the decoder ignores the new ones at the start of training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from lcvae.masks import CompressionConfig
from lcvae.models.diffusers_vae import DiffusersBackbone, diffusers_class, diffusers_folder_state, read_diffusers_folder
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.vae import FrameRule
from lcvae.utils import strict_from_dict, suggest

logger = logging.getLogger(__name__)

__all__ = [
    "WanVAEConfig",
    "WanVAE",
    "WAN22",
    "WAN21_LATENTS_MEAN",
    "WAN21_LATENTS_STD",
    "widen_wan_state",
    "lcvae_config_from_diffusers",
    "wan_lcvae_from_diffusers",
]

# Per-channel statistics of the Wan 2.1 latent, as published in its diffusers config.
WAN21_LATENTS_MEAN = [
    -0.7571,
    -0.7089,
    -0.9113,
    0.1075,
    -0.1745,
    0.9653,
    -0.1517,
    1.5508,
    0.4134,
    -0.0715,
    0.5517,
    -0.3632,
    -0.1922,
    -0.9497,
    0.2503,
    -0.2921,
]
WAN21_LATENTS_STD = [
    2.8184,
    1.4541,
    2.3275,
    2.6558,
    1.2196,
    1.7708,
    2.6052,
    2.0743,
    3.2687,
    2.1526,
    2.8652,
    1.5579,
    1.6382,
    1.1253,
    2.8251,
    1.9160,
]


@dataclass(frozen=True)
class WanVAEConfig:
    """Shape of a Wan VAE; defaults are the released Wan 2.1 model (~127 M parameters).

    ``temporal_downsample`` is diffusers' ``temperal_downsample``: which of the spatial
    downsampling stages also halve time (two of them, for the 4x time compression).
    ``is_residual`` and ``patch_size`` (p x p pixels folded into channels before the encoder, so
    the spatial factor is 8p) describe Wan 2.2 (``WAN22``); ``None`` is no patchify.
    """

    latent_channels: int = 16  # z_dim
    base_dim: int = 96
    decoder_base_dim: int | None = None  # None: base_dim
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    is_residual: bool = False
    patch_size: int | None = None

    def __post_init__(self) -> None:
        for name in ("dim_mult", "attn_scales", "temporal_downsample"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        stages = len(self.dim_mult) - 1
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(f"patch_size must be None or >= 1, got {self.patch_size}; Wan 2.2 uses 2")
        if 2**stages != 8:
            raise ValueError(
                f"dim_mult needs 4 entries (3 downsampling stages, 8x in space), got {list(self.dim_mult)}"
            )
        if len(self.temporal_downsample) != stages or sum(self.temporal_downsample) != 2:
            raise ValueError(
                f"temporal_downsample needs {stages} flags, two of them True (4x in time), got "
                f"{list(self.temporal_downsample)}; Wan 2.1 uses [False, True, True]"
            )
        if self.latent_channels < 1 or self.base_dim < 1 or self.num_res_blocks < 1:
            raise ValueError("latent_channels, base_dim and num_res_blocks must be >= 1")

    @property
    def causal(self) -> bool:
        """Wan is causal by construction (its convs pad only the past)."""
        return True

    @property
    def frame_rule(self) -> FrameRule:
        """4 x 8p x 8p for patch size p (1 when None), causal: 1 + 4k frames."""
        return FrameRule(causal=True, spatial_factor=8 * self._patch)

    @property
    def _patch(self) -> int:
        return self.patch_size or 1

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> WanVAEConfig:
        return strict_from_dict(cls, d)

    def diffusers_kwargs(self) -> dict:
        """Constructor arguments of ``AutoencoderKLWan``. Its stored latent statistics are neutral:
        normalisation lives in the LCVAEConfig, not in the module."""
        return {
            "base_dim": self.base_dim,
            "decoder_base_dim": self.decoder_base_dim,
            "z_dim": self.latent_channels,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": list(self.attn_scales),
            "temperal_downsample": list(self.temporal_downsample),
            "dropout": self.dropout,
            "latents_mean": [0.0] * self.latent_channels,
            "latents_std": [1.0] * self.latent_channels,
            "is_residual": self.is_residual,
            "patch_size": self.patch_size,
            "in_channels": 3 * self._patch**2,
            "out_channels": 3 * self._patch**2,
            "scale_factor_temporal": 4,
            "scale_factor_spatial": 8 * self._patch,
        }

    @classmethod
    def from_diffusers(cls, raw: dict) -> WanVAEConfig:
        """Translate an ``AutoencoderKLWan`` config.json; reject what this backbone does not cover."""
        if raw.get("_class_name", "AutoencoderKLWan") != "AutoencoderKLWan":
            raise ValueError(f"expected an AutoencoderKLWan config, got _class_name={raw['_class_name']!r}")
        patch = raw.get("patch_size") or 1
        fixed = {
            "in_channels": 3 * patch**2,
            "out_channels": 3 * patch**2,
            "scale_factor_temporal": 4,
            "scale_factor_spatial": 8 * patch,
        }
        for key, value in fixed.items():
            if raw.get(key, value) != value:
                raise ValueError(
                    f"AutoencoderKLWan config has {key}={raw[key]!r}; with patch_size {raw.get('patch_size')} only "
                    f"{value!r} is supported (RGB video, p x p pixels per patch, 4 x 8p x 8p: Wan 2.1 has no patch, "
                    f"Wan 2.2 has patch_size 2)"
                )
        rename = {"z_dim": "latent_channels", "temperal_downsample": "temporal_downsample"}
        taken = [
            "base_dim",
            "decoder_base_dim",
            "dim_mult",
            "num_res_blocks",
            "attn_scales",
            "dropout",
            "is_residual",
            "patch_size",
            *rename,
        ]
        ignored = ["latents_mean", "latents_std", *fixed]
        fields = {}
        for key, value in raw.items():
            if key.startswith("_") or key in ignored:
                continue
            if key not in taken:
                raise ValueError(f"unknown AutoencoderKLWan config key {key!r}{suggest(key, taken + ignored)}")
            fields[rename.get(key, key)] = value
        return cls(**fields)


# The Wan 2.2 VAE (Wan2.2-TI2V-5B): residual blocks, 2 x 2 patchify, 4 x 16 x 16, z = 48. Its latent
# statistics come with its diffusers folder (``lcvae_config_from_diffusers``); none are copied here.
WAN22 = WanVAEConfig(latent_channels=48, base_dim=160, decoder_base_dim=256, is_residual=True, patch_size=2)


def widen_wan_state(state: Mapping[str, Tensor], fresh: Mapping[str, Tensor], old: int, new: int) -> dict[str, Tensor]:
    """A z=``old`` Wan state (diffusers names) -> z=``new`` (>= old), keeping the old function.

    ``fresh`` is the state of a freshly initialised z=``new`` model, which supplies the new rows.
    Moment channels are laid out [mean (z), log-variance (z)], so old mean c goes to c and old
    log-variance c to new + c. The encoder's new channels keep their fresh weights (they start
    carrying features at once); ``quant_conv`` and ``post_quant_conv`` are block-embedded with the
    old outputs reading only old inputs; the decoder's ``conv_in`` weights on the new channels are
    zero. So the first ``old`` posterior channels and the reconstruction equal the original model's,
    and the new channels start to matter as soon as training moves those zero weights (their
    gradient is not zero: it is the product of the new channels' values and the upstream gradient).
    """
    if new < old:
        raise ValueError(f"cannot narrow a Wan latent from {old} to {new} channels; use latent_channels >= {old}")
    out = {k: v for k, v in state.items()}
    m = torch.cat([torch.arange(old), new + torch.arange(old)])  # old moment channels in the wide layout

    def start(name: str) -> Tensor:
        return fresh[name].detach().clone().to(state[name].dtype)

    w = start("encoder.conv_out.weight")
    w[m] = state["encoder.conv_out.weight"]
    b = start("encoder.conv_out.bias")
    b[m] = state["encoder.conv_out.bias"]
    out["encoder.conv_out.weight"], out["encoder.conv_out.bias"] = w, b

    q = start("quant_conv.weight")  # (2z, 2z, 1, 1, 1)
    q[m] = 0.0
    q[m[:, None], m] = state["quant_conv.weight"]
    qb = start("quant_conv.bias")
    qb[m] = state["quant_conv.bias"]
    out["quant_conv.weight"], out["quant_conv.bias"] = q, qb

    p = start("post_quant_conv.weight")  # (z, z, 1, 1, 1)
    p[:old] = 0.0
    p[:old, :old] = state["post_quant_conv.weight"]
    pb = start("post_quant_conv.bias")
    pb[:old] = state["post_quant_conv.bias"]
    out["post_quant_conv.weight"], out["post_quant_conv.bias"] = p, pb

    d = start("decoder.conv_in.weight")  # (D, z, 3, 3, 3)
    d.zero_()
    d[:, :old] = state["decoder.conv_in.weight"]
    out["decoder.conv_in.weight"] = d
    return out


class WanVAE(DiffusersBackbone):
    """Wan 2.1 / 2.2 VAE backbone. Videos (B, 3, 1 + 4k, H, W) in [-1, 1]; latents (B, z, 1 + k, H/s, W/s)
    with s = 8 (Wan 2.1) or 16 (Wan 2.2, patch size 2)."""

    accepts_chunk = True  # Wan always streams exactly (see the module docstring)

    def __init__(self, config: WanVAEConfig) -> None:
        vae = diffusers_class("AutoencoderKLWan")(**config.diffusers_kwargs())
        super().__init__(config, vae, "decoder.conv_out")
        causal_conv = type(vae.decoder.conv_in)  # WanCausalConv3d: every conv that keeps a feature cache
        self._decoder_caches = sum(isinstance(m, causal_conv) for m in vae.decoder.modules())
        # diffusers' own inverse of the patchify its encode applies (the channel order is its choice)
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        self._unpatchify = unpatchify

    def _decode(self, z: Tensor) -> Tensor:
        """diffusers' per-latent-frame decoder loop (and unpatchify) without its final clamp: (B, 3, T, s*h, s*w)."""
        h = self.vae.post_quant_conv(z)
        cache: list = [None] * self._decoder_caches  # fresh per call: no state is left on the module
        frames = []
        for i in range(h.shape[2]):
            frames.append(self.vae.decoder(h[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], first_chunk=i == 0))
        video = torch.cat(frames, dim=2)
        patch = self.config.patch_size
        return video if patch is None else self._unpatchify(video, patch_size=patch)

    def load_diffusers_state(self, state: Mapping[str, Tensor], source: str = "state") -> None:
        """Load AutoencoderKLWan weights (diffusers names); a narrower latent is widened (``widen_wan_state``)."""
        key = "encoder.conv_out.weight"
        old = state[key].shape[0] // 2 if key in state else self.latent_channels
        if old != self.latent_channels:
            state = widen_wan_state(state, self.vae.state_dict(), old, self.latent_channels)
            logger.info(
                "widened the %d-channel Wan latent of %s to %d channels (new decoder inputs start at zero)",
                old,
                source,
                self.latent_channels,
            )
        super().load_diffusers_state(state, source)


def lcvae_config_from_diffusers(
    raw: dict, latent_channels: int | None = None, compression: CompressionConfig | str | None = None
) -> LCVAEConfig:
    """LCVAEConfig for a diffusers Wan config.json, optionally widened and compressed.

    ``compression``: a CompressionConfig or a mask name ("paper", ...). Wan's latent statistics are
    kept only for the original model (native width, no compression); see the module docstring.
    """
    backbone = WanVAEConfig.from_diffusers(raw)
    native = backbone.latent_channels
    if latent_channels is not None:
        if latent_channels < native:
            raise ValueError(
                f"latent_channels ({latent_channels}) must be >= the pretrained width ({native}); widening only"
            )
        backbone = replace(backbone, latent_channels=latent_channels)
    width = backbone.latent_channels
    if isinstance(compression, str):
        compression = CompressionConfig(mask=compression)
    mean, std = raw.get("latents_mean"), raw.get("latents_std")
    if mean is not None and std is not None and (len(mean) != native or len(std) != native):
        # diffusers writes its 16-channel defaults into any folder that does not set them
        logger.warning(
            "ignoring latents_mean/latents_std: %d and %d values for a %d-channel latent; "
            "measure the statistics with `lcvae latent-stats`",
            len(mean),
            len(std),
            native,
        )
        mean = std = None
    if compression is None and width == native and mean is not None and std is not None:
        return LCVAEConfig(backbone=backbone, latent_mean=list(mean), latent_std=list(std))
    if mean is not None:
        logger.info(
            "Wan's latents_mean/latents_std describe its native latent, not this %s one; "
            "measure the new statistics with `lcvae latent-stats`",
            "compressed" if compression is not None else f"{width}-channel",
        )
    return LCVAEConfig(backbone=backbone, compression=compression)


def wan_lcvae_from_diffusers(
    folder: str | Path, latent_channels: int | None = None, compression: CompressionConfig | str | None = None
) -> LCVAE:
    """An LCVAE starting from a local diffusers Wan VAE folder (``config.json`` +
    ``diffusion_pytorch_model.safetensors``, e.g. ``Wan2.1-T2V-1.3B-Diffusers/vae``); nothing is downloaded.

    ``latent_channels`` > the folder's z widens the latent (paper: 32); new weights come from the
    current torch RNG, so seed it first for a reproducible start.
    """
    config = lcvae_config_from_diffusers(read_diffusers_folder(folder), latent_channels, compression)
    model = LCVAE(config)
    model.backbone.load_diffusers_state(diffusers_folder_state(folder), str(folder))
    return model
