"""More training video beside the sample clips (``data.extra_train_root``): half of the training windows
come from the extra videos, every one a window of one of them; unreadable or too-short videos are
skipped and counted; a folder with nothing usable is refused (bad settings: test_sample_augment.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from lcvae.data import write_video
from lcvae.data.transforms import center_crop
from lcvae.train.vae_data import SampleClips, load_sample_clip, load_whole_clip

CLIP = ("carphone_pristine",)
COMMON = dict(num_frames=9, short_side=32, crop=32, train=True, heldout_frames=33, names=CLIP, random_crop=False)


def _moving_gradient(frames: int, height: int, width: int) -> np.ndarray:
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    red, green = (x * 4 + t * 3) % 256, (y * 5 + t * 2) % 256
    return np.stack([red, green, (red + green) // 2], axis=-1).astype(np.uint8)


@pytest.fixture
def extra_folder(tmp_path):
    write_video(tmp_path / "good.mp4", _moving_gradient(20, 48, 64), fps=10, crf=0)
    write_video(tmp_path / "short.mp4", _moving_gradient(5, 48, 64), fps=10, crf=0)
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 100)
    return tmp_path


def _window_of(x: torch.Tensor, video: torch.Tensor, limit: int) -> bool:
    return any(torch.equal(x, center_crop(video[:, s : s + 9], 32)) for s in range(min(limit, video.shape[1]) - 8))


def test_odd_items_are_windows_of_the_extra_videos_even_ones_of_the_sample_clips(extra_folder, caplog):
    with caplog.at_level(logging.WARNING):
        data = SampleClips(extra_root=extra_folder, length=12, **COMMON)
    assert "skipped 2 of 3 videos" in caplog.text and "corrupt.mp4" in caplog.text and "short.mp4" in caplog.text
    extra = load_whole_clip(str(extra_folder / "good.mp4"), 32)
    sample = load_sample_clip(CLIP[0], 32)
    for i in range(len(data)):
        x = data[(0, i)]["video"]
        if i % 2:
            assert _window_of(x, extra, extra.shape[1]), f"item {i} is no window of the extra video"
            assert data[(0, i)]["path"] == "good.mp4"
        else:
            assert _window_of(x, sample, sample.shape[1] - 33), f"item {i} is no training window of the sample clip"


def test_a_folder_without_a_usable_video_is_refused(tmp_path):
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="no usable training video"):
        SampleClips(extra_root=tmp_path, length=4, **COMMON)


def test_heldout_clips_ignore_the_extra_videos(extra_folder):
    held = {**COMMON, "train": False}
    assert torch.equal(SampleClips(extra_root=extra_folder, **held)[0]["video"], SampleClips(**held)[0]["video"])
