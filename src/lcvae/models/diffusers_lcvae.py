"""``AutoencoderKLLCVAE``: an LC-VAE (or a plain WF-VAE) as a diffusers video VAE.

It follows the conventions of diffusers' video VAEs (``AutoencoderKLWan``), so diffusion code
written for them can use it:

* ``encode(video).latent_dist`` is a ``DiagonalGaussianDistribution`` over the *diffusion latent*
  (B, C', F, h, w): for an LC-VAE the packed kept Multi-WT coefficients of the posterior, for a
  plain backbone the posterior itself. ``decode(latent).sample`` is the video (B, 3, T, H, W),
  unclamped (diffusers' video post-processing clamps). Both take ``return_dict=False``.
* Per-channel ``latents_mean`` / ``latents_std`` (as ``lcvae latent-stats`` measures them) live in
  the config and are *not* applied by encode/decode; pipelines normalise with them, as they do for
  ``AutoencoderKLWan``.
* ``enable_tiling`` / ``enable_slicing`` / ``enable_chunking`` (exact causal streaming, flat memory
  in the video length) and their ``disable_*`` twins.
* ``save_pretrained`` / ``from_pretrained`` write and read diffusers' folder layout (config.json
  with ``_class_name``, diffusion_pytorch_model.safetensors), ``torch_dtype`` included;
  ``from_lcvae`` / ``to_lcvae`` convert from and to :class:`lcvae.models.lcvae.LCVAE` (our format).

The packed posterior. Multi-WT + mask + pack is an orthonormal transform followed by a selection:
a packed coefficient is y_k = sum_j A_kj z_j with A_kj = +-1/sqrt(32) over one 8x2x2 cell of one
latent channel (the causal head frame passes through, A_kj = 1). With z ~ N(mu, diag(s^2)) the
coefficient's mean is the packed mean and its variance sum_j A_kj^2 s_j^2, the mean of s^2 over the
cell. The distribution returned is the product of these exact marginals. It drops the correlations
between coefficients of one cell, which vanish when the encoder's variance is constant over the
cell; the mode, which inference uses, is exact either way.

diffusers is an optional dependency: import this module only when it is installed
(``from lcvae import AutoencoderKLLCVAE`` imports it on first use).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import Tensor

from lcvae.compression import Coefficients
from lcvae.masks import BANDS, GROUP_FRAMES
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset
from lcvae.models.vae import FrameRule

_DEFAULT_TILE, _DEFAULT_OVERLAP = 256, 64  # pixels, as diffusers' video VAEs default
_DEFAULT_ENCODE_CHUNK, _DEFAULT_DECODE_CHUNK = 16, 4  # video frames / latent frames per streamed chunk


class AutoencoderKLLCVAE(ModelMixin, ConfigMixin):
    """An LC-VAE or WF-VAE with diffusers' video-VAE interface (see the module docstring).

    Config: ``lcvae_config`` (an :class:`LCVAEConfig` as a dict, without latent statistics; default
    the ``lcvae-tiny`` preset), ``latents_mean`` / ``latents_std`` (one value per diffusion channel,
    or None for 0 / 1). Videos are (B, 3, T, H, W) in [-1, 1] with T and H, W on the model's frame
    rule (:attr:`frame_rule`, e.g. 1 + 32k frames and multiples of 16 pixels for a causal LC-VAE;
    :meth:`latent_shape` gives the diffusion latent's shape).
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        lcvae_config: dict | None = None,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        config = LCVAEConfig.from_dict(lcvae_config) if lcvae_config is not None else get_preset("lcvae-tiny")
        if config.latent_mean is not None:
            raise ValueError(
                "lcvae_config must not carry latent_mean/latent_std; pass them as latents_mean/latents_std"
            )
        if config.compression is not None and config.compression.adaptive:
            raise ValueError("adaptive compression has no fixed packed latent; use a fixed mask (e.g. mask='paper')")
        channels = config.diffusion_channels
        for name, values in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if values is not None and len(values) != channels:
                raise ValueError(f"{name} needs {channels} values (one per diffusion channel), got {len(values)}")
        if (latents_mean is None) != (latents_std is None):
            raise ValueError("set both latents_mean and latents_std, or neither")
        self.register_to_config(lcvae_config=config.to_dict())  # the resolved config, so saved folders are explicit
        self.lcvae = LCVAE(config)
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_size = _DEFAULT_TILE
        self.tile_sample_overlap = _DEFAULT_OVERLAP
        self.encode_chunk: int | None = None
        self.decode_chunk: int | None = None

    # -- conversion with our own format ---------------------------------------------------------
    @classmethod
    def from_lcvae(cls, model: LCVAE) -> AutoencoderKLLCVAE:
        """Wrap a copy of ``model``'s weights; its latent statistics become ``latents_mean``/``latents_std``."""
        cfg = {**model.config.to_dict(), "latent_mean": None, "latent_std": None}
        out = cls(lcvae_config=cfg, latents_mean=model.config.latent_mean, latents_std=model.config.latent_std)
        out.lcvae.load_state_dict(model.state_dict(), strict=True)
        param = next(model.parameters(), None)
        if param is not None and param.dtype != out.dtype:
            out = out.to(param.dtype)
        return out if param is None else out.to(param.device)

    def to_lcvae(self) -> LCVAE:
        """A new :class:`LCVAE` with a copy of the weights and ``latents_mean``/``latents_std`` as its statistics
        (save it with :func:`lcvae.models.io.save_pretrained`)."""
        cfg = LCVAEConfig.from_dict(
            {
                **self.lcvae.config.to_dict(),
                "latent_mean": self.config.latents_mean,
                "latent_std": self.config.latents_std,
            }
        )
        model = LCVAE(cfg)
        model.load_state_dict(self.lcvae.state_dict(), strict=True)
        return model.to(device=self.device, dtype=self.dtype)

    # -- rules and shapes -------------------------------------------------------------------------
    @property
    def frame_rule(self) -> FrameRule:
        """Valid video sizes: ``frame_rule.describe()``, ``.is_valid(T)``, ``.nearest_valid(T)``, ``.pixel_step``."""
        return self.lcvae.frame_rule

    @property
    def causal(self) -> bool:
        """Causal models encode the first frame alone (1 + k * frame_step frames)."""
        return self.lcvae.causal

    @property
    def spatial_compression_ratio(self) -> int:
        """Video pixels per latent pixel (8), as diffusers' video VAEs name it."""
        return self.frame_rule.spatial_factor

    @property
    def temporal_compression_ratio(self) -> int:
        """Video frames per backbone latent frame (4). The packed latent of a causal LC-VAE has C / C'
        frames for the first video frame (2 with a 50 % mask), not 1: take shapes from :meth:`latent_shape`."""
        return self.frame_rule.temporal_factor

    @property
    def latent_channels(self) -> int:
        """C', the channel count of the diffusion latent (what a denoiser sees)."""
        return self.lcvae.config.diffusion_channels

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C', F, h, w) of the diffusion latent of a (frames, height, width) video; ValueError off the rules."""
        return self.lcvae.diffusion_shape(frames, height, width)

    # -- memory options -----------------------------------------------------------------------------
    def enable_tiling(self, tile_sample_min_size: int | None = None, tile_sample_overlap: int | None = None) -> None:
        """Encode and decode frames larger than ``tile_sample_min_size`` pixels (a multiple of the backbone's
        spatial factor, 8 for WF-VAE) in square tiles overlapping by ``tile_sample_overlap`` pixels, blended
        linearly (approximate near tile edges)."""
        tile = tile_sample_min_size or self.tile_sample_min_size
        overlap = self.tile_sample_overlap if tile_sample_overlap is None else tile_sample_overlap
        s = self.frame_rule.spatial_factor
        if tile % s or overlap % s or not s <= overlap < tile:
            raise ValueError(
                f"tile ({tile}) and overlap ({overlap}) must be multiples of {s} with {s} <= overlap < tile"
            )
        self.use_tiling, self.tile_sample_min_size, self.tile_sample_overlap = True, tile, overlap

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        """Encode and decode one batch item at a time (same result, less memory)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def enable_chunking(
        self, encode_chunk: int | None = _DEFAULT_ENCODE_CHUNK, decode_chunk: int | None = _DEFAULT_DECODE_CHUNK
    ) -> None:
        """Stream the video through the causal cache: ``encode_chunk`` video frames (a multiple of 4) and
        ``decode_chunk`` latent frames at a time (None: that direction whole). Exact for causal models
        with LayerNorm; peak memory stays flat in the video length."""
        if not self.causal:
            raise ValueError("chunked inference needs a causal model; this one is non-causal")
        self.encode_chunk, self.decode_chunk = encode_chunk, decode_chunk

    def disable_chunking(self) -> None:
        self.encode_chunk = self.decode_chunk = None

    def _tile(self, height: int, width: int) -> int | None:
        big = max(height, width) > self.tile_sample_min_size
        return self.tile_sample_min_size if self.use_tiling and big else None

    # -- encode ---------------------------------------------------------------------------------------
    def _encode(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> packed posterior parameters (B, 2C', F, H/8, W/8): mean, then log-variance."""
        posterior = self.lcvae.encode(x, self.encode_chunk, self._tile(*x.shape[-2:]), self.tile_sample_overlap)
        compressor = self.lcvae.compressor
        if compressor is None:
            return torch.cat((posterior.mean, posterior.logvar), dim=1)
        mean = compressor.pack(compressor.analysis(posterior.mean))
        var = compressor.pack(self._coefficient_variance(posterior.std.square()))
        return torch.cat((mean, var.log()), dim=1)

    def _coefficient_variance(self, var: Tensor) -> Coefficients:
        """Variance of every Multi-WT coefficient of a latent with independent entries of variance ``var``.

        The transform's weights over a cell are +-1/sqrt(32), so each coefficient's variance is the
        mean of ``var`` over its 8x2x2 cell; coefficient channel i belongs to latent channel i % C.
        """
        if self.causal:
            head, body = var[:, :, :1], var[:, :, 1:]
        else:
            head, body = None, var
        b, c, t, h, w = body.shape
        cell = body.reshape(b, c, t // GROUP_FRAMES, GROUP_FRAMES, h // 2, 2, w // 2, 2).mean(dim=(3, 5, 7))
        return Coefficients(groups=cell.repeat(1, BANDS, 1, 1, 1), head=head)

    @apply_forward_hook  # pipelines' CPU offload moves the model to the device on encode/decode, not only forward
    def encode(self, x: Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Video (B, 3, T, H, W) in [-1, 1] -> posterior over the un-normalised diffusion latent (B, C', F, h, w)."""
        if self.use_slicing and x.shape[0] > 1:
            params = torch.cat([self._encode(piece) for piece in x.split(1)])
        else:
            params = self._encode(x)
        posterior = DiagonalGaussianDistribution(params)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    # -- decode ---------------------------------------------------------------------------------------
    def _decode(self, z: Tensor) -> Tensor:
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected a diffusion latent (B, {self.latent_channels}, F, h, w), got shape {tuple(z.shape)}"
            )
        compressor = self.lcvae.compressor
        z_hat = z if compressor is None else compressor.decode_latent(z)
        s = self.frame_rule.spatial_factor
        tile = self._tile(s * z.shape[-2], s * z.shape[-1])
        if tile is None:
            return self.lcvae.backbone.decode(z_hat, self.decode_chunk)
        overlap = max(1, self.tile_sample_overlap // s)
        return self.lcvae.backbone.decode(z_hat, self.decode_chunk, tile=tile // s, overlap=overlap)

    @apply_forward_hook
    def decode(self, z: Tensor, return_dict: bool = True) -> DecoderOutput | tuple[Tensor]:
        """Un-normalised diffusion latent (B, C', F, h, w) -> video (B, 3, T, 8h, 8w), unclamped."""
        if self.use_slicing and z.shape[0] > 1:
            video = torch.cat([self._decode(piece) for piece in z.split(1)])
        else:
            video = self._decode(z)
        return DecoderOutput(sample=video) if return_dict else (video,)

    def forward(
        self,
        sample: Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[Tensor]:
        """Encode and decode: the posterior mode (or a sample of the packed posterior) back to video."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)
