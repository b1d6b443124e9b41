"""lcvae: LC-VAE, the latent-compressed video VAE, with its WF-VAE backbone, training, evaluation,
latent frequency analysis and Latte diffusion on the compressed latent.

``AutoencoderKLLCVAE`` (the diffusers wrapper, :mod:`lcvae.models.diffusers_lcvae`) is imported on
first access, so ``import lcvae`` works without the optional diffusers dependency.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["AutoencoderKLLCVAE", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "AutoencoderKLLCVAE":
        try:
            from lcvae.models.diffusers_lcvae import AutoencoderKLLCVAE
        except ModuleNotFoundError as err:
            if err.name is None or not err.name.startswith("diffusers"):
                raise
            raise ImportError("AutoencoderKLLCVAE needs diffusers: pip install 'lcvae[diffusers]'") from err
        return AutoencoderKLLCVAE
    raise AttributeError(f"module 'lcvae' has no attribute {name!r}")
