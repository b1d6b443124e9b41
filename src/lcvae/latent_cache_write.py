"""Writing a latent cache: encode the dataset shard by shard, each written atomically, then complete the index.

The folder layout, the item order and the resume rules are in ``lcvae.latent_cache``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lcvae.data.datasets import collate
from lcvae.latent_cache_format import DTYPES, INDEX_NAME, CacheRequest, check_same_request, index_header, shard_name
from lcvae.models.lcvae import LCVAE
from lcvae.progress import Progress
from lcvae.utils import atomic_write, write_json

# Under the public module's name, which users and tests configure.
logger = logging.getLogger("lcvae.latent_cache")


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
    header = index_header(vae, request, total, vae_source)
    index_path = root / INDEX_NAME
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if index_path.is_file():
            check_same_request(json.loads(index_path.read_text(encoding="utf-8")), header, root)
        else:
            write_json(index_path, header, indent=1)
        for stale in root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # a write killed before its rename
    if barrier is not None:
        barrier()
    if rank != 0:
        check_same_request(json.loads(index_path.read_text(encoding="utf-8")), header, root)

    encoded, existing, items, skipped = [], [], 0, 0
    fp = json.dumps(header["vae_fingerprint"], sort_keys=True)
    span_of = lambda s: range(s * request.shard_size, min((s + 1) * request.shard_size, total))  # noqa: E731
    mine = range(rank, header["num_shards"], world_size)
    todo = sum(len(span_of(s)) for s in mine if not (root / shard_name(s)).is_file())
    bar = Progress(todo, "cache-latents", "clip", enabled=progress and rank == 0)
    for s in mine:
        path = root / shard_name(s)
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
    missing = [s for s in range(index["num_shards"]) if not (root / shard_name(s)).is_file()]
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
        meta = _shard_metadata(root / shard_name(s))
        sk = json.loads(meta["skipped"])
        shards.append({"file": shard_name(s), "items": len(json.loads(meta["paths"])), "skipped": len(sk)})
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
