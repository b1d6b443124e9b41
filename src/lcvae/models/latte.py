"""Latte: a video diffusion transformer with alternating spatial and temporal attention blocks.

This is Latte "variant 1" (Ma et al., 2024): a DiT whose blocks alternate between
- spatial blocks, attention over the patches of one frame (every frame independently), and
- temporal blocks, attention over the frames at one patch position (every position independently).
Each frame is cut into p x p patches by a Conv2d; patches get a fixed 2D sin-cos position embedding,
and a fixed 1D sin-cos frame embedding is added once, before the first temporal block.

Conditioning is adaLN-Zero (DiT): the timestep embedding plus the class embedding (class-conditional
models) regresses a shift, scale and gate for every block; gates and the final layer start at zero,
so every block starts as the identity and the model outputs zeros at initialisation. Class-conditional
models reserve label index `num_classes` as the null class for classifier-free guidance; in training
mode labels are replaced by it with probability `class_dropout_prob`.

With learned sigma the output has 2C channels: the predicted noise epsilon, then the variance
interpolation value v (see `lcvae.diffusion`).

Input layout is the project's latent layout (B, C, F, H, W); `depth` counts both kinds of block, so
depth 28 is 14 spatial/temporal pairs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lcvae.utils import strict_from_dict, suggest

__all__ = ["LatteConfig", "LATTE_PRESETS", "Latte", "sincos_1d", "sincos_2d"]


@dataclass(frozen=True)
class LatteConfig:
    """Latte size and conditioning. `in_channels`, `num_frames` and `input_size` describe the latent
    the model denoises and come from the VAE config (use `from_preset`), never typed by hand."""

    in_channels: int  # latent channels C
    num_frames: int  # latent frames F
    input_size: tuple[int, int]  # latent (H, W)
    hidden_size: int
    depth: int  # spatial + temporal blocks, even
    num_heads: int
    patch_size: int = 2
    mlp_ratio: float = 4.0
    num_classes: int = 0  # 0 = unconditional
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        size = self.input_size
        if isinstance(size, int):
            size = (size, size)
        if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            raise ValueError(f"input_size must be the latent (H, W) as two ints, got {self.input_size!r}")
        object.__setattr__(self, "input_size", tuple(size))
        for name in ("in_channels", "num_frames", "hidden_size", "depth", "num_heads", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)}")
        p = self.patch_size
        if size[0] % p or size[1] % p:
            fit = (size[0] // p * p, size[1] // p * p)
            raise ValueError(
                f"input_size {tuple(size)} must be divisible by patch_size {p}; crop the latent to {fit} "
                f"or use a patch size that divides it"
            )
        if self.depth % 2:
            raise ValueError(
                f"depth counts alternating spatial and temporal blocks, so it must be even; "
                f"got {self.depth}, use {self.depth - 1} or {self.depth + 1}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.hidden_size % 4:
            # half the width encodes the column, half the row, each as sin and cos pairs
            raise ValueError(
                f"hidden_size must be a multiple of 4 for the 2D sin-cos embedding, got {self.hidden_size}; "
                f"use {self.hidden_size // 4 * 4 or 4}"
            )
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {self.num_classes}")
        if not 0.0 <= self.class_dropout_prob <= 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1], got {self.class_dropout_prob}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per frame along (H, W)."""
        return (self.input_size[0] // self.patch_size, self.input_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LatteConfig:
        """Strict: an unknown or misspelt key is a ValueError naming the closest valid key."""
        return strict_from_dict(cls, dict(d))

    @classmethod
    def from_preset(
        cls, name: str, *, in_channels: int, num_frames: int, input_size: tuple[int, int] | int, **overrides
    ) -> LatteConfig:
        """A preset's size (`LATTE_PRESETS`) for a latent of the given shape; `overrides` are config keys."""
        if name not in LATTE_PRESETS:
            raise ValueError(f"unknown Latte preset {name!r}{suggest(name, list(LATTE_PRESETS))}")
        d = dict(LATTE_PRESETS[name], in_channels=in_channels, num_frames=num_frames, input_size=input_size)
        d.update(overrides)
        return cls.from_dict(d)


# S/B/L/XL as in Latte and DiT (patch 2); the tiny ones are for tests and CPU smoke runs.
LATTE_PRESETS: dict[str, dict] = {
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
    "tiny": dict(depth=2, hidden_size=32, num_heads=2),
    "tiny-deep": dict(depth=4, hidden_size=64, num_heads=4),
}


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """Fixed sin-cos embedding: (N,) positions -> (N, dim) = [sin(pos * w_i), cos(pos * w_i)],
    w_i = 10000^(-i / (dim/2)), i < dim/2. Computed in float64."""
    omega = 10000.0 ** -(torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """(grid_h * grid_w, dim) embedding of a row-major patch grid (patch h * grid_w + w): column
    index w in the first dim/2 channels, row index h in the last dim/2.

    Column first is DiT's and Latte's order (their grid is built as meshgrid(w, h)), so position
    embeddings, and with them pretrained DiT / Latte weights, line up with theirs."""
    rows = torch.arange(grid_h).repeat_interleave(grid_w)  # (P,) h of patch h * grid_w + w
    cols = torch.arange(grid_w).repeat(grid_h)  # (P,) w
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Diffusion timestep (B,) -> (B, D): sinusoidal features (256) then a SiLU MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        half = frequency_size // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t.float()[:, None] * self.freqs.float()[None, :]  # (B, 128), float32 for large t
        features = torch.cat([args.cos(), args.sin()], dim=1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class label (B,) in [0, num_classes] -> (B, D); label `num_classes` is the null class."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, y: Tensor) -> Tensor:
        if self.training and self.dropout_prob > 0:
            # classifier-free guidance training: the model also learns the unconditional prediction
            drop = torch.rand(y.shape, device=y.device) < self.dropout_prob
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.table(y)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the middle axis of (N, L, D) (the VAE's single-head spatial
    attention is ``lcvae.models.layers.Attention``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).view(n, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, head_dim)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class LatteBlock(nn.Module):
    """adaLN-Zero transformer block on (B, S, L, D), attending along L independently for each of
    the S rows: spatial blocks get (B, F, P, D), temporal blocks (B, P, F, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden_size)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        b, s, length, dim = x.shape
        # one modulation per sample, broadcast over all rows and tokens (Latte repeats c per row)
        mod = self.adaLN_modulation(c)[:, None, None, :]  # (B, 1, 1, 6D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mod.chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift_a, scale_a).reshape(b * s, length, dim)
        x = x + gate_a * self.attn(h).view(b, s, length, dim)
        return x + gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a linear map from tokens (..., D) to patches (..., p*p*C_out)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None, None, :].chunk(2, dim=-1)  # (B, 1, 1, D) each
        return self.linear(modulate(self.norm(x), shift, scale))


class Latte(nn.Module):
    """Latte denoiser on latents (B, C, F, H, W) (any real values; normalised latents in practice)."""

    def __init__(self, config: LatteConfig):
        super().__init__()
        self.config = config
        cfg = config
        d = cfg.hidden_size
        self.patch_embed = nn.Conv2d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(cfg.num_classes, d, cfg.class_dropout_prob) if cfg.num_classes > 0 else None
        pairs = cfg.depth // 2
        self.spatial_blocks = nn.ModuleList(LatteBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(pairs))
        self.temporal_blocks = nn.ModuleList(LatteBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(pairs))
        self.final_layer = FinalLayer(d, cfg.patch_size, cfg.out_channels)
        self.register_buffer("pos_embed", sincos_2d(d, *cfg.grid_size).float(), persistent=False)  # (P, D)
        frames = torch.arange(cfg.num_frames)
        self.register_buffer("temp_embed", sincos_1d(d, frames).float(), persistent=False)  # (F, D)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT initialisation: Xavier linears, zero adaLN (identity blocks) and a zero final layer."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # like the linear map on a flattened patch
        nn.init.zeros_(self.patch_embed.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in [*self.spatial_blocks, *self.temporal_blocks]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_class(self) -> int:
        """The label meaning "no class" (classifier-free guidance); only for class-conditional models."""
        return self.config.num_classes

    def _check_inputs(self, x: Tensor, t: Tensor, y: Tensor | None) -> None:
        cfg = self.config
        expected = (cfg.in_channels, cfg.num_frames, *cfg.input_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Latte expects latents (B, C, F, H, W) = (B, {', '.join(map(str, expected))}) from its config, "
                f"got {tuple(x.shape)}; build the config from the VAE's latent shape"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be (B,) = ({x.shape[0]},) timesteps, got shape {tuple(t.shape)}")
        if self.y_embedder is None:
            if y is not None:
                raise ValueError("this Latte is unconditional (num_classes=0); pass y=None")
            return
        if y is None:
            raise ValueError(
                f"this Latte is class-conditional; pass labels y (B,), or the null class {self.null_class} "
                f"(torch.full((B,), model.null_class)) for unconditional predictions"
            )
        if y.shape != (x.shape[0],) or y.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > cfg.num_classes):
            raise ValueError(
                f"labels must be in [0, {cfg.num_classes}] ({cfg.num_classes} = null class), "
                f"got range [{int(y.min())}, {int(y.max())}]"
            )

    def _run(self, block: LatteBlock, x: Tensor, c: Tensor) -> Tensor:
        if self.config.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, c, use_reentrant=False)
        return block(x, c)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, F, H, W) noisy latents, t (B,) timesteps in [0, 1000), y (B,) labels or None.

        Returns (B, 2C, F, H, W) (epsilon, then v in roughly [-1, 1]) with learned sigma, else (B, C, F, H, W).
        """
        self._check_inputs(x, t, y)
        cfg = self.config
        b, _, f, h, w = x.shape
        p, (gh, gw) = cfg.patch_size, cfg.grid_size
        tokens = x.transpose(1, 2).reshape(b * f, cfg.in_channels, h, w)  # (B*F, C, H, W)
        tokens = self.patch_embed(tokens).flatten(2).transpose(1, 2)  # (B*F, P, D), row-major patches
        tokens = tokens.reshape(b, f, cfg.num_patches, -1) + self.pos_embed  # (B, F, P, D)

        c = self.t_embedder(t)  # (B, D)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y)

        for i, (spatial, temporal) in enumerate(zip(self.spatial_blocks, self.temporal_blocks)):
            tokens = self._run(spatial, tokens, c)  # attention over patches P
            tokens = tokens.transpose(1, 2)  # (B, P, F, D)
            if i == 0:
                tokens = tokens + self.temp_embed
            tokens = self._run(temporal, tokens, c)  # attention over frames F
            tokens = tokens.transpose(1, 2)  # (B, F, P, D)

        out = self.final_layer(tokens, c)  # (B, F, P, p*p*C_out), per patch ordered (p_h, p_w, channel)
        out = out.reshape(b, f, gh, gw, p, p, cfg.out_channels)
        out = out.permute(0, 6, 1, 2, 4, 3, 5)  # (B, C_out, F, gh, p, gw, p)
        return out.reshape(b, cfg.out_channels, f, h, w)

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, guidance_scale: float) -> Tensor:
        """Classifier-free guidance: eps = eps(null) + s * (eps(y) - eps(null)) on all C epsilon
        channels; the variance channels (learned sigma) are the conditional ones. Same layout as
        `forward`; runs one forward on the doubled batch. Use in eval mode (no label dropout)."""
        if self.y_embedder is None:
            raise ValueError("classifier-free guidance needs a class-conditional Latte (num_classes > 0)")
        if y is None:
            raise ValueError("forward_with_cfg needs class labels y (B,)")
        null = torch.full_like(y, self.null_class)
        out = self.forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        c = self.config.in_channels
        eps = uncond[:, :c] + guidance_scale * (cond[:, :c] - uncond[:, :c])
        return torch.cat([eps, cond[:, c:]], dim=1)
