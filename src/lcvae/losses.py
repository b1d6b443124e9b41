"""Training losses of the video VAE: L1 + perceptual + KL + hinge GAN with the adaptive weight (docs/training.md).

Generator objective, per step (all terms below are logged unweighted)

    total = w_l1 * L1 + w_mse * MSE + w_p * P + w_kl * KL + lambda * G + w_wav * WAV
    lambda = clamp(s * ||dL_rec/dW|| / (||dG/dW|| + 1e-6), 0, 1e6), detached      (supplement Eq. 9)

with L_rec = w_l1 * L1 + w_mse * MSE + w_p * P, G = -mean D(x_hat) the hinge generator loss, W the decoder's last
layer weight and s = 0.5. Before ``disc_start`` lambda = 0, the discriminator is not run and the
gradients of Eq. 9 are not computed. The discriminator minimises
0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))).

Reductions. Only the relative scale of the terms matters (KL weight 1e-6, LPIPS weight 1.0 and the
wavelet weight 0.1 were tuned on one scale), so the choice of reduction is a config value:

- ``"reference"`` (default): the scale of the published code, so that its hyper-parameters mean the
  same thing here. L1 is summed over (C, H, W) within each frame and averaged over the B*T frames,
  i.e. C*H*W times the mean absolute error. The reference added the per-frame LPIPS value to the
  per-pixel L1 map before that sum, so LPIPS is broadcast over the C*H*W pixels: C*H*W times the mean
  per-frame LPIPS. The wavelet term is summed over elements and divided by B. KL is always summed over
  latent elements and divided by B. At 3x256x256 the rec terms are therefore ~2e5 times larger than
  under "mean", which is what makes a KL weight of 1e-6 small.
- ``"sum_frames"``: per-frame losses (mean over the frame's pixels; LPIPS value) summed over the T
  frames, averaged over the batch. Exactly T times "mean": the effective weight of every
  reconstruction term, relative to KL and GAN, grows with the clip length.
- ``"mean"``: mean over every element / frame. Clip-length and resolution independent; with the
  paper's KL weight the KL term becomes ~C*H*W times stronger relative to reconstruction than in the
  reference, so it needs its own tuning.

Mixed precision: every term is reduced in fp32 (inputs are cast with ``.float()`` before the loss),
so the scalars that seed the gradients of Eq. 9 are fp32. The two ``torch.autograd.grad`` calls
return the gradient w.r.t. the fp32 master weight (autocast's fp32->bf16 cast sends the gradient
back in fp32) and the norms are taken in fp32. Backward through the bf16 ops recorded under autocast
still runs in bf16; that is the precision the optimiser sees too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "Reduction",
    "video_to_frames",
    "l1_loss",
    "perceptual_loss",
    "kl_loss",
    "hinge_generator_loss",
    "hinge_discriminator_loss",
    "adaptive_weight",
    "wavelet_loss",
    "LossConfig",
    "GeneratorLossOutput",
    "DiscriminatorLossOutput",
    "GeneratorLoss",
    "DiscriminatorLoss",
]

Reduction = Literal["reference", "sum_frames", "mean"]
_REDUCTIONS = ("reference", "sum_frames", "mean")
PerceptualFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


def _check_video_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected videos shaped (B, C, T, H, W), got {tuple(x.shape)}")
    if x.shape != x_hat.shape:
        raise ValueError(f"target and reconstruction shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")


def video_to_frames(video: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W), frame index t of video b at row b*T + t."""
    b, c, t, h, w = video.shape
    return video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def _reduce_elementwise(err: torch.Tensor, reduction: str, frames_reference: bool) -> torch.Tensor:
    """Reduce a per-element error (B, C, T, H, W). ``frames_reference``: divide the reference sum by
    B*T (reconstruction terms, computed per frame in the reference) rather than by B (wavelet term)."""
    _check_reduction(reduction)
    b, _, t = err.shape[:3]
    if reduction == "mean":
        return err.mean()
    if reduction == "sum_frames":
        return err.mean(dim=(1, 3, 4)).sum(dim=1).mean()
    return err.sum() / (b * t if frames_reference else b)


