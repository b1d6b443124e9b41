import math

import pytest
import torch
from torch import nn

from lcvae.losses import (
    DiscriminatorLoss,
    GeneratorLoss,
    LossConfig,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_loss,
    l1_loss,
    perceptual_loss,
    video_to_frames,
    wavelet_loss,
)


def frame_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A stand-in perceptual distance: (N, 3, H, W) pairs -> (N,)."""
    return ((a - b) ** 2).mean(dim=(1, 2, 3))


def videos(seed=0, shape=(2, 3, 4, 6, 5)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1


class TinyDecoder(nn.Module):
    """z (B, 4, T, H, W) -> video (B, 3, T, H, W) through a last conv whose weight is W of Eq. 9."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv3d(4, 6, 3, padding=1)
        self.out = nn.Conv3d(6, 3, 3, padding=1)

    def forward(self, z):
        return self.out(torch.tanh(self.body(z)))


# ------------------------------------------------------------------------------------------ terms


def test_video_to_frames_order():
    x = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)
    frames = video_to_frames(x)
    for b in range(2):
        for t in range(4):
            assert torch.equal(frames[b * 4 + t], x[b, :, t])


def test_l1_reductions_against_per_frame_loops():
    x, y = videos()
    b, c, t, h, w = x.shape
    per_frame = [[(x[i, :, j] - y[i, :, j]).abs() for j in range(t)] for i in range(b)]
    mean = sum(f.sum() for row in per_frame for f in row) / x.numel()
    sum_frames = sum(sum(f.mean() for f in row) for row in per_frame) / b
    reference = sum(f.sum() for row in per_frame for f in row) / (b * t)
    torch.testing.assert_close(l1_loss(x, y, "mean"), mean)
    torch.testing.assert_close(l1_loss(x, y, "sum_frames"), sum_frames)
    torch.testing.assert_close(l1_loss(x, y, "reference"), reference)
    # the documented relations
    torch.testing.assert_close(l1_loss(x, y, "sum_frames"), t * l1_loss(x, y, "mean"))
    torch.testing.assert_close(l1_loss(x, y, "reference"), c * h * w * l1_loss(x, y, "mean"))


def test_perceptual_reductions_against_per_frame_loops():
    x, y = videos(1)
    b, c, t, h, w = x.shape
    p = torch.tensor([[((x[i, :, j] - y[i, :, j]) ** 2).mean().item() for j in range(t)] for i in range(b)])
    torch.testing.assert_close(perceptual_loss(frame_mse, x, y, "mean"), p.mean())
    torch.testing.assert_close(perceptual_loss(frame_mse, x, y, "sum_frames"), p.sum(1).mean())
    # the reference broadcast the per-frame value over the C*H*W pixels of the L1 map before summing
    broadcast = p[:, :, None, None, None].expand(b, t, c, h, w)
    torch.testing.assert_close(perceptual_loss(frame_mse, x, y, "reference"), broadcast.sum() / (b * t))
    torch.testing.assert_close(
        perceptual_loss(frame_mse, x, y, "sum_frames"), t * perceptual_loss(frame_mse, x, y, "mean")
    )


def test_perceptual_accepts_lpips_shaped_output_and_rejects_wrong_counts():
    x, y = videos(2)
    lpips_like = lambda a, b: frame_mse(a, b)[:, None, None, None]  # noqa: E731
    torch.testing.assert_close(perceptual_loss(lpips_like, x, y, "mean"), perceptual_loss(frame_mse, x, y, "mean"))
    with pytest.raises(ValueError, match="one value per frame"):
        perceptual_loss(lambda a, b: frame_mse(a, b)[:3], x, y)
    with pytest.raises(ValueError, match="reduction must be one of"):
        perceptual_loss(frame_mse, x, y, "sum")


def test_kl_matches_closed_form_of_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(3, 4, 2, 3, 3, generator=g)
    logvar = torch.randn(3, 4, 2, 3, 3, generator=g)
    post = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(post, prior).sum() / 3
    torch.testing.assert_close(kl_loss(mean, logvar), expected)
    # a single element, by hand: mu=1, logvar=0 -> 0.5 * (1 + 1 - 1 - 0) = 0.5
    assert kl_loss(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(0.5)


def test_hinge_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> 5/6; relu(1 + fake) = [0, 1, 2] -> 1
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1))
    assert hinge_generator_loss(fake).item() == pytest.approx(1 / 3)


def test_wavelet_loss_reference_is_sum_over_elements_per_sample():
    g = torch.Generator().manual_seed(4)
    w2, w2_hat = torch.randn(2, 12, 2, 4, 4, generator=g), torch.randn(2, 12, 2, 4, 4, generator=g)
    w3, w3_hat = torch.randn(2, 24, 1, 2, 2, generator=g), torch.randn(2, 24, 1, 2, 2, generator=g)
    expected = ((w2_hat - w2).abs().sum() + (w3_hat - w3).abs().sum()) / 2
    torch.testing.assert_close(wavelet_loss([w2, w3], [w2_hat, w3_hat]), expected)
    expected_mean = (w2_hat - w2).abs().mean() + (w3_hat - w3).abs().mean()
    torch.testing.assert_close(wavelet_loss([w2, w3], [w2_hat, w3_hat], "mean"), expected_mean)
    with pytest.raises(ValueError, match="equal shape"):
        wavelet_loss([w2], [w3_hat])


