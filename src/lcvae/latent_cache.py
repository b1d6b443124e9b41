"""Latent cache: a video dataset encoded once into the normalised, packed latents diffusion sees.

The reference re-encoded every training batch with the VAE; here each clip is encoded once
(docs/generation.md#datasets-and-the-latent-cache).
A cache is a folder::

    index.json              what was encoded and by which VAE (written first, completed last)
    shard_00000.safetensors latent (n, C', F, h, w) fp32 or bf16, label/index/epoch/start (n,) int64;
    shard_00001.safetensors metadata: source paths, skipped videos, per-channel sums, the VAE fingerprint
    ...

Item i of the cache request is dataset item ``i % len(dataset)`` drawn in epoch ``i // len(dataset)``
(``passes`` epochs, so random clip starts and crops differ between passes); shard s holds items
[s·shard_size, (s+1)·shard_size) minus the videos that could not be read, which are recorded in the
shard and counted in the index. Under ``torchrun`` rank r encodes the shards s with s % world == r.

Resuming. Each shard is written to a temporary name and renamed into place, so a shard file is
complete or absent; a rerun with the same request skips shards that exist. ``index.json`` is
written before any shard with ``complete: false`` and rewritten with the shard list at the end; a
rerun whose request (VAE, dataset, clip geometry, dtype, ...) differs from the recorded one is refused
rather than mixed into the same folder.

Provenance. The VAE fingerprint is a SHA-256 of its config (including the latent normalisation) and
of every weight tensor; a cache opened with a VAE whose fingerprint differs is an error, because its
latents would decode to something else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor
from torch.utils.data import Dataset

from lcvae.latent_cache_format import (  # noqa: F401 (importable from here, as before)
    CACHE_FORMAT,
    CACHE_VERSION,
    DTYPES,
    INDEX_NAME,
    CacheRequest,
    config_hash,
    vae_fingerprint,
    weights_hash,
)
from lcvae.latent_cache_write import CacheReport, cache_latents, finalize_cache
from lcvae.models.lcvae import LCVAE, LCVAEConfig

__all__ = [
    "CACHE_FORMAT",
    "INDEX_NAME",
    "DTYPES",
    "vae_fingerprint",
    "config_hash",
    "CacheRequest",
    "CacheReport",
    "cache_latents",
    "finalize_cache",
    "LatentCache",
]

# ---------------------------------------------------------------------------------------- reading


class LatentCache(Dataset):
    """Items {"latent": (C', F, h, w) float32, "label": int (-1 if none), "path": str, "index": int}.

    ``vae`` (or its ``fingerprint``) is checked against the cache: a mismatch is a ValueError. Shards
    are memory-mapped and read one row at a time, so a large cache costs no RAM per process.
    """

    def __init__(self, root: str | Path, vae: LCVAE | None = None):
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(
                f"{self.root} is not a latent cache (no {INDEX_NAME}); make one with lcvae cache-latents"
            )
        self.index = json.loads(index_path.read_text(encoding="utf-8"))
        if self.index.get("format") != CACHE_FORMAT:
            raise ValueError(f"{index_path} is not a {CACHE_FORMAT} index (format {self.index.get('format')!r})")
        if not self.index.get("complete"):
            raise ValueError(
                f"latent cache {self.root} is incomplete (interrupted?); rerun the same lcvae cache-latents "
                f"command to finish it"
            )
        if vae is not None:
            self.check_vae(vae)
        self.files = [self.root / s["file"] for s in self.index["shards"]]
        counts = torch.tensor([s["items"] for s in self.index["shards"]], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._handles: dict[int, Any] = {}
        self._paths: dict[int, list[str]] = {}
        empty = torch.zeros(0, dtype=torch.long)
        self.labels = torch.cat([empty] + [self._tensor(s, "label") for s in range(len(self.files))])
        self.video_index = torch.cat([empty] + [self._tensor(s, "index") for s in range(len(self.files))])

    def _recorded_config_is(self, config: LCVAEConfig) -> bool:
        """Whether the recorded config, read by today's code (fields added since take their defaults),
        is ``config``."""
        try:
            return LCVAEConfig.from_dict(self.index["vae_config"]).to_dict() == config.to_dict()
        except (ValueError, TypeError, KeyError):
            return False

    def check_vae(self, vae: LCVAE) -> None:
        """ValueError unless `vae` is the VAE this cache was encoded with (config and weights)."""
        given, cached = vae_fingerprint(vae), self.index["vae_fingerprint"]
        if given == cached:
            return
        if given["weights"] == cached["weights"] and self._recorded_config_is(vae.config):
            return  # a cache written before a config field was added: today's reading of its config matches
        problems = []
        if given["config"] != cached["config"]:
            new, old = _flatten(vae.config.to_dict()), _flatten(self.index["vae_config"])
            keys = sorted(k for k in set(new) | set(old) if new.get(k, "<absent>") != old.get(k, "<absent>"))
            shown = ", ".join(
                f"{k}: cache {old.get(k, '<absent>')!r} vs given {new.get(k, '<absent>')!r}" for k in keys[:4]
            )
            problems.append(f"config differs ({shown or 'same values, different encoding'})")
        if given["weights"] != cached["weights"]:
            problems.append(f"weights differ (cache {cached['weights'][:12]}, given {given['weights'][:12]})")
        raise ValueError(
            f"latent cache {self.root} was encoded by another VAE: {'; '.join(problems)}; use the VAE it was made "
            f"with ({self.index.get('vae_source') or 'source not recorded'}) or re-encode with lcvae cache-latents"
        )

    @property
    def fingerprint(self) -> dict[str, str]:
        return dict(self.index["vae_fingerprint"])

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(C', F, h, w) of every latent."""
        return tuple(self.index["latent_shape"])

    @property
    def video_shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the clips that were encoded."""
        r = self.index["request"]
        return (r["frames"], r["height"], r["width"])

    @property
    def num_classes(self) -> int:
        return int(self.index["request"]["num_classes"])

    @property
    def fps(self) -> float:
        return float(self.index["request"]["fps"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        # DataLoader workers reopen the memory maps themselves
        return {**self.__dict__, "_handles": {}}

    def _handle(self, s: int):
        if s not in self._handles:
            self._handles[s] = safe_open(str(self.files[s]), framework="pt")
        return self._handles[s]

    def _tensor(self, s: int, name: str) -> Tensor:
        return self._handle(s).get_tensor(name)

    def _locate(self, i: int) -> tuple[int, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"cache index {i} out of range [0, {len(self)})")
        s = int(torch.searchsorted(self.offsets, torch.tensor(i), right=True)) - 1
        return s, i - int(self.offsets[s])

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, row = self._locate(int(i))
        latent = self._handle(s).get_slice("latent")[row : row + 1][0]
        if s not in self._paths:
            self._paths[s] = json.loads(self._handle(s).metadata()["paths"])
        return {
            "latent": latent.float(),
            "label": int(self.labels[i]),
            "path": self._paths[s][row],
            "index": int(self.video_index[i]),
        }


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
