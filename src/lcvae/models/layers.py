"""Building blocks of the WF-VAE backbone.

Module and parameter names follow the official WF-VAE checkpoint (``norm1.norm.weight``,
``conv1.conv.weight`` for 3D convolutions, plain ``weight`` for per-frame 2D convolutions), so its
state dict loads without renaming. Every block takes video tensors (B, C, T, H, W) and an optional
:class:`~lcvae.models.stream.StreamCache` for chunked causal inference.

Half precision: a bf16 model runs every op in bf16 (bf16 has fp32's range; LayerNorm, GroupNorm and
attention accumulate in fp32 inside PyTorch's kernels). An fp16 model would overflow: activations of a
trained video VAE reach 1e4-1e5 in the residual stream and in the decoder's last layers, past fp16's
65504, which shows up as NaN frames. So with fp16 weights only the convolutions run in fp16 (see
:mod:`lcvae.models.onednn`): activations travel in fp32 between layers, each convolution input is
scaled by a power of two into fp16's safe range and the output scaled back in fp32, and norms,
residual sums and attention run in fp32.

Memory layout: on a CPU the activations stay in one layout from the first convolution to the last
(channels-first in fp32, channels-last in bf16; :mod:`lcvae.models.onednn` says why): every buffer a
block allocates takes it (:func:`~lcvae.models.onednn.empty_like_layout`), per-frame 2D layers run
as (1, k, k) 3D convolutions on the video (:func:`~lcvae.models.onednn.conv_frames`) and LayerNorm reads either layout in
place. A layout switch costs more than the convolution layout it buys.

Temporal semantics:

* causal: a temporal kernel k sees the current frame and k - 1 frames before it; the video start is
  padded with copies of the first frame, so the first frame is encoded on its own;
* non-causal (what the reference LC-VAE trained): symmetric zero padding of (k - 1) // 2 frames.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcvae.models.onednn import (  # noqa: F401 (conv3d, conv_frames, frames helpers, onednn_conv3d, _mkldnn_ok, _fp16_conv: re-exported)
    _fp16_conv,
    _mkldnn_ok,
    cat_frames,
    channel_layer_norm,
    channels_last,
    conv,
    conv3d,
    conv_frames,
    cpu_memory_format,
    empty_like_layout,
    frames_to_images,
    images_to_frames,
    memory_format_of,
    onednn_conv3d,
    uses_cpu_layout,
)
from lcvae.models.stream import StreamCache


class Norm(nn.Module):
    """LayerNorm over channels at every position (default) or GroupNorm(32), eps 1e-6, affine.

    LayerNorm treats each (t, h, w) position alone, which is what makes chunked inference exact;
    GroupNorm pools statistics over the whole clip, so a chunk sees different statistics.
    """

    def __init__(self, channels: int, kind: str = "layernorm") -> None:
        super().__init__()
        self.kind = kind
        if kind == "layernorm":
            self.norm = nn.LayerNorm(channels, eps=1e-6)
        elif kind == "groupnorm":
            # 32 groups as in WF-VAE; tiny test widths that 32 does not divide use the largest divisor.
            self.norm = nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)
        else:
            raise ValueError(f"norm must be 'layernorm' or 'groupnorm', got {kind!r}")

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.norm.weight, self.norm.bias
        if weight.dtype == torch.float16:  # fp16 model: statistics and output in fp32 (see the module doc)
            x, weight, bias = x.float(), weight.float(), bias.float()
        if self.kind == "groupnorm":
            return F.group_norm(x, self.norm.num_groups, weight, bias, 1e-6)
        return channel_layer_norm(x, weight, bias, 1e-6)


class Conv2d(nn.Conv2d):
    """A 2D convolution applied to every frame of a video."""

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:  # (B, C, T, H, W)
        return conv_frames(self, x)


def to_model_dtype(x: Tensor, dtype: torch.dtype, where: str) -> Tensor:
    """Hand an fp16 model's fp32 activations out as fp16 (other dtypes pass through unchanged).

    Fails on values fp16 cannot hold instead of returning inf or NaN frames. The check needs the values,
    so compiled graphs skip it.
    """
    if dtype != torch.float16:
        return x
    y = x.half()
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(y).all()):
        raise FloatingPointError(
            f"the fp16 model's {where} overflowed fp16 (values beyond +-65504, or NaN); run the model in bf16 "
            "(model.to(torch.bfloat16), --dtype bf16), which has fp32's range, or in fp32"
        )
    return y


class CausalConv3d(nn.Module):
    """3D convolution with causal (first-frame replicate) or symmetric zero temporal padding.

    ``spatial_padding`` is applied inside the convolution; the temporal padding is explicit so the
    same weights serve whole-video and chunked inference.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        spatial_padding: int = 0,
        causal: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__()
        kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.kt, self.st = kernel[0], stride[0]
        self.causal = causal
        self.conv = nn.Conv3d(
            cin, cout, kernel, stride=stride, padding=(0, spatial_padding, spatial_padding), bias=bias
        )

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if self.kt > 1 or self.st > 1:
            x = temporal_pad(self, x, self.kt, self.st, self.causal, cache)
        return conv(self.conv, x, None if cache is None else cache.weights)