# ------------------------------------------------------------------------------- adaptive weight


def test_adaptive_weight_closed_form_on_a_linear_last_layer():
    # x_hat = W z; rec = 0.5 * ||x_hat - x||^2 -> dW = (x_hat - x) z^T; adv = -mean(v . x_hat) -> dW = -v z^T / 1
    g = torch.Generator().manual_seed(5)
    W = torch.randn(3, 4, generator=g, requires_grad=True)
    z, x, v = torch.randn(4, generator=g), torch.randn(3, generator=g), torch.randn(3, generator=g)
    x_hat = W @ z
    rec = 0.5 * ((x_hat - x) ** 2).sum()
    adv = -(v * x_hat).sum()
    lam = adaptive_weight(rec, adv, W)
    with torch.no_grad():
        g_rec = torch.outer(x_hat - x, z)
        g_adv = -torch.outer(v, z)
        expected = 0.5 * g_rec.norm() / (g_adv.norm() + 1e-6)
    torch.testing.assert_close(lam, expected)
    assert not lam.requires_grad
    # graphs were retained: the caller can still backprop
    (rec + lam * adv).backward()
    torch.testing.assert_close(W.grad, g_rec + lam * g_adv)


def test_adaptive_weight_clamps_and_rejects_unrelated_weight():
    W = torch.ones(2, requires_grad=True)
    rec = (W * 1e3).sum()
    adv = (W * 0.0).sum()  # zero gradient -> ratio 0.5 * ||.|| / 1e-6, clamped to 1e6
    assert adaptive_weight(rec, adv, W).item() == 1e6
    other = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="does not depend on last_layer"):
        adaptive_weight((W * 2).sum(), (W * 3).sum(), other)


