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
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lcvae.masks import (
    BANDS,
    GROUP_FRAMES,
    LEAF_NAMES,
    MASKS,
    CompressionConfig,
    _packed_channels,
    _walsh_signs,
    block_mask,
    coefficient_index,
    leaf_block,
    load_mask_json,
    paper_mask,
    reference_mask,
    split_index,
    validate_indices,
)
from lcvae.wavelets import haar3d, haar_t, ihaar3d, ihaar_t

logger = logging.getLogger(__name__)


# The mask API lives in lcvae.masks and is part of this module's API too.
__all__ = [
    "BANDS", "GROUP_FRAMES", "LEAF_NAMES", "MASKS", "CompressionConfig", "block_mask", "coefficient_index",
    "leaf_block", "load_mask_json", "paper_mask", "reference_mask", "split_index", "validate_indices",
    "multi_wt_reference", "multi_iwt_reference", "Coefficients", "LatentCompressor",
]


# ---------------------------------------------------------------- plain transforms (reference twins)


def multi_wt_reference(z: Tensor) -> Tensor:
    """Multi-WT as the literal composition of the wavelet functions: (B, C, 8G, H', W') -> (B, 32C, G, H'/2, W'/2)."""
    return haar_t(haar_t(haar3d(z)))


def multi_iwt_reference(groups: Tensor) -> Tensor:
    """Inverse of :func:`multi_wt_reference`."""
    return ihaar3d(ihaar_t(ihaar_t(groups)))


# ---------------------------------------------------------------- training-path plan
#
# The training path synthesis(mask(analysis(z))) is, per latent channel c, the projection
# P_c = W^T diag(m_c) W on each 8x2x2 cell. W is the Kronecker product of the 8x8 temporal Walsh
# matrix T and the 4x4 spatial Haar matrix, so P_c = sum_s P_t(K_cs) (x) Pi_s, with K_cs the leaves
# channel c keeps in spatial subband s, P_t(K) = T^T diag(1_K) T / 8 the temporal projection onto
# them and Pi_s the rank-1 projection of a 2x2 cell onto subband s. Since sum_s Pi_s = I, choosing
# per channel a base leaf set B_c (the one most of its subbands keep) gives
#
#     P_c = P_t(B_c) (x) I  +  sum_{s: K_cs != B_c} (P_t(K_cs) - P_t(B_c)) (x) Pi_s.
#
# The first term is one 8x8 matmul along time on contiguous memory, about as fast as a copy; block
# masks need nothing else. Each correction is low rank, P_t(K) - P_t(B) = sum +-t_l t_l^T / 8 over
# the r leaves l where K and B differ, so it reads only its channels, reduces them to r rows per
# frame group (a thin matmul), projects those onto subband s and adds them back (a second thin
# matmul). The reference masks correct C/8..C/4 channels in each of two subbands with r = 3 or 4.

_RUN_GAP = 2  # corrected channels this close share one run: a zero-weight channel costs less than more calls
# Path choice, from benchmarks/bench_compression.py --custom (times in clone() units of a large
# latent, 1-2 threads): the corrections of a run cost about (1.1 + 0.7 r) x (its channels / C) on top
# of the base pass (~1.1), the 32x32 path 7.5-9, so corrections pay off up to a total of ~6.4.
_SWEEP_COST, _RANK_COST, _CORRECTION_BUDGET = 1.1, 0.7, 6.4


@dataclass(frozen=True)
class _Correction:
    """Channels [first, stop) corrected in spatial subband ``subband`` (2*h_hi + w_hi); ``rank``: r."""

    subband: int
    first: int
    stop: int
    rank: int


def _base_leaves(leaves: Tensor) -> Tensor:
    """Per channel, the leaf set most of its spatial subbands keep: leaves (C, 8, 4) 0/1 -> (C, 8).

    Ties go to the set whose corrections change fewer leaves in total, then to the lower subband.
    """
    base = torch.empty(leaves.shape[:2])
    for c, sets in enumerate(leaves.permute(0, 2, 1)):  # sets: (4, 8), one leaf set per subband
        cost = [(int((sets != cand).any(1).sum()), int((sets != cand).sum()), s) for s, cand in enumerate(sets)]
        base[c] = sets[min(cost)[2]]
    return base


