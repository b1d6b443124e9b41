"""The WF-VAE backbone as a video autoencoder: posterior, frame rules, whole and chunked inference."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lcvae.models.stream import StreamCache
from lcvae.models.tiling import tiled_apply
from lcvae.models.backbone import DecoderOutput, EncoderOutput
from lcvae.models.wfvae import Decoder, Encoder, WFVAEConfig


class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) from encoder moments (B, 2C, ...); log-variance clamped to [-30, 20]."""

    def __init__(self, moments: Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL to N(0, I), summed over all latent elements: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


def _nearest(n: int, valid) -> str:
    lo = n
    while lo > 0 and not valid(lo):
        lo -= 1
    hi = n
    while not valid(hi):
        hi += 1
    return f"use {lo} or {hi}" if lo > 0 and lo != hi else f"use {hi}"


def check_frames(t: int, causal: bool, multiple: int = 4) -> None:
    """Frame rule: causal 1 + multiple*k, non-causal multiple*k (k >= 1). Raises ValueError otherwise."""
    if causal:
        ok = lambda n: n >= 1 and (n - 1) % multiple == 0  # noqa: E731
        rule = f"1 + {multiple}k frames (causal: the first frame is encoded alone)"
    else:
        ok = lambda n: n >= multiple and n % multiple == 0  # noqa: E731
        rule = f"a multiple of {multiple} frames (non-causal)"
    if not ok(t):
        raise ValueError(f"this model needs {rule}, got {t}; {_nearest(t, ok)}")


def check_size(h: int, w: int, multiple: int) -> None:
    if h % multiple or w % multiple or h == 0 or w == 0:
        fix = lambda n: max(multiple, round(n / multiple) * multiple)  # noqa: E731
        raise ValueError(f"height and width must be multiples of {multiple}, got {h}x{w}; resize or crop to {fix(h)}x{fix(w)}")


def _stream_chunks(x: Tensor, chunk: int) -> Iterator[tuple[Tensor, StreamCache]]:
    """The first frame alone, then ``chunk`` frames at a time, with one cache marked final on the last."""
    cache = StreamCache()
    starts = [0, *range(1, x.shape[2], chunk)]
    for i, s in enumerate(starts):
        cache.final = i == len(starts) - 1
        yield x[:, :, s : (1 if i == 0 else s + chunk)], cache


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

    def latent_frames(self, t: int) -> int:
        return (t - 1) // 4 + 1 if self.config.causal else t // 4

    def video_frames(self, t_latent: int) -> int:
        return 4 * (t_latent - 1) + 1 if self.config.causal else 4 * t_latent

    def check_input(self, x: Tensor, frame_multiple: int = 4, size_multiple: int = 8) -> None:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a video (B, 3, T, H, W), got shape {tuple(x.shape)}")
        check_frames(x.shape[2], self.config.causal, frame_multiple)
        check_size(x.shape[3], x.shape[4], size_multiple)

    @property
    def last_layer(self) -> Tensor:
        """Weight of the final decoder conv, for the adaptive GAN weight."""
        return self.decoder.conv_out.weight

    # -- inference ----------------------------------------------------------------------------
    def encode_moments(self, x: Tensor, chunk: int | None = None) -> EncoderOutput:
        """Encoder output for (B, 3, T, H, W) in [-1, 1]; ``chunk`` streams ``chunk`` frames at a time."""
        self.check_input(x)
        if chunk is None:
            return self.encoder(x)
        outs = list(self.iter_encode(x, chunk))
        return EncoderOutput(*(torch.cat([getattr(o, f) for o in outs], dim=2) for f in ("moments", "w2", "w3")))

    def encode(self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None) -> DiagonalGaussian:
        """Posterior of (B, 3, T, H, W) in [-1, 1]. ``tile``: encode ``tile``-pixel tiles overlapping by
        ``overlap`` pixels (default a quarter tile; see tiling.py)."""
        if tile is None:
            return DiagonalGaussian(self.encode_moments(x, chunk).moments)
        self.check_input(x)
        overlap = tile // 4 // 8 * 8 if overlap is None else overlap
        moments = tiled_apply(lambda t: self.encode_moments(t, chunk).moments, x, tile, overlap, 1 / 8, align=8)
        return DiagonalGaussian(moments)

    def iter_encode(self, x: Tensor, chunk: int) -> Iterator[EncoderOutput]:
        """Causal streaming encoder: the first frame, then ``chunk`` frames (a multiple of 4) at a time."""
        self._check_streamable()
        if chunk <= 0 or chunk % 4:
            raise ValueError(f"encoder chunk must be a positive multiple of 4 frames, got {chunk}")
        for piece, cache in _stream_chunks(x, chunk):
            yield self.encoder(piece, cache)

    def decode(self, z: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None) -> Tensor:
        """(B, C, T', h, w) latent -> (B, 3, T, 8h, 8w) video; ``chunk`` streams latent frames,
        ``tile`` decodes ``tile``-latent-pixel tiles overlapping by ``overlap`` (default a quarter tile)."""
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent (B, {self.latent_channels}, T', h, w), got shape {tuple(z.shape)}")
        if tile is not None:
            overlap = max(1, tile // 4) if overlap is None else overlap
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
            raise ValueError("chunked inference needs a causal model; non-causal models run on the whole video (chunk=None)")
        if self.config.norm != "layernorm":
            raise ValueError("chunked inference is exact only with norm='layernorm' (GroupNorm pools over time)")
