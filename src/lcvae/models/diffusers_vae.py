"""Any diffusers video VAE as an LC-VAE backbone.

The compressor only needs a latent (B, C, T', H', W') and a decoder that takes one back, so a
diffusers autoencoder with the ``latent_dist`` interface (``encode(x).latent_dist.parameters`` are
the posterior mean and log-variance stacked on the channel axis, ``decode(z).sample`` the video)
meets the backbone protocol of ``lcvae.models.backbone`` through this adapter. Plugging one in is
a config, not code::

    from lcvae.masks import CompressionConfig
    from lcvae.models.diffusers_vae import DiffusersVAEConfig
    from lcvae.models.lcvae import LCVAE, LCVAEConfig

    backbone = DiffusersVAEConfig(
        model_class="AutoencoderKLHunyuanVideo",      # any class exported by diffusers
        model_config={"latent_channels": 32},        # its constructor arguments
        latent_channels=32,
        attributes={"use_framewise_encoding": False, "use_framewise_decoding": False},
    )
    model = LCVAE(LCVAEConfig(backbone, CompressionConfig(mask="paper")))

What the adapter checks, because diffusers models do not: the frame rule (causal 1 + t*k frames,
else t*k; Wan, for one, silently drops frames that do not fit), the frame size (multiples of s), and
that the model really maps t x s x s both ways (on every encoder and decoder output, which also
catches model-specific rules such as CogVideoX decoding only odd latent lengths). t and s are read
from the constructor arguments of the classes in ``KNOWN_CLASSES`` (Wan 2.1 4 x 8 x 8; Wan 2.2,
HunyuanVideo 1.5 4 x 16 x 16; LTX-2 8 x 32 x 32), else 4 x 8 x 8 unless the config says otherwise;
classes that cannot be a backbone are refused with the reason (``REFUSED_CLASSES``). What the adapter
cannot know, and the config says: the latent width, whether the model is causal, and which weight is
the decoder's last layer (for the adaptive GAN weight).

Two things differ between diffusers VAEs and need care, see ``docs/backbones.md``:

* output clamping: some decoders clamp to [-1, 1] (Wan), which zeroes the gradient of every pixel
  outside that range; subclass and override ``_decode`` to return the unclamped output, as
  ``lcvae.models.wan`` does;
* temporal batching: each model streams (or tiles) frames its own way; ``attributes`` sets the
  model's switches (e.g. HunyuanVideo's ``use_framewise_*``, which blend overlapping temporal
  tiles and so are not exact). ``chunk`` is therefore refused here; ``lcvae.models.wan`` accepts it
  because Wan always streams exactly.

The diffusers model is stored as ``self.vae``, so its weights are named ``vae.<diffusers name>``
(``diffusers_prefix``); diffusers is imported only when a model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from lcvae.models.diffusers_config import KNOWN_CLASSES, REFUSED_CLASSES, DiffusersVAEConfig, diffusers_class
from lcvae.models.diffusers_folder import (  # noqa: F401 (the file names stay importable from here)
    DIFFUSERS_CONFIG,
    DIFFUSERS_WEIGHTS,
    diffusers_folder_state,
    diffusers_vae_config,
    lcvae_from_diffusers_folder,
    native_statistics,
    read_diffusers_folder,
)
from lcvae.models.tiling import tiled_apply
from lcvae.models.vae import DecoderOutput, DiagonalGaussian, EncoderOutput, FrameRule
from lcvae.utils import suggest

__all__ = [
    "DiffusersVAEConfig",
    "DiffusersBackbone",
    "DiffusersVAE",
    "diffusers_class",
    "read_diffusers_folder",
    "diffusers_folder_state",
    "diffusers_vae_config",
    "native_statistics",
    "lcvae_from_diffusers_folder",
    "KNOWN_CLASSES",
    "REFUSED_CLASSES",
]


def _resolve_last_layer(model: nn.Module, name: str) -> str:
    """Parameter name of the decoder's last layer weight, from a parameter or module name."""
    params = dict(model.named_parameters())
    for candidate in (name, f"{name}.weight", f"{name}.conv.weight"):
        if candidate in params:
            return candidate
    convs = [n for n in params if n.startswith("decoder.") and n.endswith("weight") and "conv_out" in n]
    raise ValueError(
        f"last_layer {name!r} names no parameter or module with a weight in this model; "
        f"decoder output weights: {convs or 'none found'}"
    )


