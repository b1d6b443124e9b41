"""Setup of the VAE recipe: the modules it trains, their optimisers, and the DDP-wrapped forward passes.

``build_parts`` seeds torch with ``train.seed`` first, so every rank builds the same initial weights.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lcvae.losses import DiscriminatorLoss, GeneratorLoss
from lcvae.models.discriminator import DISCRIMINATOR_PRESETS, PatchDiscriminator3D
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.train.distributed import mean_over_ranks
from lcvae.train.ema import EMA
from lcvae.train.vae_config import TrainVAEConfig
from lcvae.train.vae_model import TrainForward, init_backbone_from, load_perceptual

# Under the recipe's name, which users and tests configure.
logger = logging.getLogger("lcvae.train.train_vae")


@dataclass
class VAEParts:
    """What a VAE run trains and saves: generator, discriminator, EMA, losses, the two AdamW optimisers."""

    model: LCVAE
    disc: PatchDiscriminator3D
    ema: EMA
    perceptual_name: str | None
    gen_loss: GeneratorLoss
    disc_loss: DiscriminatorLoss
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def build_parts(cfg: TrainVAEConfig, model_cfg: LCVAEConfig, device: torch.device) -> VAEParts:
    """Model (optionally from a pretrained backbone), discriminator, EMA, losses and optimisers, in train mode."""
    t = cfg.train
    torch.manual_seed(t.seed)
    model = LCVAE(model_cfg)
    if cfg.model.init_from is not None:
        init_backbone_from(model, cfg.model.init_from, allow_causality_change=cfg.model.init_allow_causality_change)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing = True  # the backbone recomputes its blocks in backward
        logger.info("gradient checkpointing on")
    model.to(device).train()
    disc_cfg = DISCRIMINATOR_PRESETS[cfg.disc.preset]
    if cfg.disc.dropout is not None:
        disc_cfg = replace(disc_cfg, dropout=cfg.disc.dropout)
    disc = PatchDiscriminator3D(disc_cfg).to(device).train()
    ema = EMA(model, cfg.optim.ema_decay)
    perceptual = load_perceptual(cfg.perceptual).to(device) if cfg.loss.perceptual_weight > 0 else None
    perceptual_name = perceptual.name if perceptual is not None else None
    gen_loss, disc_loss = GeneratorLoss(cfg.loss, perceptual), DiscriminatorLoss(cfg.loss)
    o = cfg.optim
    opt_g = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.disc.lr or o.lr, betas=o.betas, weight_decay=o.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "generator %.2f M parameters, discriminator %.2f M; perceptual loss %s",
        n_params / 1e6,
        sum(p.numel() for p in disc.parameters()) / 1e6,
        perceptual_name or "off",
    )
    return VAEParts(model, disc, ema, perceptual_name, gen_loss, disc_loss, opt_g, opt_d)


def grouped(disc: nn.Module, group: int | None) -> Callable[[Tensor], Tensor]:
    """Run the discriminator on groups of ``group`` clips so BatchNorm sees per-group statistics."""
    if group is None:
        return disc
    return lambda v: torch.cat([disc(part) for part in v.split(group)], dim=0)


def ddp(module: nn.Module, device: torch.device, local_rank: int) -> DistributedDataParallel:
    # Buffers need no syncing at every forward: the model's are constants, and BatchNorm running
    # statistics are never used in training mode (rank 0's are the ones saved).
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        no_sync = {"forward_sync_buffers": False}
    else:
        no_sync = {"broadcast_buffers": False}
    ids = [local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, **no_sync)


@dataclass
class Forwards:
    """The forward passes of a step: DDP-wrapped where the gradients must be averaged over ranks."""

    train_fwd: TrainForward  # bare: the no-grad reconstruction of a D step that follows no G step
    fwd: nn.Module  # the G step's forward (DDP under torchrun)
    disc_g: Callable[[Tensor], Tensor]  # the discriminator inside the G loss: bare, no gradient to average
    disc_d: Callable[[Tensor], Tensor]  # the discriminator of the D step (DDP under torchrun)
    grad_reduce: Callable | None  # averages the adaptive weight's gradients over ranks


def wrap_forwards(parts: VAEParts, bn_group: int | None, device: torch.device, world: int, local_rank: int) -> Forwards:
    """DDP averages gradients; the bare modules serve no-grad and G-step uses."""
    train_fwd = TrainForward(parts.model)
    fwd, disc_train = train_fwd, parts.disc
    if world > 1:
        fwd, disc_train = ddp(train_fwd, device, local_rank), ddp(parts.disc, device, local_rank)
    grad_reduce = mean_over_ranks if world > 1 else None
    return Forwards(train_fwd, fwd, grouped(parts.disc, bn_group), grouped(disc_train, bn_group), grad_reduce)
