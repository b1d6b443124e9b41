"""Orthonormal Haar wavelet transforms on video tensors (B, C, T, H, W).

Haar filters are h = [1, 1]/sqrt(2) (low) and g = [1, -1]/sqrt(2) (high). Along one axis a pair of
neighbours (a, b) becomes

    low  = (a + b) / sqrt(2)
    high = (a - b) / sqrt(2)        (first minus second)

The 2x2 matrix [[1, 1], [1, -1]] / sqrt(2) is symmetric and orthogonal, so it is its own inverse:
the inverse applies the same butterfly to (low, high) and gets (a, b) back. Being orthonormal, every
transform here preserves the sum of squares exactly (up to float rounding).

A multi-axis level applies the butterfly along each axis independently; the unnormalised sums and
differences are taken first and the product of the 1/sqrt(2) factors is applied once at the end,
which is the same number with one rounding instead of three.

Layouts (channel = subband * C + c, "subband-major", everywhere):

* ``haar3d``: s = 4*t_hi + 2*h_hi + w_hi, so s = 0 is LLL (the local mean), s = 1 is high in W,
  s = 2 high in H, s = 4 high in time.
* ``haar2d``: s = h_hi + 2*w_hi, i.e. (LL, high-in-H, high-in-W, HH). This order differs from
  ``haar3d`` on purpose: it is the order of the official WF-VAE weights, whose 2D filters are
  index 1 = [[1, 1], [-1, -1]] (varies along H) and index 2 = [[1, -1], [1, -1]] (varies along W).
* ``haar_t``: [low channels, high channels].

Causal mode (``haar3d(causal=True)``): the first frame is duplicated in front, so the temporal pairs
are (x0, x0), (x1, x2), (x3, x4), ... and an image (T = 1) is a one-frame video. T = 1 + 2k frames
give 1 + k coefficient frames; the first one has an exactly zero temporal-high band. The inverse
reconstructs 2 * T2 frames and drops the first (the duplicate).

All functions are vectorised (reshape + add/sub, no loops, no convolutions), work for any float
dtype and device, and are differentiable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["haar3d", "ihaar3d", "haar2d", "ihaar2d", "haar_t", "ihaar_t"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _butterfly(x: Tensor, src: int, dst: int) -> Tensor:
    """Unnormalised Haar butterfly: the size-2 axis ``src`` (a, b) -> (a + b, a - b) stacked at ``dst``.

    ``dst`` indexes the output, whose rank equals the input's (the axis moves from src to dst).
    """
    a = x.select(src, 0)
    b = x.select(src, 1)
    return torch.stack((a + b, a - b), dim=dst)


def _nearest(n: int, step: int, offset: int, low: int) -> str:
    """The valid sizes (offset + step*k, >= low) just below and above n, as "a or b" / "a"."""
    below = n - ((n - offset) % step)
    above = below + step
    options = [v for v in (below, above) if v >= low and v != n]
    return " or ".join(str(v) for v in options)


def _check_rank(x: Tensor, name: str, what: str) -> None:
    if x.dim() != 5:
        raise ValueError(f"{name} expects a 5-D tensor {what}, got shape {tuple(x.shape)}")


def _check_even(n: int, name: str, axis: str) -> None:
    if n < 2 or n % 2:
        raise ValueError(f"{name} needs an even {axis} (2k), got {n}; use {_nearest(n, 2, 0, 2)}")


def _check_frames(t: int, name: str, causal: bool) -> None:
    if causal:
        if t < 1 or t % 2 == 0:
            raise ValueError(f"causal {name} needs an odd frame count (1 + 2k), got {t}; use {_nearest(t, 2, 1, 1)}")
    else:
        _check_even(t, name, "frame count")


def _check_channels(c: int, factor: int, name: str) -> None:
    if c < factor or c % factor:
        raise ValueError(
            f"{name} needs a channel count that is a multiple of {factor} (one block per subband), "
            f"got {c}; use {_nearest(c, factor, 0, factor)}"
        )


def haar3d(x: Tensor, causal: bool = False) -> Tensor:
    """One 3D Haar level.

    x: (B, C, T, H, W), any values; H and W even; T even, or odd (1 + 2k) when ``causal``.
    Returns (B, 8C, T2, H/2, W/2) with channel s*C + c, s = 4*t_hi + 2*h_hi + w_hi;
    T2 = T/2, or (T + 1)/2 when causal (the first frame is paired with itself).
    """
    _check_rank(x, "haar3d", "(B, C, T, H, W)")
    b, c, t, h, w = x.shape
    _check_frames(t, "haar3d", causal)
    _check_even(h, "haar3d", "height")
    _check_even(w, "haar3d", "width")
    if causal:
        x = torch.cat((x[:, :, :1], x), dim=2)
        t += 1
    x = x.reshape(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
    y = _butterfly(x, 3, 1)  # (B, 2t, C, T2, H2, 2, W2, 2)
    y = _butterfly(y, 5, 2)  # (B, 2t, 2h, C, T2, H2, W2, 2)
    y = _butterfly(y, 7, 3)  # (B, 2t, 2h, 2w, C, T2, H2, W2)
    return y.reshape(b, 8 * c, t // 2, h // 2, w // 2) * (_INV_SQRT2**3)


def ihaar3d(c: Tensor, causal: bool = False) -> Tensor:
    """Inverse of :func:`haar3d`.

    c: (B, 8C, T2, H2, W2) in haar3d's channel order. Returns (B, C, T, 2*H2, 2*W2) with
    T = 2*T2, or T = 2*T2 - 1 when ``causal`` (the reconstructed duplicate of frame 0 is dropped).
    """
    _check_rank(c, "ihaar3d", "(B, 8C, T2, H2, W2)")
    b, ch, t2, h2, w2 = c.shape
    _check_channels(ch, 8, "ihaar3d")
    if t2 < 1:
        raise ValueError(f"ihaar3d needs at least one coefficient frame, got {t2}")
    n = ch // 8
    y = c.reshape(b, 2, 2, 2, n, t2, h2, w2)
    y = _butterfly(y, 3, 7)  # (B, 2t, 2h, C, T2, H2, W2, 2w)
    y = _butterfly(y, 2, 5)  # (B, 2t, C, T2, H2, 2h, W2, 2w)
    y = _butterfly(y, 1, 3)  # (B, C, T2, 2t, H2, 2h, W2, 2w)
    x = y.reshape(b, n, 2 * t2, 2 * h2, 2 * w2) * (_INV_SQRT2**3)
    return x[:, :, 1:] if causal else x


def haar2d(x: Tensor) -> Tensor:
    """Per-frame 2D Haar level.

    x: (B, C, T, H, W), H and W even. Returns (B, 4C, T, H/2, W/2) with channel s*C + c,
    s = h_hi + 2*w_hi: (LL, high-in-H, high-in-W, HH), the official WF-VAE order.
    """
    _check_rank(x, "haar2d", "(B, C, T, H, W)")
    b, c, t, h, w = x.shape
    _check_even(h, "haar2d", "height")
    _check_even(w, "haar2d", "width")
    x = x.reshape(b, c, t, h // 2, 2, w // 2, 2)
    y = _butterfly(x, 6, 1)  # (B, 2w, C, T, H2, 2, W2)
    y = _butterfly(y, 5, 2)  # (B, 2w, 2h, C, T, H2, W2)
    return y.reshape(b, 4 * c, t, h // 2, w // 2) * 0.5


def ihaar2d(c: Tensor) -> Tensor:
    """Inverse of :func:`haar2d`: (B, 4C, T, H2, W2) -> (B, C, T, 2*H2, 2*W2)."""
    _check_rank(c, "ihaar2d", "(B, 4C, T, H2, W2)")
    b, ch, t, h2, w2 = c.shape
    _check_channels(ch, 4, "ihaar2d")
    n = ch // 4
    y = c.reshape(b, 2, 2, n, t, h2, w2)
    y = _butterfly(y, 2, 5)  # (B, 2w, C, T, H2, 2h, W2)
    y = _butterfly(y, 1, 6)  # (B, C, T, H2, 2h, W2, 2w)
    return y.reshape(b, n, t, 2 * h2, 2 * w2) * 0.5


def haar_t(x: Tensor) -> Tensor:
    """One temporal Haar level along dim 2.

    x: (B, C, T, ...) with T even. Returns (B, 2C, T/2, ...): [low channels, high channels].
    """
    if x.dim() < 3:
        raise ValueError(f"haar_t expects (B, C, T, ...), got shape {tuple(x.shape)}")
    b, c, t, *rest = x.shape
    _check_even(t, "haar_t", "frame count")
    y = _butterfly(x.reshape(b, c, t // 2, 2, *rest), 3, 1)  # (B, 2, C, T/2, ...)
    return y.reshape(b, 2 * c, t // 2, *rest) * _INV_SQRT2


def ihaar_t(c: Tensor) -> Tensor:
    """Inverse of :func:`haar_t`: (B, 2C, T2, ...) -> (B, C, 2*T2, ...)."""
    if c.dim() < 3:
        raise ValueError(f"ihaar_t expects (B, 2C, T2, ...), got shape {tuple(c.shape)}")
    b, ch, t2, *rest = c.shape
    _check_channels(ch, 2, "ihaar_t")
    y = _butterfly(c.reshape(b, 2, ch // 2, t2, *rest), 1, 3)  # (B, C, T2, 2, ...)
    return y.reshape(b, ch // 2, 2 * t2, *rest) * _INV_SQRT2
