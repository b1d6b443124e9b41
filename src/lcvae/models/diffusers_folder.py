"""Diffusers model folders: their config and weights, a backbone config for them, and an LCVAE built on one.

A folder is what diffusers' ``save_pretrained`` writes (``config.json`` and one
``diffusion_pytorch_model.safetensors``); nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from lcvae.masks import CompressionConfig
from lcvae.models.diffusers_config import LATENT_KEYS, DiffusersVAEConfig
from lcvae.models.lcvae import LCVAE, LCVAEConfig

DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def read_diffusers_folder(folder: str | Path) -> dict:
    """The ``config.json`` of a diffusers model folder (e.g. ``Wan2.1-T2V-1.3B-Diffusers/vae``)."""
    path = Path(folder) / DIFFUSERS_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder}: no {DIFFUSERS_CONFIG}; pass the folder holding the VAE (often '<model>/vae')"
        )
    raw = json.loads(path.read_text())
    if "_class_name" not in raw:
        raise ValueError(f"{path}: not a diffusers config (no '_class_name')")
    return raw


def diffusers_folder_state(folder: str | Path) -> dict[str, Tensor]:
    """The weights of a diffusers model folder (one safetensors file; sharded folders are refused)."""
    from safetensors.torch import load_file

    path = Path(folder) / DIFFUSERS_WEIGHTS
    if not path.is_file():
        found = sorted(p.name for p in Path(folder).glob("*.safetensors"))
        raise FileNotFoundError(
            f"{folder}: no {DIFFUSERS_WEIGHTS} (found {found or 'no safetensors'}); "
            f"re-save the model with diffusers' save_pretrained(safe_serialization=True)"
        )
    return load_file(path)


def diffusers_vae_config(
    folder: str | Path,
    latent_channels: int | None = None,
    causal: bool = True,
    last_layer: str = "decoder.conv_out",
    attributes: dict[str, Any] | None = None,
) -> DiffusersVAEConfig:
    """A generic backbone config for a diffusers VAE folder; the latent width is read from its config
    when it names it (``latent_channels`` or ``z_dim``), else pass it."""
    raw = read_diffusers_folder(folder)
    model_config = {k: v for k, v in raw.items() if not k.startswith("_")}
    width = latent_channels or next((model_config[k] for k in LATENT_KEYS if k in model_config), None)
    if width is None:
        raise ValueError(
            f"{folder}: the config names no latent width ({' or '.join(LATENT_KEYS)}); pass latent_channels="
        )
    return DiffusersVAEConfig(
        model_class=raw["_class_name"],
        model_config=model_config,
        latent_channels=width,
        causal=causal,
        last_layer=last_layer,
        attributes=attributes or {},
    )


def native_statistics(raw: dict, state: Mapping[str, Tensor], width: int) -> tuple[list[float], list[float]] | None:
    """Per-channel (mean, std) that normalise a diffusers VAE's own latent as (z - mean) / std, or None.

    Read from ``latents_mean`` / ``latents_std`` in the config (Wan, MiniMax-H3) or in the weights
    (LTX-2 stores them as buffers), else from a ``scaling_factor`` f (z * f = (z - 0) / (1 / f):
    HunyuanVideo 1.5). Values of another width (diffusers' defaults written into a folder that does
    not set them) are ignored.
    """
    for mean, std in (
        (raw.get("latents_mean"), raw.get("latents_std")),
        (state.get("latents_mean"), state.get("latents_std")),
    ):
        if mean is not None and std is not None and len(mean) == width and len(std) == width:
            return [float(v) for v in mean], [float(v) for v in std]
    factor = raw.get("scaling_factor")
    if factor:
        return [0.0] * width, [1.0 / float(factor)] * width
    return None


def lcvae_from_diffusers_folder(
    folder: str | Path, compression: CompressionConfig | None = None, **backbone: Any
) -> LCVAE:
    """An LCVAE on the diffusers VAE saved in ``folder`` (weights loaded, nothing downloaded).

    ``backbone``: fields of :class:`DiffusersVAEConfig` beyond what the folder says (``causal``,
    ``last_layer``, ``attributes``, ``latent_channels``). ``compression``: a ``CompressionConfig`` or
    None. Without compression the model's own latent statistics (:func:`native_statistics`) become
    the config's ``latent_mean`` / ``latent_std``; a compressed latent is another tensor, whose
    statistics ``lcvae latent-stats`` measures. For Wan folders use
    ``lcvae.models.wan.wan_lcvae_from_diffusers`` (or ``from_pretrained``), which also handles the
    output clamp and widening.
    """
    raw = read_diffusers_folder(folder)
    state = diffusers_folder_state(folder)
    config = diffusers_vae_config(folder, **backbone)
    stats = None if compression is not None else native_statistics(raw, state, config.latent_channels)
    mean, std = stats if stats is not None else (None, None)
    model = LCVAE(LCVAEConfig(backbone=config, compression=compression, latent_mean=mean, latent_std=std))
    model.backbone.load_diffusers_state(state, str(folder))
    return model
