"""Real-world-shaped video files: a variable-frame-rate AVI whose header counts empty "dropped
frame" slots, variable-rate MP4/MKV, a stream with a damaged middle. Each file is made here with
plain PyAV (tests/_video_fixtures.py), so what it really holds is known."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from _video_fixtures import (
    damage_middle,
    decode_all,
    duration_of,
    header_frames,
    pattern_frames,
    textured_frames,
    write_av,
    write_dropped_slot_avi,
)
from lcvae.cli import main
from lcvae.data.datasets import SkipCounter, Skipped, VideoFolder, collate
from lcvae.data.video import NotEnoughFramesError, VideoError, VideoReader, probe, read_video

H, W = 32, 48
# 68 stored frames in 277 slots of 10 ms: gaps of 1, 2 and 13 slots, as a stuttering camera gives.
GAPS = [1, 1, 2, 13]
SLOTS = [sum(GAPS[k % 4] for k in range(i)) for i in range(68)]


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    d = tmp_path_factory.mktemp("vfr")
    frames = pattern_frames(len(SLOTS), H, W)
    pts_ms = [10 * s for s in SLOTS]
    return {
        "frames": frames,
        "avi": write_dropped_slot_avi(d / "vfr.avi", frames, SLOTS),
        "mp4": write_av(d / "vfr.mp4", frames, pts_ms=pts_ms),
        "mkv": write_av(d / "vfr.mkv", frames, pts_ms=pts_ms),
    }


def test_fixture_header_lies_about_the_frame_count(vfr):
    assert len(SLOTS) == 68 and SLOTS[-1] == 276
    assert header_frames(vfr["avi"]) == 277  # slots, not frames
    assert len(decode_all(vfr["avi"])) == 68


@pytest.mark.parametrize("fmt", ["avi", "mp4", "mkv"])
def test_variable_rate_file_reads_every_stored_frame_once(vfr, fmt, caplog):
    with caplog.at_level(logging.WARNING, logger="lcvae.data.video"):
        info = probe(vfr[fmt])
        probe(vfr[fmt])
    assert info.frames == 68 and info.variable_rate
    # Average rate of what is stored: 68 frames over the 2.77 s the slots span (the last frame's
    # own length is 10 ms in the AVI, the stream's nominal 40 ms in MP4/MKV).
    assert info.duration == pytest.approx(2.77, abs=0.031)
    assert info.fps == pytest.approx(68 / 2.77, rel=0.012)
    if fmt == "avi":  # the header's 277 is corrected, and said once per file
        assert [r.getMessage().count("header says 277 frames but 68 are stored") for r in caplog.records] == [1]
    np.testing.assert_array_equal(read_video(vfr[fmt]).numpy(), vfr["frames"])
    np.testing.assert_array_equal(read_video(vfr[fmt], start=5, num_frames=9, stride=7).numpy(), vfr["frames"][5:68:7])


def test_variable_rate_target_fps_picks_the_frame_on_screen(vfr):
    # 5 fps from frame 4 (slot 17 = 0.17 s): wanted times 0.17 + 0.2 k; the frame on screen is the
    # last one whose slot time is <= the wanted time.
    times = [s / 100 for s in SLOTS]
    want = [max(j for j, t in enumerate(times) if t <= 0.17 + 0.2 * k + 1e-9) for k in range(10)]
    assert len(set(want)) < len(want) or max(np.diff(want)) > 4  # not a plain stride
    got = read_video(vfr["mp4"], start=4, num_frames=10, fps=5)
    np.testing.assert_array_equal(got.numpy(), vfr["frames"][want])
    with VideoReader(vfr["mp4"]) as r:
        assert r.max_start(10, fps=5) == max(j for j, t in enumerate(times) if t <= 2.76 - 1.8 + 1e-9)


def test_variable_rate_too_short_names_the_real_count(vfr):
    with pytest.raises(NotEnoughFramesError, match=r"has 68 frames.*which needs 70 frames"):
        read_video(vfr["avi"], start=60, num_frames=10)


def test_damaged_middle_fails_naming_the_frame_and_reads_before_it(tmp_path):
    good = write_av(
        tmp_path / "good.mp4",
        textured_frames(40, 48, 64),
        codec="libx264",
        pix_fmt="yuv420p",
        options={"crf": "20"},
        gop=10,
    )
    bad = damage_middle(good, tmp_path / "bad.mp4", length=3000)
    with pytest.raises(VideoError, match=r"bad\.mp4 is corrupt: decoding failed after .*frame \d+"):
        read_video(bad)
    # Frames before the damage decode as they did before it.
    np.testing.assert_array_equal(read_video(bad, num_frames=8).numpy(), decode_all(good)[:8])


def test_dataset_uses_the_vfr_file_and_skips_and_counts_the_damaged_one(vfr, tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    (root / "vfr.avi").write_bytes(vfr["avi"].read_bytes())
    good = write_av(
        tmp_path / "g.mp4",
        textured_frames(40, 32, 48),
        codec="libx264",
        pix_fmt="yuv420p",
        options={"crf": "20"},
        gop=10,
    )
    damage_middle(good, root / "bad.mp4", length=3000)
    ds = VideoFolder(root, num_frames=33)
    batch = collate([ds[i] for i in range(len(ds))])
    counter = SkipCounter()
    assert counter.update(batch) == 1
    assert batch["video"].shape == (1, 3, 33, H, W)
    assert counter.count == 1 and "bad.mp4" in str(batch["skipped"][0])


def test_reconstruct_keeps_the_duration_of_a_variable_rate_file(vfr, tmp_path, capsys):
    out = tmp_path / "rec.mp4"
    torch.manual_seed(0)
    assert main(["reconstruct", str(vfr["avi"]), str(out), "--model", "lcvae-tiny", "--random-weights", "--trim"]) == 0
    info = probe(out)
    assert info.frames == 65  # 1 + 32k <= 68 stored frames (the header's 277 would give 257)
    # 65 of 68 frames at the source's average rate: 65/68 of its 2.77 s, not 65 frames at 100 fps.
    assert duration_of(out) == pytest.approx(2.77 * 65 / 68, abs=0.05)


def test_random_clip_starts_stay_within_the_stored_frames(vfr, tmp_path):
    # A header-trusting reader drew starts up to 277 - 33 and then failed on most of them.
    root = tmp_path / "one"
    root.mkdir()
    (root / "vfr.avi").write_bytes(vfr["avi"].read_bytes())
    ds = VideoFolder(root, num_frames=33, random_start=True)
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        assert not isinstance(item, Skipped), item
        starts.add(item["start"])
        np.testing.assert_array_equal(
            ((item["video"].permute(1, 2, 3, 0) + 1) * 127.5).round().byte().numpy(),
            vfr["frames"][item["start"] : item["start"] + 33],
        )
    assert max(starts) <= 68 - 33 and len(starts) > 3


@pytest.mark.parametrize("fmt", ["mp4", "mkv"])
def test_variable_rate_seek_equals_decoding_from_the_start_and_decodes_less(vfr, fmt):
    with VideoReader(vfr[fmt]) as r:
        seeked = r.read(50, 10)
        after_seek = r.frames_decoded
        plain = r.read(50, 10, seek=False)
        sequential = r.frames_decoded - after_seek
    assert torch.equal(seeked, plain)
    np.testing.assert_array_equal(seeked.numpy(), vfr["frames"][50:60])
    assert sequential >= 60 and after_seek <= 20  # keyframes every 8 frames (write_av's gop)
