"""3D PatchGAN discriminator for video VAE training (docs/training.md#discriminator).

A pix2pix-style N-layer PatchGAN with 3D convolutions: every output logit judges one
space-time patch of the input video, so the adversarial signal is local (texture, flicker)
rather than global. Layer list of the paper preset (kernel 3, padding 1 everywhere):

    Conv3d 3->64     stride (2,2,2)                           LeakyReLU 0.2
    Conv3d 64->128   stride (2,2,2)  BatchNorm3d  LeakyReLU 0.2  Dropout 0.3
    Conv3d 128->256  stride (1,2,2)  BatchNorm3d  LeakyReLU 0.2  Dropout 0.3
    Conv3d 256->512  stride (1,2,2)  BatchNorm3d  LeakyReLU 0.2  Dropout 0.3
    Conv3d 512->512  stride (1,1,1)  BatchNorm3d  LeakyReLU 0.2  Dropout 0.3
    Conv3d 512->1    stride (1,1,1)

Convolutions followed by BatchNorm carry no bias (BatchNorm's shift makes it redundant; this is the
pix2pix convention). Initialisation is the standard pix2pix one: conv weights N(0, 0.02), conv biases
0, BatchNorm weight N(1, 0.02) and bias 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PatchDiscriminator3DConfig", "PatchDiscriminator3D", "DISCRIMINATOR_PRESETS", "init_pix2pix_"]


@dataclass(frozen=True)
class PatchDiscriminator3DConfig:
    """Shape of the PatchGAN.

    Layer n (1 <= n < num_layers) maps base*m(n-1) -> base*m(n) with m(n) = min(2**n, max_mult),
    stride 2 in space and stride 2 in time while fewer than ``temporal_downsamples`` convolutions
    (counting the first) have halved time; then one stride-1 layer to base*m(num_layers) and the
    1-channel logit convolution.
    """

    in_channels: int = 3
    base_channels: int = 64
    num_layers: int = 4
    max_mult: int = 8
    temporal_downsamples: int = 2
    dropout: float = 0.3
    negative_slope: float = 0.2
    kernel_size: int = 3

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so that padding keeps shapes, got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def widths(self) -> list[int]:
        """Output width of each conv before the logit conv: [base, base*m(1), ..., base*m(num_layers)]."""
        return [self.base_channels * min(2**n, self.max_mult) for n in range(self.num_layers + 1)]

    def strides(self) -> list[tuple[int, int, int]]:
        """Stride of each conv before the logit conv (same length as ``widths``)."""
        out = []
        for n in range(self.num_layers + 1):
            if n == self.num_layers:
                out.append((1, 1, 1))
            else:
                out.append((2 if n < self.temporal_downsamples else 1, 2, 2))
        return out


def init_pix2pix_(module: nn.Module) -> None:
    """pix2pix init in place: conv weight N(0, 0.02), conv bias 0, BatchNorm weight N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class PatchDiscriminator3D(nn.Module):
    """Video in, patch logits out.

    Input (B, C_in, T, H, W), values in [-1, 1]. Output (B, 1, T_out, H_out, W_out) raw logits,
    where each strided conv maps a size s to floor((s - 1) / stride) + 1.
    """

    def __init__(self, config: PatchDiscriminator3DConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PatchDiscriminator3DConfig()
        k, pad = cfg.kernel_size, cfg.kernel_size // 2
        widths, strides = cfg.widths(), cfg.strides()
        layers: list[nn.Module] = [
            nn.Conv3d(cfg.in_channels, widths[0], k, stride=strides[0], padding=pad),
            nn.LeakyReLU(cfg.negative_slope),
        ]
        for n in range(1, cfg.num_layers + 1):
            layers += [
                nn.Conv3d(widths[n - 1], widths[n], k, stride=strides[n], padding=pad, bias=False),
                nn.BatchNorm3d(widths[n]),
                nn.LeakyReLU(cfg.negative_slope),
                nn.Dropout(cfg.dropout),
            ]
        layers.append(nn.Conv3d(widths[-1], 1, k, stride=1, padding=pad))
        self.main = nn.Sequential(*layers)
        init_pix2pix_(self)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(f"discriminator expects (B, {self.config.in_channels}, T, H, W), got {tuple(video.shape)}")
        return self.main(video)


DISCRIMINATOR_PRESETS: dict[str, PatchDiscriminator3DConfig] = {
    # docs/training.md#discriminator: the discriminator of the LC-VAE / WF-VAE runs (11.74 M parameters).
    "paper": PatchDiscriminator3DConfig(),
    # CPU tests and smoke runs.
    "tiny": PatchDiscriminator3DConfig(base_channels=8, num_layers=2, max_mult=2, dropout=0.0),
}
