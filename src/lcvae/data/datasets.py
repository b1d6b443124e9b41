"""Video clip datasets: folders, manifests, UCF-101, Sky Timelapse; skip-and-count collate; sampler.

Every item is ``{"video": (3, T, H, W) float in [-1, 1], "path": str, "label": int (-1 if none),
"caption": str, "index": int, "start": int}`` (``start`` = first source frame). Clips are decoded
with PyAV, seeking to the clip (``video.py``).

Determinism. Each item's randomness (start frame, crop offset, flip) comes from a generator
seeded by ``(seed, epoch, index)`` through ``numpy.random.SeedSequence``, never from global RNG,
so an item is the same whichever worker or rank loads it. ``EpochSampler`` yields
``(epoch, index)`` pairs, so the epoch reaches persistent DataLoader workers with the index
(``set_epoch`` on a dataset copy inside a worker would not).

Bad input. A missing, corrupt, unreadable or too-short video gives a ``Skipped`` record in
place of the item, never another video. The dataset logs each bad path once per process (every
DataLoader worker is a process). ``collate`` drops ``Skipped`` records and returns them in the
batch under ``"skipped"``, so they reach the main process through the normal batch queue;
``SkipCounter`` adds them up there. Batches can therefore be smaller than ``batch_size``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..utils import closest
from .transforms import ClipTransform
from .video import VIDEO_EXTENSIONS, NotEnoughFramesError, VideoError, VideoReader, read_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


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


def _files(root: Path, extensions: Sequence[str]) -> list[Path]:
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


class VideoFolder(ClipDataset):
    """Every video file under ``root`` (recursive, sorted), label -1, empty caption."""

    def __init__(self, root: str | Path, *, extensions: Sequence[str] = VIDEO_EXTENSIONS, **clip: Any) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"video folder {root} does not exist or is not a directory")
        entries = [VideoEntry(str(p)) for p in _files(root, extensions)]
        super().__init__(entries, source=root, searched=", ".join(extensions), **clip)


_MANIFEST_COLUMNS = ("path", "caption", "label")


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    with open(path, newline="", encoding="utf-8") as f:
        if suffix == ".csv":
            rows = list(csv.DictReader(f))
            columns = list(rows[0]) if rows else []
        elif suffix in (".jsonl", ".json", ".ndjson"):
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{n} is not a JSON object per line ({e})") from e
            columns = sorted({k for r in rows for k in r})
        else:
            raise ValueError(f"manifest {path} must end in .csv (with a header) or .jsonl (one JSON object per line)")
    for col in columns:
        close = closest(col, _MANIFEST_COLUMNS, cutoff=0.75)
        if col not in _MANIFEST_COLUMNS and close and close not in columns:
            raise ValueError(
                f"manifest {path} has column {col!r}; did you mean {close!r}? "
                f"known columns: {', '.join(_MANIFEST_COLUMNS)}"
            )
    if rows and "path" not in columns:
        raise ValueError(f"manifest {path} needs a 'path' column; found {columns}")
    return rows


class VideoManifest(ClipDataset):
    """Videos listed in a CSV (header row) or JSON-lines file with ``path`` and optional
    ``caption`` and ``label`` (int) fields. Relative paths are relative to the manifest's folder.
    Other columns are ignored."""

    def __init__(self, path: str | Path, **clip: Any) -> None:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"manifest {path} does not exist")
        entries = []
        for n, row in enumerate(_manifest_rows(path), 1):
            label = row.get("label")
            try:
                label = -1 if label in (None, "") else int(label)
            except (TypeError, ValueError):
                raise ValueError(f"{path} row {n}: label must be an integer, got {label!r}") from None
            video = Path(str(row["path"]))
            video = video if video.is_absolute() else path.parent / video
            entries.append(VideoEntry(str(video), label, str(row.get("caption") or "")))
        super().__init__(entries, source=path, searched="rows with a 'path' column", **clip)


class UCF101(ClipDataset):
    """UCF-101: ``root/<Class>/<video>.avi``; labels index the sorted class folder names.

    ``split_file`` (an official ``trainlistNN.txt`` / ``testlistNN.txt``) restricts the videos to
    the listed ``Class/v_….avi`` entries, matched case-insensitively; a listed video missing under
    ``root`` is an error. Labels in a train list (1-based) are checked against the sorted folders
    and a mismatch is logged (it happens when ``root`` holds only some classes).
    """

    def __init__(
        self,
        root: str | Path,
        split_file: str | Path | None = None,
        *,
        extensions: Sequence[str] = (".avi",),
        **clip: Any,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"UCF-101 root {root} does not exist or is not a directory")
        files = {
            p.relative_to(root).as_posix(): p for p in _files(root, extensions) if len(p.relative_to(root).parts) >= 2
        }
        self.classes = sorted({rel.split("/")[0] for rel in files})
        label_of = {c: i for i, c in enumerate(self.classes)}
        if split_file is None:
            entries = [VideoEntry(str(p), label_of[rel.split("/")[0]]) for rel, p in files.items()]
        else:
            entries = self._from_split(Path(split_file), root, files, label_of)
        super().__init__(entries, source=root, searched=f"<class>/*{'|'.join(extensions)}", **clip)

    @staticmethod
    def _from_split(split: Path, root: Path, files: dict[str, Path], label_of: dict[str, int]) -> list[VideoEntry]:
        by_lower = {rel.lower(): (rel, p) for rel, p in files.items()}
        entries, missing, mismatched = [], [], 0
        for line in split.read_text().splitlines():
            parts = line.strip().split()
            if not parts:
                continue
            hit = by_lower.get(parts[0].replace("\\", "/").lower())
            if hit is None:
                missing.append(parts[0])
                continue
            rel, p = hit
            label = label_of[rel.split("/")[0]]
            if len(parts) > 1 and int(parts[1]) - 1 != label:
                mismatched += 1
            entries.append(VideoEntry(str(p), label))
        if missing:
            raise ValueError(
                f"{split} lists {len(missing)} videos not found under {root} "
                f"(e.g. {missing[0]}); point root at the folder holding the class folders"
            )
        if mismatched:
            logger.warning(
                "%s: %d labels differ from the sorted class folders under %s; using the folder order",
                split,
                mismatched,
                root,
            )
        return entries


class SkyTimelapse(ClipDataset):
    """Each folder that directly holds frame images (jpg/png) is one video, frames sorted by
    file name. Images have no frame rate, so ``target_fps`` is refused; use ``frame_stride``.
    Decoding uses Pillow when installed, PyAV otherwise (``image_backend``)."""

    def __init__(
        self,
        root: str | Path,
        *,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        image_backend: str = "auto",
        **clip: Any,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"Sky Timelapse root {root} does not exist or is not a directory")
        if clip.get("target_fps") is not None:
            raise ValueError("frame folders have no frame rate; use frame_stride instead of target_fps")
        self.image_backend = image_backend
        self._frames: dict[str, list[Path]] = {}
        for p in _files(root, extensions):
            self._frames.setdefault(str(p.parent), []).append(p)
        entries = [VideoEntry(folder) for folder in sorted(self._frames)]
        super().__init__(entries, source=root, searched=f"folders of {', '.join(extensions)}", **clip)

    def _load(self, entry: VideoEntry, g: torch.Generator) -> tuple[int, torch.Tensor]:
        paths = self._frames[entry.path]
        span = (self.num_frames - 1) * self.frame_stride
        start = self._start(len(paths) - 1 - span, g)
        if start + span >= len(paths):
            raise NotEnoughFramesError(
                f"{entry.path} has {len(paths)} frames; asked for {self.num_frames} frames with "
                f"stride {self.frame_stride} from frame {start}, which needs {start + span + 1}"
            )
        chosen = paths[start : start + span + 1 : self.frame_stride]
        images = [read_image(p, self.image_backend) for p in chosen]
        if len({im.shape for im in images}) > 1:
            raise VideoError(f"{entry.path} mixes frame sizes {sorted({im.shape for im in images})}")
        return start, torch.from_numpy(np.stack(images))


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
