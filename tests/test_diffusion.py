"""Diffusion: schedule, noising, the hybrid loss against hand-derived Gaussians, and the samplers
(diffusers' schedulers) against a plain float64 improved-DDPM implementation written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch.distributions import Normal, kl_divergence

from lcvae.diffusion import GaussianDiffusion, model_fn
from lcvae.models.latte import Latte, LatteConfig

T = 1000
BETAS = np.linspace(1e-4, 0.02, T)  # float64
ABAR = np.cumprod(1.0 - BETAS)


pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in denoiser: the optimal epsilon for data N(0, 0.25 I) plus a small
    t-dependent bias, and v in (-1, 1); samples stay O(1)."""
    view = (-1, *([1] * (x.dim() - 1)))
    a = torch.as_tensor(ABAR, dtype=x.dtype)[t].view(view)
    tt = t.to(x.dtype).view(view) / T
    eps = (1.0 - a).sqrt() * x / (0.25 * a + 1.0 - a) + 0.05 * torch.sin(6.0 * tt)
    v = torch.tanh(0.5 * x - tt)
    return torch.cat([eps, v], dim=1)


def _eps_only(x, t):
    return _fake_model(x, t)[:, : x.shape[1]]


def _kept_linspace(steps: int) -> list[int]:
    """Improved DDPM's space_timesteps(T, [steps]): a fractional stride, rounded."""
    stride = (T - 1) / (steps - 1)
    return [round(i * stride) for i in range(steps)]


