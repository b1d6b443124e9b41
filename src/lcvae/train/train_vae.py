"""The LC-VAE training recipe (docs/training.md): ``lcvae train-vae --config FILE [key=value ...]``.

``main(cfg)`` reads top to bottom: check the config, join torchrun's process group, build the model
(optionally from a pretrained WF-VAE), discriminator, EMA, losses and the two AdamW optimisers,
resume, then loop over generator (G) and discriminator (D) steps:

    G: x_hat = decoder(compress(z)), z ~ posterior(x); L1 + perceptual + KL 1e-6 + lambda * GAN
    D: hinge loss on x and x_hat (detached)
    schedule "alternate" (reference): D on odd steps once the GAN is on, G on every other step;
    schedule "both": G then D on every step, D on the G step's reconstruction.

Its pieces: ``vae_config`` (the typed config and its checks), ``vae_setup`` (the trained modules,
optimisers and DDP wrappers), ``vae_step`` (one G and/or D update), ``vae_checkpoint`` (save, resume),
``vae_model`` (training forward pass, posterior noise, init from a pretrained backbone, gradient
checkpointing), ``vae_data`` (datasets, resumable order), ``validation`` (metrics of the EMA model),
``checkpoint`` / ``ema`` / ``distributed``.

Determinism. Data items depend only on (seed, epoch, index) and the posterior noise of a sample
only on (seed, step, dataset index), so the loss curve does not depend on how a global batch is
split over processes, and a resumed run draws exactly what the uninterrupted run would have. The
remaining randomness (dropout) comes from each rank's torch RNG, saved in every checkpoint.

Distributed (torchrun, DDP: nccl on GPUs, gloo on CPU). Gradients are averaged over ranks by DDP;
the adaptive GAN weight uses the rank-averaged gradients of Eq. 9, so it is the weight of the whole
batch. The discriminator's BatchNorm normalises over each rank's batch, as per-GPU BatchNorm did in
the reference; ``disc.bn_group`` gives a single process the same per-group statistics, so 1 and N
processes with the same global batch follow the same curve. Adaptive compression (supplement D.1)
chooses its channels from each rank's own batch. Rank 0 logs and writes checkpoints.

Failure handling (``lcvae.train.faults``). A non-finite loss or gradient norm on any rank skips the
step on every rank (the batch is dropped, no weight changes, the step counter stays) and is counted;
after ``train.max_nonfinite`` in a row the run saves the state from before the last update (whose
weights gave only non-finite losses since), sets later checkpoints aside and stops with
:class:`TrainingDiverged`. SIGTERM / SIGINT finish the step, all ranks agree to stop after it, a
checkpoint is written and :class:`TrainingInterrupted` is raised; the same command resumes exactly.
A rank that stops answering fails the others after ``train.dist_timeout_s`` (:class:`RankTimeout`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from lcvae.config import to_dict
from lcvae.data import SkipCounter
from lcvae.masks import paper_mask
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.train.checkpoint import latest_checkpoint, restore_rng_state, set_aside_after
from lcvae.train.distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank_each,
    barrier,
    cleanup_distributed,
    init_distributed,
    is_distributed,
    min_over_ranks,
    seed_everything,
    setup_logging,
    stalled_rank_errors,
)
from lcvae.train.faults import PreviousState, StopSignals, TrainingDiverged, TrainingInterrupted, ignore_stop_signals
from lcvae.train.run_log import append_jsonl, open_tensorboard, progress_line, truncate_jsonl
from lcvae.train.vae_checkpoint import resume_state, save_state
from lcvae.train.vae_config import TrainVAEConfig, check, load_train_config, lr_scale
from lcvae.train.vae_data import build_eval_dataset, build_train_dataset, eval_clips, make_train_loader
from lcvae.train.vae_model import (
    init_backbone_from,  # noqa: F401 (importable from the recipe, as before)
    posterior_noise,
)
from lcvae.train.vae_setup import build_parts, wrap_forwards
from lcvae.train.vae_step import train_step
from lcvae.train.validation import evaluate_clips, load_metric_lpips, preview_image, reconstruct
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["TrainingDiverged", "TrainingInterrupted", "TrainResult", "main", "run_cli"]


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    checkpoint: Path | None  # the last checkpoint written (rank 0), None on other ranks
    stopped_by: str  # "max_steps" or "time_budget"
    nonfinite_total: int
    train_seconds: float  # training-loop wall time of this invocation


# ------------------------------------------------------------------------------------------- recipe


def main(cfg: TrainVAEConfig) -> TrainResult:
    """Train (or resume) the VAE described by ``cfg``; see the module docstring. Raises
    :class:`TrainingDiverged`, :class:`TrainingInterrupted` (a checkpoint was written in both cases)
    and, under torchrun, :class:`lcvae.train.distributed.RankTimeout`."""
    model_cfg = check(cfg)  # every config error surfaces here, before anything is created
    owns_group = not is_distributed()  # a caller's group (a study running several trainings) stays up
    info = init_distributed(timeout_s=cfg.train.dist_timeout_s)
    with StopSignals() as stop, stalled_rank_errors(cfg.train.dist_timeout_s, "train.dist_timeout_s"):
        result = _train(cfg, model_cfg, info, stop)
    if owns_group:
        cleanup_distributed()
    return result


def _train(cfg: TrainVAEConfig, model_cfg: LCVAEConfig, info: DistInfo, stop: StopSignals) -> TrainResult:
    t = cfg.train
    rank, world, device = info.rank, info.world_size, info.device
    if t.threads:
        torch.set_num_threads(t.threads)
    bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    out_dir = Path(t.out_dir)
    ckpt_root = out_dir / "checkpoints"
    metrics_path = out_dir / "metrics.jsonl"
    logger.info(
        "world size %d, device %s, %s, model %s",
        world,
        device,
        "bf16 autocast" if bf16 else "fp32",
        json.dumps(model_cfg.to_dict()),
    )

    # -- model, discriminator, EMA, losses, optimisers (same initial weights on every rank)
    parts = build_parts(cfg, model_cfg, device)
    model, disc, ema, opt_g, opt_d = parts.model, parts.disc, parts.ema, parts.opt_g, parts.opt_d
    perceptual_name, gen_loss, o = parts.perceptual_name, parts.gen_loss, cfg.optim

    # -- resume: weights, EMA, optimisers, step, data position, counters, RNG
    step, epoch, items_done, nonfinite_total = 0, 0, 0, 0
    resume_from = (
        latest_checkpoint(ckpt_root) if t.resume == "auto" else None if t.resume == "never" else Path(t.resume)
    )
    rng_state = None
    if resume_from is not None:
        r = resume_state(resume_from, model_cfg, parts, device, rank, world)
        step, epoch, items_done = r.step, r.epoch, r.items_done
        nonfinite_total, rng_state = r.nonfinite_total, r.rng_state
    else:
        logger.info("starting from scratch in %s", out_dir)

    # -- distributed wrappers: DDP averages gradients; the bare modules serve no-grad and G-step uses
    fw = wrap_forwards(parts, cfg.disc.bn_group, device, world, info.local_rank)

    # -- data: items depend on (seed, epoch, index) only; the sampler resumes mid-epoch
    dataset = build_train_dataset(cfg.data, t.seed)
    loader = make_train_loader(
        dataset,
        t.batch_size,
        seed=t.seed,
        rank=rank,
        world_size=world,
        num_workers=cfg.data.num_workers,
        skip=items_done // world,
    )
    skips = SkipCounter()
    latent_shape = model_cfg.latent_shape(cfg.data.num_frames, cfg.data.crop, cfg.data.crop)
    paper_indices = paper_mask(model_cfg.backbone.latent_channels) if model_cfg.compression is not None else []
    val_clips, eval_model, metric, writer = None, None, None, None
    if rank == 0 and cfg.log.val_every:
        val_clips = [item["video"] for item in eval_clips(build_eval_dataset(cfg.data), cfg.data.val_clips)]
        eval_model, metric = LCVAE(model_cfg).to(device), load_metric_lpips(cfg.log.lpips_weights)
    loader.worker_init_fn = ignore_stop_signals  # a cluster's SIGTERM to the process group must not kill them mid-step
    if rank == 0:  # written only now that the config, the data and the resume point are known to be good
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "config.json", to_dict(cfg))
        for name in ("metrics.jsonl", "adaptive_selection.jsonl"):  # rows of steps redone (or of a run started over) go
            truncate_jsonl(out_dir / name, step)
    if rank == 0 and cfg.log.tensorboard:
        writer = open_tensorboard(out_dir / "tensorboard", step)

    # -- the loop
    seed_everything(t.seed, rank)
    if rng_state is not None:
        restore_rng_state(rng_state)
    counters = {"nonfinite_total": nonfinite_total}
    window: dict[str, list[float]] = {}  # logged values since the last log line: [sum, count]
    bad_in_row, last_saved, stopped_by, checkpoint_path = 0, step, "max_steps", None
    start_step, t0 = step, time.perf_counter()
    previous = PreviousState(model=model, opt_g=opt_g, ema=ema, disc=disc, opt_d=opt_d)

    def position() -> dict:
        return {"epoch": epoch, "items": items_done}

    def save(at: int) -> Path | None:
        return save_state(ckpt_root, at, cfg, model_cfg, parts, position(), counters, rank, world)

    while step < t.max_steps and stopped_by == "max_steps":
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            items_done += world * t.batch_size
            if min_over_ranks(skips.update(batch)) == 0:
                logger.warning("a process got a batch of unreadable clips only (%s); batch dropped", skips.summary())
                continue
            x = batch["video"].to(device, non_blocking=True)
            noise = posterior_noise(latent_shape, batch["index"].tolist(), step, t.seed) if t.sample_posterior else None
            gan_on = gen_loss.gan_active(step)
            d_step = gan_on and (cfg.disc.schedule == "both" or step % 2 == 1)
            g_step = cfg.disc.schedule == "both" or not d_step
            scale = lr_scale(o, step)
            for group in opt_g.param_groups:
                group["lr"] = o.lr * scale
            for group in opt_d.param_groups:
                group["lr"] = (cfg.disc.lr or o.lr) * scale
            selection_log = out_dir / "adaptive_selection.jsonl" if rank == 0 and step % cfg.log.every == 0 else None
            applied, logs = train_step(
                parts,
                fw,
                previous,
                x,
                noise,
                step,
                g_step=g_step,
                d_step=d_step,
                gan_on=gan_on,
                clip=o.clip_grad_norm,
                autocast=autocast,
                paper_indices=paper_indices,
                selection_log=selection_log,
            )
            if not applied:  # nothing was stepped: weights and statistics stay those of the last good step
                bad_in_row += 1
                nonfinite_total += 1
                counters["nonfinite_total"] = nonfinite_total
                logger.warning(
                    "non-finite loss or gradient at step %d: batch skipped (%d in a row, %d in all)",
                    step,
                    bad_in_row,
                    nonfinite_total,
                )
                if rank == 0:
                    append_jsonl(
                        metrics_path,
                        {"step": step, "event": "nonfinite", "in_a_row": bad_in_row, "total": nonfinite_total},
                    )
                if bad_in_row >= t.max_nonfinite:
                    if writer is not None:
                        writer.close()
                    # the weights of the last update gave only non-finite losses since: save those from before it
                    if previous.restore():  # labelled with that update's step; later checkpoints hold its result
                        if rank == 0:
                            set_aside_after(ckpt_root, step - 1)
                        path = save(step - 1)
                    else:  # no update in this invocation: the checkpoint it resumed from is that state
                        path = latest_checkpoint(ckpt_root) if rank == 0 else None
                    raise TrainingDiverged(
                        f"{bad_in_row} non-finite steps in a row (step {step}); the state from before the last update "
                        f"is saved in {path or ckpt_root}. Lower optim.lr, set optim.clip_grad_norm, or check the "
                        f"data, then resume (train.resume=auto).",
                        path,
                    )
                continue
            bad_in_row = 0
            for key, value in logs.items():
                acc = window.setdefault(key, [0.0, 0])
                acc[0] += value
                acc[1] += 1
            step += 1

            # -- logging, validation, checkpoints, time budget
            elapsed = time.perf_counter() - t0
            over_budget, signalled = any_rank_each(
                t.time_budget_s is not None and elapsed >= t.time_budget_s, stop.received is not None
            )  # all ranks stop after the same step
            stopped_by = "signal" if signalled else "time_budget" if over_budget else stopped_by
            final = step >= t.max_steps or stopped_by != "max_steps"
            if step % cfg.log.every == 0 or final:
                logs = all_reduce_mean({key: total / count for key, (total, count) in window.items()})
                window.clear()
                logs["lr"] = o.lr * scale
                if rank == 0:
                    rate = (step - start_step) / max(elapsed, 1e-9)
                    eta = (t.max_steps - step) / rate if rate > 0 else math.inf
                    if t.time_budget_s is not None:
                        eta = min(eta, max(0.0, t.time_budget_s - elapsed))
                    kind = "G+D" if g_step and d_step else "G" if g_step else "D"
                    logger.info(progress_line(step, t.max_steps, kind, logs, rate, eta, perceptual_name, gan_on))
                    append_jsonl(metrics_path, {"step": step, "time": round(elapsed, 3), **logs})
                    if writer is not None:
                        for key, value in logs.items():
                            writer.add_scalar(f"train/{key}", value, step)
            if cfg.log.val_every and step % cfg.log.val_every == 0:
                if rank == 0:
                    ema.copy_to(eval_model)
                    val = evaluate_clips(eval_model, val_clips, metric, device, bf16)
                    logger.info(
                        "validation at step %d (EMA): PSNR %.2f dB, SSIM %.4f, %s %.4f",
                        step,
                        val["psnr"],
                        val["ssim"],
                        val["metric"],
                        val[val["metric"].lower()],
                    )
                    append_jsonl(metrics_path, {"step": step, "val": {k: v for k, v in val.items() if k != "per_clip"}})
                    if writer is not None:
                        for key in ("psnr", "ssim", val["metric"].lower()):
                            writer.add_scalar(f"val/{key}", val[key], step)
                        clip = val_clips[0].unsqueeze(0)
                        writer.add_image(
                            "val/input_vs_reconstruction",
                            preview_image(clip[0], reconstruct(eval_model, clip, device, bf16)[0]),
                            step,
                        )
                barrier()
            if step % t.ckpt_every == 0:
                checkpoint_path = save(step)
                last_saved = step
            if final:
                break
        else:
            epoch, items_done = epoch + 1, 0

    train_seconds = time.perf_counter() - t0
    if step != last_saved:
        checkpoint_path = save(step)
    if rank == 0 and checkpoint_path is None:
        checkpoint_path = latest_checkpoint(ckpt_root)
    if skips.count:
        logger.warning(skips.summary())
    logger.info(
        "stopped at step %d (%s) after %.1f s of training; %d non-finite steps skipped",
        step,
        stopped_by,
        train_seconds,
        nonfinite_total,
    )
    if writer is not None:
        writer.close()
    if stopped_by == "signal":
        name = stop.received or "a stop signal on another rank"
        where = checkpoint_path or ckpt_root
        logger.warning("stopped by %s after step %d; checkpoint %s; run the same command to resume", name, step, where)
        raise TrainingInterrupted(
            f"stopped by {name} after step {step}; the state is saved in {where}; run the same command to resume",
            checkpoint_path if rank == 0 else None,
            step,
            name,
        )
    return TrainResult(
        step, out_dir, checkpoint_path if rank == 0 else None, stopped_by, nonfinite_total, train_seconds
    )


def run_cli(config: str | Path | None, overrides: Sequence[str] = ()) -> TrainResult:
    """``lcvae train-vae``: load and check the config (errors before anything starts), set up rank-aware
    logging, train."""
    cfg = load_train_config(config, overrides)
    setup_logging(logging.INFO, rank=int(os.environ.get("RANK", "0")))
    return main(cfg)
