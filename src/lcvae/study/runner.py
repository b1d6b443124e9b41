"""``lcvae study``: train every run of a study in segments, evaluate each segment end, gather the numbers.

Order. For each seed, each run is trained with ``lcvae.train.train_vae.main`` up to the first
evaluation step, checkpointed, evaluated, then trained on (exact resume from that checkpoint) to
the next evaluation step, and so on. The trainings run one after the other in this process; under
torchrun they share one process group (DDP inside each training) and rank 0 evaluates while the
other ranks wait at a barrier.

Caching and resumption. Every evaluation is written to ``evals/<model>/seed<k>/step_<N>.json`` the
moment it is done and is never redone. A run's latest checkpoint says how far it trained: an
interrupted study restarts the unfinished segment from the previous checkpoint (train-vae's resume
is exact: data order, posterior noise and RNG states continue as if uninterrupted), so a rerun gives
the numbers an uninterrupted study gives. Nothing here depends on wall time.

Layout of ``out_dir``::

    runs/seed<k>/<run>/       train-vae run folders (config.json, metrics.jsonl, checkpoints/, segments.json)
    evals/<model>/seed<k>/    held-out metrics per evaluation step
    analysis/seed<k>/<run>_step_<N>.json  latent energy and autocorrelation of the final weights
    recipe.json               what the cached numbers depend on; a rerun with another recipe is refused
    results.json, claims.json, report.html, models/<model>/, videos/, analysis/<run>/*.png (lcvae.study.report)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lcvae.ablations.selection import read_selection_log, selection_summary
from lcvae.analysis import analyze_latents
from lcvae.config import to_dict
from lcvae.evaluation.setup import with_compression
from lcvae.models.io import from_pretrained
from lcvae.models.lcvae import LCVAE
from lcvae.study.claims import seed_std, study_claims
from lcvae.study.config import MODELS, RUNS, StudyConfig, pretrained_folder, run_config
from lcvae.train.checkpoint import latest_checkpoint, load_checkpoint
from lcvae.train.distributed import barrier, cleanup_distributed, init_distributed
from lcvae.train.export import model_from_checkpoint
from lcvae.train.train_vae import main as train_main
from lcvae.train.vae_data import build_eval_dataset, eval_clips
from lcvae.train.validation import evaluate_clips, load_metric_lpips
from lcvae.utils import write_json

logger = logging.getLogger(__name__)

__all__ = ["eval_device", "gather_results", "heldout_clips", "load_weights", "run_study", "study_model", "train_runs"]


def eval_device(cfg: StudyConfig) -> tuple[torch.device, bool]:
    """(device, bf16) for evaluation: this rank's GPU with the recipe's precision, else the CPU in fp32
    whatever the training precision (the numbers a CPU study reports are those of the weights in fp32)."""
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device, cfg.train.train.precision in ("auto", "bf16")
    return torch.device("cpu"), False


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_", 1)[1])


def load_weights(source: Path, weights: str = "model") -> LCVAE:
    """A training checkpoint folder (its raw or EMA weights) or a pretrained model folder -> LCVAE (eval)."""
    if not (source / "state.pt").is_file():
        return from_pretrained(source).eval()
    return model_from_checkpoint(load_checkpoint(source), weights).eval()


def study_model(cfg: StudyConfig, name: str, source: Path) -> LCVAE:
    """Model ``name`` from its run's weights at ``source``: PTLC is the uncompressed 2C' WF-VAE with
    the paper mask inserted (backbone parameters shared, not retrained)."""
    model = load_weights(source, cfg.eval_weights)
    mask = MODELS[name].post_mask
    return with_compression(model, mask) if mask is not None else model


def heldout_clips(cfg: StudyConfig) -> list[dict[str, Any]]:
    """The held-out clips of the recipe's data section (deterministic: last frames, centre crop)."""
    return eval_clips(build_eval_dataset(cfg.train.data), cfg.train.data.val_clips)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _eval_path(out: Path, model: str, seed: int, step: int) -> Path:
    return out / "evals" / model / f"seed{seed}" / f"step_{step:09d}.json"


def _analysis_path(out: Path, run: str, seed: int, step: int) -> Path:
    return out / "analysis" / f"seed{seed}" / f"{run}_step_{step:09d}.json"


def _analysis(model: LCVAE, clips: list[dict[str, Any]], device: torch.device) -> dict[str, Any]:
    """Energy per 3D Haar subband and lag-1 autocorrelation of the backbone latent on the held-out clips."""
    model = model.to(device)
    with torch.no_grad():
        latents = [model.encode(item["video"].unsqueeze(0).to(device)).mode().float().cpu() for item in clips]
    result = analyze_latents(latents, model.causal, keep_images=False).to_dict()
    sub = result["subbands"]
    return {
        "temporal_low_share": sub["temporal_low_share"],
        "subband_share": sub["energy_share"],
        "autocorrelation_channel_mean": sub["autocorrelation_channel_mean"],
        "kept_share": (result["leaves"] or {}).get("kept_share"),
    }


