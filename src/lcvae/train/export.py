"""From a training run to a model for diffusion: ``lcvae export``.

A training checkpoint (a ``step_*`` folder, or a run folder: its newest checkpoint) becomes a
pretrained folder holding the EMA weights (or, if asked, the raw generator weights). The model
configuration comes from the checkpoint itself, so the folder loads with ``from_pretrained`` and
nothing else; ``export.json`` beside it records where it came from. The diffusion-latent statistics
are measured afterwards by :mod:`lcvae.train.latent_stats`.

Two folder formats (``FORMATS``): "lcvae", ours (``config.json`` + ``model.safetensors``, see
``lcvae.models.io``), and "diffusers", diffusers' layout of :class:`AutoencoderKLLCVAE`
(``config.json`` with ``_class_name`` + ``diffusion_pytorch_model.safetensors``; the latent
statistics become ``latents_mean`` / ``latents_std``). :func:`convert_model` rewrites an existing
model (either format, an official WF-VAE folder, or a preset with random weights) in either format.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS, get_preset
from lcvae.train.checkpoint import LoadedCheckpoint, load_checkpoint, resolve_checkpoint
from lcvae.train.ema import EMA
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "convert_model", "export_checkpoint", "write_model"]

FORMATS = ("lcvae", "diffusers")


def write_model(model: LCVAE, out_dir: str | Path, format: str = "lcvae") -> Path:
    """Save ``model`` to ``out_dir`` in ``format`` ("lcvae" or "diffusers"; the latter needs the
    diffusers extra). Returns the folder."""
    if format == "lcvae":
        return save_pretrained(model, out_dir)
    if format != "diffusers":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    from lcvae.models.diffusers_lcvae import AutoencoderKLLCVAE  # diffusers is an optional extra

    AutoencoderKLLCVAE.from_lcvae(model).save_pretrained(str(out_dir))
    return Path(out_dir)


def convert_model(source: str | Path, out_dir: str | Path, format: str = "lcvae", random_weights: bool = False) -> Path:
    """An existing model -> ``out_dir`` in ``format``. ``source``: one of our folders, an
    ``AutoencoderKLLCVAE`` folder, an official WF-VAE folder or ``.ckpt``, or (``random_weights``)
    a preset name."""
    if str(source) in PRESETS:
        if not random_weights:
            raise ValueError(
                f"{source!r} is a preset, not trained weights; pass a model folder, or "
                f"--random-weights to export the untrained architecture"
            )
        model = LCVAE(get_preset(str(source)))
    else:
        model = from_pretrained(source)
    out = write_model(model, out_dir, format)
    logger.info("converted %s to %s (%s format)", source, out, format)
    return out


def model_from_checkpoint(ckpt: LoadedCheckpoint, weights: Literal["ema", "model"] = "ema") -> LCVAE:
    """The generator of a loaded training checkpoint with its EMA or raw weights."""
    model = LCVAE(LCVAEConfig.from_dict(ckpt.state["model_config"]))
    if weights == "ema":
        ema = EMA(model, float(ckpt.state["ema"]["decay"]))
        ema.load_state_dict(
            {**ckpt.state["ema"], "params": ckpt.weights["ema"], "buffers": ckpt.weights["ema_buffers"]}
        )
        ema.copy_to(model)
    else:
        model.load_state_dict(ckpt.weights["model"])
    return model


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path, weights: Literal["ema", "model"] = "ema", format: str = "lcvae"
) -> Path:
    """Training checkpoint -> pretrained folder (``format``: "lcvae" or "diffusers") with the EMA
    (default) or raw generator weights, and ``export.json`` recording the checkpoint."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    path = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    out = write_model(model_from_checkpoint(ckpt, weights), out_dir, format)
    provenance = {
        "checkpoint": str(path.resolve()),
        "step": ckpt.step,
        "weights": weights,
        "format": format,
        "ema_updates": int(ckpt.state["ema"]["num_updates"]),
        "train_config": ckpt.config,
    }
    write_json(out / "export.json", provenance)
    logger.info("exported %s weights of %s (step %d) to %s", weights, path, ckpt.step, out)
    return out