def _silu_into(x: Tensor, out: Tensor) -> None:
    torch.ops.aten.silu.out(x, out=out)


def silu_conv(layer: CausalConv3d, h: Tensor, cache: StreamCache | None = None) -> Tensor:
    """``layer(F.silu(h), cache)``, with SiLU writing straight into the temporally padded buffer the
    convolution reads (allocated in the model layout): saves :func:`temporal_pad`'s copy of the whole
    activation.

    Streaming: SiLU writes into the chunk's causal window (:meth:`StreamCache.causal_window`) the same
    way. Strides, autograd (``out=`` ops have no backward) and traced graphs (the compiler fuses the
    padding itself) take the plain path, which gives the same numbers.
    """
    plain = torch.compiler.is_compiling() or (torch.is_grad_enabled() and h.requires_grad)
    if cache is not None and layer.causal and layer.kt > 1 and not plain:
        window = cache.causal_window(layer, h, layer.kt, layer.st, op=_silu_into)
        return conv(layer.conv, window, cache.weights)
    if cache is not None or layer.st != 1 or layer.kt == 1 or plain:
        return layer(F.silu(h), cache)
    b, c, t, hh, ww = h.shape
    front = layer.kt - 1 if layer.causal else (layer.kt - 1) // 2
    back = 0 if layer.causal else (layer.kt - 1) // 2
    buf = empty_like_layout(h, b, c, front + t + back, hh, ww)
    torch.ops.aten.silu.out(h, out=buf[:, :, front : front + t])
    if layer.causal:
        buf[:, :, :front] = buf[:, :, front : front + 1]  # the first frame, repeated
    else:
        buf[:, :, :front] = 0
        buf[:, :, front + t :] = 0
    return conv(layer.conv, buf)


def temporal_pad(
    owner: nn.Module, x: Tensor, kernel: int, stride: int, causal: bool, cache: StreamCache | None
) -> Tensor:
    """Pad along time for a window of ``kernel`` frames moving by ``stride``."""
    if cache is not None:
        if not causal:
            raise ValueError("chunked inference needs a causal model; non-causal models run on the whole video")
        return cache.causal_window(owner, x, kernel, stride)
    if causal:
        return cat_frames([x[:, :, :1].expand(-1, -1, kernel - 1, -1, -1), x]) if kernel > 1 else x
    p = (kernel - 1) // 2
    return F.pad(x, (0, 0, 0, 0, p, p)) if p else x


