"""From a training run to a model for diffusion: ``lcvae export``.

A training checkpoint (a ``step_*`` folder, or a run folder: its newest checkpoint) becomes one of
our pretrained folders (``config.json`` + ``model.safetensors``, see ``lcvae.models.io``) holding
the EMA weights (or, if asked, the raw generator weights). The model configuration comes from the
checkpoint itself, so the folder loads with ``from_pretrained`` and nothing else; ``export.json``
beside it records where it came from. The diffusion-latent statistics are measured afterwards by
:mod:`lcvae.train.latent_stats`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from lcvae.models.io import save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.train.checkpoint import load_checkpoint, resolve_checkpoint
from lcvae.train.ema import EMA
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, weights: Literal["ema", "model"] = "ema") -> Path:
    """Training checkpoint -> pretrained folder with the EMA (default) or raw generator weights."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    path = resolve_checkpoint(checkpoint)
    ckpt = load_checkpoint(path)
    model = LCVAE(LCVAEConfig.from_dict(ckpt.state["model_config"]))
    if weights == "ema":
        ema = EMA(model, float(ckpt.state["ema"]["decay"]))
        ema.load_state_dict({**ckpt.state["ema"], "params": ckpt.weights["ema"], "buffers": ckpt.weights["ema_buffers"]})
        ema.copy_to(model)
    else:
        model.load_state_dict(ckpt.weights["model"])
    out = save_pretrained(model, out_dir)
    provenance = {"checkpoint": str(path.resolve()), "step": ckpt.step, "weights": weights,
                  "ema_updates": int(ckpt.state["ema"]["num_updates"]), "train_config": ckpt.config}
    write_json(out / "export.json", provenance)
    logger.info("exported %s weights of %s (step %d) to %s", weights, path, ckpt.step, out)
    return out
