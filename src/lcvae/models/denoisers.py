"""Denoisers as components: what the Latte training loop and the sampler need from a backbone.

A denoiser is an ``nn.Module`` with

    forward(x, t, y) -> output        x (B, C, F, h, w) noisy latents, t (B,) integer timesteps,
                                      y (B,) int labels (class-conditional) or None;
                                      output (B, 2C, ...) = [epsilon, v] with learned sigma, else (B, C, ...)
    forward_with_cfg(x, t, y, s)      classifier-free guidance on epsilon (class-conditional only)
    null_class                        the label meaning "no class" (class-conditional only)

``Latte`` has this interface already. ``WanDenoiser`` puts diffusers' ``WanTransformer3DModel``
(the Wan 2.1 video DiT, supplement E.2) behind it: Wan attends to a sequence of text embeddings
(``encoder_hidden_states``); here a learned embedding per class (plus one for the null class),
or one learned embedding for unconditional models, stands in for the text. Patch size (1, 2, 2)
and the channel counts come from the latent shape, i.e. from the VAE config.

A denoiser is described by a spec ``{"kind": "latte" | "wan", "config": {...}}`` that is stored in
checkpoints; ``build_denoiser(spec)`` rebuilds the module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from lcvae.models.latte import Latte, LatteConfig
from lcvae.utils import strict_from_dict

__all__ = [
    "Denoiser",
    "WanDenoiserConfig",
    "WanDenoiser",
    "DENOISER_KINDS",
    "build_denoiser",
    "denoiser_spec",
    "guided_output",
]

DENOISER_KINDS = ("latte", "wan")


class Denoiser(Protocol):
    """The interface the training loop and the sampler use (see the module docstring)."""

    def __call__(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor: ...

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, guidance_scale: float) -> Tensor: ...


def guided_output(cond: Tensor, uncond: Tensor, channels: int, guidance_scale: float) -> Tensor:
    """eps = eps(null) + s (eps(y) - eps(null)) on the first `channels` channels; the variance
    channels (learned sigma) are the conditional ones, as in Latte and DiT."""
    eps = uncond[:, :channels] + guidance_scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([eps, cond[:, channels:]], dim=1)


@dataclass(frozen=True)
class WanDenoiserConfig:
    """A WanTransformer3DModel denoising latents (B, in_channels, num_frames, *input_size).

    Latent shape fields come from the VAE (`diffusion_shape`); the rest sizes the transformer.
    `head_dim` must be even (Wan's 3D rotary embedding splits it over t, h and w).
    """

    in_channels: int
    num_frames: int
    input_size: tuple[int, int]
    num_layers: int = 2
    num_heads: int = 2
    head_dim: int = 12
    ffn_dim: int = 64
    text_dim: int = 32  # width of the stand-in "text" embedding
    text_tokens: int = 1  # length of the stand-in sequence
    freq_dim: int = 256  # sinusoidal timestep features
    patch_size: int = 2  # spatial; temporal patch is 1, as in Wan 2.1
    num_classes: int = 0  # 0 = unconditional
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        object.__setattr__(self, "input_size", tuple(size))
        for name in (
            "in_channels",
            "num_frames",
            "num_layers",
            "num_heads",
            "head_dim",
            "ffn_dim",
            "text_dim",
            "text_tokens",
            "freq_dim",
            "patch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim must be even and >= 6 (rotary embedding over t, h, w), got {self.head_dim}")
        if self.freq_dim % 2:
            raise ValueError(f"freq_dim must be even (sin and cos halves), got {self.freq_dim}")
        p = self.patch_size
        if size[0] % p or size[1] % p:
            raise ValueError(f"input_size {tuple(size)} must be divisible by patch_size {p}")
        if self.num_classes < 0 or not 0.0 <= self.class_dropout_prob <= 1.0:
            raise ValueError(
                f"need num_classes >= 0 and class_dropout_prob in [0, 1], got {self.num_classes}, "
                f"{self.class_dropout_prob}"
            )

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> WanDenoiserConfig:
        return strict_from_dict(cls, dict(d))


class WanDenoiser(nn.Module):
    """diffusers' WanTransformer3DModel behind the denoiser interface; class labels (or nothing) in
    place of text. Latents (B, C, F, h, w), any real values."""

    def __init__(self, config: WanDenoiserConfig):
        super().__init__()
        try:
            from diffusers import WanTransformer3DModel
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("the Wan denoiser needs diffusers: pip install 'lcvae[diffusers]'") from err
        self.config = config
        cfg = config
        self.transformer = WanTransformer3DModel(
            patch_size=(1, cfg.patch_size, cfg.patch_size),
            num_attention_heads=cfg.num_heads,
            attention_head_dim=cfg.head_dim,
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            text_dim=cfg.text_dim,
            freq_dim=cfg.freq_dim,
            ffn_dim=cfg.ffn_dim,
            num_layers=cfg.num_layers,
            rope_max_seq_len=max(cfg.num_frames, *cfg.input_size, 32),
        )
        # one stand-in "prompt" per class and one for the null class, or a single one when unconditional
        rows = cfg.num_classes + 1 if cfg.num_classes > 0 else 1
        self.context = nn.Embedding(rows, cfg.text_tokens * cfg.text_dim)
        nn.init.normal_(self.context.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def _context(self, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        cfg = self.config
        if cfg.num_classes == 0:
            if y is not None:
                raise ValueError("this Wan denoiser is unconditional (num_classes=0); pass y=None")
            y = torch.zeros(batch, dtype=torch.long, device=device)
        else:
            if y is None or y.shape != (batch,) or y.dtype not in (torch.int32, torch.int64):
                raise ValueError(
                    f"this Wan denoiser is class-conditional: pass integer labels y of shape ({batch},) "
                    f"(the null class is {self.null_class})"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) > cfg.num_classes):
                raise ValueError(f"labels must be in [0, {cfg.num_classes}] ({cfg.num_classes} = null class)")
            if self.training and cfg.class_dropout_prob > 0:
                # classifier-free guidance training, as Latte's label dropout
                drop = torch.rand(y.shape, device=y.device) < cfg.class_dropout_prob
                y = torch.where(drop, torch.full_like(y, cfg.num_classes), y)
        return self.context(y).view(batch, cfg.text_tokens, cfg.text_dim)  # (B, tokens, text_dim)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, F, h, w), t (B,) timesteps in [0, 1000), y (B,) labels or None -> (B, C_out, F, h, w)."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.num_frames, *cfg.input_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"the Wan denoiser expects latents (B, {', '.join(map(str, expected))}) from its config, "
                f"got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be (B,) = ({x.shape[0]},) timesteps, got shape {tuple(t.shape)}")
        context = self._context(y, x.shape[0], x.device).to(x.dtype)
        return self.transformer(x, t, encoder_hidden_states=context, return_dict=False)[0]

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, guidance_scale: float) -> Tensor:
        """Classifier-free guidance on epsilon (one forward on the doubled batch); eval mode."""
        if self.config.num_classes == 0:
            raise ValueError("classifier-free guidance needs a class-conditional denoiser (num_classes > 0)")
        null = torch.full_like(y, self.null_class)
        cond, uncond = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
        return guided_output(cond, uncond, self.config.in_channels, guidance_scale)


def build_denoiser(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a denoiser from its spec {"kind": "latte" | "wan", "config": {...}} (fresh weights)."""
    kind = spec.get("kind")
    if kind == "latte":
        return Latte(LatteConfig.from_dict(spec["config"]))
    if kind == "wan":
        return WanDenoiser(WanDenoiserConfig.from_dict(spec["config"]))
    raise ValueError(f"denoiser kind must be one of {DENOISER_KINDS}, got {kind!r}")


def denoiser_spec(model: nn.Module) -> dict[str, Any]:
    """The spec of a built denoiser (what `build_denoiser` takes)."""
    if isinstance(model, Latte):
        return {"kind": "latte", "config": model.config.to_dict()}
    if isinstance(model, WanDenoiser):
        return {"kind": "wan", "config": model.config.to_dict()}
    raise ValueError(f"no spec for {type(model).__name__}; denoisers are Latte or WanDenoiser")
