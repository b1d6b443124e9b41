"""Which stored frames a clip takes: the frame selection rule of ``lcvae.data.video``, on the reader's timeline.

Constant-rate files are a grid ``i / fps_native``; variable-rate files carry one time per stored frame
(``_times``). ``ClipTiming`` turns (start, num_frames, stride or target fps) into wanted times or frame
indices, and says how many frames a clip needs when the file is too short. It decodes nothing: it reads
``_times``, ``_rate``, ``info`` and ``name``, which ``VideoReader`` sets when it probes the file.
"""

from __future__ import annotations

import bisect
from fractions import Fraction

from .video_open import NotEnoughFramesError, VideoInfo

_VFR_TOLERANCE = Fraction(1, 1000)  # seconds; timestamp rounding in ms-based containers


class ClipTiming:
    """Clip selection for ``VideoReader``: ``clip_indices``, ``clip_times``, ``max_start``."""

    name: str
    info: VideoInfo
    _rate: Fraction
    _times: list[Fraction] | None

    @staticmethod
    def _check_args(start: int, num_frames: int | None, stride: int, fps: float | None) -> None:
        if start < 0 or stride < 1 or (num_frames is not None and num_frames < 1):
            raise ValueError(
                f"need start >= 0, stride >= 1, num_frames >= 1 or None; "
                f"got start={start}, stride={stride}, num_frames={num_frames}"
            )
        if fps is not None and (fps <= 0 or stride != 1):
            raise ValueError(f"give either stride or a positive target fps, not both; got stride={stride}, fps={fps}")

    def _too_short(
        self, start: int, num_frames: int | None, stride: int, fps: float | None, needed: int
    ) -> NotEnoughFramesError:
        how = f"stride {stride}" if fps is None else f"target {fps} fps"
        return NotEnoughFramesError(
            f"{self.name} has {self.info.frames} frames ({self.info.duration:.2f} s at "
            f"{self.info.fps:g} fps); asked for {num_frames or 'all'} frames with {how} from "
            f"frame {start}, which needs {max(needed, start + 1)} frames"
        )

    def clip_indices(
        self, start: int = 0, num_frames: int | None = None, stride: int = 1, fps: float | None = None
    ) -> list[int]:
        """Stored-frame indices of a clip on a variable-rate file; raises if it is too short."""
        self._check_args(start, num_frames, stride, fps)
        times, count = self._times, self.info.frames
        if times is None:
            raise RuntimeError("clip_indices is for variable-rate files; use clip_times")
        if fps is None:
            n = num_frames if num_frames is not None else len(range(start, count, stride))
            idx = [start + k * stride for k in range(n)]
            if n < 1 or idx[-1] >= count:
                raise self._too_short(start, num_frames, stride, fps, (idx[-1] if idx else start) + 1)
            return idx
        if start >= count:
            raise self._too_short(start, num_frames, stride, fps, start + 1)
        step = 1 / Fraction(fps).limit_denominator(1_000_000)
        t0, last = times[start], times[-1]
        n = num_frames if num_frames is not None else int((last - t0) / step) + 1
        if t0 + (n - 1) * step > last + _VFR_TOLERANCE:
            needed = bisect.bisect_left(times, t0 + (n - 1) * step) + 1
            raise self._too_short(start, num_frames, stride, fps, max(needed, count + 1))
        return [bisect.bisect_right(times, t0 + k * step + _VFR_TOLERANCE) - 1 for k in range(n)]

    def clip_times(
        self, start: int = 0, num_frames: int | None = None, stride: int = 1, fps: float | None = None
    ) -> list[Fraction]:
        """Wanted times in seconds after the first frame; raises if the video is too short."""
        self._check_args(start, num_frames, stride, fps)
        if self._times is not None:
            return [self._times[i] for i in self.clip_indices(start, num_frames, stride, fps)]
        native = self._rate
        step = 1 / Fraction(fps).limit_denominator(1_000_000) if fps else Fraction(stride) / native
        t0 = Fraction(start) / native
        last = Fraction(self.info.frames - 1) / native
        n = num_frames if num_frames is not None else int((last - t0) / step) + 1 if t0 <= last else 0
        t_end = t0 + (max(n, 1) - 1) * step
        if n < 1 or t_end > last:
            raise self._too_short(start, num_frames, stride, fps, int(-(-t_end * native // 1)) + 1)
        return [t0 + k * step for k in range(n)]

    def max_start(self, num_frames: int, stride: int = 1, fps: float | None = None) -> int:
        """Largest start frame for which the clip fits; -1 when the video is too short."""
        if self._times is not None:
            if fps is None:
                return self.info.frames - 1 - (num_frames - 1) * stride
            span = (num_frames - 1) / Fraction(fps).limit_denominator(1_000_000)
            return bisect.bisect_right(self._times, self._times[-1] - span + _VFR_TOLERANCE) - 1
        step = 1 / Fraction(fps).limit_denominator(1_000_000) if fps else Fraction(stride) / self._rate
        room = Fraction(self.info.frames - 1) / self._rate - (num_frames - 1) * step
        return int((room * self._rate) // 1) if room >= 0 else -1
