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

import numpy as np
import torch

from .video_open import VIDEO_EXTENSIONS, NotEnoughFramesError, Source, VideoError, VideoInfo
from .video_reader import VideoReader, probe, read_image, read_video
from .video_write import WRITE_FORMATS, check_output_path, encode_to_bytes, write_video

__all__ = [
    "VIDEO_EXTENSIONS",
    "WRITE_FORMATS",
    "NotEnoughFramesError",
    "Source",
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "check_output_path",
    "encode_to_bytes",
    "probe",
    "read_image",
    "read_video",
    "to_tensor",
    "to_uint8",
    "write_video",
]


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