def _kept_even(steps: int) -> list[int]:
    """Improved DDPM's "ddim<steps>": an integer stride from 0."""
    return list(range(0, T, T // steps))


def _plain_ddpm(fn, x_T, kept, generator, learned=True):
    """Ancestral sampling on a respaced schedule built explicitly (new betas from abar), float64."""
    abar = ABAR[kept]
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    betas = 1.0 - abar / abar_prev
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    post_logvar = np.log(np.concatenate([[post_var[1]], post_var[1:]]))
    large_logvar = np.log(np.concatenate([[post_var[1]], betas[1:]]))
    x = x_T.double()
    c = x.shape[1]
    for i in reversed(range(len(kept))):
        out = fn(x, torch.full((x.shape[0],), kept[i])).double()
        eps = out[:, :c]
        x0 = (x - math.sqrt(1.0 - abar[i]) * eps) / math.sqrt(abar[i])
        coef_x0 = betas[i] * math.sqrt(abar_prev[i]) / (1.0 - abar[i])
        coef_xt = (1.0 - abar_prev[i]) * math.sqrt(1.0 - betas[i]) / (1.0 - abar[i])
        mean = coef_x0 * x0 + coef_xt * x
        if learned:
            frac = (out[:, c:] + 1.0) / 2.0
            logvar = frac * math.log(betas[i]) + (1.0 - frac) * post_logvar[i]
        else:
            logvar = torch.full_like(x, large_logvar[i])
        if i > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
            x = mean + torch.exp(0.5 * logvar) * noise
        else:
            x = mean
    return x


def _plain_ddim(fn, x_T, kept, eta, generator):
    x = x_T.double()
    for i in reversed(range(len(kept))):
        eps = fn(x, torch.full((x.shape[0],), kept[i])).double()
        a, a_prev = ABAR[kept[i]], (ABAR[kept[i - 1]] if i > 0 else 1.0)
        x0 = (x - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
        sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(1.0 - a_prev - sigma**2) * eps
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return x


def _posterior(x0, xt, t):
    """q(x_{t-1} | x_t, x_0) by Bayes' rule in precision form (no closed-form coefficients)."""
    prior_var = 1.0 - ABAR[t - 1]
    precision = 1.0 / prior_var + (1.0 - BETAS[t]) / BETAS[t]
    var = 1.0 / precision
    mean = var * (math.sqrt(ABAR[t - 1]) * x0 / prior_var + math.sqrt(1.0 - BETAS[t]) * xt / BETAS[t])
    return mean, var


def test_schedule_is_linear_and_matches_diffusers():
    from diffusers import DDPMScheduler

    d = GaussianDiffusion()
    assert d.betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert d.betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), ABAR, rtol=1e-12)
    np.testing.assert_allclose(DDPMScheduler().alphas_cumprod.numpy(), ABAR, rtol=2e-5)


def test_noising_at_t0_is_almost_the_input():
    # beta_0 = 1e-4: x_1 = sqrt(1 - 1e-4) x_0 + 0.01 noise, so the input survives up to a 5e-5 scale
    # and noise of std 0.01; with unit-normal inputs the change stays below 0.01 * 5 + 5e-5 * 5
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 2, 5, 5, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.zeros(4, dtype=torch.long)
    noiseless = d.q_sample(x0, t, torch.zeros_like(x0))
    torch.testing.assert_close(noiseless, x0 * math.sqrt(1 - 1e-4), rtol=1e-7, atol=0)
    xt = d.q_sample(x0, t, noise)
    torch.testing.assert_close(xt - math.sqrt(1 - 1e-4) * x0, 0.01 * noise, rtol=1e-5, atol=1e-7)
    assert (xt - x0).abs().max() < 0.06


def test_q_sample_matches_diffusers_add_noise():
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 2, 3, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    expected = DDPMScheduler().add_noise(x0, noise, t)
    torch.testing.assert_close(GaussianDiffusion().q_sample(x0, t, noise), expected, rtol=1e-5, atol=1e-5)


def test_posterior_matches_bayes_rule():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    for step in (1, 37, 500, 999):
        t = torch.full((3,), step)
        mean, log_var = d.q_posterior(x0, xt, t)
        ref_mean, ref_var = _posterior(x0, xt, step)
        torch.testing.assert_close(mean, ref_mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(log_var, torch.full_like(xt, math.log(ref_var)), rtol=1e-10, atol=1e-12)


def test_vb_term_equals_hand_gaussian_kl():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(3)
    b, c = 2, 3
    x0 = torch.randn(b, c, 2, 4, 4, generator=g, dtype=torch.float64)
    xt = torch.randn(b, c, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(b, c, 2, 4, 4, generator=g, dtype=torch.float64)
    v = torch.rand(b, c, 2, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.tensor([3, 700])
    vb = d.vb_terms_bpd(torch.cat([eps, v], dim=1), x0, xt, t)
    for i, step in enumerate(t.tolist()):
        true_mean, true_var = _posterior(x0[i], xt[i], step)
        x0_hat = (xt[i] - math.sqrt(1 - ABAR[step]) * eps[i]) / math.sqrt(ABAR[step])
        model_mean, _ = _posterior(x0_hat, xt[i], step)
        frac = (v[i] + 1) / 2
        model_var = torch.exp(frac * math.log(BETAS[step]) + (1 - frac) * math.log(true_var))
        kl = kl_divergence(Normal(true_mean, math.sqrt(true_var)), Normal(model_mean, model_var.sqrt()))
        assert vb[i].item() == pytest.approx(kl.mean().item() / math.log(2), rel=1e-9)


def test_vb_term_vanishes_for_the_exact_model():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(3, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 250, 999])
    xt = d.q_sample(x0, t, noise)
    exact = torch.cat([noise, -torch.ones_like(noise)], dim=1)  # true eps, v = -1 picks beta~_t
    assert d.vb_terms_bpd(exact, x0, xt, t).abs().max() < 1e-9


def test_decoder_nll_at_t0_is_the_discretised_gaussian():
    d = GaussianDiffusion()
    x0 = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0], dtype=torch.float64).view(1, 1, 5)
    xt = torch.tensor([-0.9, -0.45, 0.05, 0.2, 0.95], dtype=torch.float64).view(1, 1, 5)
    eps = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.4], dtype=torch.float64).view(1, 1, 5)
    v = torch.tensor([0.5, -0.5, 0.0, 0.9, -0.9], dtype=torch.float64).view(1, 1, 5)
    nll = d.vb_terms_bpd(torch.cat([eps, v], dim=1), x0, xt, torch.tensor([0])).item()
    # at t = 0 the model mean is x0_hat itself and the variance interpolates log beta_0, log beta~_1
    x0_hat = ((xt - math.sqrt(1 - ABAR[0]) * eps) / math.sqrt(ABAR[0])).flatten().numpy()
    beta_tilde_1 = BETAS[1] * (1 - ABAR[0]) / (1 - ABAR[1])
    frac = ((v + 1) / 2).flatten().numpy()
    std = np.exp(0.5 * (frac * np.log(BETAS[0]) + (1 - frac) * np.log(beta_tilde_1)))
    logp = []
    for xi, m, s in zip(x0.flatten().numpy(), x0_hat, std):
        upper = 1.0 if xi > 0.999 else norm.cdf(xi + 1 / 255, m, s)
        lower = 0.0 if xi < -0.999 else norm.cdf(xi - 1 / 255, m, s)
        logp.append(math.log(max(upper - lower, 1e-12)))
    assert nll == pytest.approx(-np.mean(logp) / math.log(2), rel=1e-6)


