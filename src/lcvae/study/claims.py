"""The paper's claims, checked against a study's numbers with a stated rule.

Rule. Each claim is a signed margin, positive in the direction the paper reports (e.g. LC-VAE PSNR
minus WF-VAE PSNR), measured as the mean over seeds at the study's last step, and a noise level:
the pooled seed-to-seed standard deviation of the compared quantities,
sqrt((s_a^2 + s_b^2) / 2) (sample std over seeds), or the seed std of a single quantity. With
``factor`` (default 2):

    margin >  factor * noise   -> "reproduced"
    margin < -factor * noise   -> "contradicted"
    otherwise                  -> "within noise"
    a single seed (no spread)  -> "undetermined"
    pretrained runs            -> "undetermined": each model is one pretraining run; seeds that vary
                                  only a fine-tuning of it do not measure the noise of training

The verdict is about this budget and data only: a few hundred CPU steps are not the paper's
200k-step runs, which is why every sentence names the step count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["compare_claim", "level_claim", "pooled_std", "seed_std", "study_claims", "verdict"]

VERDICTS = ("reproduced", "contradicted", "within noise", "undetermined")


def seed_std(values: Sequence[float]) -> float | None:
    """Sample standard deviation over seeds; None for a single seed."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float | None:
    sa, sb = seed_std(a), seed_std(b)
    return None if sa is None or sb is None else math.sqrt((sa * sa + sb * sb) / 2)


def verdict(margin: float, noise: float | None, factor: float = 2.0) -> str:
    """See the module docstring; ``margin`` is positive in the paper's direction."""
    if noise is None:
        return "undetermined"
    if margin > factor * noise:
        return "reproduced"
    if margin < -factor * noise:
        return "contradicted"
    return "within noise"


def _sentence(claim: dict[str, Any], unit: str, digits: int) -> str:
    noise, tuned = claim["noise"], claim["fine_tune_std"]
    if claim["pretrained"]:
        spread = "one pretraining run per model" + (
            f"; the fine-tuning seeds' std {tuned:.{digits}f}{unit} is not the noise of training" if tuned else ""
        )
    else:
        spread = f"seed std {noise:.{digits}f}{unit}" if noise is not None else "one seed, no spread"
    return (
        f"{claim['statement']} — {claim['verdict']} at {claim['step']} steps, {claim['seeds']} seed(s): "
        f"margin {claim['margin']:+.{digits}f}{unit} ({claim['detail']}; {spread}, "
        f"threshold {claim['factor']:g}x)."
    )