class ResBlock2D(nn.Module):
    """norm -> SiLU -> conv3x3 -> norm -> SiLU -> dropout -> conv3x3, per frame, plus shortcut."""

    def __init__(self, cin: int, cout: int, norm: str = "layernorm", dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = Norm(cin, norm)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = Norm(cout, norm)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if self.norm1.kind == "groupnorm":  # statistics per frame: the block runs on the frames as images
            y, t = frames_to_images(x)
            h = conv(self.conv1, F.silu(self.norm1(y)))
            h = conv(self.conv2, self.dropout(F.silu(self.norm2(h))))
            skip = conv(self.nin_shortcut, y) if self.nin_shortcut is not None else y
            return images_to_frames(skip + h, t)
        # LayerNorm is per position, so it runs on the video as is and only the convolutions see frames
        h = conv_frames(self.conv1, F.silu(self.norm1(x)))
        h = conv_frames(self.conv2, self.dropout(F.silu(self.norm2(h))))
        skip = conv_frames(self.nin_shortcut, x) if self.nin_shortcut is not None else x
        return skip + h


class ResBlock3D(nn.Module):
    """norm -> SiLU -> conv3x3x3 -> norm -> SiLU -> dropout -> conv3x3x3, plus 1x1x1 shortcut."""

    def __init__(self, cin: int, cout: int, norm: str = "layernorm", dropout: float = 0.0, causal: bool = True) -> None:
        super().__init__()
        self.norm1 = Norm(cin, norm)
        self.conv1 = CausalConv3d(cin, cout, 3, spatial_padding=1, causal=causal)
        self.norm2 = Norm(cout, norm)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(cout, cout, 3, spatial_padding=1, causal=causal)
        self.nin_shortcut = CausalConv3d(cin, cout, 1, causal=causal) if cin != cout else None

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        h = silu_conv(self.conv1, self.norm1(x), cache)
        if self.dropout.p and self.training:
            h = self.conv2(self.dropout(F.silu(self.norm2(h))), cache)
        else:
            h = silu_conv(self.conv2, self.norm2(h), cache)
        skip = self.nin_shortcut(x, cache) if self.nin_shortcut is not None else x
        return skip + h


class Attention(nn.Module):
    """Single-head spatial self-attention within each frame (H*W tokens), pre-norm, residual."""

    def __init__(self, channels: int, norm: str = "layernorm") -> None:
        super().__init__()
        self.norm = Norm(channels, norm)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        h = self.norm(x)
        b, c, t, hh, ww = h.shape

        def tokens(y: Tensor) -> Tensor:  # (B, C, T, H, W) -> (B*T, H*W, C)
            return y.permute(0, 2, 3, 4, 1).reshape(b * t, hh * ww, c)

        q, k, v = (tokens(layer(h, cache)) for layer in (self.q, self.k, self.v))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)  # back to (B, C, T, H, W)
        return x + self.proj_out(o, cache)


