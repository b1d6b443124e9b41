"""Reading videos: ``VideoReader`` probes a file (real frame count, rate, size) and decodes clips by seeking.

The rules it follows (frame count, selection, variable rate, seeking, damaged streams, odd sizes) are in
``lcvae.data.video``; which frames a clip takes is ``ClipTiming`` in ``video_timing``.
"""

from __future__ import annotations

import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from .video_open import NotEnoughFramesError, Source, VideoError, VideoInfo, open_video, source_name
from .video_timing import ClipTiming

# Under the public module's name, which users and tests configure.
logger = logging.getLogger("lcvae.data.video")

_SIZE_TAG = re.compile(r"^lcvae:size=(\d+)x(\d+)$")
_warned_counts: set[str] = set()  # files whose header count was corrected (warn once per file)


class _Fallback(Exception):
    """Seeking or timestamps cannot be trusted for this read; decode from the start."""

    def __init__(self, by_index: bool) -> None:
        self.by_index = by_index


class VideoReader(ClipTiming):
    """An open video: ``info`` from the header, ``read`` for clips as uint8 (T, H, W, 3) RGB.

    Use as a context manager. ``threads`` sets the decoder's thread count (0 = FFmpeg's choice);
    one thread per DataLoader worker avoids oversubscribing cores. ``frames_decoded`` counts
    decoded frames, so callers (and tests) can see that a clip read seeks instead of decoding
    the file from its start.
    """

    def __init__(self, source: Source, *, threads: int = 0) -> None:
        self.source = source
        self.name = source_name(source)
        self.threads = threads
        self.frames_decoded = 0
        self._container = open_video(source)
        try:
            self._setup_stream()
            self.info = self._probe()
        except av.error.FFmpegError as e:
            self._container.close()
            raise VideoError(f"{self.name} is corrupt: reading its header failed ({e})") from e
        except BaseException:
            self._container.close()
            raise

    def _setup_stream(self) -> None:
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO" if self.threads != 1 else "SLICE"
        self._stream.codec_context.thread_count = self.threads
        self._fresh = True

    def _reopen(self) -> None:
        self._container.close()
        self._container = open_video(self.source)
        self._setup_stream()

    def _probe(self) -> VideoInfo:
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if not rate:
            raise VideoError(f"{self.name} has no frame rate in its header; cannot place frames in time")
        self._rate = Fraction(rate)
        # AVI has decode timestamps only; PyAV's pts for reordered frames are guesses.
        self._pts_trusted = self._container.format.name != "avi"
        self._times: list[Fraction] | None = None  # per stored frame, only for variable-rate files
        s = self._stream
        hint = s.frames
        rates_differ = bool(
            s.base_rate and s.average_rate and abs(Fraction(s.base_rate) / Fraction(s.average_rate) - 1) > 0.01
        )
        if hint and self._pts_trusted and not rates_differ:
            frames = hint
        else:
            frames = self._scan_packets(hint)
        if frames <= 0:
            raise VideoError(f"{self.name} contains no video frames")
        s = self._stream  # scanning reopens the container: take the new stream object
        if s.duration:
            duration = float(s.duration * s.time_base)
        elif self._container.duration:
            duration = self._container.duration / av.time_base
        else:
            duration = frames / float(self._rate)
        if self._times is not None:
            # Average rate of what is stored, so frames written back at it keep the duration.
            if duration <= self._times[-1]:  # no usable duration: last time plus the mean gap
                duration = float(self._times[-1] * frames / (frames - 1))
            self._rate = Fraction(frames / duration).limit_denominator(1_000_000)
        width, height = s.codec_context.width, s.codec_context.height
        tag = {k.lower(): v for k, v in self._container.metadata.items()}.get("comment", "")
        m = _SIZE_TAG.match(tag)
        if m and int(m[1]) <= width and int(m[2]) <= height:
            width, height = int(m[1]), int(m[2])
        self._size = (height, width)
        self._start_pts = s.start_time or 0
        return VideoInfo(
            frames=frames,
            fps=float(self._rate),
            width=width,
            height=height,
            duration=duration,
            codec=s.codec_context.name,
            variable_rate=self._times is not None,
        )

    def _scan_packets(self, hint: int) -> int:
        """Count stored frames by demuxing (no decoding); keep their times if unevenly spaced.

        Matroska/WebM headers carry no count, AVI headers count empty "dropped frame" slots, and a
        variable-rate MP4 is told apart by its packet times. Empty packets are not frames.
        """
        stamps = []
        for p in self._container.demux(self._stream):
            if p.size > 0:
                stamps.append(p.pts if p.pts is not None else p.dts)
        tb = self._stream.time_base
        self._reopen()
        n = len(stamps)
        if hint and hint != n and self.name not in _warned_counts:
            _warned_counts.add(self.name)
            logger.warning(
                "%s: header says %d frames but %d are stored (variable frame rate or damaged index); using %d",
                self.name,
                hint,
                n,
                n,
            )
        if n < 3 or None in stamps or tb is None:
            return n
        stamps.sort()
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        if min(gaps) > 0 and max(gaps) - min(gaps) <= 1:  # one tick of rounding: constant rate
            return n
        self._times = [(p - stamps[0]) * tb for p in stamps]
        self._index_of = {p: i for i, p in enumerate(stamps)}  # stored pts -> frame index, for seeking
        return n

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(
        self,
        start: int = 0,
        num_frames: int | None = None,
        stride: int = 1,
        fps: float | None = None,
        *,
        seek: bool = True,
    ) -> torch.Tensor:
        """Clip as uint8 (T, H, W, 3) RGB; grayscale is expanded, alpha dropped (module rule)."""
        self._at: Fraction | int | None = None  # last decoded frame (time or index), for errors
        try:
            if self._times is not None:
                idx = self.clip_indices(start, num_frames, stride, fps)
                try:
                    frames = self._decode_indices(idx, seek=seek and self._pts_trusted and idx[0] > 0)
                except _Fallback:
                    logger.debug("%s: frame after the seek not in the packet index; decoding from the start", self.name)
                    frames = self._decode_indices(idx, seek=False)
            else:
                times = self.clip_times(start, num_frames, stride, fps)
                use_seek = seek and self._pts_trusted and times[0] > 0
                try:
                    frames = self._decode(times, seek=use_seek, by_index=not self._pts_trusted)
                except _Fallback as fb:
                    logger.debug(
                        "%s: %s; decoding from the start",
                        self.name,
                        "timestamps unusable" if fb.by_index else "seek landed late",
                    )
                    frames = self._decode(times, seek=False, by_index=fb.by_index)
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.name} is corrupt: decoding failed after {self._where()} ({e})") from e
        return torch.from_numpy(np.stack(frames))

    def _where(self) -> str:
        """Where the last decode stopped, for error messages (set by the decode loops)."""
        if self._at is None:
            return "the start (no frame decoded)"
        if isinstance(self._at, int):
            return f"frame {self._at}"
        return f"{float(self._at):.2f} s (frame {round(self._at * self._rate)})"

    def _decode_indices(self, idx: list[int], *, seek: bool) -> list[np.ndarray]:
        """Stored frames ``idx`` (non-decreasing, repeats allowed) of a variable-rate file.

        Without ``seek`` the output index of each decoded frame is its frame index. With ``seek``
        the reader seeks to the keyframe before ``idx[0]`` and names each frame by its pts in the
        packet index; a frame it cannot name, a wanted frame skipped, or an early end is a _Fallback.
        """
        if seek:
            target = self._start_pts + int(self._times[idx[0]] / self._stream.time_base)
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        elif not self._fresh:
            self._reopen()
        self._fresh = False
        out: list[np.ndarray] = []
        k = 0
        i = -1
        for n, frame in enumerate(self._container.decode(self._stream)):
            self.frames_decoded += 1
            i = self._index_of.get(frame.pts, -1) if seek else n
            if i < 0 or i > idx[k]:  # unnamed, or a wanted frame was skipped (only after a seek)
                raise _Fallback(by_index=False)
            self._at = i
            if i == idx[k]:
                arr = self._to_rgb(frame)
                while k < len(idx) and idx[k] == i:
                    out.append(arr)
                    k += 1
                if k == len(idx):
                    return out
        if seek:  # confirm from the start before calling the file short
            raise _Fallback(by_index=False)
        raise NotEnoughFramesError(
            f"{self.name} ends early: {self.info.frames} frames are stored but decoding stopped "
            f"after {i + 1}, before wanted frame {idx[k]} (truncated or corrupt file)"
        )

    def _decode(self, times: list[Fraction], *, seek: bool, by_index: bool) -> list[np.ndarray]:
        if seek:
            target = self._start_pts + int(times[0] / self._stream.time_base)
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        elif not self._fresh:
            self._reopen()
        self._fresh = False
        s, tb, native = self._stream, self._stream.time_base, self._rate
        half = 1 / (2 * native)
        limits = [t + half for t in times]
        out: list[np.ndarray] = []
        cand = cand_arr = None
        cand_t = prev_t = None
        k = 0
        for i, frame in enumerate(self._container.decode(s)):
            self.frames_decoded += 1
            if by_index:
                t = Fraction(i) / native
            elif frame.pts is None:
                raise _Fallback(by_index=True)
            else:
                t = (frame.pts - self._start_pts) * tb
                if prev_t is not None and t <= prev_t:
                    raise _Fallback(by_index=True)
            prev_t = t
            self._at = i if by_index else t
            while k < len(times) and t > limits[k]:
                if cand is None:
                    if seek:
                        raise _Fallback(by_index=False)
                    cand, cand_t = frame, t  # first frame comes after the stream's start time
                if cand_arr is None:
                    cand_arr = self._to_rgb(cand)
                out.append(cand_arr)
                k += 1
            if k == len(times):
                return out
            cand, cand_t, cand_arr = frame, t, None
        if cand is None and seek:
            raise _Fallback(by_index=False)  # the seek went past the last frame
        while k < len(times) and cand is not None and times[k] < cand_t + 1 / native:
            out.append(cand_arr if cand_arr is not None else (cand_arr := self._to_rgb(cand)))
            k += 1
        if k < len(times):
            raise NotEnoughFramesError(
                f"{self.name} ends early: its header says {self.info.frames} frames but decoding "
                f"stopped at {float(cand_t or 0):.2f} s, before the wanted frame at "
                f"{float(times[k]):.2f} s (truncated or corrupt file)"
            )
        return out

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        h, w = self._size
        arr = frame.to_ndarray(format="rgb24")
        return arr[:h, :w] if arr.shape[:2] != (h, w) else arr