def _train_segment(cfg: StudyConfig, run: str, seed: int, target: int) -> tuple[Path | None, int]:
    """Bring ``run`` to step ``target``; returns (its weights at ``target`` or None if the run is past
    it, the step reached). Step 0 is the pretrained folder itself."""
    if target == 0:
        return pretrained_folder(cfg, run), 0
    run_cfg = run_config(cfg, run, seed)
    run_cfg = replace(run_cfg, train=replace(run_cfg.train, max_steps=target))
    latest = latest_checkpoint(Path(run_cfg.train.out_dir) / "checkpoints")
    if latest is not None and _step_of(latest) >= target:
        return (latest if _step_of(latest) == target else None), _step_of(latest)
    logger.info("study: %s seed %d, training to step %d", run, seed, target)
    result = train_main(run_cfg)
    if result.checkpoint is not None:  # rank 0: the segment's training time, for the timing summary
        timing_path = Path(run_cfg.train.out_dir) / "segments.json"
        timing = _read_json(timing_path) if timing_path.is_file() else {}
        timing[str(target)] = {
            "seconds": result.train_seconds,
            "steps": result.step - (latest and _step_of(latest) or 0),
        }
        write_json(timing_path, timing)
    return result.checkpoint, result.step


@contextlib.contextmanager
def _one_process_group() -> Iterator[None]:
    """Under torchrun: one process group for the whole study (train_vae.main keeps a group it did not
    create; re-creating the default group under torchrun's agent store would hang)."""
    if "WORLD_SIZE" not in os.environ:
        yield
        return
    init_distributed()
    try:
        yield
    finally:
        cleanup_distributed()


def _recipe(cfg: StudyConfig) -> dict[str, Any]:
    """What the cached numbers depend on; a rerun into the same folder must keep it (seeds, models,
    steps and evaluation interval may change: they add to the cache)."""
    train = to_dict(cfg.train)
    train["data"].pop("num_workers")
    train["train"].pop("threads")
    return {
        "backbone": cfg.backbone,
        "channels": cfg.channels,
        "eval_weights": cfg.eval_weights,
        "pretrained": cfg.pretrained,
        "train": train,
    }


def _check_recipe(cfg: StudyConfig) -> None:
    path = Path(cfg.out_dir) / "recipe.json"
    recipe = json.loads(json.dumps(_recipe(cfg)))  # tuples -> lists, as read back
    if path.is_file():
        old = _read_json(path)
        if old != recipe:
            diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
            raise ValueError(
                f"{cfg.out_dir} holds a study with a different recipe ({', '.join(diff)} differ, see "
                f"{path}); its cached runs and evaluations would be mixed with this one: use a new out_dir"
            )
    else:
        write_json(path, recipe)


def train_runs(cfg: StudyConfig) -> None:
    """Train and evaluate everything a study needs that is not cached yet (see the module docstring)."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        _check_recipe(cfg)
    evaluator = _Evaluator(cfg)
    with _one_process_group():
        for seed in cfg.seeds:
            for run in cfg.runs:
                for target in cfg.eval_steps:
                    source, reached = _train_segment(cfg, run, seed, target)
                    if rank == 0:
                        evaluator(run, seed, target, source, reached)
                    barrier()  # the other ranks wait for rank 0's evaluation before the next segment


class _Evaluator:
    """Rank 0's held-out evaluations (only what is not cached); clips and metric load on first use."""

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg, self.out = cfg, Path(cfg.out_dir)
        self.device, self.bf16 = eval_device(cfg)
        self.clips: list[dict[str, Any]] | None = None
        self.metric = None

    def __call__(self, run: str, seed: int, target: int, source: Path | None, reached: int) -> None:
        cfg, out = self.cfg, self.out
        missing = [m for m in cfg.models if MODELS[m].run == run and not _eval_path(out, m, seed, target).is_file()]
        analysis_path = _analysis_path(out, run, seed, target)
        analyse = target == cfg.eval_steps[-1] and not analysis_path.is_file()
        if not missing and not analyse:
            return
        if source is None:
            raise RuntimeError(
                f"run {run} seed {seed} is at step {reached} but step {target} was never evaluated "
                f"and its checkpoint is gone; delete {out / 'runs' / f'seed{seed}' / run} to redo the run"
            )
        if self.clips is None:
            self.clips, self.metric = heldout_clips(cfg), load_metric_lpips(cfg.train.log.lpips_weights)
        for name in missing:
            model = study_model(cfg, name, source)
            scores = evaluate_clips(model, [c["video"] for c in self.clips], self.metric, self.device, self.bf16)
            scores["per_clip"] = [{"clip": c["path"], **s} for c, s in zip(self.clips, scores["per_clip"])]
            write_json(_eval_path(out, name, seed, target), {"step": target, **scores})
            logger.info(
                "study: %s seed %d step %d: PSNR %.2f dB, SSIM %.4f", name, seed, target, scores["psnr"], scores["ssim"]
            )
        if analyse:
            write_json(analysis_path, _analysis(load_weights(source, cfg.eval_weights), self.clips, self.device))


