"""Reconstruction metrics: PSNR, SSIM, and the Fréchet distance behind FVD.

Videos arrive as (B, 3, T, H, W) in [-1, 1] (the library convention) and are mapped to [0, 1]
by v ↦ (v + 1) / 2, clipped to [0, 1] as writing the frames to 8-bit files would; PSNR and SSIM
are then computed per frame with data range 1 and averaged over frames, one number per video.
All arithmetic is float64.

FVD compares two Gaussians fitted to clip embeddings (I3D, see lcvae.perceptual.i3d):

    FVD = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

:class:`FeatureStats` accumulates the count, Σx and Σxxᵀ in float64, so a dataset-level FVD
needs memory for one D×D matrix rather than every feature, and partial statistics from batches
or processes add up exactly (sum the three tensors, or use :meth:`FeatureStats.merge`).

The reference evaluation averaged FVDs of 10-video batches; with 10 samples in 400 dimensions
each covariance has rank ≤ 9, so that number is biased upward and depends on the batch size.
:func:`fvd_from_features` is the dataset-level number; :func:`reference_fvd_mean_over_batches`
reproduces the reference only to compare with the paper.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0  # reported for identical frames (MSE = 0): MSE is floored at 1e-10
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2  # (K1 · data range)², data range 1
SSIM_C2 = 0.03**2


def _frames01(x: Tensor, y: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Two videos (B, 3, T, H, W) in [-1, 1] -> frames (B, T, 3, H, W) in [0, 1], float64."""
    if x.shape != y.shape or x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(
            f"{what} expects two (B, 3, T, H, W) videos of equal shape with values in [-1, 1], "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )

    def to01(v: Tensor) -> Tensor:
        return ((v.detach().double() + 1.0) / 2.0).clamp(0.0, 1.0).transpose(1, 2)

    return to01(x), to01(y)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB per video: 20·log10(1/√MSE) per frame on [0, 1] values, averaged over frames.

    x, y: (B, 3, T, H, W), values in [-1, 1] -> (B,) float64. Identical frames score
    PSNR_CAP_DB (100 dB) instead of infinity.
    """
    a, b = _frames01(x, y, "psnr")
    mse = (a - b).pow(2).mean(dim=(2, 3, 4))  # (B, T)
    per_frame = -10.0 * torch.log10(mse.clamp_min(10.0 ** (-PSNR_CAP_DB / 10.0)))
    return per_frame.mean(dim=1)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """Normalised 1-D Gaussian taps exp(−k²/2σ²), k = −size//2 … size//2 (float64)."""
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    w = torch.exp(-0.5 * (k / sigma) ** 2)
    return w / w.sum()


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """SSIM per video (Wang et al. 2004), per frame and channel, averaged over both.

    x, y: (B, 3, T, H, W), values in [-1, 1] -> (B,) float64. Local statistics use an 11×11
    Gaussian window (σ = 1.5) with population (biased) variances, C1 = 0.01², C2 = 0.03², and a
    'valid' convolution: only windows fully inside the frame count, as in the reference MATLAB
    code and skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1), which filters the whole frame and then discards
    the 5-pixel border.
    """
    a, b = _frames01(x, y, "ssim")
    bsz, t, c, h, w = a.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {h}×{w}")
    # (B, T, 3, H, W) -> (B*T*3, H, W): every channel of every frame is its own image
    a = a.reshape(-1, h, w)
    b = b.reshape(-1, h, w)
    mu_a, mu_b, e_aa, e_bb, e_ab = _blur_valid(torch.stack([a, b, a * a, b * b, a * b]))
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    per_image = (num / den).mean(dim=(1, 2))  # (B*T*3,)
    return per_image.view(bsz, t * c).mean(dim=1)


def _blur_valid(v: Tensor) -> Tensor:
    """Separable Gaussian filter over the last two dims, 'valid' (output shrinks by 10 per dim).

    Written as 11 shifted multiply-adds per axis: float64 conv2d with one input channel runs
    several times slower on CPU (benchmarks/bench_metrics.py compares with skimage).
    """
    g = gaussian_window().tolist()
    n = len(g)
    w_out, h_out = v.shape[-1] - n + 1, v.shape[-2] - n + 1
    rows = v[..., 0:w_out] * g[0]
    for k in range(1, n):
        rows.add_(v[..., k : k + w_out], alpha=g[k])
    out = rows[..., 0:h_out, :] * g[0]
    for k in range(1, n):
        out.add_(rows[..., k : k + h_out, :], alpha=g[k])
    return out


