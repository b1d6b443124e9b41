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

import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lcvae.compression import LatentCompressor
from lcvae.masks import GROUP_FRAMES, LEAF_NAMES, CompressionConfig
from lcvae.wavelets import haar3d

logger = logging.getLogger(__name__)

SUBBAND_NAMES = tuple("LH"[(s >> 2) & 1] + "LH"[(s >> 1) & 1] + "LH"[s & 1] for s in range(8))
SPATIAL_NAMES = ("LL", "LH", "HL", "HH")  # sp = 2*h_hi + w_hi inside a leaf block
ANALYSIS_MASKS = ("paper", "keep25", "keep75", "reference")


def subband_index(t_hi: int, h_hi: int, w_hi: int) -> int:
    """Subband of a one-level 3D Haar from its (t, h, w) bands: 4*t_hi + 2*h_hi + w_hi."""
    return 4 * t_hi + 2 * h_hi + w_hi


class LagMoments:
    """Streaming moments of tensors (B, *shape, T, H, W), reduced over B, T, H, W per ``shape`` cell.

    Keeps count, sum, sum of squares, and over consecutive pairs along T (within each tensor) the
    pair count, cross sum and the sums of the first and second members; all float64.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        zeros = lambda: torch.zeros(self.shape, dtype=torch.float64)  # noqa: E731
        self.n = 0
        self.pairs = 0
        self.s1, self.s2 = zeros(), zeros()
        self.cross, self.first, self.second = zeros(), zeros(), zeros()

    def update(self, y: Tensor) -> None:
        """Add a batch y (B, *shape, T, H, W); any float dtype and device."""
        if tuple(y.shape[1:-3]) != self.shape:
            raise ValueError(f"expected a tensor (B, {', '.join(map(str, self.shape))}, T, H, W), got {tuple(y.shape)}")
        y = y.detach().to(torch.float64)
        b, t, h, w = y.shape[0], *y.shape[-3:]
        dims = (0, -3, -2, -1)
        self.n += b * t * h * w
        self.s1 += y.sum(dims).cpu()
        self.s2 += y.square().sum(dims).cpu()
        if t > 1:
            a, c = y[..., :-1, :, :], y[..., 1:, :, :]
            self.pairs += b * (t - 1) * h * w
            self.cross += (a * c).sum(dims).cpu()
            self.first += a.sum(dims).cpu()
            self.second += c.sum(dims).cpu()

    def merge(self, other: LagMoments) -> LagMoments:
        """Add another accumulator's sums (e.g. from another process); returns self."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge moments of shape {other.shape} into {self.shape}")
        self.n += other.n
        self.pairs += other.pairs
        for name in ("s1", "s2", "cross", "first", "second"):
            getattr(self, name).add_(getattr(other, name))
        return self

    def mean(self) -> Tensor:
        return self.s1 / max(self.n, 1)

    def energy(self) -> Tensor:
        """Mean squared magnitude per cell."""
        return self.s2 / max(self.n, 1)

    def variance(self) -> Tensor:
        """Population variance per cell (pooled over every tensor, frame and position)."""
        return (self.energy() - self.mean().square()).clamp_min(0.0)

    def autocorrelation(self) -> Tensor:
        """Lag-1 autocorrelation per cell (module docstring); NaN without pairs or variance."""
        if self.pairs == 0:
            return torch.full(self.shape, math.nan, dtype=torch.float64)
        mu = self.mean()
        cov = (self.cross - mu * (self.first + self.second)) / self.pairs + mu.square()
        var = self.variance()
        # Relative floor: a band that is zero up to float rounding has no defined correlation.
        floor = 1e-24 * float(self.energy().max().clamp_min(1e-300))
        return torch.where(var > floor, cov / var.clamp_min(1e-300), torch.full_like(var, math.nan))


