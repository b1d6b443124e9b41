"""Augmenting the sample-clip training data (``data.train_short_sides``, ``data.reverse``, ``data.hflip``):
every training item is exactly a window of one clip at one of the given scales, flipped and reversed or
not, taken from the frames before the held-out tail; the held-out clips do not change; and without the
options the item stream is the one it was before they existed."""

from __future__ import annotations

import pytest
import torch

from lcvae.data.transforms import center_crop
from lcvae.train.vae_config import DataSection, TrainVAEConfig, check
from lcvae.train.vae_data import SampleClips, load_sample_clip

CLIP = ("carphone_pristine",)  # 120 frames, the smallest sample clip
COMMON = dict(num_frames=9, crop=32, train=True, heldout_frames=33, names=CLIP, random_crop=False, length=24)


def _variants(window: torch.Tensor) -> list[tuple[bool, bool, torch.Tensor]]:
    return [(f, r, window.flip(-1) if f else window) for f in (False, True) for r in (False, True)]


def test_every_item_is_a_window_of_one_scale_flipped_or_reversed_or_not():
    sides = (32, 48)
    data = SampleClips(short_side=32, train_short_sides=sides, hflip=True, reverse=True, **COMMON)
    videos = {side: load_sample_clip(CLIP[0], side) for side in sides}
    usable = videos[32].shape[1] - 33
    seen_sides, seen_flips, seen_reversals = set(), set(), set()
    for i in range(len(data)):
        item = data[(0, i)]
        x, start = item["video"], item["start"]
        assert start + 9 <= usable  # never a held-out frame
        matches = []
        for side, video in videos.items():
            window = center_crop(video[:, start : start + 9], 32)
            for flipped, reversed_, v in _variants(window):
                if torch.equal(x, v.flip(1) if reversed_ else v):
                    matches.append((side, flipped, reversed_))
        assert matches, f"item {i} is no window of the clip at sides {sides}"
        side, flipped, reversed_ = matches[0]
        seen_sides.add(side), seen_flips.add(flipped), seen_reversals.add(reversed_)
    assert seen_sides == set(sides) and seen_flips == {False, True} and seen_reversals == {False, True}


def test_without_the_options_the_items_are_unchanged():
    plain = SampleClips(short_side=32, **{**COMMON, "random_crop": True})
    one_side = SampleClips(short_side=32, train_short_sides=(32,), **{**COMMON, "random_crop": True})
    for i in range(6):
        a, b = plain[(1, i)], one_side[(1, i)]
        assert a["start"] == b["start"] and torch.equal(a["video"], b["video"])


def test_heldout_clips_ignore_the_training_augmentation():
    held = dict(num_frames=9, short_side=32, crop=32, train=False, heldout_frames=33, names=CLIP)
    plain = SampleClips(**held)[0]["video"]
    augmented = SampleClips(train_short_sides=(32, 48), reverse=True, hflip=True, **held)[0]["video"]
    assert torch.equal(plain, augmented)
    assert torch.equal(plain, center_crop(load_sample_clip(CLIP[0], 32)[:, -9:], 32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "folder", "root": ".", "reverse": True}, "kind=samples only"),
        ({"kind": "samples", "train_short_sides": [16, 64]}, "must all be >= data.crop"),
        ({"kind": "folder", "root": ".", "extra_train_root": "."}, "kind=samples only"),
        ({"kind": "samples", "extra_train_root": "/no/such/folder"}, "is not a folder"),
    ],
)
def test_bad_augmentation_settings_are_refused(data, message):
    cfg = TrainVAEConfig()
    cfg.model.preset = "wfvae-tiny"
    cfg.data = DataSection(num_frames=33, short_side=64, crop=32, **data)
    with pytest.raises(ValueError, match=message):
        check(cfg)