class FeatureStats:
    """Streaming mean and covariance of feature vectors, exact and mergeable.

    Holds n, Σx (D,) and Σxxᵀ (D, D) in float64. Update with (N, D) batches in any order and
    split; merge partial statistics from other batches or processes by adding them.
    """

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.sum_outer = torch.zeros(dim, dim, dtype=torch.float64)

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, feats: Tensor) -> None:
        """Add a batch of features, (N, D)."""
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {tuple(feats.shape)}")
        f = feats.detach().to(device="cpu", dtype=torch.float64)
        if not torch.isfinite(f).all():
            raise ValueError("features contain NaN or infinity; check the extractor's input range")
        self.n += f.shape[0]
        self.sum += f.sum(dim=0)
        self.sum_outer += f.T @ f

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add another accumulator's statistics into this one (returns self)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        self.n += other.n
        self.sum += other.sum
        self.sum_outer += other.sum_outer
        return self

    def mean(self) -> Tensor:
        """μ, (D,) float64."""
        if self.n < 1:
            raise ValueError("no features were added")
        return self.sum / self.n

    def covariance(self, unbiased: bool = True) -> Tensor:
        """Σ, (D, D) float64; divides by n − 1 (as numpy.cov) unless ``unbiased=False`` (by n).

        (Σxxᵀ − n μμᵀ) loses about (|μ|/σ)² · 1e-16 relative precision: negligible for I3D logits.
        """
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        mu = self.mean()
        centred = self.sum_outer - self.n * torch.outer(mu, mu)
        cov = centred / (self.n - 1 if unbiased else self.n)
        return (cov + cov.T) / 2

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to save or all-reduce (sum) across processes; see :meth:`from_state_dict`."""
        return {
            "n": torch.tensor(self.n, dtype=torch.float64),
            "sum": self.sum.clone(),
            "sum_outer": self.sum_outer.clone(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> FeatureStats:
        stats = cls(state["sum"].shape[0])
        stats.n = int(round(float(state["n"])))
        stats.sum = state["sum"].detach().double().cpu().clone()
        stats.sum_outer = state["sum_outer"].detach().double().cpu().clone()
        return stats


def _as_float64(a: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½) for covariances that are symmetric PSD.

    Σ1Σ2 is not symmetric, but it has the eigenvalues of the symmetric PSD matrix
    M = Σ1^½ Σ2 Σ1^½, so tr((Σ1Σ2)^½) = Σ √λ_i(M). Two symmetric eigendecompositions replace
    the general-matrix sqrtm (no complex round-off, no failure on singular Σ). Tensors or arrays;
    float64 throughout; tiny negative round-off is clipped to 0.
    """
    mu1, mu2, s1, s2 = (_as_float64(v) for v in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"need means (D,) and covariances (D, D) of one D, got {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}"
        )
    root1 = _psd_sqrt(s1)
    m = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(d, 0.0)


def _stats(feats: FeatureStats | Tensor) -> FeatureStats:
    if isinstance(feats, FeatureStats):
        return feats
    stats = FeatureStats(feats.shape[-1])
    stats.update(feats)
    return stats


def fvd_from_features(real: FeatureStats | Tensor, fake: FeatureStats | Tensor) -> float:
    """Dataset-level FVD between two feature sets: FeatureStats or (N, D) tensors, N ≥ 2.

    Covariances divide by N − 1 (numpy.cov, as the reference and StyleGAN-V's descendants).
    """
    a, b = _stats(real), _stats(fake)
    if a.dim != b.dim:
        raise ValueError(f"real and fake features differ in dimension: {a.dim} vs {b.dim}")
    return frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance())


def reference_fvd_mean_over_batches(real: Tensor, fake: Tensor, batch_size: int = 10) -> float:
    """The reference's biased FVD: mean of per-batch FVDs over consecutive ``batch_size`` videos.

    real, fake: (N, D) features of paired videos in the same order. Only for reproducing the
    paper's tables; report :func:`fvd_from_features` as the FVD. A trailing batch of fewer
    than 2 videos has no covariance and is left out.
    """
    if real.shape != fake.shape or real.ndim != 2:
        raise ValueError(f"need paired (N, D) features, got {tuple(real.shape)}, {tuple(fake.shape)}")
    if batch_size < 2 or real.shape[0] < 2:
        raise ValueError(f"need batch_size ≥ 2 and ≥ 2 videos, got {batch_size} and {real.shape[0]}")
    values = [
        fvd_from_features(real[i : i + batch_size], fake[i : i + batch_size])
        for i in range(0, real.shape[0], batch_size)
        if real[i : i + batch_size].shape[0] >= 2
    ]
    return float(math.fsum(values) / len(values))
