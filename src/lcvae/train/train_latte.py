"""Latte training recipe (docs/generation.md#training-recipe): a denoiser on the latent cache, one linear ``main(cfg)``.

    lcvae train-latte --config configs/latte_tiny_cpu.yaml max_steps=200
    torchrun --nproc_per_node 8 -m lcvae.train.train_latte --config configs/latte_l_ucf101.yaml

Reads latents from a cache made by ``lcvae cache-latents`` (never re-encodes videos), checks that
the cache was made by the configured VAE, builds the denoiser for the VAE's latent shape (Latte, or
diffusers' Wan transformer through ``lcvae.models.denoisers``), and trains with the hybrid
diffusion loss: AdamW, EMA, DDP under torchrun, TensorBoard scalars, a progress line, atomic
checkpoints and sample videos decoded through the VAE. Its pieces: ``latte_config`` (the typed config),
``latte_setup`` (the denoiser, the data order), ``latte_checkpoint`` (save, resume, the divergence save).

Exact resume. The data order is a function of (seed, step): epoch e is a permutation seeded by
seed + e, split over ranks. Timesteps, noise and label dropout use the global torch RNG, whose
state (every rank's) is saved with the weights, EMA and optimiser; so N steps equal N/2 steps,
a restart and N/2 more, bit for bit on the CPU. A resume takes the optimiser hyper-parameters (lr,
betas, weight decay) from the config, not from the checkpoint.

Faults (``lcvae.train.faults``). A non-finite loss or gradient norm skips the step on every rank
(counted, logged); ``max_nonfinite`` in a row save the state from before the last update as its
step, set later checkpoints aside (``diverged-step_*``) and raise :class:`TrainingDiverged` (exit 3).
SIGTERM / SIGINT finish the step, write a checkpoint and raise :class:`TrainingInterrupted` (exit 75);
the same command resumes exactly. Under torchrun a silent rank fails the others after ``dist_timeout_s``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lcvae.config import load_config, to_dict
from lcvae.diffusion import GaussianDiffusion
from lcvae.latent_cache import LatentCache
from lcvae.models.denoisers import denoiser_spec
from lcvae.models.io import from_pretrained
from lcvae.sampling import decode_latents, sample_latents, write_grid, write_videos
from lcvae.train.checkpoint import latest_checkpoint
from lcvae.train.distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    any_rank_each,
    cleanup_distributed,
    init_distributed,
    seed_everything,
    setup_logging,
    stalled_rank_errors,
)
from lcvae.train.ema import EMA
from lcvae.train.faults import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    PreviousState,
    StopSignals,
    TrainingDiverged,
    TrainingInterrupted,
    ignore_stop_signals,
)
from lcvae.train.latte_checkpoint import diverged, resume_state, save_state
from lcvae.train.latte_config import TrainLatteConfig
from lcvae.train.latte_setup import StepBatches, build_denoiser_for
from lcvae.train.run_log import open_tensorboard
from lcvae.utils import format_duration

logger = logging.getLogger(__name__)

__all__ = ["main", "build_denoiser_for", "StepBatches", "cli"]


def main(cfg: TrainLatteConfig) -> Path:
    """Train (or resume) the run in cfg.run_dir up to cfg.max_steps; returns the last checkpoint folder.

    Raises :class:`TrainingDiverged` after ``cfg.max_nonfinite`` non-finite steps in a row (the state
    before the last update saved) and :class:`TrainingInterrupted` after a SIGTERM / SIGINT (the state
    after the current step saved); :class:`RankTimeout` when a rank stops answering under torchrun."""
    info = init_distributed(timeout_s=cfg.dist_timeout_s)
    with StopSignals() as stop, stalled_rank_errors(cfg.dist_timeout_s, "dist_timeout_s"):
        return _train(cfg, info, stop)


def _train(cfg: TrainLatteConfig, info: DistInfo, stop: StopSignals) -> Path:
    device = info.device if cfg.device == "auto" else torch.device(cfg.device)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {info.world_size} ranks")
    if cfg.max_nonfinite < 1:
        raise ValueError(f"max_nonfinite must be >= 1, got {cfg.max_nonfinite}")
    local_batch = cfg.batch_size // info.world_size
    run_dir = Path(cfg.run_dir)
    ckpt_root = run_dir / "checkpoints"

    # 1. The VAE and its latents: the cache must come from this VAE
    vae = from_pretrained(cfg.vae).eval().requires_grad_(False)
    cache = LatentCache(cfg.cache, vae=vae)
    fingerprint = cache.fingerprint
    latent_shape = vae.config.diffusion_shape(*cache.video_shape)
    if tuple(latent_shape) != cache.latent_shape:
        raise ValueError(f"cache latents are {cache.latent_shape}, the VAE makes {latent_shape}; re-encode the cache")
    num_classes = cache.num_classes if cfg.model.num_classes is None else cfg.model.num_classes
    labels = cache.labels
    if num_classes and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"cache labels span [{int(labels.min())}, {int(labels.max())}] but the model has {num_classes} "
            f"classes; set model.num_classes=0 to train unconditionally"
        )
    logger.info("cache %s: %d latents %s, %d classes", cfg.cache, len(cache), latent_shape, num_classes)

    # 2. Denoiser, EMA, optimiser, diffusion
    seed_everything(cfg.seed, info.rank)
    model = build_denoiser_for(cfg.model, latent_shape, num_classes).to(device)
    spec = denoiser_spec(model)
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
    )
    d = cfg.diffusion
    diffusion = GaussianDiffusion(d.num_timesteps, d.beta_start, d.beta_end, learn_sigma=cfg.model.learn_sigma)
    logger.info("%s denoiser, %.2fM parameters", spec["kind"], sum(p.numel() for p in model.parameters()) / 1e6)

    # 3. Resume from the latest checkpoint of this run
    step = 0
    latest = latest_checkpoint(ckpt_root)
    if latest is not None:
        step = resume_state(latest, model, ema, opt, spec, cfg, info, device)
    if step >= cfg.max_steps:
        logger.info("run already at step %d >= max_steps %d", step, cfg.max_steps)
        cleanup_distributed()
        return latest

    ddp = model
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = StepBatches(len(cache), local_batch, cfg.seed, info.rank, info.world_size, start_step=step)
    # own generator: creating the loader's iterator must not draw from the global RNG
    loader = DataLoader(
        cache,
        batch_sampler=batches,
        num_workers=cfg.num_workers,
        generator=torch.Generator(),
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
    )
    writer = None
    if info.is_main and cfg.tensorboard:  # a resumed run drops the events of the steps it redoes
        writer = open_tensorboard(run_dir / "tensorboard", step)
    sampler_model = copy.deepcopy(model).eval() if info.is_main and cfg.sample.every > 0 else None
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()
    )
    facts = {
        "denoiser": spec,
        "diffusion": asdict(cfg.diffusion),
        "vae_fingerprint": fingerprint,
        "video_shape": list(cache.video_shape),
        "latent_shape": list(latent_shape),
        "fps": cache.fps,
        "world_size": info.world_size,
    }

    def save(at: int | None = None) -> Path:
        """Checkpoint the current state as step ``at`` (default: the current step); all ranks call it."""
        return save_state(ckpt_root, step if at is None else at, model, ema, opt, facts, cfg, info.is_main)

    def write_samples() -> None:
        ema.copy_to(sampler_model)
        s = cfg.sample
        folder = run_dir / "samples" / f"step_{step:09d}"
        vae.to(device)
        videos = []
        for start in range(0, s.num, s.batch_size):
            idx = list(range(start, min(start + s.batch_size, s.num)))
            y = torch.tensor(idx) % num_classes if num_classes else None
            z = sample_latents(
                sampler_model,
                diffusion,
                latent_shape,
                idx,
                seed=s.seed,
                labels=y,
                guidance=s.guidance if num_classes else 1.0,
                steps=s.steps,
                method=s.method,
                device=device,
            )
            videos.append(decode_latents(vae, z, device))
        videos = torch.cat(videos)
        write_videos(videos, folder, cache.fps, [f"sample_{i:03d}" for i in range(s.num)])
        write_grid(videos, folder / "grid.png")
        logger.info("wrote %d sample videos to %s", s.num, folder)

    # 4. Train
    model.train()
    window = {"loss": 0.0, "mse": 0.0, "vb": 0.0, "grad_norm": 0.0}
    window_steps, window_start, run_start, run_start_step = 0, time.perf_counter(), time.perf_counter(), step
    last, bad_in_row, nonfinite_total = latest, 0, 0
    previous = PreviousState(model=model, optimizer=opt, ema=ema)
    for batch in loader:
        x0 = batch["latent"].to(device, non_blocking=True)
        y = batch["label"].to(device) if num_classes else None
        t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=device)
        with autocast:
            losses = diffusion.training_losses(lambda x, tt: ddp(x, tt, y), x0, t)  # noqa: B023 (called at once)
        loss = losses.loss.float().mean()
        opt.zero_grad(set_to_none=True)
        grad_norm = None
        if not any_rank(not bool(torch.isfinite(loss))):  # every rank skips together (DDP needs all backwards)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or math.inf)
        if grad_norm is None or not bool(torch.isfinite(grad_norm)):  # gradients are all-reduced: same on every rank
            opt.zero_grad(set_to_none=True)
            bad_in_row, nonfinite_total = bad_in_row + 1, nonfinite_total + 1
            logger.warning(
                "non-finite loss or gradient at step %d: batch skipped (%d in a row, %d in all)",
                step,
                bad_in_row,
                nonfinite_total,
            )
            if writer is not None:
                writer.add_scalar("train/nonfinite_total", nonfinite_total, step + 1)
            if bad_in_row >= cfg.max_nonfinite:
                if writer is not None:
                    writer.close()
                raise diverged(previous, save, step, bad_in_row, last, ckpt_root, info.is_main)
            continue
        bad_in_row = 0
        previous.keep("model", "optimizer", "ema")
        opt.step()
        ema.update(model)
        step += 1

        for key, value in (
            ("loss", loss),
            ("mse", losses.mse.mean()),
            ("vb", losses.vb.mean()),
            ("grad_norm", grad_norm),
        ):
            window[key] += float(value.detach())
        window_steps += 1
        (signalled,) = any_rank_each(stop.received is not None)  # all ranks stop after the same step
        if step % cfg.log_every == 0 or step == cfg.max_steps or signalled:
            means = all_reduce_mean({k: v / window_steps for k, v in window.items()})
            now = time.perf_counter()
            rate = window_steps / max(now - window_start, 1e-9)
            overall = (step - run_start_step) / max(now - run_start, 1e-9)
            logger.info(
                "step %d/%d | loss %.4f (mse %.4f, vb %.4f) | grad %.3f | %.2f steps/s, %.1f latents/s | "
                "elapsed %s, ETA %s",
                step,
                cfg.max_steps,
                means["loss"],
                means["mse"],
                means["vb"],
                means["grad_norm"],
                rate,
                rate * cfg.batch_size,
                format_duration(now - run_start),
                format_duration((cfg.max_steps - step) / overall),
            )
            if writer is not None:
                for key, value in means.items():
                    writer.add_scalar(f"train/{key}", value, step)
                writer.add_scalar("train/steps_per_second", rate, step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
            window = dict.fromkeys(window, 0.0)
            window_steps, window_start = 0, now
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps or signalled:
            last = save()
        if signalled:
            if writer is not None:
                writer.close()
            name = stop.received or "a stop signal on another rank"
            logger.warning(
                "stopped by %s after step %d; checkpoint %s; run the same command to resume", name, step, last
            )
            raise TrainingInterrupted(
                f"stopped by {name} after step {step}; the state is saved in {last}; run the same command to resume",
                last if info.is_main else None,
                step,
                name,
            )
        if sampler_model is not None and step % cfg.sample.every == 0:
            write_samples()
        if step >= cfg.max_steps:
            break

    if writer is not None:
        writer.close()
    logger.info("done: %d steps, last checkpoint %s; %d non-finite steps skipped", step, last, nonfinite_total)
    cleanup_distributed()
    return last


def cli(argv: list[str] | None = None) -> int:
    """``python -m lcvae.train.train_latte --config FILE [key=value ...]`` (what torchrun launches)."""
    parser = argparse.ArgumentParser(description="train Latte (or another denoiser) on a latent cache")
    parser.add_argument("--config", help="YAML file (configs/latte_*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=1000 model.preset=B")
    args = parser.parse_args(argv)
    setup_logging(rank=int(os.environ.get("RANK", "0")))  # before main joins the process group
    cfg = load_config(TrainLatteConfig, args.config, args.overrides)
    logger.debug("config: %s", to_dict(cfg))
    try:
        main(cfg)
    except TrainingDiverged as err:
        logger.error("stopped: %s", err)
        return EXIT_DIVERGED
    except TrainingInterrupted:  # logged where it stopped; resume with the same command
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
