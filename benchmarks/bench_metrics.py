"""Frechet distance: eigen method vs scipy.linalg.sqrtm at FVD's D = 400; SSIM vs skimage.

Prints JSON. Run: .venv/bin/python benchmarks/bench_metrics.py
"""

import json
import time

import numpy as np
import scipy.linalg
import torch
from skimage.metrics import structural_similarity

from lcvae.metrics import frechet_distance, ssim


def _best_of(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _sqrtm_fd(mu1, s1, mu2, s2):
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root))), root


def frechet_case(n: int, d: int = 400, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d)) * 1.1 + 0.05
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    eig = frechet_distance(mu1, s1, mu2, s2)
    plain, root = _sqrtm_fd(mu1, s1, mu2, s2)
    t_eig = _best_of(lambda: frechet_distance(mu1, s1, mu2, s2))
    t_sqrtm = _best_of(lambda: _sqrtm_fd(mu1, s1, mu2, s2))
    return {
        "samples": n,
        "dim": d,
        "eigen": eig,
        "sqrtm": plain,
        "relative_difference": abs(eig - plain) / abs(plain),
        "sqrtm_max_imaginary": float(np.abs(np.imag(root)).max()),
        "seconds_eigen": t_eig,
        "seconds_sqrtm": t_sqrtm,
        "speedup_vs_sqrtm": t_sqrtm / t_eig,
    }


def ssim_case() -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 8, 256, 256, generator=g) * 2 - 1
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    a = ((x[0] + 1) / 2).permute(1, 2, 3, 0).double().numpy()
    b = ((y[0] + 1) / 2).permute(1, 2, 3, 0).double().numpy()

    def plain():
        return np.mean(
            [
                structural_similarity(
                    a[t],
                    b[t],
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1.0,
                    channel_axis=-1,
                )
                for t in range(a.shape[0])
            ]
        )

    t_ours, t_plain = _best_of(lambda: ssim(x, y)), _best_of(plain)
    return {
        "frames": 8,
        "size": 256,
        "ours": ssim(x, y).item(),
        "skimage": float(plain()),
        "seconds_ours": t_ours,
        "seconds_skimage": t_plain,
        "speedup_vs_skimage": t_plain / t_ours,
    }


if __name__ == "__main__":
    print(
        json.dumps(
            {"frechet_full_rank": frechet_case(2048), "frechet_reference_batch": frechet_case(10), "ssim": ssim_case()},
            indent=2,
        )
    )
