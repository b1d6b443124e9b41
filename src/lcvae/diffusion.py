"""Gaussian diffusion for Latte: noise schedule, the hybrid training loss and samplers.

Forward process. T = 1000 steps, linear betas 1e-4 .. 0.02, abar_t = prod_{s<=t} (1 - beta_s),
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
Timesteps are 0-based: t = 0 is the first noising step (beta_0 = 1e-4), t = 999 the last.

Model output. epsilon (C channels) and, with learned sigma, v (C channels). The reverse variance is
learned in range (improved DDPM): log sigma_t^2 = f log beta_t + (1 - f) log beta~_t, f = (v + 1)/2,
beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t) the posterior variance (its log clipped at t = 0,
where it is 0, to the value at t = 1).

Loss (improved DDPM / DiT "hybrid"). MSE(eps, eps_hat) + L_vb, where L_vb is KL(q(x_{t-1}|x_t, x_0) ||
p(x_{t-1}|x_t)) in bits per dimension, with the model mean built from a stop-gradient epsilon so
that L_vb trains only the variance. At t = 0 L_vb is the decoder negative log-likelihood of x_0 under
a Gaussian discretised to 256 bins on [-1, 1], as DiT and Latte do (a pixel-space convention kept
for parity; it touches 1/1000 of the samples). The exact normal CDF is used, not the tanh
approximation of the reference code.

Sampling. Done by diffusers' schedulers, which are correct here (checked in tests against a plain
improved-DDPM implementation):
- DDPM: `DDPMScheduler(variance_type="learned_range", clip_sample=False)`. Respacing keeps a subset
  t_1 < ... < t_N of the 1000 steps; each kept step uses beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}
  (abar before the first kept step = 1) and its own posterior variance, which diffusers computes
  on the fly from `alphas_cumprod`; this is exactly improved DDPM's `space_timesteps`. The model is
  called with the original timestep t_i.
- DDIM: `DDIMScheduler` (eta = 0 is deterministic). It assumes an even stride, so it is offered only
  with spacing "leading".
Spacings (diffusers' names; N = steps, T = 1000):
- "linspace": round(i (T-1)/(N-1)), i < N. Improved DDPM's "250"; what DiT's and Latte's sample.py
  use; includes t = 999 and t = 0. Default for DDPM.
- "leading": 0, T/N, 2T/N, ..., N dividing T. Improved DDPM's "ddim250" (stride 4 for 250). Default for DDIM.
"trailing" is not offered: diffusers' DDPM step then adds noise at the last step (with a log-variance
built on log 1e-20), which improved DDPM does not.
Fixed variance (learn_sigma=False) samples with beta'_i ("fixed_large", as DiT does) and trains on
the MSE only.

diffusers is imported only when sampling (`pip install lcvae[diffusers]`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = [
    "GaussianDiffusion",
    "DiffusionLosses",
    "model_fn",
    "normal_kl",
    "discretized_gaussian_log_likelihood",
]

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t (B, C, ...), t (B,) long) -> (B, C or 2C, ...)

SPACINGS = ("linspace", "leading")
METHODS = ("ddpm", "ddim")


@dataclass
class DiffusionLosses:
    """Per-sample losses, each (B,). `vb` is zeros when the variance is not learned."""

    loss: Tensor  # mse + vb
    mse: Tensor
    vb: Tensor


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats."""
    squared = (mean1 - mean2) ** 2
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + squared * torch.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) elementwise for x in [-1, 1] quantised to 256 bins of width 2/255, under
    N(mean, exp(log_scale)^2); the end bins extend to -inf and +inf. In nats."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = torch.special.ndtr(inv_std * (centered + 1.0 / 255.0))
    cdf_minus = torch.special.ndtr(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_bin = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_bin))


def _mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def model_fn(model: nn.Module, y: Tensor | None = None, guidance_scale: float = 1.0) -> ModelFn:
    """The denoiser `sample` calls: `model(x, t, y)`, or `model.forward_with_cfg(x, t, y, s)` when
    guidance_scale != 1 (classifier-free guidance; y must be class labels)."""
    if guidance_scale != 1.0:
        if y is None:
            raise ValueError(f"guidance_scale {guidance_scale} needs class labels y; use 1.0 for unconditional models")
        return lambda x, t: model.forward_with_cfg(x, t, y, guidance_scale)
    return lambda x, t: model(x, t, y)


