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
