"""lcvae.progress: a bar on a terminal, log lines with the rate and time left elsewhere."""

from __future__ import annotations

import logging

import pytest

from lcvae import progress as progress_module
from lcvae.progress import Progress, progress


@pytest.fixture
def clock(monkeypatch):
    """A fake monotonic clock the test advances by hand."""
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    return now


def test_log_lines_carry_count_rate_and_time_left_at_intervals(clock, caplog):
    caplog.set_level(logging.INFO, logger="lcvae.progress")
    bar = Progress(10, "cache-latents", "clip", interval=30.0, tty=False)
    clock[0] += 10
    bar.update(2)  # 10 s < 30 s since the start: no line yet
    assert caplog.messages == []
    clock[0] += 30
    bar.update(2)  # 4 clips in 40 s: 0.1 clip/s, 6 left -> 60 s
    assert caplog.messages == ["cache-latents: 4/10 clip, 0.1 clip/s, 00:40 elapsed, 01:00 left"]
    bar.set_postfix("shard 2")
    bar.close()
    assert caplog.messages[-1] == "cache-latents: 4/10 clip, 0.1 clip/s, 00:40 elapsed (stopped early)"
    bar.update()  # after close: silent
    assert len(caplog.messages) == 2


def test_disabled_progress_is_silent_and_a_tty_gets_a_tqdm_bar(clock, caplog, capsys):
    caplog.set_level(logging.INFO, logger="lcvae.progress")
    assert list(progress(range(3), "x", enabled=False)) == [0, 1, 2]
    assert caplog.messages == []
    with Progress(3, "sample", "step", tty=True) as bar:
        assert bar.bar is not None
        bar.update(3)
    assert "sample" in capsys.readouterr().err and caplog.messages == []


def test_hours_are_written_as_h_mm_ss(clock):
    bar = Progress(None, "eval", "clip", tty=False, enabled=False)
    clock[0] += 3 * 3600 + 62
    bar.done = 7
    assert bar.line() == "eval: 7 clip, 0.000644 clip/s, 3:01:02 elapsed"


@pytest.mark.parametrize("chunk", [None, 8])
def test_reconstruct_counts_frames_encoded_and_decoded_chunk_by_chunk(chunk):
    """The frames counted through the encoder and decoder hooks add up to the total the bar was given:
    once per call on the whole video, once per chunk when streaming."""
    import torch

    from lcvae.inference import frames_progress
    from lcvae.models.lcvae import LCVAE
    from lcvae.models.presets import get_preset

    torch.manual_seed(0)
    model = LCVAE(get_preset("wfvae-tiny")).eval()
    x = torch.rand(1, 3, 33, 16, 16) * 2 - 1
    seen = []
    bar = Progress(2 * 33, "reconstruct", "frame", enabled=False)
    bar.update = lambda n=1: seen.append(n)  # what the hooks report, call by call
    with torch.no_grad(), frames_progress(model, bar):
        model.reconstruct(x, chunk=chunk, decode_chunk=None if chunk is None else 2)
    assert sum(seen) == 2 * 33
    assert len(seen) == (2 if chunk is None else 1 + 4 + 1 + 4)  # chunks: first frame, then 32 / 8; 8 latent / 2
    model.reconstruct(x[:, :, :1])  # the hooks are gone after the block
    assert sum(seen) == 2 * 33
