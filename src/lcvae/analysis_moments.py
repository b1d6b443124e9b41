"""Streaming float64 moments with lag-1 cross sums: what the latent analysis accumulates (``lcvae.analysis``).

The lag-1 autocorrelation it gives uses the mean and variance pooled over every tensor, frame and
position, and pairs only consecutive frames within one tensor (see the ``lcvae.analysis`` docstring).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
