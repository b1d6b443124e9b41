"""The WF-VAE backbone against the upstream WF-VAE code itself.

``tests/data/upstream-wfvae-small`` was produced by running upstream WF-VAE (not this project): a
small model saved in the official folder layout, and upstream's encode / decode outputs for 1, 9 and
17 frames (see its README.md). Loading that folder with ``from_pretrained`` and reproducing the
stored tensors checks the module tree, the state-dict names, the causal frame rule, the wavelet
flows, the attention and the norms against an implementation nobody here wrote.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lcvae.models import layers
from lcvae.models.io import from_pretrained
from lcvae.models.lcvae import LCVAE

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = Path(__file__).parent / "data" / "upstream-wfvae-small"
FRAMES = (1, 9, 17)
TOLERANCE = 1e-5  # upstream agreement is ~1e-6 (latent) and ~2e-6 (pixels); see the fixture README


@pytest.fixture(scope="module")
def model() -> LCVAE:
    return from_pretrained(FIXTURE / "model").eval()


@pytest.fixture(scope="module")
def upstream() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "io.safetensors")


def max_diffs(model: LCVAE, upstream: dict[str, torch.Tensor], t: int) -> tuple[float, float, float]:
    """Largest |ours - upstream| of the posterior mean, the log-variance and the decode of upstream's mean."""
    with torch.no_grad():
        posterior = model.encode(upstream[f"input_{t}"])
        decoded = model.backbone.decode(upstream[f"mean_{t}"])
    assert posterior.mean.shape == upstream[f"mean_{t}"].shape
    assert decoded.shape == upstream[f"decoded_{t}"].shape
    return (
        (posterior.mean - upstream[f"mean_{t}"]).abs().max().item(),
        (posterior.logvar - upstream[f"logvar_{t}"]).abs().max().item(),
        (decoded - upstream[f"decoded_{t}"]).abs().max().item(),
    )


def test_fixture_is_the_official_layout():
    config = (FIXTURE / "model" / "config.json").read_text()
    assert '"_class_name": "WFVAEModel"' in config
    assert (FIXTURE / "model" / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize("t", FRAMES)
def test_encode_and_decode_match_upstream(model, upstream, t):
    latent_frames = 1 + (t - 1) // 4
    assert upstream[f"mean_{t}"].shape == (1, 8, latent_frames, 4, 4)
    mean, logvar, decoded = max_diffs(model, upstream, t)
    assert mean < TOLERANCE, f"T={t}: posterior mean differs from upstream by {mean:.2e}"
    assert logvar < TOLERANCE, f"T={t}: log-variance differs from upstream by {logvar:.2e}"
    assert decoded < TOLERANCE, f"T={t}: decode differs from upstream by {decoded:.2e}"


class _UnscaledAttention:
    """``torch.nn.functional`` as seen by layers.py, except that attention forgets its 1/sqrt(d) scale."""

    def __getattr__(self, name: str):
        return getattr(F, name)

    @staticmethod
    def scaled_dot_product_attention(q, k, v, **kwargs):
        return F.scaled_dot_product_attention(q, k, v, scale=1.0, **kwargs)


def test_comparison_catches_a_wrong_attention_scale(model, upstream, monkeypatch):
    """The comparison above is sensitive: a plausible one-line bug moves the outputs far past the tolerance."""
    monkeypatch.setattr(layers, "F", _UnscaledAttention())
    mean, _, decoded = max_diffs(model, upstream, 9)
    assert mean > 1e-3, f"an unscaled attention changed the encoding by only {mean:.2e}"
    assert decoded > 1e-3, f"an unscaled attention changed the decode by only {decoded:.2e}"
