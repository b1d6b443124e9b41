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

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lcvae.data.datasets import collate
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.progress import Progress
from lcvae.utils import atomic_write, write_json

logger = logging.getLogger(__name__)

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

CACHE_FORMAT = "lcvae-latent-cache"
CACHE_VERSION = 1
INDEX_NAME = "index.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_SHARD = re.compile(r"^shard_(\d{5})\.safetensors$")


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


@dataclass
class CacheReport:
    root: Path
    encoded_shards: list[int]  # shards this process wrote now
    skipped_shards: list[int]  # shards found complete and left alone
    items: int  # latents this process wrote now
    skipped_videos: int  # unreadable videos met by this process now
    complete: bool  # index.json lists every shard (rank 0 only)
    cached_items: int | None = None  # latents in the whole cache once complete (rank 0), else None
    skipped: list[dict[str, str]] = field(
        default_factory=list
    )  # the complete cache's skipped videos (path, reason; first 100)


def _shard_name(s: int) -> str:
    return f"shard_{s:05d}.safetensors"


def _header(vae: LCVAE, request: CacheRequest, total: int, vae_source: str) -> dict[str, Any]:
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


def _check_same_request(old: dict, new: dict, root: Path) -> None:
    keys = ("format", "version", "vae_fingerprint", "latent_shape", "request", "total_items", "num_shards")
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        detail = "; ".join(f"{k}: cache has {old.get(k)!r}, asked {new.get(k)!r}" for k in diff[:3])
        raise ValueError(
            f"{root} holds a cache made with a different request ({detail}); resume only with the same VAE "
            f"and options, or write to a new --out folder"
        )


# ---------------------------------------------------------------------------------------- writing


class _WithEpoch(Dataset):
    """Adds the epoch to each good item, so a shard can record which pass a latent came from."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        item = self.dataset[key]
        return {**item, "epoch": key[0]} if isinstance(item, dict) else item


def _collate_with_epoch(items: list) -> dict[str, Any]:
    batch = collate(items)
    batch["epoch"] = torch.tensor([it["epoch"] for it in items if isinstance(it, dict)], dtype=torch.long)
    return batch


def _encode_shard(
    vae: LCVAE,
    dataset: Dataset,
    items: range,
    request: CacheRequest,
    batch_size: int,
    device: torch.device,
    num_workers: int,
    chunk: int | None,
    bar: Progress,
) -> tuple[dict, dict]:
    """Encode one shard's items -> (tensors, metadata) for safetensors; ``bar`` counts the items."""
    n = len(dataset)
    keys = [(i // n, i % n) for i in items]  # (epoch, index): ClipDataset's per-item RNG key
    loader = DataLoader(
        _WithEpoch(dataset),
        batch_size=batch_size,
        sampler=keys,
        collate_fn=_collate_with_epoch,
        num_workers=num_workers,
    )
    # posterior samples depend on the shard only, so a resumed cache equals an uninterrupted one
    g = torch.Generator(device=device).manual_seed(request.seed * 1_000_003 + items.start)
    columns: dict[str, list[Tensor]] = {"latent": [], "label": [], "index": [], "epoch": [], "start": []}
    paths, skipped = [], []
    expected = (3, request.frames, request.height, request.width)
    for batch in loader:
        skipped += [{"path": s.path, "reason": s.reason} for s in batch["skipped"]]
        bar.update(len(batch["skipped"]))
        if not batch["path"]:
            continue
        video = batch["video"]
        if tuple(video.shape[1:]) != expected:
            raise ValueError(
                f"dataset clips are {tuple(video.shape[1:])}, the cache asks for {expected}; set the clip "
                f"frames and crop size (e.g. --frames {request.frames} --size {request.height})"
            )
        with torch.no_grad():
            z = vae.diffusion_latent(video.to(device), sample=request.sample_posterior, chunk=chunk, generator=g)
        columns["latent"].append(z.float().cpu())
        for name in ("label", "index", "epoch", "start"):
            columns[name].append(batch[name])
        paths += batch["path"]
        bar.update(len(batch["path"]))
    shape = vae.config.diffusion_shape(request.frames, request.height, request.width)
    z = torch.cat(columns["latent"]) if paths else torch.zeros(0, *shape)
    flat = z.transpose(0, 1).reshape(shape[0], -1).double()  # (C', every value of the channel)
    tensors = {"latent": z.to(DTYPES[request.dtype]).contiguous()}
    for name in ("label", "index", "epoch", "start"):
        tensors[name] = torch.cat(columns[name]) if paths else torch.zeros(0, dtype=torch.long)
    meta = {
        "paths": paths,
        "skipped": skipped,
        "channel_sum": flat.sum(1).tolist(),
        "channel_sumsq": flat.square().sum(1).tolist(),
        "channel_count": flat.shape[1],
    }
    return tensors, meta


def cache_latents(
    vae: LCVAE,
    dataset: Dataset,
    root: str | Path,
    request: CacheRequest,
    *,
    vae_source: str = "",
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    chunk: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    barrier=None,
    progress: bool = True,
) -> CacheReport:
    """Encode ``dataset`` (items {"video": (3, T, H, W) in [-1, 1], ...} or ``Skipped``, as ``ClipDataset``
    gives) with ``vae`` into shards under ``root``; see the module docstring for layout and resume rules.

    ``rank``/``world_size`` split the shards; ``barrier`` (a callable, e.g.
    ``lcvae.train.distributed.barrier``) is called after the header is written and before the index
    is completed, so pass it under torchrun. ``progress``: rank 0 shows items done, rate and time
    left (:mod:`lcvae.progress`). Returns what this process did.
    """
    root = Path(root)
    device = torch.device(device)
    vae = vae.to(device).eval()
    total = request.passes * len(dataset)
    header = _header(vae, request, total, vae_source)
    index_path = root / INDEX_NAME
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if index_path.is_file():
            _check_same_request(json.loads(index_path.read_text(encoding="utf-8")), header, root)
        else:
            write_json(index_path, header, indent=1)
        for stale in root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # a write killed before its rename
    if barrier is not None:
        barrier()
    if rank != 0:
        _check_same_request(json.loads(index_path.read_text(encoding="utf-8")), header, root)

    encoded, existing, items, skipped = [], [], 0, 0
    fp = json.dumps(header["vae_fingerprint"], sort_keys=True)
    span_of = lambda s: range(s * request.shard_size, min((s + 1) * request.shard_size, total))  # noqa: E731
    mine = range(rank, header["num_shards"], world_size)
    todo = sum(len(span_of(s)) for s in mine if not (root / _shard_name(s)).is_file())
    bar = Progress(todo, "cache-latents", "clip", enabled=progress and rank == 0)
    for s in mine:
        path = root / _shard_name(s)
        if path.is_file():
            existing.append(s)
            continue
        span = span_of(s)
        tensors, meta = _encode_shard(vae, dataset, span, request, batch_size, device, num_workers, chunk, bar)
        metadata = {
            "vae_fingerprint": fp,
            "first_item": str(span.start),
            "num_items": str(len(span)),
            **{k: json.dumps(v) for k, v in meta.items()},
        }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))  # noqa: B023 (called at once)
        encoded.append(s)
        items += tensors["latent"].shape[0]
        skipped += len(meta["skipped"])
        logger.info(
            "shard %d/%d: %d latents, %d videos skipped",
            s + 1,
            header["num_shards"],
            tensors["latent"].shape[0],
            len(meta["skipped"]),
        )
    bar.close()
    if existing:
        logger.info("resumed: %d shards were already complete and were not re-encoded", len(existing))
    if barrier is not None:
        barrier()
    complete = finalize_cache(root) if rank == 0 else False
    report = CacheReport(root, encoded, existing, items, skipped, complete)
    if complete:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        report.cached_items, report.skipped = index["num_items"], index["skipped"]
    return report