class DiffusersBackbone(nn.Module):
    """Backbone protocol on top of a diffusers video autoencoder ``vae`` (see the module docstring).

    Videos are (B, 3, T, H, W) in [-1, 1]; latents (B, C, T', H/s, W/s) with T' = (T - 1) / t + 1
    (causal) or T / t, for the temporal and spatial factors t and s of ``frame_rule``.
    """

    diffusers_prefix = "vae."  # our weight names = this prefix + the diffusers names
    accepts_chunk = False  # True when the diffusers model always streams frames exactly (Wan)

    def __init__(self, config: Any, vae: nn.Module, last_layer: str) -> None:
        super().__init__()
        self.config = config
        self.vae = vae
        self._last_layer = _resolve_last_layer(vae, last_layer)

    # -- shapes -------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def encoder(self) -> nn.Module:
        return self.vae.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.vae.decoder

    @property
    def frame_rule(self) -> FrameRule:
        return self.config.frame_rule

    def _check_latent(self, z: Tensor) -> None:
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent (B, {self.latent_channels}, T', h, w), got shape {tuple(z.shape)}")

    def _check_chunk(self, chunk: int | None, encoder: bool) -> None:
        if chunk is None:
            return
        if not self.accepts_chunk:
            raise ValueError(
                f"{type(self.vae).__name__} batches frames its own way: leave chunk unset and choose the model's "
                f"temporal batching through the backbone config's 'attributes'"
            )
        t = self.frame_rule.temporal_factor
        if encoder and (chunk <= 0 or chunk % t):
            raise ValueError(f"encoder chunk must be a positive multiple of {t} frames, got {chunk}")
        if not encoder and chunk <= 0:
            raise ValueError(f"decoder chunk must be at least 1 latent frame, got {chunk}")

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's final layer, for the adaptive GAN weight."""
        return self.vae.get_parameter(self._last_layer)

    # -- the diffusers calls (override these for model quirks) ---------------------------------
    def _moments(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, 2C, T', H/s, W/s): posterior mean then log-variance."""
        return self.vae.encode(x).latent_dist.parameters

    def _decode(self, z: Tensor) -> Tensor:
        """(B, C, T', h, w) -> (B, 3, T, s*h, s*w), as the diffusers model returns it."""
        return self.vae.decode(z).sample

    # -- protocol -------------------------------------------------------------------------------
    def encode_moments(self, x: Tensor, chunk: int | None = None) -> EncoderOutput:
        """Posterior moments of a video (B, 3, T, H, W) in [-1, 1]; no energy-flow terms."""
        self.frame_rule.check(x)
        return self._encode_moments(x, chunk)

    def _encode_moments(self, x: Tensor, chunk: int | None) -> EncoderOutput:
        """``encode_moments`` without the input check; the output shape is still verified."""
        self._check_chunk(chunk, encoder=True)
        moments = self._moments(x)
        b, _, t, h, w = x.shape
        rule = self.frame_rule
        want = (b, 2 * self.latent_channels, rule.latent_frames(t), h // rule.spatial_factor, w // rule.spatial_factor)
        if tuple(moments.shape) != want:
            raise ValueError(
                f"the diffusers encoder gave moments {tuple(moments.shape)} for a video {tuple(x.shape)}, expected "
                f"{want}: this backbone config says {rule.temporal_factor} (time) x {rule.spatial_factor} x "
                f"{rule.spatial_factor} with {self.latent_channels} latent channels "
                f"({'causal' if self.config.causal else 'non-causal'}); check the backbone config"
            )
        return EncoderOutput(moments)

    def decode_output(self, z: Tensor, chunk: int | None = None) -> DecoderOutput:
        """Video (B, 3, T, s*h, s*w) from a latent (B, C, T', h, w); no energy-flow terms."""
        self._check_latent(z)
        self._check_chunk(chunk, encoder=False)
        video = self._decode(z)
        b, _, t, h, w = z.shape
        s = self.frame_rule.spatial_factor
        want = (b, 3, self.frame_rule.video_frames(t), s * h, s * w)
        if tuple(video.shape) != want:
            raise ValueError(
                f"the diffusers decoder gave {tuple(video.shape)} for a latent {tuple(z.shape)}, expected {want}; "
                f"{type(self.vae).__name__} has its own frame rule (CogVideoX, for one, decodes only an odd number "
                f"of latent frames: use 1 + 8k video frames)"
            )
        return DecoderOutput(video)

    def encode(
        self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> DiagonalGaussian:
        """Posterior of (B, 3, T, H, W) in [-1, 1]; ``tile``: ``tile``-pixel tiles overlapping by
        ``overlap`` (default ``frame_rule.default_overlap``; see tiling.py)."""
        self.frame_rule.check(x)
        if tile is None:
            return DiagonalGaussian(self._encode_moments(x, chunk).moments)
        overlap = self.frame_rule.default_overlap(tile) if overlap is None else overlap
        s = self.frame_rule.spatial_factor
        moments = tiled_apply(lambda t: self._encode_moments(t, chunk).moments, x, tile, overlap, 1 / s, align=s)
        return DiagonalGaussian(moments)

    def decode(
        self, z: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> Tensor:
        """(B, C, T', h, w) latent -> (B, 3, T, s*h, s*w) video; ``tile`` and ``overlap`` in latent pixels
        (default overlap a quarter tile)."""
        self._check_latent(z)
        if tile is not None:
            overlap = self.frame_rule.default_overlap(tile, latent=True) if overlap is None else overlap
            return tiled_apply(lambda t: self.decode(t, chunk), z, tile, overlap, self.frame_rule.spatial_factor)
        return self.decode_output(z, chunk).sample

    def load_diffusers_state(self, state: Mapping[str, Tensor], source: str = "state") -> None:
        """Load weights named as in the diffusers model (no ``vae.`` prefix); strict, errors name the keys."""
        own = self.vae.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [
            f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            parts = [
                f"{title} ({len(items)}): {', '.join(items[:6])}"
                for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
                if items
            ]
            raise ValueError(f"{source} does not match this backbone config: " + "; ".join(parts))
        self.vae.load_state_dict(dict(state), strict=True)


class DiffusersVAE(DiffusersBackbone):
    """The generic adapter: builds ``config.model_class(**config.model_config)`` and sets ``attributes``."""

    def __init__(self, config: DiffusersVAEConfig) -> None:
        vae = diffusers_class(config.model_class)(**config.model_config)
        for name, value in config.attributes.items():
            if not hasattr(vae, name):
                known = [n for n in vars(vae) if not n.startswith("_")]
                raise ValueError(f"{config.model_class} has no attribute {name!r}{suggest(name, known)}")
            setattr(vae, name, value)
        super().__init__(config, vae, config.last_layer)
