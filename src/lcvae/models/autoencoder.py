"""The WF-VAE backbone as a video autoencoder: whole, chunked and tiled inference."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lcvae.models.onednn import WeightPacker
from lcvae.models.stream import StreamCache
from lcvae.models.tiling import tiled_apply
from lcvae.models.vae import DecoderOutput, DiagonalGaussian, EncoderOutput, FrameRule
from lcvae.models.wfvae import Decoder, Encoder, WFVAEConfig

_PACK_MIN_CHUNKS = 5  # measured break-even of packing WF-VAE-L's weights: about four chunks


def _stream_chunks(x: Tensor, chunk: int) -> Iterator[tuple[Tensor, StreamCache]]:
    """The first frame alone, then ``chunk`` frames at a time, with one cache marked final on the last.

    Weights are packed for the pass (``StreamCache.weights``) only when it has at least
    ``_PACK_MIN_CHUNKS`` chunks (packing and restoring a weight cost about three per-call reorders);
    they are restored when the pass ends, fails or is abandoned (the generator closed)."""
    starts = [0, *range(1, x.shape[2], chunk)]
    cache = StreamCache(weights=WeightPacker(enabled=len(starts) >= _PACK_MIN_CHUNKS))
    try:
        for i, s in enumerate(starts):
            cache.final = i == len(starts) - 1
            yield x[:, :, s : (1 if i == 0 else s + chunk)], cache
    finally:
        cache.release()


class WFVAE(nn.Module):
    """WF-VAE backbone. ``encode`` gives the posterior, ``decode`` the video (B, 3, T, H, W) in ~[-1, 1]."""

    def __init__(self, config: WFVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    # -- shapes -------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def frame_rule(self) -> FrameRule:
        return self.config.frame_rule

    @property
    def gradient_checkpointing(self) -> bool:
        """Recompute residual and attention blocks in backward instead of storing their activations."""
        return self.encoder.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        self.encoder.gradient_checkpointing = self.decoder.gradient_checkpointing = bool(on)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the final decoder conv, for the adaptive GAN weight."""
        return self.decoder.conv_out.weight

    # -- inference ----------------------------------------------------------------------------
    def encode_moments(self, x: Tensor, chunk: int | None = None) -> EncoderOutput:
        """Encoder output for (B, 3, T, H, W) in [-1, 1]; ``chunk`` streams ``chunk`` frames at a time."""
        self.frame_rule.check(x)
        return self._encode_moments(x, chunk)

    def _encode_moments(self, x: Tensor, chunk: int | None) -> EncoderOutput:
        """``encode_moments`` without the input check."""
        if chunk is None:
            return self.encoder(x)
        outs = list(self.iter_encode(x, chunk))
        return EncoderOutput(*(torch.cat([getattr(o, f) for o in outs], dim=2) for f in ("moments", "w2", "w3")))

    def encode(
        self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> DiagonalGaussian:
        """Posterior of (B, 3, T, H, W) in [-1, 1]. ``tile``: encode ``tile``-pixel tiles overlapping by
        ``overlap`` pixels (default ``frame_rule.default_overlap``; see tiling.py)."""
        self.frame_rule.check(x)
        if tile is None:
            return DiagonalGaussian(self._encode_moments(x, chunk).moments)
        overlap = self.frame_rule.default_overlap(tile) if overlap is None else overlap
        moments = tiled_apply(lambda t: self._encode_moments(t, chunk).moments, x, tile, overlap, 1 / 8, align=8)
        return DiagonalGaussian(moments)

    def iter_encode(self, x: Tensor, chunk: int) -> Iterator[EncoderOutput]:
        """Causal streaming encoder: the first frame, then ``chunk`` frames (a multiple of 4) at a time."""
        self._check_streamable()
        if chunk <= 0 or chunk % 4:
            raise ValueError(f"encoder chunk must be a positive multiple of 4 frames, got {chunk}")
        for piece, cache in _stream_chunks(x, chunk):
            yield self.encoder(piece, cache)

    def decode(
        self, z: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> Tensor:
        """(B, C, T', h, w) latent -> (B, 3, T, 8h, 8w) video; ``chunk`` streams latent frames,
        ``tile`` decodes ``tile``-latent-pixel tiles overlapping by ``overlap`` (default a quarter tile)."""
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent (B, {self.latent_channels}, T', h, w), got shape {tuple(z.shape)}")
        if tile is not None:
            overlap = self.frame_rule.default_overlap(tile, latent=True) if overlap is None else overlap
            return tiled_apply(lambda t: self.decode(t, chunk), z, tile, overlap, 8)
        if chunk is None:
            return self.decoder(z).sample
        return torch.cat(list(self.iter_decode(z, chunk)), dim=2)

    def decode_output(self, z: Tensor, chunk: int | None = None) -> DecoderOutput:
        """Decoder output with the energy-flow coefficients (whole video; ``chunk`` streams frames only)."""
        if chunk is None:
            return self.decoder(z)
        return DecoderOutput(self.decode(z, chunk))

    def iter_decode(self, z: Tensor, chunk: int) -> Iterator[Tensor]:
        """Causal streaming decoder yielding video frames; memory stays flat in the video length."""
        self._check_streamable()
        if chunk <= 0:
            raise ValueError(f"decoder chunk must be at least 1 latent frame, got {chunk}")
        for piece, cache in _stream_chunks(z, chunk):
            yield self.decoder(piece, cache).sample

    def _check_streamable(self) -> None:
        if not self.config.causal:
            raise ValueError(
                "chunked inference needs a causal model; non-causal models run on the whole video (chunk=None)"
            )
        if self.config.norm != "layernorm":
            raise ValueError("chunked inference is exact only with norm='layernorm' (GroupNorm pools over time)")
