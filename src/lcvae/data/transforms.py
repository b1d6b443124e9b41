"""Spatial clip transforms on (3, T, H, W) float clips in [-1, 1]; randomness from a passed generator.

Resizing uses ``torch.nn.functional.interpolate`` on one frame at a time (the time axis is the
batch axis). ``"bicubic"`` runs with ``antialias=True``, so downscaling low-pass filters first (like
Pillow's resize) instead of aliasing; its overshoot is clamped back to [-1, 1]. ``"area"`` averages
source pixels (exact box filter for integer factors) and never overshoots. Frames are resized in
chunks of ``chunk`` frames (default 1): per-frame results do not depend on the chunking, and on
CPU one 720p frame at a time stays in cache and runs ~25% faster than batches of 8
(benchmarks/bench_loader.py).

Random choices (crop offset, flip) draw from the ``torch.Generator`` given by the caller, so a
dataset can derive one per item from (seed, epoch, index) and never touch the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .video import to_tensor

_MODES = ("bicubic", "area")


def _check_clip(video: torch.Tensor) -> None:
    if video.ndim != 4 or video.shape[0] != 3 or not video.is_floating_point():
        raise ValueError(f"expected a float (3, T, H, W) clip, got {video.dtype} {tuple(video.shape)}")


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the short side equal to ``size`` and the aspect ratio kept (rounded)."""
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def resize(video: torch.Tensor, height: int, width: int, mode: str = "bicubic", chunk: int = 1) -> torch.Tensor:
    """(3, T, H, W) -> (3, T, height, width); see the module docstring for the filters."""
    _check_clip(video)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if video.shape[-2:] == (height, width):
        return video
    frames = video.transpose(0, 1)  # (T, 3, H, W): one image per frame
    parts = []
    for i in range(0, frames.shape[0], chunk):
        x = frames[i : i + chunk]
        if mode == "bicubic":
            y = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False).clamp_(
                -1.0, 1.0
            )
        else:
            y = F.interpolate(x, size=(height, width), mode="area")
        parts.append(y)
    return torch.cat(parts).transpose(0, 1).contiguous()


def resize_short_side(video: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """(3, T, H, W) -> (3, T, h, w) with min(h, w) == size, aspect ratio kept."""
    _check_clip(video)
    return resize(video, *short_side_size(video.shape[-2], video.shape[-1], size), mode=mode)


def _crop_window(
    h: int, w: int, size: int | tuple[int, int], generator: torch.Generator | None
) -> tuple[int, int, int, int]:
    """(top, left, ch, cw) of a centre (no generator) or uniformly random crop of an h x w frame."""
    ch, cw = (size, size) if isinstance(size, int) else size
    if ch > h or cw > w:
        raise ValueError(
            f"crop {ch}x{cw} is larger than the {h}x{w} frames; resize the short side to at least {max(ch, cw)} first"
        )
    if generator is None:
        return (h - ch) // 2, (w - cw) // 2, ch, cw
    top = int(torch.randint(h - ch + 1, (1,), generator=generator))
    left = int(torch.randint(w - cw + 1, (1,), generator=generator))
    return top, left, ch, cw


def center_crop(video: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Centre crop of (…, H, W) to ``size`` (int for square, or (h, w)); offsets round down."""
    top, left, ch, cw = _crop_window(*video.shape[-2:], size, None)
    return video[..., top : top + ch, left : left + cw]


def random_crop(video: torch.Tensor, size: int | tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Crop of (…, H, W) at an offset drawn uniformly from ``generator`` (top, then left)."""
    top, left, ch, cw = _crop_window(*video.shape[-2:], size, generator)
    return video[..., top : top + ch, left : left + cw]


def hflip(video: torch.Tensor) -> torch.Tensor:
    """Mirror the width axis."""
    return video.flip(-1)


def random_hflip(video: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror with probability ``p``, the coin drawn from ``generator``."""
    flip = bool(torch.rand((1,), generator=generator) < p)
    return hflip(video) if flip else video


def crop_to_multiple(video: torch.Tensor, multiple: int) -> torch.Tensor:
    """Centre crop H and W down to multiples of ``multiple`` (e.g. 8 or 16 for a VAE)."""
    h, w = video.shape[-2:]
    if h < multiple or w < multiple:
        raise ValueError(f"{h}x{w} frames are smaller than the spatial multiple {multiple}")
    return center_crop(video, (h - h % multiple, w - w % multiple))


def resize_to_multiple(video: torch.Tensor, multiple: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize H and W to the nearest multiples of ``multiple`` (at least one multiple)."""
    h, w = video.shape[-2:]
    nh, nw = (max(multiple, round(s / multiple) * multiple) for s in (h, w))
    return resize(video, nh, nw, mode=mode)


@dataclass(frozen=True)
class ClipTransform:
    """Short-side resize, crop (centre or random), optional random flip, optional VAE multiple.

    ``short_side=None`` keeps the size; ``crop=None`` skips cropping; ``multiple`` (e.g. 16)
    applies ``crop_to_multiple`` or ``resize_to_multiple`` last, only when set.
    """

    short_side: int | None = None
    crop: int | None = None
    random_crop: bool = False
    hflip: bool = False
    multiple: int | None = None
    multiple_mode: str = "crop"
    mode: str = "bicubic"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.multiple_mode not in ("crop", "resize"):
            raise ValueError(f"multiple_mode must be 'crop' or 'resize', got {self.multiple_mode!r}")
        if self.crop is not None and self.short_side is not None and self.crop > self.short_side:
            raise ValueError(f"crop {self.crop} exceeds short_side {self.short_side}; use crop <= short_side")

    def needs_generator(self) -> bool:
        return (self.random_crop and self.crop is not None) or self.hflip

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(3, T, H, W) in [-1, 1] -> transformed (3, T, h, w) in [-1, 1]."""
        self._check_generator(generator)
        if self.short_side is not None:
            video = resize_short_side(video, self.short_side, mode=self.mode)
        if self.crop is not None:
            video = random_crop(video, self.crop, generator) if self.random_crop else center_crop(video, self.crop)
        return self._finish(video, generator)

    def apply_to_frames(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (T, H, W, 3) -> (3, T, h, w) in [-1, 1]; equals ``self(to_tensor(frames))``.

        The fast path for datasets: the crop window is drawn first (same draws, same order as
        ``__call__``), then each frame is converted, resized and cropped on its own, so a
        33-frame 720p clip never exists as one float tensor (365 MB) and frames stay in cache.
        """
        self._check_generator(generator)
        t, h, w, _ = frames.shape
        rh, rw = short_side_size(h, w, self.short_side) if self.short_side is not None else (h, w)
        top, left, ch, cw = (
            (0, 0, rh, rw)
            if self.crop is None
            else _crop_window(rh, rw, self.crop, generator if self.random_crop else None)
        )
        out = torch.empty(3, t, ch, cw)
        for i in range(t):
            frame = resize(to_tensor(frames[i : i + 1]), rh, rw, mode=self.mode)
            out[:, i] = frame[:, 0, top : top + ch, left : left + cw]
        return self._finish(out, generator)

    def _check_generator(self, generator: torch.Generator | None) -> None:
        if self.needs_generator() and generator is None:
            raise ValueError("random crop/flip need a torch.Generator; pass generator=")

    def _finish(self, video: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.hflip:
            video = random_hflip(video, generator)
        if self.multiple is not None:
            video = (
                crop_to_multiple(video, self.multiple)
                if self.multiple_mode == "crop"
                else resize_to_multiple(video, self.multiple, mode=self.mode)
            )
        return video.contiguous()
