"""Building blocks of the WF-VAE backbone.

Module and parameter names follow the official WF-VAE checkpoint (``norm1.norm.weight``,
``conv1.conv.weight`` for 3D convolutions, plain ``weight`` for per-frame 2D convolutions), so its
state dict loads without renaming. Every block takes video tensors (B, C, T, H, W) and an optional
:class:`~lcvae.models.stream.StreamCache` for chunked causal inference.

Half precision: a bf16 model runs every op in bf16 (bf16 has fp32's range; LayerNorm, GroupNorm and
attention accumulate in fp32 inside PyTorch's kernels). An fp16 model would overflow: activations of a
trained video VAE reach 1e4-1e5 in the residual stream and in the decoder's last layers, past fp16's
65504, which shows up as NaN frames. So with fp16 weights only the convolutions run in fp16 (see
:func:`conv`): activations travel in fp32 between layers, each convolution input is scaled by a power
of two into fp16's safe range and the output scaled back in fp32, and norms, residual sums and
attention run in fp32.

Temporal semantics:

* causal: a temporal kernel k sees the current frame and k - 1 frames before it; the video start is
  padded with copies of the first frame, so the first frame is encoded on its own;
* non-causal (what the reference LC-VAE trained): symmetric zero padding of (k - 1) // 2 frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcvae.models.stream import StreamCache


def frames_to_images(x: Tensor) -> tuple[Tensor, int]:
    """(B, C, T, H, W) -> (B*T, C, H, W), returning T to undo it."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), t


def images_to_frames(x: Tensor, t: int) -> Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).transpose(1, 2)


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
        return F.layer_norm(x.movedim(1, -1), self.norm.normalized_shape, weight, bias, 1e-6).movedim(-1, 1)


class Conv2d(nn.Conv2d):
    """A 2D convolution applied to every frame of a video."""

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:  # (B, C, T, H, W)
        y, t = frames_to_images(x)
        return images_to_frames(conv(self, y), t)


_MKLDNN = torch.backends.mkldnn.is_available()  # a property of the build; read once (dynamo cannot trace the call)


def _mkldnn_ok(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.shape[-1] * x.shape[-2] >= 256  # below ~16x16 pixels the generic kernel is as fast
        and x.dtype == weight.dtype == torch.float32
        and _MKLDNN
        and not torch.is_autocast_enabled("cpu")
    )


@torch.library.custom_op("lcvae::onednn_conv3d", mutates_args=())
def onednn_conv3d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: list[int],
    stride: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    """The oneDNN 3D convolution as an op compilers treat as opaque: ``aten.mkldnn_convolution`` has no
    fake-tensor rule, and a traced plain convolution would fall back to ``slow_conv3d`` on few frames."""
    return torch.ops.aten.mkldnn_convolution(x.contiguous(), weight, bias, padding, stride, dilation, groups)


