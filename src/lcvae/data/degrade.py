"""H.264 degradation for the data-quality experiment (supplement D.3, Table 8).

A clip is re-encoded with libx264 at a constant quantisation parameter (``-qp 30`` in the
reference), 4:2:0, preset "medium", and decoded back. Higher QP means coarser quantisation and
lower PSNR. In x264's CQP mode the QP applies to P-frames; I- and B-frames get x264's default
offsets (``ipratio`` 1.4, ``pbratio`` 1.3), as with ``ffmpeg -c:v libx264 -qp N``. The option
string x264 embeds in the stream records ``rc=cqp`` and ``qp=N``.

``degrade_video`` works on files; ``degrade_frames`` does the same encode into an in-memory MP4
and decodes it back, for on-the-fly evaluation. Both go through ``video_write._encode`` with the same
settings, so they give identical pixels.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import torch

from .video import VideoReader, check_output_path, encode_to_bytes, write_video

logger = logging.getLogger(__name__)

DEFAULT_QP = 30


def degrade_frames(
    frames: torch.Tensor | np.ndarray, qp: int = DEFAULT_QP, fps: float = 25.0, preset: str = "medium"
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> the same frames after a libx264 constant-QP round trip, uint8
    (T, H, W, 3). Odd sizes are padded for 4:2:0 and cropped back."""
    data = encode_to_bytes(frames, fps, fmt="mp4", qp=qp, preset=preset)
    with VideoReader(io.BytesIO(data)) as r:
        return r.read(seek=False)


def degrade_video(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    qp: int = DEFAULT_QP,
    preset: str = "medium",
    start: int = 0,
    frames: int | None = None,
) -> Path:
    """Re-encode a video file with libx264 at constant ``qp`` (written atomically).

    Keeps stored frames ``start .. start + frames - 1`` (all to the end by default) and writes them
    at the source's average frame rate, so a variable-rate input keeps its duration (it comes out
    at constant rate). Returns ``out_path``.
    """
    check_output_path(out_path)
    with VideoReader(in_path) as r:
        clip = r.read(start, frames, seek=False)
        fps = r.info.fps
    out = write_video(out_path, clip, fps, qp=qp, preset=preset)
    logger.info("degraded %s -> %s (%d frames from %d, qp %d)", in_path, out, clip.shape[0], start, qp)
    return out
