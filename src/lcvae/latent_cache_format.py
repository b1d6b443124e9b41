"""What a latent cache is: its format constants, the VAE fingerprint, the request and the index header.

The folder layout and the resume rules are in ``lcvae.latent_cache``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lcvae.models.lcvae import LCVAE

CACHE_FORMAT = "lcvae-latent-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ------------------------------------------------------------------------------ VAE fingerprint


def config_hash(vae: LCVAE) -> str:
    """SHA-256 of the VAE config as canonical JSON (architecture, mask and latent normalisation)."""
    text = json.dumps(vae.config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_hash(vae: LCVAE) -> str:
    """SHA-256 over every state-dict tensor: name, dtype, shape and raw bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def vae_fingerprint(vae: LCVAE) -> dict[str, str]:
    """{"config": config_hash, "weights": weights_hash}: equal fingerprints decode latents identically."""
    return {"config": config_hash(vae), "weights": weights_hash(vae)}


# ------------------------------------------------------------------------------------ the request


@dataclass
class CacheRequest:
    """Everything that determines the cached values; a resumed run must ask for the same."""

    frames: int  # video frames per clip
    height: int
    width: int
    dtype: str = "fp32"  # fp32 | bf16
    passes: int = 1  # epochs of the dataset (different random clips per pass)
    shard_size: int = 256  # items per shard
    sample_posterior: bool = False  # mode of the posterior unless set
    seed: int = 0  # dataset item seed; also seeds posterior samples per shard
    fps: float = 8.0  # frame rate of the clips, for writing decoded samples
    num_classes: int = 0  # 0 = unlabelled
    dataset: dict[str, Any] = field(default_factory=dict)  # kind, path and clip options, for provenance

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.passes < 1 or self.shard_size < 1:
            raise ValueError(f"passes and shard_size must be >= 1, got {self.passes}, {self.shard_size}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def shard_name(s: int) -> str:
    return f"shard_{s:05d}.safetensors"


def index_header(vae: LCVAE, request: CacheRequest, total: int, vae_source: str) -> dict[str, Any]:
    shape = vae.config.diffusion_shape(request.frames, request.height, request.width)
    num_shards = (total + request.shard_size - 1) // request.shard_size
    header = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "complete": False,
        "vae_fingerprint": vae_fingerprint(vae),
        "vae_source": vae_source,
        "vae_config": vae.config.to_dict(),
        "latent_shape": list(shape),
        "request": request.to_dict(),
        "total_items": total,
        "num_shards": num_shards,
    }
    return json.loads(json.dumps(header))  # as it reads back from disk (tuples become lists)


def check_same_request(old: dict, new: dict, root: Path) -> None:
    keys = ("format", "version", "vae_fingerprint", "latent_shape", "request", "total_items", "num_shards")
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        detail = "; ".join(f"{k}: cache has {old.get(k)!r}, asked {new.get(k)!r}" for k in diff[:3])
        raise ValueError(
            f"{root} holds a cache made with a different request ({detail}); resume only with the same VAE "
            f"and options, or write to a new --out folder"
        )