def l1_loss(x: torch.Tensor, x_hat: torch.Tensor, reduction: Reduction = "reference") -> torch.Tensor:
    """L1 reconstruction of videos (B, C, T, H, W), values in [-1, 1]; fp32 scalar (see module doc)."""
    _check_video_pair(x, x_hat)
    return _reduce_elementwise((x.float() - x_hat.float()).abs(), reduction, frames_reference=True)


def mse_loss(x: torch.Tensor, x_hat: torch.Tensor, reduction: Reduction = "reference") -> torch.Tensor:
    """Squared error of videos (B, C, T, H, W) in [-1, 1], reduced as :func:`l1_loss`; fp32 scalar."""
    _check_video_pair(x, x_hat)
    return _reduce_elementwise((x.float() - x_hat.float()).square(), reduction, frames_reference=True)


def perceptual_loss(
    perceptual: PerceptualFn, x: torch.Tensor, x_hat: torch.Tensor, reduction: Reduction = "reference"
) -> torch.Tensor:
    """Per-frame perceptual distance of videos (B, 3, T, H, W) in [-1, 1], reduced to an fp32 scalar.

    ``perceptual(x_frames, y_frames)`` takes two (N, 3, H, W) batches in [-1, 1] and returns one value
    per frame: shape (N,) or anything with N elements (e.g. LPIPS's (N, 1, 1, 1)).
    """
    _check_video_pair(x, x_hat)
    _check_reduction(reduction)
    b, c, t, h, w = x.shape
    per_frame = perceptual(video_to_frames(x), video_to_frames(x_hat))
    if per_frame.numel() != b * t:
        raise ValueError(
            f"perceptual(x, y) must return one value per frame ({b * t} for B={b}, T={t}), "
            f"got shape {tuple(per_frame.shape)}"
        )
    per_frame = per_frame.float().reshape(b, t)
    if reduction == "mean":
        return per_frame.mean()
    if reduction == "sum_frames":
        return per_frame.sum(dim=1).mean()
    return per_frame.mean() * (c * h * w)


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) of a diagonal Gaussian posterior (B, ...), summed over the
    latent elements and averaged over the batch; fp32 scalar. The encoder clamps logvar, not this."""
    if mean.shape != logvar.shape:
        raise ValueError(f"mean and logvar shapes differ: {tuple(mean.shape)} vs {tuple(logvar.shape)}")
    mean, logvar = mean.float(), logvar.float()
    per_element = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return per_element.sum() / mean.shape[0]


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """-mean D(x_hat), in fp32."""
    return -logits_fake.float().mean()


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x_hat))), in fp32."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def adaptive_weight(
    rec_loss: torch.Tensor,
    adv_loss: torch.Tensor,
    last_layer: torch.Tensor,
    scale: float = 0.5,
    eps: float = 1e-6,
    max_value: float = 1e6,
    grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """lambda = clamp(scale * ||d rec/dW|| / (||d adv/dW|| + eps), 0, max_value), detached fp32 scalar.

    Both graphs are retained (``retain_graph=True``) so the caller can still backprop the total loss.
    ``grad_reduce`` maps each local gradient to the one of the whole batch before the norm is taken
    (under DDP: the mean over ranks), so lambda does not depend on how the batch is split.
    """
    if not last_layer.requires_grad:
        raise ValueError("last_layer must be a weight that requires grad (the decoder's final conv weight)")
    grads = []
    for name, loss in (("reconstruction", rec_loss), ("adversarial", adv_loss)):
        (grad,) = torch.autograd.grad(loss, last_layer, retain_graph=True, allow_unused=True)
        if grad is None:
            raise ValueError(
                f"the {name} loss does not depend on last_layer; pass the weight of the decoder's "
                f"final layer that produced the reconstruction"
            )
        if grad_reduce is not None:
            grad = grad_reduce(grad)
        grads.append(torch.linalg.vector_norm(grad, dtype=torch.float32))
    weight = scale * grads[0] / (grads[1] + eps)
    return weight.clamp(0.0, max_value).detach()


def wavelet_loss(
    encoder_coeffs: Sequence[torch.Tensor],
    decoder_coeffs: Sequence[torch.Tensor],
    reduction: Reduction = "reference",
) -> torch.Tensor:
    """WF-VAE energy-flow loss sum_l |W_l_hat - W_l| over levels (|W2_hat-W2| + |W3_hat-W3|).

    Each pair is (B, C, T', H', W'): the encoder's inflow coefficients and the decoder's outflow
    prediction at the same level. "reference": summed over elements / B; other reductions as for L1.
    """
    if len(encoder_coeffs) != len(decoder_coeffs) or not encoder_coeffs:
        raise ValueError(
            f"need one decoder tensor per encoder tensor (e.g. [W2, W3]), got {len(encoder_coeffs)} "
            f"and {len(decoder_coeffs)}"
        )
    total = torch.zeros((), dtype=torch.float32, device=encoder_coeffs[0].device)
    for level, (target, pred) in enumerate(zip(encoder_coeffs, decoder_coeffs)):
        if target.ndim != 5 or target.shape != pred.shape:
            raise ValueError(
                f"energy-flow level {level}: expected two (B, C, T, H, W) tensors of equal shape, got "
                f"{tuple(target.shape)} and {tuple(pred.shape)}"
            )
        total = total + _reduce_elementwise((pred.float() - target.float()).abs(), reduction, frames_reference=False)
    return total


@dataclass(frozen=True)
class LossConfig:
    """Weights of the VAE objective; defaults are the paper's (supplement Tab. 5; docs/training.md#losses)."""

    l1_weight: float = 1.0
    mse_weight: float = 0.0  # squared error (not in the paper; what PSNR measures)
    perceptual_weight: float = 1.0
    kl_weight: float = 1e-6
    adaptive_scale: float = 0.5  # the 1/2 of supplement Eq. 9
    adaptive_eps: float = 1e-6
    adaptive_max: float = 1e6
    disc_start: int = 0  # step from which the GAN terms are on (paper: 0)
    disc_weight: float = 1.0  # multiplies the discriminator's hinge loss once active
    wavelet_weight: float = 0.0  # WF-VAE used 0.1; LC-VAE runs have it off
    reduction: Reduction = "reference"

    def __post_init__(self) -> None:
        _check_reduction(self.reduction)
        for name in (
            "l1_weight",
            "mse_weight",
            "perceptual_weight",
            "kl_weight",
            "adaptive_scale",
            "wavelet_weight",
            "disc_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.disc_start < 0:
            raise ValueError(f"disc_start must be >= 0, got {self.disc_start}")


@dataclass
class GeneratorLossOutput:
    """``total`` carries the graph; the other fields are detached fp32 scalars, unweighted."""

    total: torch.Tensor
    l1: torch.Tensor
    mse: torch.Tensor
    perceptual: torch.Tensor
    kl: torch.Tensor
    gan: torch.Tensor
    adaptive_weight: torch.Tensor
    wavelet: torch.Tensor

    def to_log(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in vars(self).items()}


@dataclass
class DiscriminatorLossOutput:
    """``total`` carries the graph; the other fields are detached fp32 scalars."""

    total: torch.Tensor
    hinge: torch.Tensor
    logits_real: torch.Tensor
    logits_fake: torch.Tensor

    def to_log(self) -> dict[str, float]:
        return {name: float(value.detach()) for name, value in vars(self).items()}


class GeneratorLoss:
    """The autoencoder's objective. ``perceptual``: e.g. an LPIPS module, called on frames (N, 3, H, W)
    in [-1, 1] and returning (N,) distances; it may be None only if perceptual_weight is 0."""

    def __init__(self, config: LossConfig | None = None, perceptual: PerceptualFn | None = None) -> None:
        self.config = config or LossConfig()
        if self.config.perceptual_weight > 0 and perceptual is None:
            raise ValueError(
                "perceptual_weight > 0 needs a perceptual callable (e.g. LPIPS); pass one or set the weight to 0"
            )
        self.perceptual = perceptual

    def gan_active(self, step: int) -> bool:
        return step >= self.config.disc_start

    def __call__(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        mean: torch.Tensor,
        logvar: torch.Tensor,
        *,
        step: int,
        discriminator: Callable[[torch.Tensor], torch.Tensor] | None = None,
        last_layer: torch.Tensor | None = None,
        encoder_coeffs: Sequence[torch.Tensor] | None = None,
        decoder_coeffs: Sequence[torch.Tensor] | None = None,
        grad_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> GeneratorLossOutput:
        """x, x_hat: (B, 3, T, H, W) in [-1, 1]; mean, logvar: posterior (B, C, T', H', W').

        ``discriminator`` and ``last_layer`` are needed from ``disc_start`` on; ``encoder_coeffs`` /
        ``decoder_coeffs`` ([W2, W3] each) when wavelet_weight > 0 (if given with weight 0, the term is
        only logged). ``grad_reduce``: see :func:`adaptive_weight`.
        """
        cfg = self.config
        zero = torch.zeros((), dtype=torch.float32, device=x.device)
        l1 = l1_loss(x, x_hat, cfg.reduction)
        perc = perceptual_loss(self.perceptual, x, x_hat, cfg.reduction) if cfg.perceptual_weight > 0 else zero
        mse = mse_loss(x, x_hat, cfg.reduction)  # logged also when off: what held-out PSNR measures
        rec = cfg.l1_weight * l1 + cfg.perceptual_weight * perc
        if cfg.mse_weight > 0:
            rec = rec + cfg.mse_weight * mse
        kl = kl_loss(mean, logvar)
        total = rec + cfg.kl_weight * kl

        if cfg.wavelet_weight > 0 and (encoder_coeffs is None or decoder_coeffs is None):
            raise ValueError("wavelet_weight > 0 needs encoder_coeffs and decoder_coeffs (the energy-flow W2, W3)")
        wav = zero
        if encoder_coeffs is not None and decoder_coeffs is not None:
            wav = wavelet_loss(encoder_coeffs, decoder_coeffs, cfg.reduction)
            total = total + cfg.wavelet_weight * wav

        gan, lam = zero, zero
        if self.gan_active(step):
            if discriminator is None or last_layer is None:
                raise ValueError(
                    f"step {step} >= disc_start {cfg.disc_start}: pass discriminator= and last_layer= "
                    f"(the decoder's final conv weight)"
                )
            gan = hinge_generator_loss(discriminator(x_hat))
            lam = adaptive_weight(
                rec, gan, last_layer, cfg.adaptive_scale, cfg.adaptive_eps, cfg.adaptive_max, grad_reduce
            )
            total = total + lam * gan

        return GeneratorLossOutput(
            total=total,
            l1=l1.detach(),
            mse=mse.detach(),
            perceptual=perc.detach(),
            kl=kl.detach(),
            gan=gan.detach(),
            adaptive_weight=lam,
            wavelet=wav.detach(),
        )


class DiscriminatorLoss:
    """Hinge loss of the discriminator on real videos and (detached) reconstructions.

    Before ``disc_start`` the loss is multiplied by 0 (as in the reference) so that a backward pass
    is still valid; recipes that want to skip the step entirely check ``active(step)``.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        self.config = config or LossConfig()

    def active(self, step: int) -> bool:
        return step >= self.config.disc_start

    def __call__(
        self,
        discriminator: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        x_hat: torch.Tensor,
        *,
        step: int,
    ) -> DiscriminatorLossOutput:
        """x, x_hat: (B, 3, T, H, W) in [-1, 1]; x_hat is detached here."""
        _check_video_pair(x, x_hat)
        logits_real = discriminator(x.detach())
        logits_fake = discriminator(x_hat.detach())
        hinge = hinge_discriminator_loss(logits_real, logits_fake)
        factor = self.config.disc_weight if self.active(step) else 0.0
        return DiscriminatorLossOutput(
            total=factor * hinge,
            hinge=hinge.detach(),
            logits_real=logits_real.detach().float().mean(),
            logits_fake=logits_fake.detach().float().mean(),
        )