def read_image(path: str | os.PathLike, backend: str = "auto") -> np.ndarray:
    """One image file as uint8 (H, W, 3) RGB (grayscale expanded, alpha dropped).

    ``backend="pillow"`` uses Pillow (faster; optional dependency), ``"av"`` decodes with
    PyAV's image demuxers, ``"auto"`` prefers Pillow when installed. PNG gives identical pixels
    through both; JPEG chroma upsampling differs by a few levels between libjpeg and FFmpeg.
    """
    if backend not in ("auto", "pillow", "av"):
        raise ValueError(f"backend must be 'auto', 'pillow' or 'av', got {backend!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if backend != "av":
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:
            if backend == "pillow":
                raise ImportError("backend='pillow' needs Pillow: pip install pillow") from None
        else:
            try:
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB"))
            except (UnidentifiedImageError, OSError) as e:
                raise VideoError(f"{path} is not a readable image ({e})") from e
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise VideoError(f"{path} holds no image")
            for frame in c.decode(c.streams.video[0]):
                return frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
        raise VideoError(f"{path} is not a readable image ({e})") from e
    raise VideoError(f"{path} decoded to no image")


def probe(path: Source) -> VideoInfo:
    """Header facts of a video file (frame count exact; Matroska/WebM are counted by demuxing)."""
    with VideoReader(path) as r:
        return r.info


def read_video(
    path: Source,
    start: int = 0,
    num_frames: int | None = None,
    stride: int = 1,
    fps: float | None = None,
    *,
    seek: bool = True,
) -> torch.Tensor:
    """Frames ``start, start + stride, ...`` as uint8 (T, H, W, 3) RGB, seeking to the clip.

    ``num_frames=None`` reads to the end. ``fps`` resamples to a target rate instead of a
    stride (see the module docstring for the timestamp rule). Raises ``FileNotFoundError``,
    ``VideoError`` (not a video, corrupt) or ``NotEnoughFramesError`` (says how many exist).
    """
    with VideoReader(path) as r:
        return r.read(start, num_frames, stride, fps, seek=seek)
