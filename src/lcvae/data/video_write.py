"""Writing videos: H.264 (or any PyAV codec) into a file atomically or into bytes, padding odd sizes.

Odd sizes and the ``lcvae:size=WxH`` tag that lets ``VideoReader`` crop back: see ``lcvae.data.video``.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch

from lcvae.utils import atomic_write

# Containers write_video can put H.264 into, by extension (WebM takes VP8/VP9/AV1 only).
WRITE_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi"}
_X264 = ("libx264", "libx264rgb")


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