class GaussianDiffusion:
    """The schedule (float64 on CPU, cast per use) and everything that needs it."""

    def __init__(
        self,
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        learn_sigma: bool = True,
    ):
        if num_timesteps < 2:
            raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
        if not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.num_timesteps = num_timesteps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.learn_sigma = learn_sigma

        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        abar = torch.cumprod(1.0 - betas, dim=0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas = betas
        self.alphas_cumprod = abar
        self.alphas_cumprod_prev = abar_prev
        self.posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        # beta~_0 = 0: clip its log to beta~_1 (only used where t = 0, by the decoder NLL)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.log_betas = betas.log()
        # fixed_large (no learned sigma): log beta_t, with beta~_1 at t = 0 as improved DDPM does
        self.fixed_large_log_variance = torch.cat([self.posterior_variance[1:2], betas[1:]]).log()
        self.posterior_mean_coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)

    def _at(self, table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """table[t] as (B, 1, ..., 1) on like's device and dtype."""
        # index on the CPU: the float64 table never visits devices without float64 (MPS)
        values = table[t.detach().long().cpu()].to(device=like.device, dtype=like.dtype)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def _check_t(self, t: Tensor, batch: int) -> None:
        if t.shape != (batch,):
            raise ValueError(f"t must be (B,) = ({batch},) integer timesteps, got shape {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(
                f"timesteps must be in [0, {self.num_timesteps - 1}], got [{int(t.min())}, {int(t.max())}]"
            )

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; x0, noise (B, ...), t (B,) integer."""
        self._check_t(t, x0.shape[0])
        signal = self._at(self.alphas_cumprod.sqrt(), t, x0)
        return signal * x0 + self._at((1.0 - self.alphas_cumprod).sqrt(), t, x0) * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        coef1, coef2 = self._at(self.posterior_mean_coef1, t, xt), self._at(self.posterior_mean_coef2, t, xt)
        mean = coef1 * x0 + coef2 * xt
        return mean, self._at(self.posterior_log_variance_clipped, t, xt).expand_as(xt)

    def split_output(self, output: Tensor, channels: int) -> tuple[Tensor, Tensor | None]:
        """Model output (B, C or 2C, ...) -> (eps, v or None), checking the channel count."""
        expected = 2 * channels if self.learn_sigma else channels
        if output.shape[1] != expected:
            raise ValueError(
                f"model output has {output.shape[1]} channels, expected {expected} "
                f"({'2C: epsilon and v' if self.learn_sigma else 'C: epsilon'}); "
                f"learn_sigma must match between the model and the diffusion"
            )
        if not self.learn_sigma:
            return output, None
        return output[:, :channels], output[:, channels:]

    def p_mean_variance(self, output: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reverse step p(x_{t-1} | x_t) on the full schedule: (mean, log-variance, predicted x0)."""
        eps, v = self.split_output(output, xt.shape[1])
        if v is None:
            log_var = self._at(self.fixed_large_log_variance, t, xt).expand_as(xt)
        else:
            frac = (v + 1.0) / 2.0
            log_var = frac * self._at(self.log_betas, t, xt) + (1.0 - frac) * self._at(
                self.posterior_log_variance_clipped, t, xt
            )
        abar = self._at(self.alphas_cumprod, t, xt)
        pred_x0 = (xt - (1.0 - abar).sqrt() * eps) / abar.sqrt()
        mean, _ = self.q_posterior(pred_x0, xt, t)
        return mean, log_var, pred_x0

    def vb_terms_bpd(self, output: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """(B,) variational bound term in bits per dimension: the KL for t > 0, decoder NLL at t = 0."""
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        mean, log_var, _ = self.p_mean_variance(output, xt, t)
        kl = _mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
        nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, fn: ModelFn, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> DiffusionLosses:
        """Hybrid loss for a batch of clean latents x0 (B, C, F, H, W) at timesteps t (B,).

        `fn(x_t, t)` is the model (e.g. `lambda x, t: model(x, t, y)`); noise defaults to randn.
        Average `.loss` over the batch for the optimiser.
        """
        self._check_t(t, x0.shape[0])
        if noise is None:
            noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        output = fn(xt, t)
        eps, v = self.split_output(output, x0.shape[1])
        if output.shape[2:] != x0.shape[2:]:
            raise ValueError(f"model output {tuple(output.shape)} does not match latents {tuple(x0.shape)}")
        mse = _mean_flat((noise - eps) ** 2)
        if v is None:
            return DiffusionLosses(loss=mse, mse=mse, vb=torch.zeros_like(mse))
        # the VB term learns the variance only; the mean is learned by the MSE
        frozen = torch.cat([eps.detach(), v], dim=1)
        # scale as DiT does (a no-op at 1000 steps) so the VB weight is independent of T
        vb = self.vb_terms_bpd(frozen, x0, xt, t) * (self.num_timesteps / 1000.0)
        return DiffusionLosses(loss=mse + vb, mse=mse, vb=vb)

    def scheduler(self, method: str = "ddpm", steps: int = 250, spacing: str | None = None):
        """A diffusers scheduler for this schedule with `set_timesteps(steps)` applied.

        `spacing` None picks "linspace" for DDPM and "leading" for DDIM (see the module docstring).
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        spacing = spacing or ("linspace" if method == "ddpm" else "leading")
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
        if not 2 <= steps <= self.num_timesteps:
            # one step would be a single denoising call at t = 0 on pure noise
            raise ValueError(f"steps must be in [2, {self.num_timesteps}], got {steps}")
        try:
            from diffusers import DDIMScheduler, DDPMScheduler
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("sampling uses diffusers' schedulers; pip install 'lcvae[diffusers]'") from err
        common = dict(
            num_train_timesteps=self.num_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule="linear",
            prediction_type="epsilon",
            clip_sample=False,  # latents are not bounded to [-1, 1]
            timestep_spacing=spacing,
        )
        if spacing == "leading" and self.num_timesteps % steps:
            # an uneven stride would start far below T, and break DDIM's fixed step back
            divisors = [n for n in range(1, self.num_timesteps + 1) if self.num_timesteps % n == 0]
            near = sorted(divisors, key=lambda n: abs(n - steps))[:2]
            raise ValueError(
                f"spacing {spacing!r} needs steps dividing {self.num_timesteps}, got {steps}; "
                f"use {' or '.join(map(str, sorted(near)))}, or spacing='linspace' with DDPM"
            )
        if method == "ddpm":
            variance = "learned_range" if self.learn_sigma else "fixed_large"
            sched = DDPMScheduler(variance_type=variance, **common)
        else:
            if spacing == "linspace" and steps != self.num_timesteps:
                # DDIMScheduler steps back by T // N, which is wrong for uneven strides
                raise ValueError(
                    "DDIM needs an even stride between timesteps; use spacing='leading' (improved DDPM's 'ddim250')"
                )
            sched = DDIMScheduler(set_alpha_to_one=True, **common)
        sched.set_timesteps(steps)
        return sched

    @torch.no_grad()
    def sample(
        self,
        fn: ModelFn,
        shape: Sequence[int],
        *,
        steps: int = 250,
        method: str = "ddpm",
        spacing: str | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> Tensor:
        """Generate latents (B, C, F, H, W) = shape by reverse diffusion from N(0, I).

        fn: the denoiser (see `model_fn`). method "ddpm" (ancestral, learned variance) or "ddim"
        (eta = 0 deterministic). Randomness: `noise` (the start x_T) or randn from `generator`;
        DDPM step noise also comes from `generator`, which must live on `device` or the CPU.
        Put the model in eval mode first (label dropout is a training-mode behaviour).
        """
        if method == "ddpm" and eta != 0.0:
            raise ValueError("eta applies to DDIM only; use method='ddim' or leave eta=0")
        sched = self.scheduler(method, steps, spacing)
        x = noise.to(device=device, dtype=dtype) if noise is not None else None
        if x is None:
            gen_device = generator.device if generator is not None else device
            x = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(x.shape)}, expected {tuple(shape)}")
        channels = x.shape[1]
        timesteps = sched.timesteps
        if progress:
            from lcvae.progress import progress as show_progress

            timesteps = show_progress(timesteps, f"{method} sampling", total=len(timesteps), unit="step")
        for step_t in timesteps:
            t = torch.full((x.shape[0],), int(step_t), device=x.device, dtype=torch.long)
            output = fn(x, t)
            eps, _ = self.split_output(output, channels)
            if method == "ddpm":
                x = sched.step(output, int(step_t), x, generator=generator).prev_sample
            else:
                x = sched.step(eps, int(step_t), x, eta=eta, generator=generator).prev_sample
        return x