def _correction_plan(leaves: Tensor) -> tuple[Tensor, list[tuple[_Correction, Tensor, Tensor]]]:
    """Decompose a mask for the training path.

    leaves: (C, 8, 4) 0/1, leaves[c, j, s] = 1 when coefficient (leaf j, subband s, channel c) is kept.
    Returns the base leaf sets (C, 8) and, per run of corrected channels, (_Correction, V, U) with
    V (n, 1, r, 8) the +-1 Walsh rows t_l of each channel's changed leaves and U (n, 1, 8, r) the
    columns t_l * (+1 gained, -1 lost) / 32 (1/8 temporal and 1/4 spatial normalisation). Unused
    rows (fewer changed leaves than r, or an uncorrected channel inside a run) are zero.
    """
    base = _base_leaves(leaves)
    walsh = _walsh_signs(3)  # (8 leaves, 8 frames)
    plan = []
    for s in range(4):
        delta = leaves[..., s] - base  # (C, 8) in {-1, 0, 1}
        runs: list[list[int]] = []
        for c in delta.any(1).nonzero().flatten().tolist():
            if runs and c - runs[-1][1] <= _RUN_GAP:
                runs[-1][1] = c + 1
            else:
                runs.append([c, c + 1])
        for first, stop in runs:
            rank = int((delta[first:stop] != 0).sum(1).max())
            v = torch.zeros(stop - first, 1, rank, GROUP_FRAMES)
            u = torch.zeros(stop - first, 1, GROUP_FRAMES, rank)
            for row, c in enumerate(range(first, stop)):
                for k, leaf in enumerate(delta[c].nonzero().flatten().tolist()):
                    v[row, 0, k] = walsh[leaf]
                    u[row, 0, :, k] = walsh[leaf] * delta[c, leaf] / BANDS
            plan.append((_Correction(s, first, stop, rank), v, u))
    return base, plan


def _correction_cost(corrections: list[_Correction] | tuple[_Correction, ...], latent_channels: int) -> float:
    """Estimated time of the corrections in clone() units (see _SWEEP_COST)."""
    return sum((corr.stop - corr.first) / latent_channels * (_SWEEP_COST + _RANK_COST * corr.rank) for corr in corrections)


def _pair_projections() -> Tensor:
    """(2, 16, 16) block-diagonal repeats of [[1, 1], [1, 1]] (w low) and [[1, -1], [-1, 1]] (w high):
    the unnormalised projection of each (even, odd) column pair onto one width band."""
    blocks = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, -1.0], [-1.0, 1.0]]])
    return torch.stack([torch.kron(torch.eye(8), blk) for blk in blocks])


# ---------------------------------------------------------------- the module


@dataclass
class Coefficients:
    """Multi-WT output. groups: (B, 32C, G, H'/2, W'/2); head: (B, C, 1, H', W') in causal mode, else None."""

    groups: Tensor
    head: Tensor | None = None


