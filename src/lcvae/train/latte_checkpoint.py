"""Checkpoints of the Latte recipe: what a step's checkpoint holds, resuming from one, and the divergence save.

A checkpoint holds the denoiser and its EMA weights, the optimiser, every rank's RNG state and the
facts of the run (denoiser spec, diffusion, VAE fingerprint, shapes, fps, world size). A resume takes
the optimiser hyper-parameters from the config, not from the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lcvae.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint, set_aside_after
from lcvae.train.distributed import DistInfo, barrier, gather_rng_states, seed_everything
from lcvae.train.ema import EMA
from lcvae.train.faults import PreviousState, TrainingDiverged
from lcvae.train.latte_config import TrainLatteConfig

# Under the recipe's name, which users and tests configure.
logger = logging.getLogger("lcvae.train.train_latte")


def save_state(
    ckpt_root: Path,
    at: int,
    model: nn.Module,
    ema: EMA,
    opt: torch.optim.Optimizer,
    facts: dict[str, Any],
    cfg: TrainLatteConfig,
    is_main: bool,
) -> Path:
    """Checkpoint step ``at``: weights, EMA, optimiser, RNG states and the run's ``facts``; all ranks call it."""
    rngs = gather_rng_states()
    path = ckpt_root / f"step_{at:09d}"
    if is_main:
        ema_weights = {k: ema.params[k] if k in ema.params else ema.buffers[k] for k in model.state_dict()}
        state = {
            "optimizer": opt.state_dict(),
            "ema": {"decay": ema.decay, "num_updates": ema.num_updates},
            "rng": rngs,
            **facts,
        }
        path = save_checkpoint(
            ckpt_root,
            at,
            weights={"model": model.state_dict(), "ema": ema_weights},
            state=state,
            config=cfg,
            keep_last=cfg.keep_last,
        )
    barrier()
    return path


def resume_state(
    path: Path,
    model: nn.Module,
    ema: EMA,
    opt: torch.optim.Optimizer,
    spec: dict,
    cfg: TrainLatteConfig,
    info: DistInfo,
    device: torch.device,
) -> int:
    """Load the checkpoint at ``path`` (refused if it holds another denoiser); returns its step."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.state["denoiser"] != spec:
        raise ValueError(f"{path} holds another denoiser ({ckpt.state['denoiser']}); use a new run_dir")
    model.load_state_dict(ckpt.weights["model"], strict=True)
    buffers = {k: ckpt.weights["ema"].get(k, b) for k, b in ema.buffers.items()}
    ema.load_state_dict(
        {**ckpt.state["ema"], "params": {k: ckpt.weights["ema"][k] for k in ema.params}, "buffers": buffers}
    )
    opt.load_state_dict(ckpt.state["optimizer"])
    o = cfg.optim  # the config's hyper-parameters, not the checkpoint's: a resume may lower the lr
    for group in opt.param_groups:
        if (group["lr"], tuple(group["betas"]), group["weight_decay"]) != (o.lr, tuple(o.betas), o.weight_decay):
            logger.info(
                "optimiser now lr %g, betas %s, weight decay %g (checkpoint: %g, %s, %g)",
                o.lr,
                o.betas,
                o.weight_decay,
                group["lr"],
                tuple(group["betas"]),
                group["weight_decay"],
            )
        group.update(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    rng = ckpt.state["rng"]
    if len(rng) == info.world_size:
        restore_rng_state(rng[info.rank])
    else:
        logger.warning(
            "checkpoint has RNG states of %d ranks, running %d: the resumed run is not bit-exact",
            len(rng),
            info.world_size,
        )
        seed_everything(cfg.seed + ckpt.step, info.rank)
    step = ckpt.step
    logger.info("resumed from %s at step %d", path, step)
    return step


def diverged(
    previous: PreviousState,
    save: Callable[[int], Path],
    step: int,
    bad_in_row: int,
    last: Path | None,
    ckpt_root: Path,
    is_main: bool,
) -> TrainingDiverged:
    """Save the state from before the last update (whose weights gave only non-finite losses since),
    labelled with that update's step; without an update in this run the last checkpoint is that state."""
    if previous.restore():
        if is_main:  # later checkpoints hold the result of that update
            set_aside_after(ckpt_root, step - 1)
        last = save(step - 1)
    where = last or ckpt_root
    return TrainingDiverged(
        f"{bad_in_row} non-finite steps in a row (step {step}); the state from before the last update "
        f"is saved in {where}. Lower optim.lr, set optim.grad_clip, or check the cache, then run "
        f"again to resume from it.",
        last,
    )
