"""H.264 constant-QP degradation: quality falls with QP, the QP reaches x264, the file and
in-memory paths give the same pixels, sizes and frame counts survive."""

import av
import numpy as np
import pytest
import torch

from _video_fixtures import psnr, textured_frames, write_av
from lcvae.data.degrade import degrade_frames, degrade_video
from lcvae.data.video import probe, read_video


@pytest.fixture(scope="module")
def textured():
    return textured_frames(10, 48, 64)


def test_psnr_falls_monotonically_with_qp(textured):
    scores = [psnr(textured, degrade_frames(textured, qp).numpy()) for qp in (10, 25, 40)]
    assert scores[0] > scores[1] + 1.0 > scores[2] + 2.0
    assert scores[0] > 35  # QP 10 is close to transparent on this content


def test_in_memory_and_file_paths_agree_and_record_qp(tmp_path, textured):
    clean = write_av(tmp_path / "clean.mp4", textured)  # lossless source
    out = degrade_video(clean, tmp_path / "out" / "deg.mp4", qp=30)
    data = out.read_bytes()
    assert b"rc=cqp" in data and b" qp=30 " in data  # x264's embedded option string
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.pix_fmt) == ("h264", "yuv420p")
    info = probe(out)
    assert (info.frames, info.width, info.height, info.fps) == (10, 64, 48, 25.0)
    assert torch.equal(read_video(out), degrade_frames(textured, qp=30))


def test_odd_sizes_come_back_at_their_size(textured):
    odd = np.ascontiguousarray(textured[:6, :27, :33])
    out = degrade_frames(odd, qp=20)
    assert out.shape == (6, 27, 33, 3) and out.dtype == torch.uint8
    assert psnr(odd, out.numpy()) > 30


def test_bad_qp_is_rejected(textured):
    with pytest.raises(ValueError, match=r"qp must be in \[0, 51\]"):
        degrade_frames(textured, qp=60)


def test_degrade_of_a_variable_rate_file_keeps_frames_and_duration(tmp_path, textured, capsys):
    from _video_fixtures import duration_of, write_dropped_slot_avi
    from lcvae.cli import main

    # 10 frames in 40 slots of 10 ms: the AVI header claims 40 frames, the clip lasts 0.40 s.
    src = write_dropped_slot_avi(tmp_path / "vfr.avi", textured, [0, 1, 2, 10, 11, 20, 21, 30, 37, 39])
    out = tmp_path / "deg.mp4"
    assert main(["degrade", str(src), str(out), "--qp", "20"]) == 0
    assert probe(out).frames == 10
    assert duration_of(out) == pytest.approx(0.40, abs=0.02)
    assert psnr(textured, read_video(out).numpy()) > 30  # the stored frames, in order
    assert main(["degrade", str(src), str(out), "--start", "2", "--frames", "5"]) == 0
    assert "5 frames" in capsys.readouterr().out
    assert psnr(textured[2:7], read_video(out).numpy()) > 28
    assert main(["degrade", str(src), str(tmp_path / "x.webm")]) == 2
    assert "extension '.webm'" in capsys.readouterr().err
