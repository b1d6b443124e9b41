"""Typed configuration of the VAE training recipe (``lcvae train-vae``).

One dataclass per concern; a YAML file sets any subset of the fields and ``key=value`` overrides
(``optim.lr=2e-5``) come last. Loading is strict (``lcvae.config``): a misspelt key fails at start-up
with a suggestion. :func:`check` then resolves the model and checks the values against each other
(frame count and crop against the model's rules, the discriminator preset, ...), so a bad config is
rejected before any data, weight or output folder is touched. Defaults are the paper's recipe
(docs/training.md#defaults-and-the-paper, supplement Tab. 5) except where a field says otherwise.

The model is a preset (or a folder with ``config.json``) plus changes:

- ``compression``: ``preset`` keeps the preset's compressor; ``fixed`` a fixed mask (``mask``,
  default the preset's or ``paper``); ``adaptive`` the top-K-by-energy baseline of supplement D.1
  (K from the mask); ``none`` the plain WF-VAE baseline.
- ``latent_channels`` and ``backbone`` (a dict of backbone config fields) change the backbone.
- ``init_from``: a pretrained folder (ours or the official WF-VAE) whose backbone weights start the
  run; a different latent width is adapted (see ``lcvae.train.vae_model.init_backbone_from``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from lcvae.config import load_config
from lcvae.losses import LossConfig
from lcvae.masks import CompressionConfig
from lcvae.models.backbone import backbone_config_from_dict, backbone_config_to_dict
from lcvae.models.discriminator import DISCRIMINATOR_PRESETS
from lcvae.models.io import load_config as load_model_config
from lcvae.models.lcvae import LCVAEConfig
from lcvae.utils import suggest

__all__ = [
    "ModelSection",
    "DataSection",
    "PerceptualSection",
    "DiscSection",
    "OptimSection",
    "TrainSection",
    "LogSection",
    "TrainVAEConfig",
    "resolve_model_config",
    "lr_scale",
    "check",
    "load_train_config",
]

MIN_PERCEPTUAL_SIZE = 24


@dataclass
class ModelSection:
    preset: str = "lcvae-chn8"  # a preset name (`lcvae info --list`) or a folder with config.json
    compression: Literal["preset", "fixed", "adaptive", "none"] = "preset"
    mask: str | None = None  # fixed/adaptive: paper, keep25, keep75, reference
    latent_channels: int | None = None  # VAE latent width C (diffusion sees C/2 with a 50 % mask)
    backbone: dict[str, Any] = field(default_factory=dict)  # backbone config fields to change
    init_from: str | None = None  # pretrained folder (ours or the official WF-VAE) to start from
    init_allow_causality_change: bool = False  # start a causal model from a non-causal one or back (the latent changes)
    gradient_checkpointing: bool = False  # recompute backbone blocks in backward instead of storing activations


@dataclass
class DataSection:
    kind: Literal["folder", "manifest", "ucf101", "sky", "samples"] = "folder"
    root: str | None = None  # folder, manifest file or dataset root; unused for "samples"
    split_file: str | None = None  # ucf101: an official train/test list
    val_root: str | None = None  # held-out videos of the same kind ("samples": the held-out frames)
    val_clips: int = 4  # held-out clips used by validation
    num_frames: int = 32  # per clip: 32 (non-causal) or 33 (causal) in the paper
    frame_stride: int = 1
    short_side: int = 256
    crop: int = 256
    val_crop: int | None = None  # validation centre crop (default: crop)
    random_crop: bool = True
    hflip: bool = False
    reverse: bool = False  # "samples": play each training clip backwards with p = 0.5
    train_short_sides: list[int] = field(default_factory=list)  # "samples": each training clip at a random one of
    # these short sides (scale augmentation; empty: short_side); held-out clips stay at short_side
    extra_train_root: str | None = None  # "samples": a folder of more training videos (all frames; half of the
    # training windows); held-out clips stay the sample clips' tails
    num_workers: int = 2
    samples_per_epoch: int = 64  # "samples": random windows drawn per epoch
    heldout_frames: int | None = None  # "samples": last frames of each clip never trained on (default num_frames)


@dataclass
class PerceptualSection:
    # ST-LPIPS weights ship in the stlpips-pytorch wheel; LPIPS needs torchvision backbone weights.
    net: Literal["st-lpips-vgg", "st-lpips-alex", "lpips-vgg", "lpips-alex"] = "st-lpips-vgg"
    backbone_weights: str | None = None  # lpips-*: torchvision state dict of VGG16 / AlexNet


@dataclass
class DiscSection:
    preset: str = "paper"  # lcvae.models.discriminator.DISCRIMINATOR_PRESETS
    schedule: Literal["alternate", "both"] = "alternate"  # reference: D on odd steps, G on the others
    bn_group: int | None = None  # BatchNorm statistics over groups of this many clips (= per-GPU batch)
    dropout: float | None = None  # default: the preset's (paper: 0.3)
    lr: float | None = None  # default: optim.lr


@dataclass
class OptimSection:
    lr: float = 1e-5  # paper (the reference scripts used 2e-5)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    warmup_steps: int = 0  # linear warm-up of both learning rates
    decay_steps: int = 0  # linear decay of both learning rates to 0 over steps [decay_start, decay_start + decay_steps)
    decay_start: int = 0  # (absolute step numbers: a run trained in segments keeps one schedule); 0 steps: none
    clip_grad_norm: float | None = None
    ema_decay: float = 0.999


@dataclass
class TrainSection:
    out_dir: str = "runs/train-vae"
    batch_size: int = 4  # per process (paper: 4 per GPU x 8 GPUs)
    max_steps: int = 200_000
    time_budget_s: float | None = None  # stop after this much training-loop time (this invocation)
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    sample_posterior: bool = True
    ckpt_every: int = 10_000
    keep_last: int = 3
    resume: str = "auto"  # auto (latest in out_dir), never, or a checkpoint folder
    max_nonfinite: int = 10  # consecutive non-finite steps before the run stops
    dist_timeout_s: float = 600.0  # torchrun: seconds a collective waits for a silent rank before failing
    threads: int | None = None  # torch CPU threads (default: torch's choice)


@dataclass
class LogSection:
    every: int = 10  # progress line and metrics.jsonl row every N steps (means over those N steps)
    tensorboard: bool = True
    val_every: int = 0  # validation (PSNR, SSIM, ST-LPIPS/LPIPS of the EMA model); 0: off
    lpips_weights: str | None = None  # torchvision AlexNet weights: LPIPS instead of ST-LPIPS


@dataclass
class TrainVAEConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossConfig = field(default_factory=LossConfig)
    perceptual: PerceptualSection = field(default_factory=PerceptualSection)
    disc: DiscSection = field(default_factory=DiscSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    log: LogSection = field(default_factory=LogSection)


def lr_scale(o: OptimSection, step: int) -> float:
    """The factor on both learning rates at ``step`` (0-based): linear warm-up, then linear decay to 0."""
    scale = min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else 1.0
    if o.decay_steps:
        scale *= min(1.0, max(0.0, 1.0 - (step - o.decay_start) / o.decay_steps))
    return scale


def resolve_model_config(m: ModelSection) -> LCVAEConfig:
    """The LCVAEConfig a model section means (preset + changes). Statistics of the diffusion latent
    are dropped: training changes the latent, ``lcvae latent-stats`` measures them afterwards."""
    base = load_model_config(m.preset)
    bb = backbone_config_to_dict(base.backbone)
    if m.latent_channels is not None:
        bb["latent_channels"] = m.latent_channels
    for key, value in m.backbone.items():
        if key == "type" or key not in bb:
            known = [k for k in bb if k != "type"]
            raise ValueError(f"model.backbone has unknown field {key!r}{suggest(key, known)}")
        bb[key] = value
    backbone = backbone_config_from_dict(bb)
    c = backbone.latent_channels
    if m.compression == "none":
        if m.mask is not None:
            raise ValueError(
                "model.mask is set but model.compression is 'none'; use compression=fixed or drop the mask"
            )
        compression = None
    elif m.compression == "preset" and base.compression is None:
        if m.mask is not None:
            raise ValueError(
                f"preset {m.preset!r} has no compressor, so model.mask does nothing; set model.compression=fixed"
            )
        compression = None
    else:
        old = base.compression
        adaptive = m.compression == "adaptive" or (m.compression == "preset" and old is not None and old.adaptive)
        if m.mask is None and old is not None and base.backbone.latent_channels == c:
            compression = replace(old, adaptive=adaptive)  # keeps custom kept_indices
        else:
            mask = m.mask or (old.mask if old is not None and old.mask != "custom" else "paper")
            compression = CompressionConfig(mask=mask, adaptive=adaptive)
    return LCVAEConfig(backbone=backbone, compression=compression)


def check(cfg: TrainVAEConfig) -> LCVAEConfig:
    """Check a config as a whole and return its model config; raises ValueError saying what to change."""
    model_cfg = resolve_model_config(cfg.model)
    d, t = cfg.data, cfg.train
    rule = model_cfg.frame_rule
    rule.check_frames(d.num_frames)
    for name, size in (("data.crop", d.crop), ("data.val_crop", d.val_crop)):
        if size is None:
            continue
        try:
            rule.check_size(size, size)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        if size > d.short_side:
            raise ValueError(f"{name} ({size}) exceeds data.short_side ({d.short_side}); use a crop <= short_side")
    if (d.train_short_sides or d.reverse or d.extra_train_root) and d.kind != "samples":
        raise ValueError(
            "data.train_short_sides, data.reverse and data.extra_train_root apply to data.kind=samples only "
            f"(this is {d.kind!r}); remove them or use kind=samples"
        )
    if d.extra_train_root is not None and not Path(d.extra_train_root).is_dir():
        raise ValueError(f"data.extra_train_root={d.extra_train_root!r} is not a folder (give a folder of videos)")
    if any(side < d.crop for side in d.train_short_sides):
        raise ValueError(f"data.train_short_sides {d.train_short_sides} must all be >= data.crop ({d.crop})")
    # (ST-)LPIPS pads its deepest feature maps by 2 pixels: frames need at least 24 pixels a side.
    if cfg.loss.perceptual_weight > 0 and d.crop < MIN_PERCEPTUAL_SIZE:
        raise ValueError(
            f"data.crop={d.crop} is too small for the perceptual loss (needs >= {MIN_PERCEPTUAL_SIZE}); "
            f"use a larger crop or loss.perceptual_weight=0"
        )
    if cfg.log.val_every and (d.val_crop or d.crop) < MIN_PERCEPTUAL_SIZE:
        raise ValueError(
            f"validation clips of {d.val_crop or d.crop} pixels are too small for the perceptual metric "
            f"(needs >= {MIN_PERCEPTUAL_SIZE}); set data.val_crop or log.val_every=0"
        )
    if d.kind != "samples" and d.root is None:
        raise ValueError(f"data.kind={d.kind!r} needs data.root (a folder, manifest or dataset root)")
    if d.kind == "samples" and d.heldout_frames is not None and d.heldout_frames < d.num_frames:
        raise ValueError(
            f"data.heldout_frames ({d.heldout_frames}) must be >= data.num_frames ({d.num_frames}): "
            f"a validation clip is the last num_frames frames"
        )
    if cfg.disc.preset not in DISCRIMINATOR_PRESETS:
        raise ValueError(
            f"unknown disc.preset {cfg.disc.preset!r}{suggest(cfg.disc.preset, list(DISCRIMINATOR_PRESETS))}"
        )
    if cfg.disc.bn_group is not None and (cfg.disc.bn_group < 1 or t.batch_size % cfg.disc.bn_group):
        raise ValueError(f"disc.bn_group ({cfg.disc.bn_group}) must divide train.batch_size ({t.batch_size})")
    if (
        cfg.perceptual.net.startswith("lpips")
        and cfg.perceptual.backbone_weights is None
        and cfg.loss.perceptual_weight > 0
    ):
        raise ValueError(
            f"perceptual.net={cfg.perceptual.net} needs perceptual.backbone_weights (torchvision weights); "
            f"without them use st-lpips-vgg, whose weights ship with stlpips-pytorch"
        )
    positive = {
        "train.batch_size": t.batch_size,
        "train.ckpt_every": t.ckpt_every,
        "train.keep_last": t.keep_last,
        "train.max_nonfinite": t.max_nonfinite,
        "log.every": cfg.log.every,
        "data.val_clips": d.val_clips,
        "data.samples_per_epoch": d.samples_per_epoch,
        "optim.lr": cfg.optim.lr,
        "train.dist_timeout_s": t.dist_timeout_s,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    o = cfg.optim
    if t.max_steps < 0 or cfg.log.val_every < 0 or min(o.warmup_steps, o.decay_steps, o.decay_start) < 0:
        raise ValueError(
            "train.max_steps, log.val_every, optim.warmup_steps, optim.decay_steps and optim.decay_start must be >= 0"
        )
    if not 0.0 <= cfg.optim.ema_decay < 1.0:
        raise ValueError(f"optim.ema_decay must be in [0, 1), got {cfg.optim.ema_decay}")
    if t.resume not in ("auto", "never") and not Path(t.resume).is_dir():
        raise ValueError(f"train.resume must be 'auto', 'never' or a checkpoint folder; {t.resume!r} is none of them")
    if cfg.model.init_from is not None and not Path(cfg.model.init_from).is_dir():
        raise ValueError(f"model.init_from {cfg.model.init_from!r} is not a folder (ours or the official WF-VAE)")
    return model_cfg


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainVAEConfig:
    """YAML file + ``key=value`` overrides -> a checked TrainVAEConfig."""
    cfg = load_config(TrainVAEConfig, path, overrides)
    check(cfg)
    return cfg
