"""WF-VAE: the wavelet-driven energy-flow video VAE that LC-VAE builds on (Li et al., CVPR 2025).

Compression 4 x 8 x 8 (time x height x width). The encoder starts from a 3D Haar level of the RGB
video and, besides its main convolutional path, injects two "energy-flow" shortcuts built from
further Haar levels of the low band; the decoder mirrors this with outflows added back before the
inverse Haar transforms. Shapes for a (3, T, 256, 256) causal input, B = base channels, E = energy
flow width, C = latent channels:

    3D Haar            -> (24, T2, 128, 128)            T2 = (T + 1) / 2 causal, T / 2 non-causal
    down1 (2D)         -> (B, T2, 64, 64)   + inflow L2 (E)   [2D Haar of the LLL band]
    down2 (3D)         -> (2B, T4, 32, 32)  + inflow L3 (E)   [3D Haar of that LL band]
    mid, out           -> (2C, T4, 32, 32)  mean and log-variance

Module names match the official checkpoint so it loads as is (see ``lcvae.models.io``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lcvae.models.layers import (
    Attention,
    CausalConv3d,
    Conv2d,
    Downsample2D,
    Downsample3D,
    Norm,
    ResBlock2D,
    ResBlock3D,
    Upsample2D,
    Upsample3D,
    silu_conv,
    to_model_dtype,
)
from lcvae.models.stream import StreamCache, StreamTag
from lcvae.models.vae import DecoderOutput, EncoderOutput, FrameRule
from lcvae.utils import strict_from_dict
from lcvae.wavelets import haar2d, haar3d, ihaar2d, ihaar3d


@dataclass(frozen=True)
class WFVAEConfig:
    base_channels: int = 128
    encoder_energy_flow: int = 128
    decoder_energy_flow: int = 128
    latent_channels: int = 8
    encoder_num_resblocks: int = 2
    decoder_num_resblocks: int = 2
    connect_res_layers: int = 1
    norm: str = "layernorm"
    attention: bool = True
    causal: bool = True
    dropout: float = 0.0
    t_interpolation: str = "trilinear"  # the decoder's time upsampling: "trilinear" (linear) or "nearest"

    @property
    def frame_rule(self) -> FrameRule:
        """4 x 8 x 8 compression; causal: 1 + 4k frames, else 4k."""
        return FrameRule(causal=self.causal)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WFVAEConfig:
        return strict_from_dict(cls, d)


def _haar3d(owner: nn.Module, x: Tensor, causal: bool, cache: StreamCache | None, tag: StreamTag) -> Tensor:
    if cache is None:
        return haar3d(x, causal=causal)
    # Causal Haar = stride-2 window over the stream with the first frame duplicated in front.
    return haar3d(cache.causal_window(owner, x, kernel=2, stride=2, tag=tag), causal=False)


def _ihaar3d(owner: nn.Module, c: Tensor, causal: bool, cache: StreamCache | None, tag: StreamTag) -> Tensor:
    if cache is None or not cache.started(owner, tag):
        if cache is not None:
            cache.put(owner, True, tag)
        return ihaar3d(c, causal=causal)
    return ihaar3d(c, causal=False)  # only the stream's first frame is a duplicate to drop


_CHECKPOINTED = (ResBlock2D, ResBlock3D, Attention)  # the blocks whose activations dominate memory


def _run(owner: nn.Module, blocks: nn.Sequential, x: Tensor, cache: StreamCache | None) -> Tensor:
    """Run ``blocks`` in order. With ``owner.gradient_checkpointing`` set, training recomputes each
    residual and attention block in backward instead of storing its activations (never when streaming)."""
    recompute = owner.gradient_checkpointing and cache is None and owner.training and torch.is_grad_enabled()
    for block in blocks:
        if recompute and isinstance(block, _CHECKPOINTED):
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x, cache)
    return x


class Encoder(nn.Module):
    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        b, e, n, causal = cfg.base_channels, cfg.encoder_energy_flow, cfg.norm, cfg.causal
        self.causal = causal
        self.gradient_checkpointing = False  # see _run
        self.down1 = nn.Sequential(
            Conv2d(24, b, 3, padding=1),
            *[ResBlock2D(b, b, n, cfg.dropout) for _ in range(cfg.encoder_num_resblocks)],
            Downsample2D(b, b),
        )
        self.down2 = nn.Sequential(
            Conv2d(b + e, 2 * b, 3, padding=1),
            *[ResBlock3D(2 * b, 2 * b, n, cfg.dropout, causal) for _ in range(cfg.encoder_num_resblocks)],
            Downsample3D(2 * b, 2 * b, causal),
        )
        self.connect_l1 = Conv2d(12, e, 3, padding=1)
        self.connect_l2 = Conv2d(24, e, 3, padding=1)
        mid = [ResBlock3D(2 * b + e, 4 * b, n, cfg.dropout, causal), ResBlock3D(4 * b, 4 * b, n, cfg.dropout, causal)]
        if cfg.attention:
            mid.insert(1, Attention(4 * b, n))
        self.mid = nn.Sequential(*mid)
        self.norm_out = Norm(4 * b, n)
        self.conv_out = CausalConv3d(4 * b, 2 * cfg.latent_channels, 3, spatial_padding=1, causal=causal)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> EncoderOutput:
        coeffs = _haar3d(self, x, self.causal, cache, StreamTag.INPUT)  # (B, 24, T2, H/2, W/2)
        w2 = haar2d(coeffs[:, :3])  # (B, 12, T2, H/4, W/4) from the LLL band
        w3 = _haar3d(self, w2[:, :3], self.causal, cache, StreamTag.LEVEL2)  # (B, 24, T', H/8, W/8)
        h = _run(self, self.down1, coeffs, cache)
        l1 = self.connect_l1(w2)
        if cache is not None:
            h, l1 = cache.align(self, h, l1, StreamTag.MERGE_L1)
        h = _run(self, self.down2, torch.cat([h, l1], dim=1), cache)
        l2 = self.connect_l2(w3)
        if cache is not None:
            h, l2 = cache.align(self, h, l2, StreamTag.MERGE_L2)
        h = _run(self, self.mid, torch.cat([h, l2], dim=1), cache)
        h = silu_conv(self.conv_out, self.norm_out(h), cache)
        # contiguous: the CPU layout may be channels-last (models/onednn.py); callers get the plain one
        return EncoderOutput(to_model_dtype(h, self.conv_out.conv.weight.dtype, "encoder output").contiguous(), w2, w3)


class Decoder(nn.Module):
    def __init__(self, cfg: WFVAEConfig) -> None:
        super().__init__()
        b, e, n, causal, d = cfg.base_channels, cfg.decoder_energy_flow, cfg.norm, cfg.causal, cfg.dropout
        self.causal, self.flow = causal, e
        self.gradient_checkpointing = False  # see _run
        self.conv_in = CausalConv3d(cfg.latent_channels, 4 * b, 3, spatial_padding=1, causal=causal)
        mid = [ResBlock3D(4 * b, 4 * b, n, d, causal), ResBlock3D(4 * b, 4 * b + e, n, d, causal)]
        if cfg.attention:
            mid.insert(1, Attention(4 * b, n))
        self.mid = nn.Sequential(*mid)
        self.up2 = nn.Sequential(
            *[ResBlock3D(4 * b, 4 * b, n, d, causal) for _ in range(cfg.decoder_num_resblocks)],
            Upsample3D(4 * b, 4 * b, causal, cfg.t_interpolation),
            ResBlock3D(4 * b, 4 * b + e, n, d, causal),
        )
        self.up1 = nn.Sequential(
            *[ResBlock3D(4 * b if i == 0 else 2 * b, 2 * b, n, d, causal) for i in range(cfg.decoder_num_resblocks)],
            Upsample2D(2 * b, 2 * b),
            ResBlock3D(2 * b, 2 * b, n, d, causal),
        )
        self.layer = nn.Sequential(ResBlock3D(2 * b, b, n, d, causal), ResBlock3D(b, b, n, d, causal))
        self.connect_l1 = nn.Sequential(
            *[ResBlock3D(e, e, n, d, causal) for _ in range(cfg.connect_res_layers)], Conv2d(e, 12, 3, padding=1)
        )
        self.connect_l2 = nn.Sequential(
            *[ResBlock3D(e, e, n, d, causal) for _ in range(cfg.connect_res_layers)], Conv2d(e, 24, 3, padding=1)
        )
        self.norm_out = Norm(b, n)
        self.conv_out = Conv2d(b, 24, 3, padding=1)

    def forward(self, z: Tensor, cache: StreamCache | None = None) -> DecoderOutput:
        h = _run(self, self.mid, self.conv_in(z, cache), cache)  # (B, 4B + E, T', H/8, W/8)
        w3 = _run(self, self.connect_l2, h[:, -self.flow :], cache)  # (B, 24, T', H/8, W/8)
        l2 = _ihaar3d(self, w3, self.causal, cache, StreamTag.LEVEL2)  # (B, 3, T2, H/4, W/4)
        h = _run(self, self.up2, h[:, : -self.flow], cache)  # (B, 4B + E, T2, H/4, W/4)
        w2 = _run(self, self.connect_l1, h[:, -self.flow :], cache)  # (B, 12, T2, H/4, W/4)
        if cache is not None:
            w2, l2 = cache.align(self, w2, l2, StreamTag.MERGE_L1)
        w2 = torch.cat([w2[:, :3] + l2, w2[:, 3:]], dim=1)
        l1 = ihaar2d(w2)  # (B, 3, T2, H/2, W/2)
        h = _run(self, self.up1, h[:, : -self.flow], cache)
        h = _run(self, self.layer, h, cache)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, 24, T2, H/2, W/2)
        h = torch.cat([h[:, :3] + l1, h[:, 3:]], dim=1)
        video = to_model_dtype(
            _ihaar3d(self, h, self.causal, cache, StreamTag.OUTPUT), self.conv_out.weight.dtype, "decoder output"
        )
        video = video.contiguous()  # the CPU layout may be channels-last (models/onednn.py)
        return DecoderOutput(video, w2, w3)
