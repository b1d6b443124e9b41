"""A study's files: results.json, claims.json, models/, videos/, analysis figures and report.html.

The first seed's final weights stand for each model in what a person looks at (the model folders,
the side-by-side videos, the latent figures); the table and curves hold every seed (mean and std).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from lcvae.analysis import analyze_latents
from lcvae.data import to_uint8, write_video
from lcvae.models.io import save_pretrained
from lcvae.plots import analysis_figures
from lcvae.report_page import label_panels, write_report
from lcvae.study.config import MODELS, StudyConfig, pretrained_folder
from lcvae.study.runner import eval_device, heldout_clips, load_weights, study_model
from lcvae.train.checkpoint import latest_checkpoint
from lcvae.train.validation import reconstruct
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["final_source", "write_study_outputs"]

_CURVE_NAMES = {"psnr": "held-out PSNR (dB)", "ssim": "held-out SSIM"}


def final_source(cfg: StudyConfig, run: str, seed: int) -> Path:
    """The weights of ``run`` at the study's last step: its checkpoint, or the pretrained folder when
    the study trains for 0 steps."""
    if cfg.steps == 0:
        return pretrained_folder(cfg, run)
    found = latest_checkpoint(Path(cfg.out_dir) / "runs" / f"seed{seed}" / run / "checkpoints")
    if found is None or int(found.name.split("_", 1)[1]) != cfg.steps:
        raise RuntimeError(f"run {run} seed {seed} has no checkpoint at step {cfg.steps} ({found}); rerun the study")
    return found


def _curves(results: dict[str, Any]) -> dict[str, dict[str, list]]:
    curves: dict[str, dict[str, list]] = {}
    for key in ("psnr", "ssim", results["metric"]):
        title = _CURVE_NAMES.get(key, f"held-out {key.upper()}")
        curves[title] = {
            results["models"][name]["label"]: [
                [s, m] if sd is None else [s, m, sd] for s, m, sd in zip(c["steps"], c[key], c[f"{key}_std"])
            ]
            for name, c in results["curves"].items()
        }
    adaptive = results.get("adaptive")
    if adaptive:
        per_seed = list(adaptive["per_seed"].values())
        steps = per_seed[0]["steps"]
        if all(s["steps"] == steps for s in per_seed):
            points = []
            for i, step in enumerate(steps):
                values = [s["overlap"][i] for s in per_seed]
                points.append([step, sum(values) / len(values)])
            curves["adaptive Top-50% overlap with the paper mask"] = {"Adaptive Top-50%": points}
    return curves


def _notes(cfg: StudyConfig, results: dict[str, Any]) -> list[str]:
    notes = [c["sentence"] for c in results["claims"]]
    t = cfg.train
    notes.append(
        f"Rule: a claim is reproduced (contradicted) when its margin exceeds {cfg.noise_factor:g}x the pooled "
        f"seed-to-seed std in (against) the paper's direction, else it is within the noise of this budget. "
        f"Every run shares the recipe (lr {t.optim.lr:g}, batch {t.train.batch_size}, {t.data.num_frames}-frame "
        f"{t.data.crop}x{t.data.crop} crops, {cfg.steps} steps, seeds {cfg.seeds}); held-out clips "
        f"{', '.join(results['clips'])} at {t.data.val_crop or t.data.crop}x{t.data.val_crop or t.data.crop}."
    )
    if cfg.pretrained is not None:
        notes.append(
            f"Every model started from one pretrained folder ({cfg.pretrained}); the seeds vary only the "
            f"{cfg.steps} fine-tuning steps, so their spread is not the seed-to-seed noise of training and no "
            "verdict is drawn (docs/results.md has the multi-seed studies)."
        )
    if any(c["claim"].startswith("low_band_energy") for c in results["claims"]):
        notes.append(
            "An untrained encoder's latent is already temporally smooth (the tiny test studies measure a "
            "temporal-low share near 0.99 after 2 steps), so the energy claim says little at short budgets; "
            "the adaptive overlap starts above chance for the same reason."
        )
    if cfg.steps < 10_000 and cfg.pretrained is None:
        notes.append(
            f"{cfg.steps} steps are far from the paper's 200k-step, 8-GPU runs: the verdicts describe this "
            "budget, not the method at convergence."
        )
    return notes


def write_study_outputs(cfg: StudyConfig, results: dict[str, Any]) -> Path:
    """Write every output of a finished study under ``cfg.out_dir``; returns the report's path."""
    out = Path(cfg.out_dir)
    seed = cfg.seeds[0]
    device, bf16 = eval_device(cfg)
    clips = heldout_clips(cfg)[: cfg.video_clips] if cfg.video_clips else []
    recons: dict[str, list[torch.Tensor]] = {}
    for name in cfg.models:
        model = study_model(cfg, name, final_source(cfg, MODELS[name].run, seed))
        save_pretrained(model, out / "models" / name)
        recons[name] = [reconstruct(model, c["video"].unsqueeze(0), device, bf16)[0] for c in clips]
    videos = {}
    for i, item in enumerate(clips):
        panels = [to_uint8(item["video"])] + [to_uint8(recons[name][i]) for name in cfg.models]
        labels = ["input"] + [MODELS[name].video_label for name in cfg.models]
        frames = label_panels(panels, labels, upscale=cfg.video_upscale)
        path = write_video(out / "videos" / f"{item['path']}.mp4", frames, cfg.video_fps)
        videos[f"{item['path']} (held out): {' | '.join(labels)}, seed {seed}, step {cfg.steps}"] = path
    figures = {}
    analysis_clips = heldout_clips(cfg)
    for run in cfg.runs:
        model = load_weights(final_source(cfg, run, seed), cfg.eval_weights).to(device)
        with torch.no_grad():
            latents = [model.encode(c["video"].unsqueeze(0).to(device)).mode().float().cpu() for c in analysis_clips]
        paths = analysis_figures(analyze_latents(latents, model.causal, keep_images=False), out / "analysis" / run)
        label = {"wfvae-2c": "WF-VAE 2C (PTLC's backbone)"}.get(run, MODELS[run].label)
        for path in paths:
            if path.name in ("energy_subbands.png", "autocorrelation_heatmap.png"):
                kind = "latent energy per subband" if "energy" in path.name else "lag-1 autocorrelation"
                figures[f"{label}: {kind} (seed {seed}, step {cfg.steps})"] = path
    write_json(out / "claims.json", results["claims"])
    write_json(out / "results.json", results)
    report = write_report(
        out,
        results,
        title=results["title"],
        curves=_curves(results),
        figures=figures,
        videos=videos,
        notes=_notes(cfg, results),
        video_fps=cfg.video_fps,
    )
    logger.info("study outputs in %s; report %s", out, report)
    return report
