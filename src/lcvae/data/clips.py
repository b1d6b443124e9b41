"""The clip dataset every video source builds on: entries, skip records, per-item seeding, clip loading.

Items, determinism and bad input follow the rules in ``lcvae.data.datasets``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import ClipTransform
from .video import VideoError, VideoReader

# Under the public module's name, which users and tests configure.
logger = logging.getLogger("lcvae.data.datasets")


@dataclass(frozen=True)
class VideoEntry:
    """One video: a file, or (Sky Timelapse) a folder of frame images."""

    path: str
    label: int = -1
    caption: str = ""


@dataclass(frozen=True)
class Skipped:
    """Stands in for an item whose video could not give a clip."""

    index: int
    path: str
    reason: str


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, index)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))


def find_files(root: Path, extensions: Sequence[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    # Dot-files are skipped: they include write_video's temporary files.
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file())


class ClipDataset(Dataset):
    """Fixed-length clips from a list of ``VideoEntry``; the classes below only build the list.

    Clip options: ``num_frames``; ``frame_stride`` or ``target_fps`` (resample by timestamp);
    ``random_start`` (training) or the fixed ``start_frame`` (evaluation); ``short_side`` resize,
    ``crop`` size with ``random_crop`` or centre, ``hflip`` (random, p = 0.5), ``multiple``
    (fit to a VAE's spatial multiple), ``resize_mode`` ("bicubic" or "area"); ``seed``;
    ``threads`` per decoder (1 suits DataLoader workers). Without ``crop`` (or ``multiple``)
    every video must have the same size for ``collate`` to stack a batch.
    """

    def __init__(
        self,
        entries: list[VideoEntry],
        *,
        source: str | Path,
        searched: str,
        num_frames: int = 17,
        frame_stride: int = 1,
        target_fps: float | None = None,
        random_start: bool = False,
        start_frame: int = 0,
        short_side: int | None = None,
        crop: int | None = None,
        random_crop: bool = False,
        hflip: bool = False,
        multiple: int | None = None,
        resize_mode: str = "bicubic",
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        if not entries:
            raise ValueError(
                f"no videos found in {source} (searched for {searched}); check the path and the file extensions"
            )
        if num_frames < 1 or frame_stride < 1 or start_frame < 0 or seed < 0:
            raise ValueError(
                f"need num_frames >= 1, frame_stride >= 1, start_frame >= 0, seed >= 0; "
                f"got {num_frames}, {frame_stride}, {start_frame}, {seed}"
            )
        if target_fps is not None and frame_stride != 1:
            raise ValueError(f"give frame_stride or target_fps, not both (got {frame_stride}, {target_fps})")
        self.entries = entries
        self.num_frames, self.frame_stride, self.target_fps = num_frames, frame_stride, target_fps
        self.random_start, self.start_frame = random_start, start_frame
        self.transform = ClipTransform(
            short_side=short_side, crop=crop, random_crop=random_crop, hflip=hflip, multiple=multiple, mode=resize_mode
        )
        self.seed, self.threads, self.epoch = seed, threads, 0
        self.skipped: dict[str, str] = {}  # path -> reason, in this process

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (``EpochSampler`` passes it with the index)."""
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | Skipped:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        entry = self.entries[index]
        g = item_generator(self.seed, epoch, index)
        try:
            start, frames = self._load(entry, g)
            try:
                video = self.transform.apply_to_frames(frames, g)
            except ValueError as e:  # options were checked up front: this video's size is at fault
                raise VideoError(f"frames do not fit the transform: {e}") from e
        except (VideoError, OSError) as e:
            reason = str(e)
            if entry.path not in self.skipped:
                logger.warning("skipping %s: %s", entry.path, reason)
            self.skipped[entry.path] = reason
            return Skipped(index=index, path=entry.path, reason=reason)
        return {
            "video": video,
            "path": entry.path,
            "label": entry.label,
            "caption": entry.caption,
            "index": index,
            "start": start,
        }

    def _start(self, max_start: int, g: torch.Generator) -> int:
        if not self.random_start:
            return self.start_frame
        return int(torch.randint(max_start + 1, (1,), generator=g)) if max_start > 0 else 0

    def _load(self, entry: VideoEntry, g: torch.Generator) -> tuple[int, torch.Tensor]:
        """(start frame, uint8 (T, H, W, 3) frames) of the clip for this item."""
        with VideoReader(entry.path, threads=self.threads) as r:
            # A too-short video makes read() raise NotEnoughFramesError with the frame counts.
            start = self._start(r.max_start(self.num_frames, self.frame_stride, self.target_fps), g)
            return start, r.read(start, self.num_frames, self.frame_stride, self.target_fps)
