"""Opening a video: the error types, the header facts (``VideoInfo``) and a container open that fails loudly.

The rules for frames, timestamps and odd sizes are in ``lcvae.data.video``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")
Source = str | os.PathLike | BinaryIO


class VideoError(ValueError):
    """One input video cannot give the frames asked for: unreadable, corrupt or too short."""


class NotEnoughFramesError(VideoError):
    """The video is shorter than the clip asked for."""


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


def source_name(source: Source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "<in-memory video>"


def open_video(source: Source) -> av.container.InputContainer:
    name = source_name(source)
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
