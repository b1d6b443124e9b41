"""Setup of the Latte recipe: the denoiser for a latent shape, and the data order as a function of (seed, step)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict

import torch
from torch import nn
from torch.utils.data import Sampler

from lcvae.models.denoisers import WanDenoiser, WanDenoiserConfig
from lcvae.models.latte import Latte, LatteConfig
from lcvae.train.latte_config import DenoiserOptions


def build_denoiser_for(opts: DenoiserOptions, latent_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The configured denoiser for latents (C, F, h, w) = `latent_shape` (from the VAE config)."""
    c, f, h, w = latent_shape
    common = dict(num_classes=num_classes, class_dropout_prob=opts.class_dropout_prob, learn_sigma=opts.learn_sigma)
    if opts.kind == "latte":
        return Latte(
            LatteConfig.from_preset(
                opts.preset,
                in_channels=c,
                num_frames=f,
                input_size=(h, w),
                gradient_checkpointing=opts.gradient_checkpointing,
                **common,
            )
        )
    return WanDenoiser(WanDenoiserConfig(in_channels=c, num_frames=f, input_size=(h, w), **asdict(opts.wan), **common))


class StepBatches(Sampler):
    """Endless batches of cache indices for one rank, starting at `start_step`; batch k of the run is a
    function of (seed, k) only. Each epoch is a permutation seeded by seed + epoch, dealt round-robin
    to ranks; the remainder that does not fill a batch on every rank is left out of that epoch."""

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.steps_per_epoch = size // world_size // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the cache holds {size} latents, fewer than one batch of {batch_size} on each of "
                f"{world_size} ranks; lower batch_size or cache more clips (cache-latents --passes)"
            )

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            epoch, first = divmod(step, self.steps_per_epoch)
            perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
            mine = perm[self.rank :: self.world_size]
            for k in range(first, self.steps_per_epoch):
                yield mine[k * self.batch_size : (k + 1) * self.batch_size].tolist()
                step += 1
