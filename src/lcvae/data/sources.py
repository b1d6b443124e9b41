"""Datasets by kind: the one place that turns (kind, path) into a ``ClipDataset``.

Every command that reads videos (``eval``, ``analyze``, ``subsets``, ``ablate``, ``cache-latents``,
``train-vae``) names its data the same way:

* "folder":   every video file under the path (:class:`VideoFolder`)
* "manifest": a .csv / .jsonl with ``path`` [, ``label``, ``caption``] (:class:`VideoManifest`)
* "ucf101":   class folders, labels from the sorted names, optional official split list (:class:`UCF101`)
* "sky":      Sky Timelapse folders of frame images (:class:`SkyTimelapse`)
* "file":     one video file
* "auto":     "file" for a video file, "manifest" for any other file, else "folder"
  (UCF-101 and Sky Timelapse must be named).

Clip options (``num_frames``, ``short_side``, ``crop``, ``random_start``, ...) pass through to
:class:`ClipDataset` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lcvae.data.datasets import UCF101, ClipDataset, SkyTimelapse, VideoEntry, VideoFolder, VideoManifest
from lcvae.data.video import VIDEO_EXTENSIONS, VideoError, probe
from lcvae.utils import suggest

__all__ = ["DATASET_KINDS", "resolve_kind", "open_clip_dataset", "dataset_num_classes", "clip_fps"]

DATASET_KINDS = ("auto", "folder", "manifest", "ucf101", "sky", "file")


def resolve_kind(path: str | Path, kind: str = "auto") -> str:
    """``kind`` itself, or for "auto" the kind the path looks like (see the module docstring)."""
    if kind not in DATASET_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}{suggest(kind, DATASET_KINDS, listing='choose one of')}")
    if kind != "auto":
        return kind
    path = Path(path)
    if path.is_file():
        return "file" if path.suffix.lower() in VIDEO_EXTENSIONS else "manifest"
    return "folder"


def open_clip_dataset(kind: str, path: str | Path, *, split_file: str | Path | None = None, **clip: Any) -> ClipDataset:
    """The dataset of ``kind`` (one of ``DATASET_KINDS``) at ``path``; ``split_file`` is UCF-101's
    train/test list and only applies to "ucf101"; ``clip`` holds ClipDataset options."""
    kind = resolve_kind(path, kind)
    if split_file is not None and kind != "ucf101":
        raise ValueError(f"a split file applies to UCF-101 only (dataset kind ucf101), not to {kind!r} data at {path}")
    if kind == "folder":
        return VideoFolder(path, **clip)
    if kind == "manifest":
        return VideoManifest(path, **clip)
    if kind == "ucf101":
        return UCF101(path, split_file, **clip)
    if kind == "sky":
        return SkyTimelapse(path, **clip)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"dataset kind 'file' needs a video file; {path} is not a file")
    return ClipDataset([VideoEntry(str(path))], source=path, searched="the given video file", **clip)


def dataset_num_classes(dataset: ClipDataset) -> int:
    """Number of classes: UCF-101's class folders, else 1 + the largest label (0 when unlabelled)."""
    if hasattr(dataset, "classes"):
        return len(dataset.classes)
    labels = [e.label for e in dataset.entries]
    return max(labels) + 1 if labels and max(labels) >= 0 else 0


def clip_fps(dataset: ClipDataset, default: float = 25.0) -> float:
    """Frame rate of the clips a dataset gives: its target fps, else the first video's rate over the
    frame stride (frame folders have no rate: ``default`` over the stride)."""
    if dataset.target_fps:
        return float(dataset.target_fps)
    try:
        native = probe(dataset.entries[0].path).fps
    except (VideoError, OSError):
        native = default
    return float(native) / dataset.frame_stride
