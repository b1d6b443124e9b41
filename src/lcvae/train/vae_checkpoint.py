"""Checkpoints of the VAE recipe: what a step's checkpoint holds, and resuming every part from one.

A checkpoint holds the weights (model, EMA parameters and buffers, discriminator) and the state
(both optimisers, each rank's RNG, the data position, the counters, the model config, the world size).
Resuming restores all of it; only the RNG states need the same number of processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lcvae.models.lcvae import LCVAEConfig
from lcvae.train.checkpoint import load_checkpoint, save_checkpoint
from lcvae.train.distributed import barrier, gather_rng_states
from lcvae.train.vae_config import TrainVAEConfig
from lcvae.train.vae_setup import VAEParts

# Under the recipe's name, which users and tests configure.
logger = logging.getLogger("lcvae.train.train_vae")


def save_state(
    root: Path,
    step: int,
    cfg: TrainVAEConfig,
    model_cfg: LCVAEConfig,
    parts: VAEParts,
    data: dict,
    counters: dict,
    rank: int,
    world: int,
) -> Path | None:
    """All ranks call this (it gathers their RNG states); rank 0 writes ``root/step_*`` atomically."""
    rng = gather_rng_states()
    path = None
    if rank == 0:
        state = {
            "opt_g": parts.opt_g.state_dict(),
            "opt_d": parts.opt_d.state_dict(),
            "rng": rng,
            "data": data,
            "counters": counters,
            "model_config": model_cfg.to_dict(),
            "world_size": world,
            "ema": {"decay": parts.ema.decay, "num_updates": parts.ema.num_updates},
        }
        weights = {
            "model": parts.model.state_dict(),
            "ema": parts.ema.params,
            "ema_buffers": parts.ema.buffers,
            "disc": parts.disc.state_dict(),
        }
        path = save_checkpoint(root, step, weights=weights, state=state, config=cfg, keep_last=cfg.train.keep_last)
    barrier()
    return path


@dataclass
class Resumed:
    """Where a resumed run stands: its step, data position, counters and this rank's RNG state (None: re-seed)."""

    step: int
    epoch: int
    items_done: int
    nonfinite_total: int
    rng_state: dict | None


def resume_state(
    path: Path, model_cfg: LCVAEConfig, parts: VAEParts, device: torch.device, rank: int, world: int
) -> Resumed:
    """Load the checkpoint at ``path`` into ``parts``; refuse one of another model configuration."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.state["model_config"] != model_cfg.to_dict():
        raise ValueError(
            f"{path} was trained with a different model configuration; point train.out_dir "
            f"at a new folder or set train.resume=never to start over"
        )
    parts.model.load_state_dict(ckpt.weights["model"])
    parts.disc.load_state_dict(ckpt.weights["disc"])
    parts.ema.load_state_dict(
        {**ckpt.state["ema"], "params": ckpt.weights["ema"], "buffers": ckpt.weights["ema_buffers"]}
    )
    parts.opt_g.load_state_dict(ckpt.state["opt_g"])
    parts.opt_d.load_state_dict(ckpt.state["opt_d"])
    step, epoch, items_done = ckpt.step, ckpt.state["data"]["epoch"], ckpt.state["data"]["items"]
    if items_done % world:
        logger.warning(
            "resumed with %d processes; %d items of epoch %d were consumed, not divisible: "
            "the epoch continues from item %d",
            world,
            items_done,
            epoch,
            items_done // world * world,
        )
    rng_state = None
    if len(ckpt.state["rng"]) == world:
        rng_state = ckpt.state["rng"][rank]
    else:
        logger.warning(
            "checkpoint has RNG states of %d processes, this run has %d: RNG re-seeded",
            len(ckpt.state["rng"]),
            world,
        )
    logger.info("resumed from %s at step %d (epoch %d, %d items into it)", path, step, epoch, items_done)
    return Resumed(step, epoch, items_done, ckpt.state["counters"]["nonfinite_total"], rng_state)