def _shard_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def finalize_cache(root: str | Path) -> bool:
    """Rewrite index.json with every shard's counts and the latent statistics once all shards exist.

    Returns True when the cache is complete; logs the missing shards otherwise.
    """
    root = Path(root)
    index = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
    missing = [s for s in range(index["num_shards"]) if not (root / _shard_name(s)).is_file()]
    if missing:
        logger.warning(
            "cache %s is incomplete: %d of %d shards missing (first %d); rerun to finish",
            root,
            len(missing),
            index["num_shards"],
            missing[0],
        )
        return False
    shards, skipped, sums, sumsq, count = [], [], None, None, 0
    for s in range(index["num_shards"]):
        meta = _shard_metadata(root / _shard_name(s))
        sk = json.loads(meta["skipped"])
        shards.append({"file": _shard_name(s), "items": len(json.loads(meta["paths"])), "skipped": len(sk)})
        skipped += sk
        ch_sum, ch_sumsq = json.loads(meta["channel_sum"]), json.loads(meta["channel_sumsq"])
        sums = ch_sum if sums is None else [a + b for a, b in zip(sums, ch_sum)]
        sumsq = ch_sumsq if sumsq is None else [a + b for a, b in zip(sumsq, ch_sumsq)]
        count += int(json.loads(meta["channel_count"]))
    mean = [v / max(count, 1) for v in sums]
    std = [max(q / max(count, 1) - m * m, 0.0) ** 0.5 for q, m in zip(sumsq, mean)]
    index.update(
        complete=True,
        shards=shards,
        num_items=sum(s["items"] for s in shards),
        skipped_videos=len(skipped),
        skipped=skipped[:100],
        channel_mean=mean,
        channel_std=std,
    )
    write_json(root / INDEX_NAME, index, indent=1)
    if skipped:
        logger.warning(
            "%d videos could not be read and are not in the cache (first: %s: %s)",
            len(skipped),
            skipped[0]["path"],
            skipped[0]["reason"],
        )
    logger.info(
        "cache %s complete: %d latents %s, per-channel std %s",
        root,
        index["num_items"],
        index["latent_shape"],
        [round(v, 3) for v in std],
    )
    return True


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