def _generator_setup(seed=0):
    torch.manual_seed(seed)
    dec = TinyDecoder()
    disc = nn.Sequential(nn.Conv3d(3, 2, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv3d(2, 1, 3, padding=1))
    z = torch.randn(2, 4, 3, 8, 8)
    x = torch.rand(2, 3, 3, 8, 8) * 2 - 1
    mean, logvar = torch.randn(2, 2, 1, 2, 2), torch.randn(2, 2, 1, 2, 2) * 0.1
    return dec, disc, z, x, mean, logvar


def test_generator_loss_total_and_adaptive_weight_by_hand():
    dec, disc, z, x, mean, logvar = _generator_setup()
    cfg = LossConfig(perceptual_weight=0.7, kl_weight=1e-2, reduction="mean")
    x_hat = dec(z)
    out = GeneratorLoss(cfg, perceptual=frame_mse)(
        x, x_hat, mean, logvar, step=0, discriminator=disc, last_layer=dec.out.weight
    )
    # independent computation of every term
    l1 = (x - x_hat).abs().mean()
    perc = frame_mse(video_to_frames(x), video_to_frames(x_hat)).mean()
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / 2
    gan = -disc(x_hat).mean()
    rec = l1 + 0.7 * perc
    g_rec = torch.autograd.grad(rec, dec.out.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, dec.out.weight, retain_graph=True)[0]
    lam = (0.5 * g_rec.norm() / (g_gan.norm() + 1e-6)).clamp(0, 1e6)
    torch.testing.assert_close(out.l1, l1.detach())
    torch.testing.assert_close(out.perceptual, perc.detach())
    torch.testing.assert_close(out.kl, kl)
    torch.testing.assert_close(out.gan, gan.detach())
    torch.testing.assert_close(out.adaptive_weight, lam)
    torch.testing.assert_close(out.total.detach(), (rec + 1e-2 * kl + lam * gan).detach())
    assert out.wavelet.item() == 0.0
    torch.testing.assert_close(out.mse, (x - x_hat).square().mean().detach())  # logged, though its weight is 0
    assert set(out.to_log()) == {"total", "l1", "mse", "perceptual", "kl", "gan", "adaptive_weight", "wavelet"}
    out.total.backward()
    assert dec.out.weight.grad is not None and dec.out.weight.grad.abs().sum() > 0


def test_mse_term_enters_total_and_adaptive_weight():
    """mse_weight adds the squared error (reduced as L1: per-frame sum over C*H*W) to the reconstruction
    term, so it also enters the adaptive GAN weight; computed here by hand."""
    dec, disc, z, x, mean, logvar = _generator_setup(3)
    cfg = LossConfig(l1_weight=0.5, mse_weight=2.0, perceptual_weight=0.0, kl_weight=1e-2)
    x_hat = dec(z)
    out = GeneratorLoss(cfg)(x, x_hat, mean, logvar, step=0, discriminator=disc, last_layer=dec.out.weight)
    frames = x.shape[0] * x.shape[2]
    l1 = (x - x_hat).abs().sum() / frames
    mse = (x - x_hat).square().sum() / frames
    rec = 0.5 * l1 + 2.0 * mse
    gan = -disc(x_hat).mean()
    g_rec = torch.autograd.grad(rec, dec.out.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, dec.out.weight, retain_graph=True)[0]
    lam = (0.5 * g_rec.norm() / (g_gan.norm() + 1e-6)).clamp(0, 1e6)
    torch.testing.assert_close(out.mse, mse.detach())
    torch.testing.assert_close(out.adaptive_weight, lam)
    torch.testing.assert_close(out.total.detach(), (rec + 1e-2 * out.kl + lam * gan).detach())
    with pytest.raises(ValueError, match="mse_weight must be >= 0"):
        LossConfig(mse_weight=-1.0)


def test_before_disc_start_no_gan_and_discriminator_not_called():
    dec, _, z, x, mean, logvar = _generator_setup(1)

    def forbidden(_):
        raise AssertionError("discriminator must not run before disc_start")

    cfg = LossConfig(perceptual_weight=0.0, disc_start=10)
    out = GeneratorLoss(cfg)(x, dec(z), mean, logvar, step=9, discriminator=forbidden, last_layer=dec.out.weight)
    assert out.gan.item() == 0.0 and out.adaptive_weight.item() == 0.0
    torch.testing.assert_close(out.total.detach(), out.l1 + 1e-6 * out.kl)
    with pytest.raises(ValueError, match="pass discriminator= and last_layer="):
        GeneratorLoss(cfg)(x, dec(z), mean, logvar, step=10)


def test_wavelet_term_weighting():
    dec, disc, z, x, mean, logvar = _generator_setup(2)
    coeffs = [torch.randn(2, 12, 2, 4, 4)], [torch.randn(2, 12, 2, 4, 4)]
    x_hat = dec(z)
    base = dict(perceptual_weight=0.0, disc_start=100)
    off = GeneratorLoss(LossConfig(**base))(
        x, x_hat, mean, logvar, step=0, encoder_coeffs=coeffs[0], decoder_coeffs=coeffs[1]
    )
    on = GeneratorLoss(LossConfig(wavelet_weight=0.1, **base))(
        x, x_hat, mean, logvar, step=0, encoder_coeffs=coeffs[0], decoder_coeffs=coeffs[1]
    )
    expected_wav = (coeffs[1][0] - coeffs[0][0]).abs().sum() / 2
    torch.testing.assert_close(off.wavelet, expected_wav)  # logged even when its weight is 0
    torch.testing.assert_close(on.total - off.total, 0.1 * expected_wav)
    with pytest.raises(ValueError, match="needs encoder_coeffs"):
        GeneratorLoss(LossConfig(wavelet_weight=0.1, **base))(x, x_hat, mean, logvar, step=0)


def test_adaptive_weight_under_bf16_autocast_is_fp32_and_close_to_fp32():
    dec, disc, z, x, mean, logvar = _generator_setup(3)
    cfg = LossConfig(perceptual_weight=0.0, reduction="mean")
    ref = GeneratorLoss(cfg)(x, dec(z), mean, logvar, step=0, discriminator=disc, last_layer=dec.out.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat = dec(z)
        assert x_hat.dtype == torch.bfloat16
        out = GeneratorLoss(cfg)(x, x_hat, mean, logvar, step=0, discriminator=disc, last_layer=dec.out.weight)
    assert out.adaptive_weight.dtype == torch.float32 and out.total.dtype == torch.float32
    assert math.isfinite(out.adaptive_weight.item())
    assert out.adaptive_weight.item() == pytest.approx(ref.adaptive_weight.item(), rel=0.02)


def test_generator_loss_requires_perceptual_when_weighted():
    with pytest.raises(ValueError, match="needs a perceptual callable"):
        GeneratorLoss(LossConfig(perceptual_weight=1.0))
    with pytest.raises(ValueError, match="reduction must be one of"):
        LossConfig(reduction="avg")


# --------------------------------------------------------------------------------- discriminator


def test_discriminator_loss_by_hand_and_inactive_before_start():
    torch.manual_seed(4)
    disc = nn.Conv3d(3, 1, 3, padding=1)
    x = torch.rand(1, 3, 2, 4, 4) * 2 - 1
    gen_param = torch.ones((), requires_grad=True)
    x_hat = torch.rand(1, 3, 2, 4, 4) * gen_param
    loss = DiscriminatorLoss(LossConfig(disc_start=5))
    with torch.no_grad():
        expected = 0.5 * (torch.relu(1 - disc(x)).mean() + torch.relu(1 + disc(x_hat)).mean())
    active = loss(disc, x, x_hat, step=5)
    torch.testing.assert_close(active.total.detach(), expected)
    torch.testing.assert_close(active.hinge, expected)
    active.total.backward()
    assert gen_param.grad is None  # reconstructions are detached
    assert disc.weight.grad.abs().sum() > 0
    disc.zero_grad()
    inactive = loss(disc, x, x_hat, step=4)
    assert inactive.total.item() == 0.0 and not loss.active(4)
    inactive.total.backward()  # still a valid graph
    assert disc.weight.grad.abs().sum() == 0
