"""Batches of clip items: ``collate`` that sets skipped items aside, ``SkipCounter``, ``EpochSampler``, ``make_loader``.

Why the sampler yields ``(epoch, index)`` and how skipped items travel: ``lcvae.data.datasets``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .clips import ClipDataset, Skipped


def collate(items: list[dict[str, Any] | Skipped]) -> dict[str, Any]:
    """Stack good items; drop ``Skipped`` ones and return them under ``"skipped"``.

    ``"video"`` is (B, 3, T, H, W) in [-1, 1] (an empty tensor when every item was skipped,
    so check ``len(batch["path"])``); ``"label"``, ``"index"``, ``"start"`` are int64 (B,).
    """
    good = [it for it in items if not isinstance(it, Skipped)]
    return {
        "video": torch.stack([it["video"] for it in good]) if good else torch.empty(0),
        "path": [it["path"] for it in good],
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "caption": [it["caption"] for it in good],
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "start": torch.tensor([it["start"] for it in good], dtype=torch.long),
        "skipped": [it for it in items if isinstance(it, Skipped)],
    }


class SkipCounter:
    """Main-process tally of skipped items, fed with each batch from ``collate``."""

    def __init__(self) -> None:
        self.count = 0
        self.reasons: dict[str, str] = {}

    def update(self, batch: dict[str, Any]) -> int:
        """Count the batch's skipped items; returns the number of good items in it."""
        for s in batch["skipped"]:
            self.count += 1
            self.reasons[s.path] = s.reason
        return len(batch["path"])

    def summary(self) -> str:
        if not self.count:
            return "no clips skipped"
        worst = "; ".join(f"{p}: {r}" for p, r in list(self.reasons.items())[:3])
        return f"skipped {self.count} clips from {len(self.reasons)} files ({worst})"


class EpochSampler(Sampler):
    """``DistributedSampler`` (shuffled by seed + epoch, one shard per rank) that yields
    ``(epoch, index)``. Rank and world size default to ``torch.distributed`` when it is
    initialised (under ``torchrun``), else a single process. The sampler pads the last round
    with repeated indices so every rank gets as many items (``drop_last=False``); use the
    ``"index"`` field to count each video once in evaluation."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if world_size is None or rank is None:
            ready = dist.is_available() and dist.is_initialized()
            world_size = world_size if world_size is not None else dist.get_world_size() if ready else 1
            rank = rank if rank is not None else dist.get_rank() if ready else 0
        self.inner = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, i) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def make_loader(
    dataset: ClipDataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    **loader_kwargs: Any,
) -> DataLoader:
    """DataLoader with ``EpochSampler`` and ``collate``; call ``loader.sampler.set_epoch(e)``."""
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        **loader_kwargs,
    )