def _adaptive(cfg: StudyConfig, out: Path) -> dict[str, Any] | None:
    """Overlap of the adaptive run's selections with the paper mask, per seed (duplicates of steps
    re-run after an interruption keep the last entry)."""
    if "adaptive" not in cfg.models:
        return None
    per_seed = {}
    for seed in cfg.seeds:
        rows = read_selection_log(out / "runs" / f"seed{seed}" / "adaptive")
        rows = sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])
        summary = selection_summary(rows, RUNS["adaptive"][0] * cfg.channels, against="paper")
        per_seed[str(seed)] = {
            k: summary[k]
            for k in ("steps", "overlap", "late_mean_overlap", "final_overlap", "consensus_overlap", "late_from_step")
        }
    return {"per_seed": per_seed, "late_mean_overlap": [s["late_mean_overlap"] for s in per_seed.values()]}


def _timing(cfg: StudyConfig, out: Path) -> dict[str, Any]:
    """Training seconds per step of each run (wall time: not part of the compared numbers)."""
    rows = {}
    for run in cfg.runs:
        seconds = steps = 0.0
        for seed in cfg.seeds:
            path = out / "runs" / f"seed{seed}" / run / "segments.json"
            for seg in (_read_json(path) if path.is_file() else {}).values():
                seconds, steps = seconds + seg["seconds"], steps + seg["steps"]
        rows[run] = {
            "train_seconds": seconds,
            "steps_timed": int(steps),
            "seconds_per_step": seconds / steps if steps else None,
        }
    return rows


def gather_results(cfg: StudyConfig, metric_key: str = "st-lpips") -> dict[str, Any]:
    """results.json's content from the cached evaluations (see ``lcvae.study.report`` for the files)."""
    out = Path(cfg.out_dir)
    steps = cfg.eval_steps
    models, curves, final = {}, {}, {}
    for name in cfg.models:
        spec = MODELS[name]
        per = {seed: [_read_json(_eval_path(out, name, seed, s)) for s in steps] for seed in cfg.seeds}
        curve: dict[str, Any] = {"steps": steps}
        for key in ("psnr", "ssim", metric_key):
            values = [[per[seed][i][key] for seed in cfg.seeds] for i in range(len(steps))]
            curve[key] = [sum(v) / len(v) for v in values]
            curve[f"{key}_std"] = [seed_std(v) for v in values]
            curve[f"{key}_per_seed"] = {str(seed): [per[seed][i][key] for i in range(len(steps))] for seed in cfg.seeds}
        curves[name] = curve
        final[name] = {key: [per[seed][-1][key] for seed in cfg.seeds] for key in ("psnr", "ssim", metric_key)}
        width = RUNS[spec.run][0] * cfg.channels
        models[name] = {
            "label": spec.label,
            "run": spec.run,
            "latent_channels": width,
            "diffusion_channels": cfg.channels if spec.run != "wfvae-2c" or spec.post_mask else width,
            **{k: curve[k][-1] for key in ("psnr", "ssim", metric_key) for k in (key, f"{key}_std")},
            "steps": steps[-1],
            "seeds": len(cfg.seeds),
        }
    energy = {}
    for run in cfg.runs:
        rows = [_read_json(_analysis_path(out, run, seed, steps[-1])) for seed in cfg.seeds]
        energy[run] = {
            "temporal_low_share": [r["temporal_low_share"] for r in rows],
            "paper_mask_kept_share": [(r["kept_share"] or {}).get("paper") for r in rows],
            "subband_share_seed0": rows[0]["subband_share"],
            "autocorrelation_channel_mean_seed0": rows[0]["autocorrelation_channel_mean"],
        }
    adaptive = _adaptive(cfg, out)
    claims = study_claims(
        final,
        steps[-1],
        energy={r: e["temporal_low_share"] for r, e in energy.items()},
        overlap=adaptive["late_mean_overlap"] if adaptive else None,
        factor=cfg.noise_factor,
        pretrained=cfg.pretrained is not None,
    )
    return {
        "title": f"lcvae study: {cfg.backbone}, C'={cfg.channels}, {steps[-1]} steps, {len(cfg.seeds)} seed(s)",
        "backbone": cfg.backbone,
        "channels": cfg.channels,
        "steps": steps[-1],
        "eval_every": cfg.eval_every,
        "seeds": list(cfg.seeds),
        "metric": metric_key,
        "models": models,
        "curves": curves,
        "energy": energy,
        "adaptive": adaptive,
        "claims": claims,
        "clips": [c["path"] for c in heldout_clips(cfg)],
        "timing": _timing(cfg, out),
        "config": to_dict(cfg),
    }


def run_study(cfg: StudyConfig) -> dict[str, Any]:
    """Train, evaluate, and write results.json, claims.json and report.html (rank 0); returns the results."""
    from lcvae.study.report import write_study_outputs

    train_runs(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    results = gather_results(cfg, load_metric_lpips(cfg.train.log.lpips_weights).name.lower())
    write_study_outputs(cfg, results)
    return results
