"""Configuration of the Latte training recipe (``lcvae train-latte``), loaded strictly from YAML.

Latent shape (channels, frames, size) is not configured here: it comes from the VAE config and
the cache's clip size. Defaults are the paper's (docs/generation.md#training-recipe): AdamW lr 1e-4 without weight decay,
EMA 0.9999, 1000-step linear schedule, learned sigma, batch 40.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class WanOptions:
    """Size of the diffusers WanTransformer3DModel when `model.kind` is "wan"."""

    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 12
    ffn_dim: int = 64
    text_dim: int = 32
    text_tokens: int = 1
    freq_dim: int = 256


@dataclass
class DenoiserOptions:
    kind: Literal["latte", "wan"] = "latte"
    preset: str = "L"  # Latte size: S, B, L, XL, tiny, tiny-deep
    num_classes: int | None = None  # None: from the cache (0 = unconditional); labels index classes
    class_dropout_prob: float = 0.1  # label dropout for classifier-free guidance
    learn_sigma: bool = True
    gradient_checkpointing: bool = False  # Latte only
    wan: WanOptions = field(default_factory=WanOptions)


@dataclass
class DiffusionOptions:
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass
class OptimOptions:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None  # max global grad norm; None = no clipping (as DiT and Latte)


@dataclass
class SampleOptions:
    """Sample videos written during training (rank 0, EMA weights)."""

    every: int = 10000  # steps; 0 = never
    num: int = 4
    batch_size: int = 4
    steps: int = 250
    method: Literal["ddpm", "ddim"] = "ddpm"
    guidance: float = 1.0  # classifier-free guidance scale (class-conditional models)
    seed: int = 0


@dataclass
class TrainLatteConfig:
    run_dir: str  # checkpoints/, samples/, tensorboard/ go here; an existing run resumes
    cache: str  # latent cache folder (lcvae cache-latents)
    vae: str  # the VAE folder the cache was made with (checked by fingerprint)
    model: DenoiserOptions = field(default_factory=DenoiserOptions)
    diffusion: DiffusionOptions = field(default_factory=DiffusionOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    sample: SampleOptions = field(default_factory=SampleOptions)
    batch_size: int = 40  # global; divided over ranks
    max_steps: int = 100_000
    ema_decay: float = 0.9999
    seed: int = 0
    num_workers: int = 2
    log_every: int = 100
    ckpt_every: int = 10_000
    keep_last: int | None = 3
    tensorboard: bool = True
    device: str = "auto"  # auto = this rank's CUDA device if there is one, else cpu
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast for the denoiser forward
    max_nonfinite: int = (
        10  # non-finite steps in a row (each skipped) before the run stops, saving the state before them
    )
    dist_timeout_s: float = 600.0  # torchrun: seconds a collective waits for a silent rank before failing