def compare_claim(
    name: str,
    statement: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    labels: tuple[str, str],
    metric: str,
    step: int,
    factor: float = 2.0,
    higher_better: bool = True,
    unit: str = "",
    digits: int = 2,
    pretrained: bool = False,
) -> dict[str, Any]:
    """Model A better than model B on ``metric`` (per-seed values at ``step``; ``pretrained``: the
    seeds only varied a fine-tuning of one pretrained model each)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"claim {name!r}: need one value per seed for both models, got {len(a)} and {len(b)}")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    margin = (mean_a - mean_b) * (1 if higher_better else -1)
    spread = pooled_std(a, b)
    noise = None if pretrained else spread
    claim = {
        "claim": name,
        "statement": statement,
        "metric": metric,
        "step": step,
        "seeds": len(a),
        "values": {labels[0]: list(a), labels[1]: list(b)},
        "means": {labels[0]: mean_a, labels[1]: mean_b},
        "margin": margin,
        "noise": noise,
        "factor": factor,
        "threshold": None if noise is None else factor * noise,
        "verdict": verdict(margin, noise, factor),
        "detail": f"{labels[0]} {mean_a:.{digits}f}{unit} vs {labels[1]} {mean_b:.{digits}f}{unit} {metric}",
        "pretrained": pretrained,
        "fine_tune_std": spread if pretrained else None,
    }
    claim["sentence"] = _sentence(claim, unit, digits)
    return claim


def level_claim(
    name: str,
    statement: str,
    values: Sequence[float],
    *,
    reference: float,
    metric: str,
    step: int,
    factor: float = 2.0,
    digits: int = 3,
    pretrained: bool = False,
) -> dict[str, Any]:
    """A quantity above a reference level (per-seed values at ``step``; ``pretrained`` as in
    :func:`compare_claim`)."""
    if not values:
        raise ValueError(f"claim {name!r}: no values")
    mean = sum(values) / len(values)
    spread = seed_std(values)
    noise = None if pretrained else spread
    claim = {
        "claim": name,
        "statement": statement,
        "metric": metric,
        "step": step,
        "seeds": len(values),
        "values": list(values),
        "mean": mean,
        "reference": reference,
        "margin": mean - reference,
        "noise": noise,
        "factor": factor,
        "threshold": None if noise is None else factor * noise,
        "verdict": verdict(mean - reference, noise, factor),
        "detail": f"{metric} {mean:.{digits}f} against {reference:g}",
        "pretrained": pretrained,
        "fine_tune_std": spread if pretrained else None,
    }
    claim["sentence"] = _sentence(claim, "", digits)
    return claim


# PSNR claims of LC-VAE against another model of the study: (claim, model, label, statement)
_AGAINST_LCVAE = (
    (
        "lcvae_vs_wfvae",
        "wfvae",
        "WF-VAE",
        "LC-VAE reconstructs better than WF-VAE at the same diffusion-latent size (paper Tab. 1-2: higher PSNR)",
    ),
    (
        "joint_vs_ptlc",
        "ptlc",
        "PTLC",
        "Training with the compression beats compressing a trained VAE afterwards (paper Tab. 4: PTLC 2-5 dB lower)",
    ),
    (
        "fixed_vs_adaptive",
        "adaptive",
        "adaptive",
        "The fixed paper mask reconstructs better than adaptive Top-50 % (supplement Tab. 6: +0.1 dB PSNR; "
        "here the adaptive model picks its channels from each held-out clip)",
    ),
)


def study_claims(
    final: Mapping[str, Mapping[str, Sequence[float]]],
    step: int,
    *,
    energy: Mapping[str, Sequence[float]] | None = None,
    overlap: Sequence[float] | None = None,
    factor: float = 2.0,
    pretrained: bool = False,
) -> list[dict[str, Any]]:
    """The claims a study can check from what it ran.

    final: ``{model: {"psnr": [per seed], ...}}`` at the last step; energy: ``{model: [temporal-low
    energy share per seed]}``; overlap: the adaptive run's late mean overlap with the paper mask per seed.
    """
    claims = []
    for name, other, label, statement in _AGAINST_LCVAE:
        if "lcvae" in final and other in final:
            claims.append(
                compare_claim(
                    name,
                    statement,
                    final["lcvae"]["psnr"],
                    final[other]["psnr"],
                    labels=("LC-VAE", label),
                    metric="PSNR",
                    unit=" dB",
                    step=step,
                    factor=factor,
                    pretrained=pretrained,
                )
            )
    for model, label in (("wfvae", "WF-VAE"), ("wfvae-2c", "WF-VAE 2C")):
        if energy and model in energy:
            claims.append(
                level_claim(
                    f"low_band_energy_{model}",
                    f"Most of the {label} latent energy is in the temporally low 3D Haar "
                    "subbands (paper Fig. 10: LLL+LLH+LHL+LHH about 85 %; 0.5 is an even split)",
                    energy[model],
                    reference=0.5,
                    metric="temporal-low energy share",
                    step=step,
                    factor=factor,
                    pretrained=pretrained,
                )
            )
            break
    if overlap:
        claims.append(
            level_claim(
                "adaptive_overlap",
                "Adaptive Top-50 % selects the paper mask's channels (supplement D.1: 98 % overlap "
                "after 20k steps; 0.5 is chance)",
                overlap,
                reference=0.5,
                metric="late mean overlap",
                step=step,
                factor=factor,
                pretrained=pretrained,
            )
        )
    return claims