@onednn_conv3d.register_fake
def _onednn_conv3d_shape(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    padding: list[int],
    stride: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    return F.conv3d(x.contiguous(), weight, bias, stride, padding, dilation, groups)


def _onednn_conv3d_setup(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, weight, bias, padding, stride, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.conv = (None if bias is None else [bias.shape[0]], padding, stride, dilation, groups)


def _onednn_conv3d_backward(ctx: Any, grad: Tensor) -> tuple:
    x, weight = ctx.saved_tensors
    bias_sizes, padding, stride, dilation, groups = ctx.conv
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias_sizes is not None and ctx.needs_input_grad[2]]
    gx, gw, gb = torch.ops.aten.convolution_backward(
        grad, x, weight, bias_sizes, stride, padding, dilation, False, [0] * len(padding), groups, mask
    )
    return gx, gw, gb, None, None, None, None


onednn_conv3d.register_autograd(_onednn_conv3d_backward, setup_context=_onednn_conv3d_setup)


def conv3d(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv(x)``, but always on oneDNN for fp32 CPU inputs.

    PyTorch picks its generic ``slow_conv3d`` kernel for 3D inputs with few frames (e.g. a chunk),
    which runs 2-6x slower than oneDNN on frames of 64x64 pixels; streaming inference lives on such
    inputs. The result is the same convolution (tested against ``conv(x)``). Eager calls the aten op
    directly; under ``torch.compile`` it goes through the :func:`onednn_conv3d` custom op, which the
    compiler can trace (it has a shape rule and a backward) but keeps on oneDNN.
    """
    if _mkldnn_ok(x, conv.weight):
        if not x.is_contiguous(memory_format=torch.channels_last_3d):
            x = x.contiguous()
        args = (x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        if torch.compiler.is_compiling():
            return onednn_conv3d(*args)
        return torch.ops.aten.mkldnn_convolution(*args)
    return conv(x)


# fp16 convolution inputs are scaled to |x| <= 65504 / 256: a convolution may then amplify by 256 (sum of
# |weights| of one output) before its fp16 accumulator overflows. Power-of-two scales are exact.
_FP16_INPUT_BOUND = 256.0


def _fp16_conv(layer: nn.Conv2d | nn.Conv3d, x: Tensor) -> Tensor:
    """``layer(x)`` with fp16 weights on an input of any range: fp32 in, fp32 out, fp16 arithmetic."""
    x = x.float()
    peak = x.detach().abs().amax().clamp_min(_FP16_INPUT_BOUND)
    scale = torch.exp2(torch.ceil(torch.log2(peak / _FP16_INPUT_BOUND)))  # 1 for inputs already in range
    y = layer._conv_forward((x / scale).half(), layer.weight, None).float() * scale
    if layer.bias is not None:
        y = y + layer.bias.float().view(-1, *([1] * (y.dim() - 2)))
    return y


def channels_last(x: Tensor) -> Tensor:
    """``x`` (N, C, H, W) or (N, C, T, H, W) laid out channels-last (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)


def _wants_channels_last(numel: int, weight: Tensor) -> bool:
    """Whether a CPU convolution of an input of ``numel`` elements should run channels-last: only when the
    input outweighs the weight, which PyTorch copies to channels-last on every such call (a chunk of a
    few frames through a wide layer is cheaper to convert the other way)."""
    return numel >= weight.numel()


def conv(layer: nn.Conv2d | nn.Conv3d, x: Tensor) -> Tensor:
    """Apply a 2D (on (N, C, H, W)) or 3D convolution layer: oneDNN for fp32 CPU 3D convolutions
    (:func:`conv3d`), the fp16 guard of :func:`_fp16_conv` for fp16 weights, else the layer's own.

    On a CPU the input goes channels-last: oneDNN runs most of WF-VAE-L's convolution shapes faster
    there (benchmarks/bench_flops.py counts them), its outputs stay channels-last, so the layout change
    happens once per stream, LayerNorm over channels reads a contiguous view and temporal padding needs
    no generic-kernel fallback. PyTorch copies the weight to channels-last on each such call (caching
    the copies would double weight memory), so inputs smaller than their weight (short chunks) run
    channels-first instead. Traced graphs and CUDA keep their layout.
    """
    if layer.weight.dtype == torch.float16:
        return _fp16_conv(layer, x)
    if x.device.type == "cpu" and x.dim() >= 4 and not torch.compiler.is_compiling():
        x = channels_last(x) if _wants_channels_last(x.numel(), layer.weight) else x.contiguous()
    if isinstance(layer, nn.Conv3d):
        return conv3d(layer, x)
    return layer._conv_forward(x, layer.weight, layer.bias)


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
        return conv(self.conv, x)


def silu_conv(layer: CausalConv3d, h: Tensor, cache: StreamCache | None = None) -> Tensor:
    """``layer(F.silu(h), cache)``, with SiLU writing straight into the temporally padded buffer the
    convolution reads: saves :func:`temporal_pad`'s copy of the whole activation, and SiLU's output lands
    channels-first whatever the layout of ``h`` (LayerNorm hands over a channels-last view).

    Whole-video inference only: streaming, strides, autograd (``out=`` ops have no backward) and traced
    graphs (the compiler fuses the padding itself) take the plain path, which gives the same numbers.
    """
    if (
        cache is not None
        or layer.st != 1
        or layer.kt == 1
        or torch.compiler.is_compiling()
        or (torch.is_grad_enabled() and h.requires_grad)
    ):
        return layer(F.silu(h), cache)
    b, c, t, hh, ww = h.shape
    front = layer.kt - 1 if layer.causal else (layer.kt - 1) // 2
    back = 0 if layer.causal else (layer.kt - 1) // 2
    buf = h.new_empty(b, c, front + t + back, hh, ww)
    if h.device.type == "cpu" and _wants_channels_last(buf.numel(), layer.conv.weight):
        buf = channels_last(buf)  # the layout conv() would convert to
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
        return torch.cat([x[:, :, :1].expand(-1, -1, kernel - 1, -1, -1), x], dim=2) if kernel > 1 else x
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
        y, t = frames_to_images(x)
        h = conv(self.conv1, F.silu(self.norm1(y)))
        h = conv(self.conv2, self.dropout(F.silu(self.norm2(h))))
        skip = conv(self.nin_shortcut, y) if self.nin_shortcut is not None else y
        return images_to_frames(skip + h, t)


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
        skip = self.nin_shortcut(x) if self.nin_shortcut is not None else x
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

        o = F.scaled_dot_product_attention(tokens(self.q(h)), tokens(self.k(h)), tokens(self.v(h)))
        o = o.reshape(b, t, hh, ww, c).permute(0, 4, 1, 2, 3)  # back to (B, C, T, H, W)
        return x + self.proj_out(o)


class Downsample2D(nn.Module):
    """Per-frame stride-2 conv after padding right and bottom by one pixel."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        y, t = frames_to_images(x)
        return images_to_frames(conv(self.conv, F.pad(y, (0, 1, 0, 1))), t)


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
        y, t = frames_to_images(x)
        return images_to_frames(conv(self.conv, F.interpolate(y, scale_factor=2.0, mode="nearest")), t)


def upsample_time_linear(x: Tensor, before: Tensor, after: Tensor) -> Tensor:
    """Linear x2 interpolation in time (align_corners=False), given the neighbour frames.

    Output frame 2i = 0.75 x_i + 0.25 x_{i-1} and 2i+1 = 0.75 x_i + 0.25 x_{i+1}, with ``before`` and
    ``after`` (one frame each) standing for x_{-1} and x_n. Replicating the end frames reproduces
    ``F.interpolate(mode="trilinear")`` exactly.
    """
    prev = torch.cat([before, x[:, :, :-1]], dim=2)
    nxt = torch.cat([x[:, :, 1:], after], dim=2)
    even = 0.75 * x + 0.25 * prev
    odd = 0.75 * x + 0.25 * nxt
    b, c, t, h, w = x.shape
    return torch.stack([even, odd], dim=3).reshape(b, c, 2 * t, h, w)


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
            return x.repeat_interleave(2, dim=2)
        return upsample_time_linear(x, x[:, :, :1], x[:, :, -1:])

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        if cache is None:
            if self.causal:
                head, rest = x[:, :, :1], x[:, :, 1:]
                y = torch.cat([head, self._up_time(rest)], dim=2) if rest.shape[2] else head
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
                out.append(x.repeat_interleave(2, dim=2))
            return torch.cat(out, dim=2) if len(out) > 1 else out[0]
        held = cache.get(self)  # last frame seen, whose odd output still waits for its successor
        if x.shape[2]:
            seq = x if held is None else torch.cat([held, x], dim=2)
            before = seq[:, :, :1] if held is None else held
            up = upsample_time_linear(seq, before, seq[:, :, -1:])
            if held is not None:
                up = up[:, :, 1:]  # the held frame's even output was emitted last time
            cache.put(self, seq[:, :, -1:])
            out.append(up[:, :, :-1])  # the last odd output needs the next frame
        if cache.final and cache.get(self) is not None:
            last = cache.get(self)
            if not x.shape[2]:
                out.append(last)  # odd output of the final frame with itself as neighbour
            else:
                out.append(up[:, :, -1:])
            cache.put(self, None)
        return torch.cat(out, dim=2) if len(out) > 1 else out[0]