class Downsample2D(nn.Module):
    """Per-frame stride-2 conv after padding right and bottom by one pixel."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        return conv_frames(self.conv, F.pad(x, (0, 1, 0, 1)))


class Downsample3D(nn.Module):
    """Space-time stride-2 conv (3x3x3); spatial pad right/bottom by one, temporal pad as the model."""

    def __init__(self, cin: int, cout: int, causal: bool = True) -> None:
        super().__init__()
        self.conv = CausalConv3d(cin, cout, 3, stride=2, causal=causal)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)), cache)


class Upsample2D(nn.Module):
    """Per-frame nearest x2 followed by a 3x3 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        return conv_frames(self.conv, F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


def upsample_time_linear(x: Tensor, before: Tensor, after: Tensor) -> Tensor:
    """Linear x2 interpolation in time (align_corners=False), given the neighbour frames.

    Output frame 2i = 0.75 x_i + 0.25 x_{i-1} and 2i+1 = 0.75 x_i + 0.25 x_{i+1}, with ``before`` and
    ``after`` (one frame each) standing for x_{-1} and x_n. Replicating the end frames reproduces
    ``F.interpolate(mode="trilinear")`` exactly. The output keeps ``x``'s memory layout.
    """
    b, c, t, h, w = x.shape
    out = torch.empty((b, c, 2 * t, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    even, odd = out[:, :, 0::2], out[:, :, 1::2]
    even[:, :, :1] = 0.75 * x[:, :, :1] + 0.25 * before
    even[:, :, 1:] = 0.75 * x[:, :, 1:] + 0.25 * x[:, :, :-1]
    odd[:, :, :-1] = 0.75 * x[:, :, :-1] + 0.25 * x[:, :, 1:]
    odd[:, :, -1:] = 0.75 * x[:, :, -1:] + 0.25 * after
    return out


def upsample_time_nearest(x: Tensor) -> Tensor:
    """Every frame twice: ``x.repeat_interleave(2, dim=2)`` in ``x``'s memory layout."""
    b, c, t, h, w = x.shape
    out = torch.empty((b, c, 2 * t, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    out[:, :, 0::2] = x
    out[:, :, 1::2] = x
    return out


def upsample_space_bilinear(x: Tensor) -> Tensor:
    y, t = frames_to_images(x)
    return images_to_frames(F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False), t)


class Upsample3D(nn.Module):
    """Time x2 (``time_mode`` "trilinear": linear; "nearest": each frame twice) then space x2
    (bilinear), then a 3x3x3 conv.

    Causal: the first frame is only upsampled in space (it is the image frame); the others are
    interpolated in time among themselves, so T frames become 1 + 2(T - 1). Non-causal: every frame,
    T -> 2T. With linear interpolation each odd output frame depends on the *next* input frame, so
    streaming holds it back; nearest needs no neighbour.
    """

    def __init__(self, cin: int, cout: int, causal: bool = True, time_mode: str = "trilinear") -> None:
        super().__init__()
        if time_mode not in ("trilinear", "nearest"):
            raise ValueError(f"time_mode must be 'trilinear' or 'nearest', got {time_mode!r}")
        self.causal, self.time_mode = causal, time_mode
        self.conv = CausalConv3d(cin, cout, 3, spatial_padding=1, causal=causal)

    def _up_time(self, x: Tensor) -> Tensor:
        """The whole sequence x (B, C, T, h, w) -> (B, C, 2T, h, w), its end frames replicated."""
        if self.time_mode == "nearest":
            return upsample_time_nearest(x)
        return upsample_time_linear(x, x[:, :, :1], x[:, :, -1:])

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if cache is None:
            if self.causal:
                head, rest = x[:, :, :1], x[:, :, 1:]
                y = cat_frames([head, self._up_time(rest)]) if rest.shape[2] else head
            else:
                y = self._up_time(x)
        else:
            y = self._stream(x, cache)
        return self.conv(upsample_space_bilinear(y), cache)

    def _stream(self, x: Tensor, cache: StreamCache) -> Tensor:
        if not self.causal:
            raise ValueError("chunked inference needs a causal model; non-causal models run on the whole video")
        out = []
        if not cache.started(self):
            out.append(x[:, :, :1])  # the image frame
            x = x[:, :, 1:]
            cache.put(self, None)
        if self.time_mode == "nearest":  # no neighbour needed: nothing is held back
            if x.shape[2]:
                out.append(upsample_time_nearest(x))
            return cat_frames(out) if len(out) > 1 else out[0]
        held = cache.get(self)  # last frame seen, whose odd output still waits for its successor
        if x.shape[2]:
            seq = x if held is None else cat_frames([held, x])
            before = seq[:, :, :1] if held is None else held
            up = upsample_time_linear(seq, before, seq[:, :, -1:])
            if held is not None:
                up = up[:, :, 1:]  # the held frame's even output was emitted last time
            cache.put(self, seq[:, :, -1:].clone())  # not a view: seq is freed
            out.append(up[:, :, :-1])  # the last odd output needs the next frame
        if cache.final and cache.get(self) is not None:
            last = cache.get(self)
            if not x.shape[2]:
                out.append(last)  # odd output of the final frame with itself as neighbour
            else:
                out.append(up[:, :, -1:])
            cache.put(self, None)
        return cat_frames(out) if len(out) > 1 else out[0]
