"""Video file I/O through PyAV: probe, clip reading by seeking, atomic H.264 writing.

Frames. Frame ``i`` is the ``i``-th stored frame in presentation order; the frame count is the
number of frames really stored. A header's count is only a hint: AVI headers count index slots,
and a variable-frame-rate AVI fills the gaps with empty "dropped frame" slots (a header claiming
444 frames may hold 68). Such files are counted by demuxing (no decoding); when the header
disagrees, the real count wins and a warning says so once per file. ``VideoInfo.fps`` is then the
average rate, stored frames over duration, so writing the frames back at that rate keeps the
duration.

Frame selection rule. ``start, start + stride, ...`` are stored-frame indices. With a target
``fps`` a clip is a list of wanted times ``t_k = t(start) + k / fps``; for each the reader returns
the latest frame whose presentation time is at most ``t_k`` (plus half a native frame period on
constant-rate files, a millisecond on variable-rate ones): the frame on screen at ``t_k``. A
constant-rate file is read on the grid ``i / fps_native``, which is the same rule.

Variable frame rate. When the packet times are irregular (or the header's rates disagree), the
probe keeps every stored frame's time and pts; reads pick frames by index, so every stored frame
is reachable and none is repeated or dropped. They seek to the keyframe before the clip and name
each decoded frame by its pts; AVI (untrusted pts), or a frame whose pts is not among the stored
ones, decodes from the start and counts output frames instead.

Seeking (constant-rate files). The reader seeks to the keyframe at or before ``t_0`` and decodes
forward, converting only the frames it returns. If the demuxer lands after ``t_0`` (or past the end), it decodes from
the start instead. If timestamps are missing or go backwards it decodes from the start and times
each frame by its output index (``i / fps``). AVI files always take that path: AVI stores no
presentation timestamps, and H.264 with B-frames in AVI gets decode-order guesses. ``seek=False``
always decodes from the start; it is the plain twin the tests compare against. Display-rotation
metadata is ignored: frames come out as stored.

Damaged streams. FFmpeg conceals what it can (a damaged slice decodes to approximate pixels). A
packet it cannot decode at all raises ``VideoError`` naming the file and the frame index (and
time) where decoding failed; a stream that ends before its stored count is ``NotEnoughFramesError``
("ends early"). Datasets skip and count both; single-file commands report them.

Odd sizes. 4:2:0 H.264 cannot store an odd width or height. ``write_video`` pads the frames by
repeating the last row and column and records the true size in the container's ``comment``
metadata (``lcvae:size=WxH``); ``VideoReader`` crops back to it, so a round trip keeps the size.
Other players show the one-pixel padding. ``pix_fmt="yuv444p"`` stores odd sizes without padding.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch

from lcvae.utils import atomic_write

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
# Containers write_video can put H.264 into, by extension (WebM takes VP8/VP9/AV1 only).
WRITE_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}
_SIZE_TAG = re.compile(r"^lcvae:size=(\d+)x(\d+)$")
_X264 = ("libx264", "libx264rgb")

Source = str | os.PathLike | BinaryIO
_VFR_TOLERANCE = Fraction(1, 1000)  # seconds; timestamp rounding in ms-based containers
_warned_counts: set[str] = set()  # files whose header count was corrected (warn once per file)


class VideoError(ValueError):
    """One input video cannot give the frames asked for: unreadable, corrupt or too short."""


class NotEnoughFramesError(VideoError):
    """The video is shorter than the clip asked for."""


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` if write_video can write it (by extension), else a ValueError naming the choices.

    Commands call this on their output argument before any compute.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        raise ValueError(
            f"cannot write a video to {path}: unknown or unsupported extension "
            f"{path.suffix or '(none)'!r}; use one of {', '.join(WRITE_FORMATS)}"
        )
    if path.is_dir():
        raise ValueError(f"cannot write a video to {path}: it is a directory; give a file name")
    return path


class _Fallback(Exception):
    """Seeking or timestamps cannot be trusted for this read; decode from the start."""

    def __init__(self, by_index: bool) -> None:
        self.by_index = by_index


@dataclass(frozen=True)
class VideoInfo:
    """Stored frame count (real, not the header's hint), average rate, display size, codec name.

    ``variable_rate`` is True when frames are not evenly spaced in time (see the module docstring).
    """

    frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str
    variable_rate: bool = False


def _name(source: Source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<in-memory video>"


def _open(source: Source) -> av.container.InputContainer:
    name = _name(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"video file not found: {path}")
        if path.is_dir():
            raise VideoError(f"{path} is a directory; expected a video file ({', '.join(VIDEO_EXTENSIONS)})")
        source = str(path)
    else:
        source.seek(0)
    try:
        container = av.open(source)
    except av.error.FFmpegError as e:
        raise VideoError(
            f"{name} is not a readable video ({e}); expected a video file such as {', '.join(VIDEO_EXTENSIONS)}"
        ) from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{name} has no video stream; expected a video file")
    return container


class VideoReader:
    """An open video: ``info`` from the header, ``read`` for clips as uint8 (T, H, W, 3) RGB.

    Use as a context manager. ``threads`` sets the decoder's thread count (0 = FFmpeg's choice);
    one thread per DataLoader worker avoids oversubscribing cores. ``frames_decoded`` counts
    decoded frames, so callers (and tests) can see that a clip read seeks instead of decoding
    the file from its start.
    """

    def __init__(self, source: Source, *, threads: int = 0) -> None:
        self.source = source
        self.name = _name(source)
        self.threads = threads
        self.frames_decoded = 0
        self._container = _open(source)
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
        self._container = _open(self.source)
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


def _as_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3) with T >= 1, got {arr.dtype} "
            f"{tuple(arr.shape)}; convert a (3, T, H, W) clip in [-1, 1] with to_uint8"
        )
    return np.ascontiguousarray(arr)


def _encode(
    target: str | BinaryIO,
    frames: np.ndarray,
    fps: float | Fraction,
    *,
    fmt: str | None,
    codec: str,
    pix_fmt: str,
    crf: float | None,
    qp: int | None,
    preset: str,
    options: dict[str, str] | None,
) -> None:
    t, h, w, _ = frames.shape
    opts = dict(options or {})
    if codec in _X264:
        if crf is not None and qp is not None:
            raise ValueError(f"give crf or qp, not both; got crf={crf}, qp={qp}")
        if qp is not None:
            if not 0 <= qp <= 51:
                raise ValueError(f"qp must be in [0, 51] for libx264, got {qp}")
            opts["qp"] = str(int(qp))
        else:
            opts["crf"] = str(18 if crf is None else crf)
        opts.setdefault("preset", preset)
    elif crf is not None or qp is not None:
        raise ValueError(f"crf/qp apply to libx264 or libx264rgb, not {codec}; pass options= instead")
    pad_w = w % 2 if ("420" in pix_fmt or "422" in pix_fmt or pix_fmt == "nv12") else 0
    pad_h = h % 2 if ("420" in pix_fmt or pix_fmt == "nv12") else 0
    if pad_w or pad_h:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1_000_000)
    container = av.open(target, "w", format=fmt)
    try:
        if pad_w or pad_h:
            container.metadata["comment"] = f"lcvae:size={w}x{h}"
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w + pad_w, h + pad_h, pix_fmt
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    finally:
        container.close()


def write_video(
    path: str | os.PathLike,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    crf: float | None = None,
    qp: int | None = None,
    preset: str = "medium",
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """Write uint8 (T, H, W, 3) RGB frames atomically (``lcvae.utils.atomic_write``).

    Default H.264 (libx264, yuv420p, CRF 18). ``qp`` gives constant-QP encoding instead.
    ``codec="libx264rgb", pix_fmt="rgb24", qp=0`` is lossless. Odd sizes: module docstring.
    The container follows the file extension (``WRITE_FORMATS``; others are a ValueError before
    anything is encoded). Frames are spaced ``1 / fps``: pass a variable-rate source's
    ``VideoInfo.fps`` (its average rate) to keep its duration. Returns the path written.
    """
    arr = _as_frames(frames)
    path = check_output_path(path)
    fmt = WRITE_FORMATS[path.suffix.lower()]
    return atomic_write(
        path,
        lambda tmp: _encode(
            tmp, arr, fps, fmt=fmt, codec=codec, pix_fmt=pix_fmt, crf=crf, qp=qp, preset=preset, options=options
        ),
    )


def encode_to_bytes(
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    fmt: str = "mp4",
    crf: float | None = None,
    qp: int | None = None,
    preset: str = "medium",
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode exactly like ``write_video`` into an in-memory container; returns its bytes."""
    buf = io.BytesIO()
    _encode(
        buf,
        _as_frames(frames),
        fps,
        fmt=fmt,
        codec=codec,
        pix_fmt=pix_fmt,
        crf=crf,
        qp=qp,
        preset=preset,
        options=options,
    )
    return buf.getvalue()


def to_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"to_tensor expects uint8 (T, H, W, 3) frames, got {x.dtype} {tuple(x.shape)}")
    return x.permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """float (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3), clamped and rounded."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(
            f"to_uint8 expects a (3, T, H, W) clip, got {tuple(video.shape)}; index a batch (B, 3, T, H, W) first"
        )
    x = ((video.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255)
    return x.to(torch.uint8).permute(1, 2, 3, 0).contiguous()
