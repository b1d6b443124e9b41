"""Latent compression (Multi-WT): the LC-VAE idea on its own, independent of the VAE backbone.

The transform. A latent z (B, C, T', H', W') is cut into groups of 8 latent frames. Each group goes
through one 3D Haar level (:func:`lcvae.wavelets.haar3d`, 8C subband-major channels, 4 frames) and
then two temporal Haar levels applied to *all* channels (a full wavelet packet, each split emitting
[low, high]), leaving one frame of 32C coefficient channels at (H'/2, W'/2):

    channel i = 16C*b2 + 8C*b1 + C*s + c,    s = 4*b0 + 2*h_hi + w_hi

with b0, b1, b2 the temporal bands of the 3D level and of the first and second temporal split.
Equivalently the channels form 8 contiguous *leaf blocks* of 4C channels,

    i = 4C*j + C*sp + c,    j = 4*b2 + 2*b1 + b0,    sp = 2*h_hi + w_hi,

named (b2 b1 b0) LLL, LLH, LHL, LHH, HLL, HLH, HHL, HHH. Over the 8 frames of a group, leaf j is
the Walsh pattern (-1)^(b0*n0 + b1*n1 + b2*n2) of the frame index n = 4*n2 + 2*n1 + n0. The whole
transform is one orthonormal 32x32 matrix acting on the 8 x 2 x 2 cell of every channel and
position (the Kronecker product of five 2x2 Haar matrices), so energy is preserved and the inverse
(Multi-IWT) is its transpose.

The mask. Video latents are smooth in time: most energy sits in leaves with at most one temporal
high band. The paper keeps LLL, LLH, LHL, HLL (blocks 0, 1, 2, 4: half the coefficients) and zeroes
the rest; the decoder, trained through the same path from step 0, learns to restore what was
dropped. Variants keep 25 % (blocks 0, 1) or 75 % (blocks 0-5); the reference code's handcrafted
mask keeps the first n channels of each block (dropping a few HH channels of the kept blocks and
taking a few LL channels of the others). The kept indices always live in the config, never in a
file read at run time.

Packing. Diffusion sees only the K kept coefficients per group and position, arranged as a video
latent with C' = K/32 channels on the full (H', W') grid: kept index k (in sorted order)
= f*4C' + 4c' + 2p + q goes to pseudo-frame 8g + f, channel c', pixel (2h + p, 2w + q). For the 50 %
masks C' = C/2, exactly the size of a C/2-channel latent.

Causal mode. With a causal backbone T' = 1 + 8G: the first latent frame (the image frame) is not
part of any group and passes through uncompressed (costing one latent frame). When packed its C
channels become C/C' pseudo-frames of C' channels (2 for the 50 % masks), placed first.

The masks, the index bookkeeping and ``CompressionConfig`` live in :mod:`lcvae.masks`; the latent
width C and causality come from the backbone (``LatentCompressor(config, latent_channels, causal)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lcvae.masks import BANDS, GROUP_FRAMES, CompressionConfig, packed_channels, walsh_signs
from lcvae.models.vae import FrameRule
from lcvae.wavelets import haar3d, haar_t, ihaar3d, ihaar_t

__all__ = ["multi_wt_reference", "multi_iwt_reference", "Coefficients", "LatentCompressor"]


# ---------------------------------------------------------------- plain transforms (reference twins)


def multi_wt_reference(z: Tensor) -> Tensor:
    """Multi-WT as the literal composition of the wavelet functions: (B, C, 8G, H', W') -> (B, 32C, G, H'/2, W'/2)."""
    return haar_t(haar_t(haar3d(z)))


def multi_iwt_reference(groups: Tensor) -> Tensor:
    """Inverse of :func:`multi_wt_reference`."""
    return ihaar3d(ihaar_t(ihaar_t(groups)))


# ---------------------------------------------------------------- the module


@dataclass
class Coefficients:
    """Multi-WT output. groups: (B, 32C, G, H'/2, W'/2); head: (B, C, 1, H', W') in causal mode, else None."""

    groups: Tensor
    head: Tensor | None = None


class LatentCompressor(nn.Module):
    """Multi-WT, masking, packing for diffusion, and their inverses. A pure tensor program.

    Latents are (B, C, T', H', W') with T' = 8G (or 1 + 8G when causal) and H', W' even, any values.

    ``forward`` (the training path) is one 32x32 projection of every 8x2x2 cell, equal to
    synthesis(mask(analysis(z))) up to rounding.
    """

    def __init__(self, config: CompressionConfig, latent_channels: int, causal: bool) -> None:
        super().__init__()
        self.config = config
        self.latent_channels = latent_channels
        self.causal = causal
        kept = config.resolved_indices(latent_channels)
        # Valid latents: 8G frames (1 + 8G causal) on an even grid, i.e. a FrameRule at latent resolution.
        self.latent_rule = FrameRule(causal, temporal_factor=1, spatial_factor=1).grouped(GROUP_FRAMES, 2)
        with torch.device("cpu"):  # small constants derived from the config, even under a meta-device build
            keep = torch.zeros(BANDS * latent_channels)
            keep[kept] = 1.0
            signs = walsh_signs(5)  # (32, 32), rows 4j + sp, columns (n2 n1 n0 p q)
            m = keep.view(BANDS, latent_channels).t()  # (C, 32): m[c, 4j + sp]
            self.register_buffer("kept_index", torch.tensor(kept, dtype=torch.long), persistent=False)
            self.register_buffer("keep", keep, persistent=False)
            self.register_buffer("signs", signs, persistent=False)
            # Training path: per-channel projection W^T diag(m_c) W (entries k/32, exact in bf16 too).
            self.register_buffer("projection", signs.t() @ (m.unsqueeze(-1) * signs) / BANDS, persistent=False)
        self.last_selection: Tensor | None = None

    # -------------------------------------------------------- properties

    @property
    def kept_count(self) -> int:
        """K, kept coefficient channels per group (out of 32C)."""
        return self.kept_index.numel()

    @property
    def kept_fraction(self) -> float:
        return self.kept_count / (BANDS * self.latent_channels)

    @property
    def packed_channels(self) -> int:
        """C' = K / 32, the channel count of the packed (diffusion) latent."""
        return packed_channels(self.kept_count)

    @property
    def head_frames(self) -> int:
        """Pseudo-frames the causal head frame occupies when packed (C / C'); 0 when non-causal."""
        if not self.causal:
            return 0
        if self.latent_channels % self.packed_channels:
            raise ValueError(
                f"causal packing splits the {self.latent_channels}-channel head frame into frames of "
                f"{self.packed_channels} channels, which does not divide; use a 25 % or 50 % mask to pack"
            )
        return self.latent_channels // self.packed_channels

    @property
    def kept_per_block(self) -> list[int]:
        """Kept channels in each leaf block (LEAF_NAMES order)."""
        return self.keep.view(8, -1).sum(1).long().tolist()

    # -------------------------------------------------------- checks

    def _check_latent(self, z: Tensor) -> None:
        """Validate a latent's channels, frame rule and grid."""
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent (B, {self.latent_channels}, T', H', W'), got shape {tuple(z.shape)}")
        t, h, w = z.shape[2:]
        if not self.latent_rule.is_valid(t):
            low, high = self.latent_rule.nearest_valid(t)
            rule = "T' = 1 + 8G latent frames" if self.causal else "T' = 8G latent frames (groups of 8)"
            fix = f"use {low} or {high}" if low else f"use {high}"
            raise ValueError(f"{'causal ' if self.causal else ''}latent compression needs {rule}, got {t}; {fix}")
        if h % 2 or w % 2:
            raise ValueError(f"latent height and width must be even, got {h}x{w}; use {h + h % 2}x{w + w % 2}")

    def _split_head(self, z: Tensor) -> tuple[Tensor | None, Tensor]:
        self._check_latent(z)
        if self.causal:
            return z[:, :, :1], z[:, :, 1:]
        return None, z

    # -------------------------------------------------------- transform

    def analysis(self, z: Tensor) -> Coefficients:
        """Multi-WT. z: (B, C, T', H', W') -> Coefficients (groups (B, 32C, G, H'/2, W'/2), head)."""
        head, body = self._split_head(z)
        b, c, t, h, w = body.shape
        g = t // GROUP_FRAMES
        # (B, C, G, n2, n1, n0, H2, p, W2, q) -> (B, [n2 n1 n0 p q], C, G, H2, W2): one gather, one matmul.
        x = body.reshape(b, c, g, 2, 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 4, 5, 7, 9, 1, 2, 6, 8)
        x = x.reshape(b, BANDS, c * g * (h // 2) * (w // 2))
        weight = self.signs.to(z.dtype) * (1.0 / math.sqrt(BANDS))
        groups = torch.matmul(weight, x).view(b, BANDS * c, g, h // 2, w // 2)
        return Coefficients(groups=groups, head=head)

    def synthesis(self, coeffs: Coefficients) -> Tensor:
        """Multi-IWT, exact inverse of :meth:`analysis`: Coefficients -> (B, C, T', H', W')."""
        y = coeffs.groups
        c = self.latent_channels
        if y.dim() != 5 or y.shape[1] != BANDS * c:
            raise ValueError(f"expected coefficients (B, {BANDS * c}, G, H2, W2), got shape {tuple(y.shape)}")
        if self.causal and coeffs.head is None:
            raise ValueError("causal compression needs the head frame (Coefficients.head); got None")
        b, _, g, h2, w2 = y.shape
        weight = self.signs.t().to(y.dtype) * (1.0 / math.sqrt(BANDS))
        x = torch.matmul(weight, y.reshape(b, BANDS, c * g * h2 * w2))
        # (B, n2, n1, n0, p, q, C, G, H2, W2) -> (B, C, G, n2, n1, n0, H2, p, W2, q)
        z = x.view(b, 2, 2, 2, 2, 2, c, g, h2, w2).permute(0, 6, 7, 1, 2, 3, 8, 4, 9, 5)
        z = z.reshape(b, c, GROUP_FRAMES * g, 2 * h2, 2 * w2)
        if self.causal:
            z = torch.cat((coeffs.head, z), dim=2)
        return z

    # -------------------------------------------------------- mask

    def mask(self, coeffs: Coefficients) -> Coefficients:
        """Zero the dropped coefficient channels (adaptive: all but the top-K by batch energy)."""
        groups = coeffs.groups
        if self.config.adaptive:
            keep = self._adaptive_keep(groups)
        else:
            keep = self.keep
        return Coefficients(groups=groups * keep.to(groups.dtype).view(1, -1, 1, 1, 1), head=coeffs.head)

    def _adaptive_keep(self, groups: Tensor) -> Tensor:
        energy = groups.detach().float().pow(2).mean(dim=(0, 2, 3, 4))
        selection = torch.topk(energy, self.kept_count).indices.sort().values
        self.last_selection = selection
        keep = torch.zeros_like(energy)
        keep[selection] = 1.0
        return keep

    def overlap_with(self, indices: list[int] | Tensor) -> float:
        """Fraction of the last adaptive selection that lies in ``indices`` (e.g. paper_mask(C))."""
        if self.last_selection is None:
            raise ValueError("no adaptive selection yet: call mask() or forward() in adaptive mode first")
        chosen = set(self.last_selection.tolist())
        other = set(indices.tolist() if isinstance(indices, Tensor) else indices)
        return len(chosen & other) / len(chosen)

    # -------------------------------------------------------- packing

    def pack(self, coeffs: Coefficients) -> Tensor:
        """Kept coefficients -> diffusion latent (B, C', head_frames + 8G, H', W'), normalised."""
        if self.config.adaptive:
            raise ValueError("adaptive compression has no fixed kept set to pack; use a fixed mask to pack latents")
        groups = coeffs.groups
        b, _, g, h2, w2 = groups.shape
        cp = self.packed_channels
        kept = groups.index_select(1, self.kept_index)  # (B, K, G, H2, W2), k = f*4C' + 4c' + 2p + q
        x = kept.view(b, GROUP_FRAMES, cp, 2, 2, g, h2, w2).permute(0, 2, 5, 1, 6, 3, 7, 4)
        x = x.reshape(b, cp, GROUP_FRAMES * g, 2 * h2, 2 * w2)
        if self.causal:
            head = coeffs.head.reshape(b, self.head_frames, cp, 2 * h2, 2 * w2).transpose(1, 2)
            x = torch.cat((head, x), dim=2)
        return x

    def unpack(self, x: Tensor) -> Coefficients:
        """Inverse of :meth:`pack`; dropped coefficient channels are zero."""
        if self.config.adaptive:
            raise ValueError("adaptive compression has no fixed kept set to unpack; use a fixed mask")
        cp, nh = self.packed_channels, self.head_frames
        if x.dim() != 5 or x.shape[1] != cp:
            raise ValueError(f"expected a packed latent (B, {cp}, F, H', W'), got shape {tuple(x.shape)}")
        b, _, f, h, w = x.shape
        if f < nh + GROUP_FRAMES * (0 if nh else 1) or (f - nh) % GROUP_FRAMES or h % 2 or w % 2:
            rule = f"{nh} + 8G" if nh else "8G (G >= 1)"
            raise ValueError(f"packed latents have {rule} frames and even height/width, got {f}x{h}x{w}")
        head = None
        if nh:
            head = x[:, :, :nh].transpose(1, 2).reshape(b, self.latent_channels, 1, h, w)
            x = x[:, :, nh:]
        g = (f - nh) // GROUP_FRAMES
        # (B, C', G, f, H2, p, W2, q) -> (B, [f c' p q], G, H2, W2)
        kept = x.reshape(b, cp, g, GROUP_FRAMES, h // 2, 2, w // 2, 2).permute(0, 3, 1, 5, 7, 2, 4, 6)
        kept = kept.reshape(b, self.kept_count, g, h // 2, w // 2)
        groups = kept.new_zeros(b, BANDS * self.latent_channels, g, h // 2, w // 2).index_copy(1, self.kept_index, kept)
        return Coefficients(groups=groups, head=head)

    # -------------------------------------------------------- whole paths

    def forward(self, z: Tensor) -> Tensor:
        """The training path synthesis(mask(analysis(z))): (B, C, T', H', W') -> same shape."""
        if self.config.adaptive:
            return self.synthesis(self.mask(self.analysis(z)))
        head, body = self._split_head(z)
        b, c, t, h, w = body.shape
        g = t // GROUP_FRAMES
        # (B, C, G, n2, n1, n0, H2, p, W2, q) -> (B, C, [n2 n1 n0 p q], G*H2*W2): one matmul per channel
        x = body.reshape(b, c, g, 2, 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 4, 5, 7, 9, 2, 6, 8)
        x = torch.matmul(self.projection.to(z.dtype), x.reshape(b, c, BANDS, -1))
        out = x.view(b, c, 2, 2, 2, 2, 2, g, h // 2, w // 2).permute(0, 1, 7, 2, 3, 4, 8, 5, 9, 6)
        out = out.reshape(b, c, t, h, w)
        return torch.cat((head, out), dim=2) if head is not None else out

    def encode_latent(self, z: Tensor) -> Tensor:
        """VAE latent (B, C, T', H', W') -> packed diffusion latent (B, C', F, H', W')."""
        return self.pack(self.analysis(z))

    def decode_latent(self, packed: Tensor) -> Tensor:
        """Packed diffusion latent -> VAE latent with dropped coefficients zero (decoder input)."""
        return self.synthesis(self.unpack(packed))

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, mask={self.config.mask!r}, kept={self.kept_count}"
            f"/{BANDS * self.latent_channels}, adaptive={self.config.adaptive}, causal={self.causal}"
        )
