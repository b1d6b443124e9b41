"""Latent frequency analysis (supplement C): subband energy and lag-1 temporal autocorrelation.

What is measured. A backbone latent z (B, C, T', H', W') goes through one orthonormal 3D Haar level
(:func:`lcvae.wavelets.haar3d`) giving 8 subbands per channel, named by their (t, h, w) bands:
subband s = 4*t_hi + 2*h_hi + w_hi is ``SUBBAND_NAMES[s]``, so LLH is high along W, LHL high
along H, HLL high in time (the letters follow the axes t, h, w, as in the paper's Eq. 2). The
reference code's plots read the channels as channel-major (c*8 + s) and so mislabelled them; here
the channel order of haar3d (s*C + c, subband-major) is used throughout.

* energy[s, c]: mean squared magnitude of subband s of channel c over every clip, coefficient
  frame and position (Figs. 10-11). Because the transform is orthonormal the eight energies of a
  channel average to that channel's mean square, and shares are energy / total energy.
* autocorrelation[s, c] (Eq. 10-11): the lag-1 autocorrelation along the coefficient frames of
  subband s, channel c,

      rho = mean over pairs (x_t - mu)(x_{t+1} - mu) / sigma^2,

  where mu and sigma^2 are the mean and (population) variance of that subband and channel pooled
  over all clips, frames and positions, and the pairs are all consecutive coefficient frames
  (t, t+1) at the same position *within* one clip (pairs never cross clips). Using the pooled mean
  rather than a per-clip mean counts a clip's own offset as temporally stable content. The pairs
  leave out each clip's first or last frame, so a very smooth band can read slightly above 1. A
  subband with zero variance has no autocorrelation (NaN; ``null`` in JSON).
* The same on the Multi-WT leaves (:class:`lcvae.compression.LatentCompressor`): energy per
  coefficient channel i = 4C*j + C*sp + c (leaf j, spatial subband sp, channel c), the share of
  the total energy that each mask keeps, and the lag-1 autocorrelation across consecutive groups of
  8 latent frames (needs at least 2 groups per clip; NaN otherwise).

Causal latents (T' = 1 + 2k): the first latent frame encodes the first video frame alone (an
image), so it is excluded from the 3D Haar and from the leaves, and the remaining frames pair up
(1..2, 3..4, ...) exactly like the compressor's groups. Its per-channel mean square is reported on
its own as ``head_energy``.

Everything is accumulated in float64 sums (count, sum, sum of squares, lag-1 cross sums), so
memory does not grow with the dataset; :func:`analyze_latents` takes any iterable of latents (a
model's encoder via :func:`analyze_dataset`, saved backbone latents via :func:`read_latent_files`,
synthetic tensors). :mod:`lcvae.analysis_output` writes the results (``analysis.json`` and figures).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lcvae.analysis_moments import LagMoments
from lcvae.analysis_result import SPATIAL_NAMES, SUBBAND_NAMES, LatentAnalysis, subband_index
from lcvae.analysis_sources import dataset_videos, model_latents, read_latent_files
from lcvae.compression import LatentCompressor
from lcvae.masks import GROUP_FRAMES, CompressionConfig
from lcvae.wavelets import haar3d

logger = logging.getLogger(__name__)

__all__ = [
    "ANALYSIS_MASKS",
    "SPATIAL_NAMES",
    "SUBBAND_NAMES",
    "LagMoments",
    "LatentAnalysis",
    "LatentAnalyzer",
    "analyze_dataset",
    "analyze_latents",
    "dataset_videos",
    "model_latents",
    "read_latent_files",
    "subband_index",
]

ANALYSIS_MASKS = ("paper", "keep25", "keep75", "reference")


class LatentAnalyzer:
    """Streaming analysis: ``update(z)`` per batch of latents, then ``result()``.

    causal: drop the first latent frame (see the module docstring). leaves: also accumulate the
    Multi-WT leaves (needs 8G frames after the head). keep_images: store the first clip's subband
    maps.
    """

    def __init__(self, causal: bool, leaves: bool = True, keep_images: bool = True) -> None:
        self.causal, self.leaves, self.keep_images = causal, leaves, keep_images
        self.channels: int | None = None
        self.clips = 0
        self.frames: list[int] = []
        self._images: Tensor | None = None

    def _start(self, c: int) -> None:
        self.channels = c
        self.subbands = LagMoments((8, c))
        self.raw = LagMoments((c,))
        self.head = LagMoments((c,)) if self.causal else None
        if self.leaves:
            self.compressor = LatentCompressor(CompressionConfig(), c, causal=False)  # gets the body after any head
            self.leaf = LagMoments((8, 4 * c))

    def _body(self, z: Tensor) -> Tensor:
        t = z.shape[2]
        if self.causal:
            if t < 3 or t % 2 == 0:
                raise ValueError(
                    f"causal latents need 1 + 2k frames (k >= 1) so the frames after the image frame pair up, "
                    f"got {t}; encode 1 + 8k video frames (e.g. 9 or 17, or 33 for the Multi-WT leaves)"
                )
            return z[:, :, 1:]
        if t < 2 or t % 2:
            raise ValueError(f"latents need an even frame count for the 3D Haar, got {t}; encode 8k video frames")
        return z

    def update(self, z: Tensor) -> None:
        """Add latents (B, C, T', H', W'), or one clip (C, T', H', W'); H', W' even."""
        if z.dim() == 4:
            z = z.unsqueeze(0)
        if z.dim() != 5:
            raise ValueError(
                f"expected latents (B, C, T', H', W') or one clip (C, T', H', W'), got shape {tuple(z.shape)}"
            )
        b, c, t, h, w = z.shape
        if self.channels is None:
            self._start(c)
        elif c != self.channels:
            raise ValueError(f"all latents must have the same channel count; got {c} after {self.channels}")
        if h % 2 or w % 2:
            raise ValueError(
                f"latent height and width must be even for the Haar level, got {h}x{w}; crop frames to a multiple of 16"
            )
        z = z.detach().to(torch.float64)  # latents are small next to the encoder; sums want float64 anyway
        body = self._body(z)
        if self.leaves and body.shape[2] % GROUP_FRAMES:
            raise ValueError(
                f"the Multi-WT leaves need 8G latent frames{' after the image frame' if self.causal else ''}, "
                f"got {body.shape[2]}; encode {'1 + ' if self.causal else ''}32k video frames or turn the leaves off"
            )
        self.clips += b
        self.frames.extend([t] * b)
        self.raw.update(body)
        if self.head is not None:
            self.head.update(z[:, :, :1])
        sub = haar3d(body)  # (B, 8C, T2, H2, W2), channel s*C + c
        sub = sub.view(b, 8, c, *sub.shape[2:])
        self.subbands.update(sub)
        if self.keep_images and self._images is None:
            self._images = sub[0, :, :, 0].cpu().clone()
        if self.leaves:
            groups = self.compressor.to(z.device).analysis(body).groups  # (B, 32C, G, H2, W2)
            self.leaf.update(groups.view(b, 8, 4 * c, *groups.shape[2:]))

    def result(self) -> LatentAnalysis:
        if self.channels is None:
            raise ValueError(
                "no latents were analysed: the source yielded nothing (check the dataset and the skipped clips)"
            )
        c = self.channels
        leaf_energy = leaf_rho = None
        kept: dict[str, float | None] = {}
        notes = {}
        if self.leaves:
            energy = self.leaf.energy()  # (8, 4C)
            leaf_energy = energy.view(8, 4, c)
            leaf_rho = self.leaf.autocorrelation().view(8, 4, c)
            flat = energy.reshape(-1)
            for name in ANALYSIS_MASKS:
                try:
                    kept_idx = CompressionConfig(mask=name).resolved_indices(c)
                except ValueError as err:
                    kept[name] = None
                    notes[f"kept_share.{name}"] = str(err)
                    continue
                kept[name] = float(flat[kept_idx].sum() / flat.sum())
            if self.leaf.pairs == 0:
                notes["leaves.autocorrelation"] = (
                    "needs at least 2 groups of 8 latent frames per clip (64 video frames)"
                )
        if self.subbands.pairs == 0:
            notes["subbands.autocorrelation"] = "needs at least 4 latent frames per clip (after the image frame)"
        return LatentAnalysis(
            channels=c,
            clips=self.clips,
            causal=self.causal,
            frames=self.frames,
            subband_energy=self.subbands.energy(),
            subband_autocorrelation=self.subbands.autocorrelation(),
            subband_pairs=self.subbands.pairs,
            channel_mean=self.raw.mean(),
            channel_energy=self.raw.energy(),
            head_energy=None if self.head is None else self.head.energy(),
            leaf_energy=leaf_energy,
            leaf_autocorrelation=leaf_rho,
            leaf_pairs=self.leaf.pairs if self.leaves else 0,
            kept_share=kept,
            subband_images=self._images,
            notes=notes,
        )


def analyze_latents(
    latents: Iterable[Tensor], causal: bool, leaves: bool = True, keep_images: bool = True
) -> LatentAnalysis:
    """Streaming analysis of latents (B, C, T', H', W') (or single clips (C, T', H', W')) from any source."""
    analyzer = LatentAnalyzer(causal, leaves, keep_images)
    for z in latents:
        analyzer.update(z)
    return analyzer.result()


def analyze_dataset(
    model,
    dataset,
    *,
    batch_size: int = 1,
    max_clips: int | None = None,
    device: str = "cpu",
    chunk: int | None = None,
    leaves: bool = True,
    progress: bool = True,
) -> tuple[LatentAnalysis, dict[str, Any]]:
    """Analyse the backbone latents (posterior means, before any compression) of ``model`` (an LCVAE)
    over a ``lcvae.data`` dataset. Returns (result, {"clips": used paths, "skipped", "skipped_summary"})."""
    from lcvae.data import SkipCounter

    counter, paths = SkipCounter(), []
    videos = dataset_videos(dataset, batch_size, max_clips, progress, counter, paths)
    result = analyze_latents(model_latents(model, videos, device, chunk), causal=model.causal, leaves=leaves)
    logger.info("analysed %d clips; %s", result.clips, counter.summary())
    return result, {"clips": paths, "skipped": counter.count, "skipped_summary": counter.summary()}