def test_hybrid_loss_is_mse_plus_vb_and_vb_trains_only_the_variance():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 2, 2, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 600])
    output = torch.randn(2, 4, 2, 4, 4, generator=g).requires_grad_()
    losses = d.training_losses(lambda x, tt: output, x0, t, noise)
    expected_mse = ((noise - output[:, :2]) ** 2).mean(dim=(1, 2, 3, 4))
    torch.testing.assert_close(losses.mse, expected_mse)
    torch.testing.assert_close(losses.loss, losses.mse + losses.vb)
    xt = d.q_sample(x0, t, noise)
    torch.testing.assert_close(losses.vb, d.vb_terms_bpd(output.detach(), x0, xt, t))
    (grad,) = torch.autograd.grad(losses.vb.sum(), output)
    assert torch.equal(grad[:, :2], torch.zeros_like(grad[:, :2]))
    assert grad[:, 2:].abs().min() > 0


def test_fixed_sigma_loss_is_the_mse():
    d = GaussianDiffusion(learn_sigma=False)
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(2, 2, 2, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    losses = d.training_losses(lambda x, t: 0.5 * x, x0, torch.tensor([5, 900]), noise)
    xt = d.q_sample(x0, torch.tensor([5, 900]), noise)
    torch.testing.assert_close(losses.loss, ((noise - 0.5 * xt) ** 2).mean(dim=(1, 2, 3, 4)))
    assert torch.equal(losses.vb, torch.zeros(2))


@pytest.mark.parametrize(
    "steps, spacing, kept",
    [
        (1000, "linspace", list(range(T))),
        (250, "linspace", _kept_linspace(250)),
        (250, "leading", _kept_even(250)),
    ],
)
def test_ddpm_sampler_matches_plain_improved_ddpm(steps, spacing, kept):
    # 1000 steps is the plain (unrespaced) chain; 250 are improved DDPM's "250" and "ddim250"
    shape = (2, 2, 2, 3, 3)
    d = GaussianDiffusion()
    gen = torch.Generator().manual_seed(7)
    sample = d.sample(_fake_model, shape, steps=steps, spacing=spacing, generator=gen, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    x_T = torch.randn(shape, generator=g, dtype=torch.float64)
    reference = _plain_ddpm(_fake_model, x_T, kept, g)
    assert d.scheduler("ddpm", steps, spacing).timesteps.tolist() == kept[::-1]
    # diffusers keeps its schedule in float32 (its small betas 1 - abar_t/abar_s lose ~1e-3 relative),
    # which moves O(1) samples by ~2e-5; a wrong respacing moves them by > 1e-2
    torch.testing.assert_close(sample, reference, rtol=0, atol=1e-4)


def test_fixed_variance_ddpm_matches_plain_improved_ddpm():
    shape = (2, 2, 2, 3, 3)
    d = GaussianDiffusion(learn_sigma=False)
    gen = torch.Generator().manual_seed(8)
    sample = d.sample(_eps_only, shape, steps=50, spacing="leading", generator=gen, dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    x_T = torch.randn(shape, generator=g, dtype=torch.float64)
    reference = _plain_ddpm(_eps_only, x_T, _kept_even(50), g, learned=False)
    torch.testing.assert_close(sample, reference, rtol=0, atol=1e-4)


def test_ddim_with_eta_zero_is_deterministic_and_matches_plain_ddim():
    shape = (2, 2, 2, 3, 3)
    d = GaussianDiffusion()
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    runs = [
        d.sample(_fake_model, shape, steps=50, method="ddim", noise=x_T, generator=gen, dtype=torch.float64)
        for gen in (torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    ]
    assert torch.equal(runs[0], runs[1])
    reference = _plain_ddim(_eps_only, x_T, _kept_even(50), 0.0, None)
    torch.testing.assert_close(runs[0], reference, rtol=0, atol=1e-5)


def test_ddim_with_eta_one_matches_plain_ddim():
    shape = (2, 2, 2, 3, 3)
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(10)
    x_T = torch.randn(shape, generator=g, dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    sample = d.sample(
        _fake_model, shape, steps=20, method="ddim", eta=1.0, noise=x_T, generator=gen, dtype=torch.float64
    )
    reference = _plain_ddim(_eps_only, x_T, _kept_even(20), 1.0, torch.Generator().manual_seed(11))
    torch.testing.assert_close(sample, reference, rtol=0, atol=1e-5)


def _tiny_latte(num_classes: int) -> Latte:
    cfg = LatteConfig.from_preset("tiny", in_channels=2, num_frames=3, input_size=(4, 6), num_classes=num_classes)
    model = Latte(cfg).eval()
    with torch.no_grad():
        for p in model.final_layer.parameters():  # non-zero output, so the sampler has work to do
            p.normal_(std=0.05)
    return model


@pytest.mark.parametrize("method, steps", [("ddpm", 3), ("ddim", 4)])
def test_sampling_shapes_with_latte(method, steps):
    shape = (2, 2, 3, 4, 6)
    d = GaussianDiffusion()
    y = torch.tensor([0, 4])
    for fn in (model_fn(_tiny_latte(0)), model_fn(_tiny_latte(5), y, guidance_scale=3.0)):
        out = d.sample(fn, shape, steps=steps, method=method, generator=torch.Generator().manual_seed(0))
        assert out.shape == shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_model_fn_without_guidance_equals_cfg_at_scale_one():
    model = _tiny_latte(5)
    x = torch.randn(2, 2, 3, 4, 6)
    t, y = torch.tensor([3, 800]), torch.tensor([1, 2])
    guided = model.forward_with_cfg(x, t, y, 1.0)
    torch.testing.assert_close(model_fn(model, y)(x, t), guided, rtol=0, atol=1e-6)


def test_tiny_latte_overfits_a_fixed_batch():
    torch.manual_seed(0)
    cfg = LatteConfig.from_preset(
        "tiny", in_channels=4, num_frames=4, input_size=(8, 8), num_classes=2, class_dropout_prob=0.0
    )
    model = Latte(cfg)
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 4, 8, 8, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t, y = torch.tensor([50, 400]), torch.tensor([0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    history = []
    for _ in range(200):
        loss = d.training_losses(lambda x, tt: model(x, tt, y), x0, t, noise).loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert min(history[-10:]) < history[0] / 10


def test_bad_sampling_requests_are_explained():
    d = GaussianDiffusion()
    shape = (1, 2, 1, 2, 2)
    with pytest.raises(ValueError, match="even stride"):
        d.sample(_fake_model, shape, steps=50, method="ddim", spacing="linspace")
    with pytest.raises(ValueError, match="use 200 or 250"):
        d.scheduler("ddpm", 300, "leading")
    with pytest.raises(ValueError, match="eta applies to DDIM"):
        d.sample(_fake_model, shape, steps=10, eta=0.5)
    with pytest.raises(ValueError, match="expected 4"):
        d.sample(_eps_only, shape, steps=10)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        d.q_sample(torch.zeros(1, 2), torch.tensor([1000]), torch.zeros(1, 2))