class LatentCompressor(nn.Module):
    """Multi-WT, masking, packing for diffusion, and their inverses. A pure tensor program.

    Latents are (B, C, T', H', W') with T' = 8G (or 1 + 8G when causal) and H', W' even, any values.

    ``forward`` (the training path) picks one of three equal computations from the mask, recorded in
    ``path``: "temporal" (block masks: an 8x8 temporal matmul), "corrected" (that plus the low-rank
    subband corrections listed in ``corrections``, e.g. the reference masks) or "general" (the
    32x32 projection of each 8x2x2 cell, for custom masks whose corrections would cost more).
    They agree to rounding on finite input; a NaN or Inf stays in its channel and frame group but
    may reach other pixels of it than the plain twin's single 8x2x2 cell.
    """

    def __init__(self, config: CompressionConfig) -> None:
        super().__init__()
        self.config = config
        with torch.device("cpu"):  # small constants derived from the config, even under a meta-device build
            self._build_buffers(config)
        self.last_selection: Tensor | None = None

    def _build_buffers(self, config: CompressionConfig) -> None:
        c = config.latent_channels
        kept = config.resolved_indices()
        keep = torch.zeros(BANDS * c)
        keep[kept] = 1.0
        self.register_buffer("kept_index", torch.tensor(kept, dtype=torch.long), persistent=False)
        self.register_buffer("keep", keep, persistent=False)
        self.register_buffer("signs", _walsh_signs(5), persistent=False)  # (32, 32), rows 4j + sp
        # Training path: per-channel projection W^T diag(m_c) W (entries k/32, exact in bf16 too).
        m = keep.view(BANDS, c).t()  # (C, 32): m[c, 4j + sp]
        self.register_buffer("projection", self.signs.t() @ (m.unsqueeze(-1) * self.signs) / BANDS, persistent=False)
        # Fast training path (see "training-path plan"): a base 8x8 temporal projection per channel plus
        # low-rank corrections for the (channel, subband) pairs whose kept leaves differ from the base.
        base, plan = _correction_plan(m.view(c, 8, 4))
        t_signs = _walsh_signs(3)
        self.register_buffer("temporal_projection", t_signs.t() @ (base.unsqueeze(-1) * t_signs) / GROUP_FRAMES, persistent=False)
        self.register_buffer("pair_projections", _pair_projections(), persistent=False)
        self.register_buffer("row_signs", torch.tensor([[1.0], [-1.0]]), persistent=False)  # rows of a height-high pair
        for index, (_, v, u) in enumerate(plan):
            self.register_buffer(f"correction{index}_v", v, persistent=False)
            self.register_buffer(f"correction{index}_u", u, persistent=False)
        self.corrections = tuple(corr for corr, _, _ in plan)
        if not plan:
            self.path = "temporal"
        else:
            self.path = "corrected" if _correction_cost(self.corrections, c) <= _CORRECTION_BUDGET else "general"

    @property
    def temporal_only(self) -> bool:
        """True when the mask keeps or drops whole leaves, so the training path is one 8x8 temporal matmul."""
        return self.path == "temporal"

    # -------------------------------------------------------- properties

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

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
        return _packed_channels(self.kept_count)

    @property
    def head_frames(self) -> int:
        """Pseudo-frames the causal head frame occupies when packed (C / C'); 0 when non-causal."""
        if not self.config.causal:
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
            raise ValueError(
                f"expected a latent (B, {self.latent_channels}, T', H', W'), got shape {tuple(z.shape)}"
            )
        t, h, w = z.shape[2:]
        if self.config.causal:
            if t < 1 or (t - 1) % GROUP_FRAMES:
                g = max(0, (t - 1) // GROUP_FRAMES)
                raise ValueError(
                    f"causal latent compression needs T' = 1 + 8G latent frames, got {t}; "
                    f"use {1 + 8 * g} or {9 + 8 * g}"
                )
        elif t < GROUP_FRAMES or t % GROUP_FRAMES:
            g = t // GROUP_FRAMES
            options = " or ".join(str(v) for v in (8 * g, 8 * g + 8) if v > 0)
            raise ValueError(f"latent compression needs T' = 8G latent frames (groups of 8), got {t}; use {options}")
        if h % 2 or w % 2:
            raise ValueError(f"latent height and width must be even, got {h}x{w}; use {h + h % 2}x{w + w % 2}")

    def _split_head(self, z: Tensor) -> tuple[Tensor | None, Tensor]:
        self._check_latent(z)
        if self.config.causal:
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
        if self.config.causal and coeffs.head is None:
            raise ValueError("causal compression needs the head frame (Coefficients.head); got None")
        b, _, g, h2, w2 = y.shape
        weight = self.signs.t().to(y.dtype) * (1.0 / math.sqrt(BANDS))
        x = torch.matmul(weight, y.reshape(b, BANDS, c * g * h2 * w2))
        # (B, n2, n1, n0, p, q, C, G, H2, W2) -> (B, C, G, n2, n1, n0, H2, p, W2, q)
        z = x.view(b, 2, 2, 2, 2, 2, c, g, h2, w2).permute(0, 6, 7, 1, 2, 3, 8, 4, 9, 5)
        z = z.reshape(b, c, GROUP_FRAMES * g, 2 * h2, 2 * w2)
        if self.config.causal:
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
        if self.config.causal:
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
        if self.path == "general":
            # (B, C, G, n2, n1, n0, H2, p, W2, q) -> (B, C, [n2 n1 n0 p q], G*H2*W2)
            x = body.reshape(b, c, g, 2, 2, 2, h // 2, 2, w // 2, 2).permute(0, 1, 3, 4, 5, 7, 9, 2, 6, 8)
            x = torch.matmul(self.projection.to(z.dtype), x.reshape(b, c, BANDS, -1))
            out = x.view(b, c, 2, 2, 2, 2, 2, g, h // 2, w // 2).permute(0, 1, 7, 2, 3, 4, 8, 5, 9, 6)
            out = out.reshape(b, c, t, h, w)
        else:
            proj = self.temporal_projection.to(z.dtype).view(1, c, 1, GROUP_FRAMES, GROUP_FRAMES)
            out = torch.matmul(proj, body.reshape(b, c, g, GROUP_FRAMES, h * w))  # (B, C, G, 8, H'W')
            if self.path == "corrected":
                self._add_corrections(body, out)
            out = out.view(b, c, t, h, w)
        return torch.cat((head, out), dim=2) if head is not None else out

    def _add_corrections(self, body: Tensor, out: Tensor) -> None:
        """out (B, C, G, 8, H'W') += the subband corrections of body (B, C, 8G, H', W'), in place.

        Per run of corrected channels and batch item: reduce the run to its r changed leaves (rows of
        (H2, 2, W')), project them onto the subband (height pairs by a butterfly, width pairs by a
        small block-diagonal matmul, so no kernel loops over pairs of 2) and add them back expanded
        by a batched matmul. Every matmul works on a contiguous channel range and the intermediates
        stay cache-sized; only the corrected channels are read or written. Small latents are bound
        by the number of calls here, so the loop body is kept to a few of them.
        """
        b, c, g, _, hw = out.shape
        h, w = body.shape[-2:]
        k = 2 * math.gcd(w // 2, 8)  # columns per block of the width projection (divides W')
        # (B C G, 8, H'W') rows; a causal body is offset by its head frame, so its runs are copied
        flat = body.is_contiguous()
        rows_in = body.reshape(b * c * g, GROUP_FRAMES, hw) if flat else body.reshape(b * c, g, GROUP_FRAMES, hw)
        rows_out = out.view(b * c * g, GROUP_FRAMES, hw)
        pairs = self.pair_projections[:, :k, :k].to(out.dtype)
        row_signs = self.row_signs.to(out.dtype)
        for index, corr in enumerate(self.corrections):
            v, u = getattr(self, f"correction{index}_v"), getattr(self, f"correction{index}_u")  # (n, 1, r, 8), (n, 1, 8, r)
            if v.dtype != out.dtype:
                v, u = v.to(out.dtype), u.to(out.dtype)
            if g > 1:
                v, u = v.expand(-1, g, -1, -1), u.expand(-1, g, -1, -1)
            v, u = v.reshape(-1, corr.rank, GROUP_FRAMES), u.reshape(-1, GROUP_FRAMES, corr.rank)
            w_pairs, h_hi = pairs[corr.subband & 1], corr.subband >> 1
            for first in range(corr.first, b * c, c):  # the run in each batch item
                stop = first + corr.stop - corr.first
                x = rows_in[first * g : stop * g] if flat else rows_in[first:stop].flatten(0, 1)
                top, bottom = torch.bmm(v, x).view(-1, h // 2, 2, w).unbind(2)  # r changed leaves: (n G r, H2, W')
                a = torch.mm(torch.add(top, bottom, alpha=-1 if h_hi else 1).view(-1, k), w_pairs)  # projected pairs
                a = a.view(-1, h // 2, 1, w) * row_signs if h_hi else a.view(-1, h // 2, 1, w).expand(-1, -1, 2, -1).contiguous()
                rows_out[first * g : stop * g].baddbmm_(u, a.view(-1, corr.rank, hw))

    def encode_latent(self, z: Tensor) -> Tensor:
        """VAE latent (B, C, T', H', W') -> packed diffusion latent (B, C', F, H', W')."""
        return self.pack(self.analysis(z))

    def decode_latent(self, packed: Tensor) -> Tensor:
        """Packed diffusion latent -> VAE latent with dropped coefficients zero (decoder input)."""
        return self.synthesis(self.unpack(packed))

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, mask={self.config.mask!r}, kept={self.kept_count}"
            f"/{BANDS * self.latent_channels}, adaptive={self.config.adaptive}, causal={self.config.causal}"
        )
