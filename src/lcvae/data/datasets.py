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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import closest
from .batching import EpochSampler, SkipCounter, collate, make_loader
from .clips import ClipDataset, Skipped, VideoEntry, find_files, item_generator
from .video import VIDEO_EXTENSIONS, NotEnoughFramesError, VideoError, read_image

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "UCF101",
    "ClipDataset",
    "EpochSampler",
    "SkipCounter",
    "Skipped",
    "SkyTimelapse",
    "VideoEntry",
    "VideoFolder",
    "VideoManifest",
    "collate",
    "item_generator",
    "make_loader",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class VideoFolder(ClipDataset):
    """Every video file under ``root`` (recursive, sorted), label -1, empty caption."""

    def __init__(self, root: str | Path, *, extensions: Sequence[str] = VIDEO_EXTENSIONS, **clip: Any) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"video folder {root} does not exist or is not a directory")
        entries = [VideoEntry(str(p)) for p in find_files(root, extensions)]
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
            p.relative_to(root).as_posix(): p
            for p in find_files(root, extensions)
            if len(p.relative_to(root).parts) >= 2
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
        for p in find_files(root, extensions):
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
