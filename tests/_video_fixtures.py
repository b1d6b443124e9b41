"""Tiny test clips written with plain PyAV (independent of lcvae's writer) and a plain decoder."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern_frames(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8; every frame differs from every other, so a frame names its index."""
    i = np.arange(n)[:, None, None]
    y = np.arange(h)[None, :, None]
    x = np.arange(w)[None, None, :]
    r = (x * 4 + i * 9) % 256
    g = (y * 5 + i * 17 + x) % 256
    b = (x + y + i * 29) % 256
    return np.stack(np.broadcast_arrays(r, g, b), -1).astype(np.uint8)


def flat_frames(n: int, h: int, w: int) -> np.ndarray:
    """Grey frames of value 8 + 6 i: the index survives lossy 4:2:0 coding (see flat_index)."""
    return np.broadcast_to((8 + 6 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, h, w, 3)).copy()


def flat_index(frames: np.ndarray) -> list[int]:
    return [int(round((float(f.mean()) - 8) / 6)) for f in np.asarray(frames)]


def textured_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving sinusoids plus luma noise: detail that H.264 quantisation visibly removes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    out = []
    for t in range(n):
        luma = 128 + 50 * np.sin(0.6 * xx + 0.4 * t) + 35 * np.cos(0.8 * yy - 0.3 * t)
        luma = luma + rng.normal(0, 18, (h, w))
        out.append(np.stack([luma + 10, luma, luma - 10], -1))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def write_av(
    path: Path,
    frames: np.ndarray,
    *,
    codec: str = "libx264rgb",
    pix_fmt: str = "rgb24",
    rate: int = 25,
    gop: int | None = 8,
    options: dict | None = None,
    in_format: str = "rgb24",
    pts_ms: list[int] | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode frames with plain PyAV. ``libx264rgb`` + qp 0 (the default) is lossless.

    ``pts_ms`` gives explicit presentation times in milliseconds (variable frame rate).
    """
    opts = dict(options if options is not None else ({"qp": "0"} if codec.startswith("libx264") else {}))
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(codec, rate=rate, options=opts)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = pix_fmt
        if gop is not None:
            s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for k, arr in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format=in_format)
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[k], Fraction(1, 1000)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def decode_all(path: Path) -> np.ndarray:
    """Every frame in decoder output order, as (T, H, W, 3) RGB: the plain reference decode."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def write_dropped_slot_avi(path: Path, frames: np.ndarray, slots: list[int], rate: int = 100) -> Path:
    """A variable-frame-rate AVI as real footage stores it: frame ``k`` sits in index slot
    ``slots[k]`` (in units of ``1 / rate`` s) and the slots between are empty "dropped frame"
    entries, which the AVI header counts as frames (it claims ``slots[-1] + 1`` frames)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=rate, options={"qp": "0"})
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt = "rgb24"
        s.codec_context.gop_size = 8
        s.codec_context.time_base = Fraction(1, rate)
        for slot, arr in zip(slots, frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            f.pts, f.time_base = slot, Fraction(1, rate)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


def header_frames(path: Path) -> int:
    """The frame count the container header claims (what a header-trusting reader would use)."""
    with av.open(str(path)) as c:
        return c.streams.video[0].frames


def damage_middle(path: Path, out: Path, length: int = 2000, seed: int = 0) -> Path:
    """Copy ``path`` to ``out`` with ``length`` random bytes written over the middle of the file
    (inside an MP4's ``mdat`` when the index is at the end): a stream with a damaged middle."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + length] = np.random.default_rng(seed).bytes(length)
    out.write_bytes(bytes(data))
    return out


def duration_of(path: Path) -> float:
    """Playback duration in seconds as a player sees it: container duration, else stream duration."""
    with av.open(str(path)) as c:
        if c.duration:
            return c.duration / av.time_base
        s = c.streams.video[0]
        return float(s.duration * s.time_base)
