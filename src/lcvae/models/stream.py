"""State for chunked ("causal cache") inference.

A causal video network can run on a long video chunk by chunk if every temporal operation remembers
what it still needs from the past. Instead of hand-computing cache lengths per layer, every stateful
operation here keeps the exact *unconsumed* tail of its (padded) input stream:

* a temporal convolution of kernel k and stride s keeps the frames from the start of its next output
  window onwards, so chunk boundaries never change which frames a window sees;
* the decoder's linear time upsampling needs the next latent frame for every second output frame,
  so it holds back one output frame until that neighbour arrives (or the stream ends);
* where two branches with different delays meet, the earlier branch's surplus frames wait.

With LayerNorm (which normalises each (t, h, w) position alone) this makes chunked output equal to
whole-video output up to float rounding, for any chunk size. State is keyed by module and, for a
module that keeps several streams, a :class:`StreamTag`, so one ``StreamCache`` serves a whole
encoder or decoder; make a fresh one per video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import Tensor

from lcvae.models.onednn import WeightPacker, cat_frames, memory_format_of


class StreamTag(str, Enum):
    """Which of a module's streams a cache entry holds; modules with one stream use DEFAULT."""

    DEFAULT = ""
    INPUT = "in"  # the Haar level on the encoder input
    LEVEL2 = "l2"  # the energy-flow Haar level (encoder) / its inverse (decoder)
    OUTPUT = "out"  # the inverse Haar level on the decoder output
    MERGE_L1 = "merge-l1"  # where the main path meets the level-1 energy flow
    MERGE_L2 = "merge-l2"  # where it meets the level-2 energy flow


@dataclass
class StreamCache:
    """Per-video streaming state. ``final`` marks the last chunk so delayed frames are flushed.

    ``weights`` packs the convolution weights of the pass (:class:`~lcvae.models.onednn.WeightPacker`);
    whoever runs the chunks calls :meth:`release` when the video ends (or is abandoned).
    """

    final: bool = False
    weights: WeightPacker = field(default_factory=WeightPacker)
    _state: dict[tuple[int, StreamTag], object] = field(default_factory=dict)

    def release(self) -> None:
        """Give the packed layers their plain weights back."""
        self.weights.release()

    def get(self, owner: object, tag: StreamTag = StreamTag.DEFAULT, default: object = None) -> object:
        return self._state.get((id(owner), tag), default)

    def put(self, owner: object, value: object, tag: StreamTag = StreamTag.DEFAULT) -> None:
        self._state[(id(owner), tag)] = value

    def started(self, owner: object, tag: StreamTag = StreamTag.DEFAULT) -> bool:
        return (id(owner), tag) in self._state

    def causal_window(
        self,
        owner: object,
        x: Tensor,
        kernel: int,
        stride: int,
        tag: StreamTag = StreamTag.DEFAULT,
        op: Callable[[Tensor, Tensor], object] | None = None,
    ) -> Tensor:
        """Return the part of the causally padded stream that yields complete output windows.

        The first chunk is padded with ``kernel - 1`` copies of its first frame (causal padding);
        later chunks are prefixed with the unconsumed tail kept from the previous call. ``op(x, out)``,
        an elementwise op (SiLU), writes ``op(x)`` straight into the window instead of ``x``.
        """
        tail = self.get(owner, tag) if self.started(owner, tag) else None
        front = kernel - 1 if tail is None else tail.shape[2]
        if front == 0 and op is None:
            window = x  # nothing to prepend: no copy
        else:
            b, c, t, h, w = x.shape
            fmt = memory_format_of(x)
            window = torch.empty((b, c, front + t, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
            if op is None:
                window[:, :, front:] = x
            else:
                op(x, window[:, :, front:])
            if tail is not None:
                window[:, :, :front] = tail
            elif front:
                window[:, :, :front] = window[:, :, front : front + 1]  # the first frame, repeated
        n_out = (window.shape[2] - kernel) // stride + 1 if window.shape[2] >= kernel else 0
        # a copy, so the tail does not keep this chunk's whole window alive until the next chunk
        self.put(owner, window[:, :, n_out * stride :].clone(), tag)
        if n_out == 0:
            raise ValueError(
                "chunk too short for a strided temporal layer: use chunk lengths that are multiples of 4 frames "
                "(encoder) or at least 1 latent frame (decoder)"
            )
        return window[:, :, : (n_out - 1) * stride + kernel]

    def align(self, owner: object, a: Tensor, b: Tensor, tag: StreamTag = StreamTag.DEFAULT) -> tuple[Tensor, Tensor]:
        """Pair up frames of two branches that reach a merge point with different delays."""
        pending = self.get(owner, tag)
        if pending is not None:
            a = cat_frames([pending[0], a])
            b = cat_frames([pending[1], b])
        n = min(a.shape[2], b.shape[2])
        self.put(owner, (a[:, :, n:].clone(), b[:, :, n:].clone()), tag)
        return a[:, :, :n], b[:, :, :n]
