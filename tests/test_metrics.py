"""PSNR/SSIM against scikit-image, the Fréchet distance against closed forms and scipy.sqrtm."""

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lcvae.metrics import (
    PSNR_CAP_DB,
    FeatureStats,
    frechet_distance,
    fvd_from_features,
    psnr,
    reference_fvd_mean_over_batches,
    ssim,
)


def _skimage_per_video(metric, x, y):
    """Average a per-frame skimage metric; videos (B, 3, T, H, W) in [-1, 1]."""
    a = ((x.double() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).numpy()  # (B, T, H, W, 3)
    b = ((y.double() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 4, 1).numpy()
    return np.array([np.mean([metric(a[i, t], b[i, t]) for t in range(a.shape[1])]) for i in range(a.shape[0])])


def _sk_psnr(p, q):
    return peak_signal_noise_ratio(p, q, data_range=1.0)


def _sk_ssim(p, q):
    return structural_similarity(
        p, q, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
    )


def _video_pairs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 3, 24, 20, generator=g) * 2 - 1
    yield "random", x, torch.rand(x.shape, generator=g) * 2 - 1
    yield "noisy", x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 1, 32).expand(1, 3, 2, 17, 32)
    yield "ramp_vs_shift", ramp, torch.roll(ramp, 3, dims=-1)
    checker = ((torch.arange(16).view(-1, 1) // 4 + torch.arange(16).view(1, -1) // 4) % 2) * 2.0 - 1
    checker = checker.expand(1, 3, 2, 16, 16)
    yield "checker_vs_flat", checker, torch.zeros_like(checker)
    yield "checker_vs_dimmed", checker, checker * 0.7


@pytest.mark.parametrize("name,x,y", list(_video_pairs()))
def test_psnr_and_ssim_match_skimage(name, x, y):
    np.testing.assert_allclose(psnr(x, y).numpy(), _skimage_per_video(_sk_psnr, x, y), atol=1e-4)
    np.testing.assert_allclose(ssim(x, y).numpy(), _skimage_per_video(_sk_ssim, x, y), atol=1e-4)


def test_identical_videos_give_psnr_cap_and_ssim_one():
    x = torch.rand(2, 3, 2, 16, 16) * 2 - 1
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_CAP_DB, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_psnr_of_known_uniform_error():
    # an error of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01 -> 20 dB
    x = torch.zeros(1, 3, 2, 8, 8, dtype=torch.float64)
    assert psnr(x, x + 0.2).item() == pytest.approx(20.0, abs=1e-9)


def test_values_outside_range_are_clipped_like_8bit_frames():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 2, 16, 16, generator=g) * 1.5
    y = torch.rand(1, 3, 2, 16, 16, generator=g) * 2 - 1
    torch.testing.assert_close(psnr(x, y), psnr(x.clamp(-1, 1), y))
    torch.testing.assert_close(ssim(x, y), ssim(x.clamp(-1, 1), y))


def test_bad_shapes_are_rejected_with_the_rule():
    x = torch.zeros(1, 3, 2, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        psnr(x, x[:, :, :1])
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])


def _sqrtm_twin(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(root)))


def _random_psd(rng, d, rank):
    a = rng.standard_normal((d, rank))
    return a @ a.T / rank


def test_frechet_distance_is_zero_for_identical_statistics():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(12), _random_psd(rng, 12, 30)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_diagonal_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(7), rng.standard_normal(7)
    v1, v2 = rng.uniform(0.1, 3, 7), rng.uniform(0.1, 3, 7)
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    got = frechet_distance(torch.tensor(mu1), torch.tensor(np.diag(v1)), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rank", [40, 5])  # full rank, and singular as with few samples
def test_frechet_distance_eigen_method_equals_scipy_sqrtm(rank):
    rng = np.random.default_rng(rank)
    d = 20
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_psd(rng, d, rank), _random_psd(rng, d, rank)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_sqrtm_twin(mu1, s1, mu2, s2), rel=1e-6, abs=1e-6)


def test_feature_stats_streaming_equals_one_shot_and_halves_merge():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(103, 9, generator=g) * 3 + 5
    stream = FeatureStats(9)
    for chunk in torch.split(feats, [1, 40, 17, 45]):
        stream.update(chunk)
    np.testing.assert_allclose(stream.mean().numpy(), feats.double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        stream.covariance().numpy(), np.cov(feats.double().numpy(), rowvar=False), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        stream.covariance(unbiased=False).numpy(),
        np.cov(feats.double().numpy(), rowvar=False, bias=True),
        rtol=1e-9,
        atol=1e-12,
    )
    first, second = FeatureStats(9), FeatureStats(9)
    first.update(feats[:50])
    second.update(feats[50:])
    merged = FeatureStats.from_state_dict(first.state_dict()).merge(second)
    assert merged.n == 103
    torch.testing.assert_close(merged.sum_outer, stream.sum_outer, rtol=1e-13, atol=1e-10)
    torch.testing.assert_close(merged.sum, stream.sum, rtol=1e-13, atol=1e-10)


def test_feature_stats_rejects_wrong_width_and_too_few_samples():
    stats = FeatureStats(4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        stats.update(torch.zeros(3, 5))
    stats.update(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="at least 2"):
        stats.covariance()


def test_fvd_from_features_equals_numpy_twin():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(60, 8, generator=g)
    fake = torch.randn(50, 8, generator=g) * 1.3 + 0.4
    r, f = real.double().numpy(), fake.double().numpy()
    expected = _sqrtm_twin(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False))
    assert fvd_from_features(real, fake) == pytest.approx(expected, rel=1e-8)
    stats = FeatureStats(8)
    stats.update(real)
    assert fvd_from_features(stats, fake) == pytest.approx(expected, rel=1e-8)


def test_reference_batch_mean_fvd_is_the_mean_of_batch_fvds_and_biased_upward():
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(200, 16, generator=g), torch.randn(200, 16, generator=g)
    by_hand = []
    for i in range(0, 200, 10):
        r, f = real[i : i + 10].double().numpy(), fake[i : i + 10].double().numpy()
        by_hand.append(_sqrtm_twin(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False)))
    batched = reference_fvd_mean_over_batches(real, fake, batch_size=10)
    assert batched == pytest.approx(np.mean(by_hand), rel=1e-5)
    # same distribution: the dataset-level number is small, the 10-video average is not
    assert batched > 5 * fvd_from_features(real, fake)