@dataclass
class LatentAnalysis:
    """Results of :func:`analyze_latents`; tensors are float64 on the CPU.

    subband_energy / subband_autocorrelation: (8, C), rows SUBBAND_NAMES.
    leaf_energy / leaf_autocorrelation: (8, 4, C) = (leaf, spatial subband, channel), or None.
    head_energy: (C,) for causal latents, else None. subband_images: (8, C, H'/2, W'/2), the first
    coefficient frame of the first clip (for Figs. 13-14).
    """

    channels: int
    clips: int
    causal: bool
    frames: list[int]
    subband_energy: Tensor
    subband_autocorrelation: Tensor
    subband_pairs: int
    channel_mean: Tensor
    channel_energy: Tensor
    head_energy: Tensor | None
    leaf_energy: Tensor | None
    leaf_autocorrelation: Tensor | None
    leaf_pairs: int
    kept_share: dict[str, float | None]
    subband_images: Tensor | None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def subband_share(self) -> Tensor:
        """(8,) share of the total latent energy in each subband."""
        per = self.subband_energy.sum(1)
        return per / per.sum()

    @property
    def leaf_share(self) -> Tensor | None:
        """(8,) share of the total energy in each Multi-WT leaf."""
        if self.leaf_energy is None:
            return None
        per = self.leaf_energy.sum((1, 2))
        return per / per.sum()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (NaN becomes None)."""
        share = self.subband_share
        out: dict[str, Any] = {
            "latent": {
                "channels": self.channels,
                "clips": self.clips,
                "causal": self.causal,
                "frames_per_clip": sorted(set(self.frames)),
                "channel_mean": _list(self.channel_mean),
                "channel_energy": _list(self.channel_energy),
                "head_energy": None if self.head_energy is None else _list(self.head_energy),
            },
            "subbands": {
                "names": list(SUBBAND_NAMES),
                "letters": "temporal, height, width band (L low, H high); index s = 4*t_hi + 2*h_hi + w_hi",
                "energy": _list(self.subband_energy),
                "energy_share": _list(share),
                "temporal_low_share": float(share[:4].sum()),
                "autocorrelation": _list(self.subband_autocorrelation),
                "autocorrelation_channel_mean": _list(_nanmean(self.subband_autocorrelation, 1)),
                "pairs_per_cell": self.subband_pairs,
            },
            "leaves": None,
            "notes": self.notes,
        }
        if self.leaf_energy is not None:
            out["leaves"] = {
                "names": list(LEAF_NAMES),
                "letters": "temporal bands of the second split, first split and 3D level (b2 b1 b0)",
                "spatial_names": list(SPATIAL_NAMES),
                "energy": _list(self.leaf_energy),
                "energy_share": _list(self.leaf_share),
                "kept_share": self.kept_share,
                "autocorrelation": _list(self.leaf_autocorrelation),
                "pairs_per_cell": self.leaf_pairs,
            }
        return out


def _list(x: Tensor) -> Any:
    """Nested lists of floats with NaN as None."""
    if x.dim() == 0:
        v = float(x)
        return None if math.isnan(v) else v
    return [_list(v) for v in x]


def _nanmean(x: Tensor, dim: int) -> Tensor:
    ok = ~torch.isnan(x)
    total = torch.where(ok, x, torch.zeros_like(x)).sum(dim)
    count = ok.sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


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


def model_latents(model, videos: Iterable[Tensor], device: str = "cpu", chunk: int | None = None) -> Iterator[Tensor]:
    """Posterior means of videos (B, 3, T, H, W) in [-1, 1] under ``model`` (an LCVAE, in whatever dtype
    it was cast to): the backbone latent z (B, C, T', H', W') before any compression, in float32 on the CPU."""
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        for x in videos:
            yield model.encode(x.to(device=device, dtype=dtype), chunk).mode().float().cpu()


def dataset_videos(
    dataset,
    batch_size: int = 1,
    max_clips: int | None = None,
    progress: bool = True,
    counter=None,
    paths: list[str] | None = None,
) -> Iterator[Tensor]:
    """Video batches (B, 3, T, H, W) in [-1, 1] from a ``lcvae.data`` dataset in order, with a progress
    bar; skipped clips are counted in ``counter`` (a ``SkipCounter``), the used clips' paths appended
    to ``paths``; stops after ``max_clips``."""
    from lcvae.data import SkipCounter, make_loader
    from lcvae.progress import Progress

    counter = counter if counter is not None else SkipCounter()
    total = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    seen = 0
    with Progress(total, "clips", unit="clip", enabled=progress) as bar:
        for batch in make_loader(dataset, batch_size, shuffle=False):
            good = counter.update(batch)
            bar.update(good + len(batch["skipped"]))
            if good == 0:
                continue
            video = batch["video"]
            if max_clips is not None:
                video = video[: max_clips - seen]
            seen += video.shape[0]
            if paths is not None:
                paths.extend(batch["path"][: video.shape[0]])
            yield video
            if max_clips is not None and seen >= max_clips:
                return


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


def read_latent_files(paths: Iterable[str | Path]) -> tuple[list[Tensor], bool]:
    """Backbone latents saved by ``lcvae encode --raw`` (safetensors ``latent`` (1, C, T', h, w) with the
    model config in the metadata) -> (latents, causal). Diffusion latents are refused: they are packed
    and normalised, not the backbone latent this analysis is about."""
    from safetensors import safe_open

    from lcvae.models.lcvae import LCVAEConfig

    latents, causal = [], set()
    for path in paths:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            latent = f.get_tensor("latent")
        if meta.get("kind") != "raw":
            raise ValueError(
                f"{path} holds a {meta.get('kind', 'unlabelled')} latent; the analysis needs the backbone "
                "latent: encode with `lcvae encode --raw`"
            )
        if "config" not in meta:
            raise ValueError(
                f"{path} has no model config in its metadata, so its frame rule (causal or not) is unknown"
            )
        causal.add(LCVAEConfig.from_dict(json.loads(meta["config"])).backbone.causal)
        latents.append(latent)
    if not latents:
        raise ValueError("no latent files given")
    if len(causal) > 1:
        raise ValueError("the latent files mix causal and non-causal models; analyse them separately")
    return latents, causal.pop()
