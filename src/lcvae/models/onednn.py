"""Convolutions for the WF-VAE blocks: oneDNN on the CPU, one memory layout per dtype, fp16's overflow guard.

Memory layout on the CPU. oneDNN runs a convolution on channels-first (N, C, T, H, W) or channels-last
(N, T, H, W, C in memory) input; which is faster depends on dtype and shape, but switching between the
two costs more than either choice: a layout change is a transposing copy that PyTorch runs at memory
latency, about 10-20x the time of an elementwise op on the same tensor (SiLU, the residual add), and a
switch hidden in an op (SiLU writing a channels-last input into a channels-first buffer, LayerNorm
reading a channels-first input) costs the same. So a CPU model picks one layout per dtype,
:func:`cpu_memory_format`, and keeps its activations there: :func:`conv` converts an input that
arrives otherwise (the network's first layer), :func:`empty_like_layout` allocates buffers in it,
:func:`cat_frames` concatenates in it, :func:`conv_frames` runs per-frame 2D layers as (1, k, k) 3D
convolutions on the video and :func:`channel_layer_norm` normalises either layout in place.

Traced graphs (the compiler plans layouts itself) and CUDA keep their inputs' layout.

Half precision: a bf16 model runs its convolutions in bf16 like any op. An fp16 model would overflow
(activations of a trained video VAE reach 1e4-1e5, past fp16's 65504), so with fp16 weights only the
convolutions run in fp16 (:func:`_fp16_conv`): the input is scaled by a power of two into fp16's safe
range, the output scaled back in fp32.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_MKLDNN = torch.backends.mkldnn.is_available()  # a property of the build; read once (dynamo cannot trace the call)
_MKLDNN_BF16 = _MKLDNN and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _mkldnn_ok(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.shape[-1] * x.shape[-2] >= 256  # below ~16x16 pixels the generic kernel is as fast
        and x.dtype == weight.dtype
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _MKLDNN_BF16))
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


def conv3d(conv: nn.Conv3d, x: Tensor, packer: WeightPacker | None = None) -> Tensor:
    """``conv(x)``, but always on oneDNN for fp32 and bf16 CPU inputs.

    PyTorch picks its generic ``slow_conv3d`` kernel for 3D inputs with few frames (e.g. a chunk),
    which runs 2-6x slower than oneDNN on frames of 64x64 pixels; streaming inference lives on such
    inputs. The result is the same convolution (tested against ``conv(x)``). Eager calls the aten op
    directly; under ``torch.compile`` it goes through the :func:`onednn_conv3d` custom op, which the
    compiler can trace (it has a shape rule and a backward) but keeps on oneDNN.

    A streaming pass hands its :class:`WeightPacker`, which may run the layer on a packed weight instead.
    """
    packed = _PACKED.get(conv) if _PACKED else None
    if packed is None and packer is not None:
        packed = packer.pack(conv, x)
    if packed is not None:
        return _packed_conv3d(conv, packed, x)
    if _mkldnn_ok(x, conv.weight):
        if not x.is_contiguous(memory_format=torch.channels_last_3d):
            x = x.contiguous()
        args = (x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        if torch.compiler.is_compiling():
            return onednn_conv3d(*args)
        return torch.ops.aten.mkldnn_convolution(*args)
    return conv(x)


# -- packed weights for streaming ------------------------------------------------------------------

# Chunked inference runs every layer once per chunk, and oneDNN reorders a plain weight into its blocked
# format on every call: a memory-bound pass over the weight that, where the weight is large and the
# chunk's output small (the 16x16-pixel layers of WF-VAE-L: 16-87 MB weights, one or two frames), takes
# as long as the convolution itself. A packed weight is reordered once per video instead. Keeping both
# copies would add the model's size to peak memory, so the packed weight replaces the parameter's data
# for the pass (``WeightPacker.release`` restores it, bit for bit: a reorder is a permutation).
_PACK_MAX_POSITIONS = 512  # output T*H*W up to which the packed kernel beats a per-call reorder (~2x at 256)
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # nn.Conv3d -> its packed weight, while swapped


def _packed_conv3d(conv: nn.Conv3d, packed: Tensor, x: Tensor) -> Tensor:
    """``conv(x)`` while ``conv``'s weight is held packed (its parameter is then empty)."""
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or x.dtype != packed.dtype:
        # a call outside the streaming pass that packed it: the plain twin, on a dense copy
        w = packed.to_dense()
        return F.conv3d(x.to(w.dtype), w, conv.bias, args[1], args[0], args[2], args[3])
    y = torch.ops.mkldnn._convolution_pointwise(x, packed, conv.bias, *args, "none", [], None)
    return y.contiguous(memory_format=memory_format_of(x))  # the kernel writes channels-last


class WeightPacker:
    """Packs 3D convolution weights for one streaming pass (see above); ``release`` restores them.

    A layer is packed at its first call in the pass when it qualifies (fp32 CPU inference on oneDNN, a
    small output); later calls, whatever their size, run packed. Until ``release``, the packed layers'
    weights are empty tensors: other calls on the model still work (they find the packed weight), but
    reading, saving or training its parameters must wait for the pass to end. ``enabled=False`` is the
    plain twin (every call reorders, the parameters stay as they are).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._mine: list[nn.Conv3d] = []

    def _qualifies(self, conv: nn.Conv3d, x: Tensor) -> bool:
        w = conv.weight
        if not (
            self.enabled
            and _MKLDNN
            and x.device.type == "cpu"
            and x.dtype == w.dtype == torch.float32
            and w.is_contiguous()
            and w.numel() > 0
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch.is_autocast_enabled("cpu")
        ):
            return False
        positions = 1
        for n, k, s, p in zip(x.shape[2:], w.shape[2:], conv.stride, conv.padding, strict=True):
            positions *= (n + 2 * p - k) // s + 1
        return positions <= _PACK_MAX_POSITIONS

    def pack(self, conv: nn.Conv3d, x: Tensor) -> Tensor | None:
        """The packed weight to run ``conv`` on ``x`` with, or None for the plain path."""
        if not self._qualifies(conv, x):
            return None
        w = conv.weight
        args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups, list(x.shape))
        packed = torch.ops.mkldnn._reorder_convolution_weight(w.detach(), *args)
        _PACKED[conv] = packed
        w.data = w.data.new_empty(0)  # frees the plain copy (unless something else holds it)
        self._mine.append(conv)
        return packed

    def release(self) -> None:
        """Give back the plain weights of every layer this packer packed."""
        while self._mine:
            conv = self._mine.pop()
            packed = _PACKED.pop(conv, None)
            if packed is not None:
                conv.weight.data = packed.to_dense()


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


# -- memory layout ------------------------------------------------------------------------------


def channels_last(x: Tensor) -> Tensor:
    """``x`` (N, C, H, W) or (N, C, T, H, W) laid out channels-last (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)


def cpu_memory_format(dtype: torch.dtype, dim: int) -> torch.memory_format:
    """The layout a CPU model of ``dtype`` keeps its ``dim``-D (4 or 5) activations in (see the module doc).

    bf16: channels-last, where oneDNN's bf16 (AMX) kernels beat channels-first on 26-32 of WF-VAE-L's
    33 shapes (up to 2x at 64x64 pixels). fp32: channels-first, where its fp32 kernels run most of
    WF-VAE-L's 3x3x3 convolutions 5-50 % faster than channels-last, and the whole encode + decode 6 %
    faster (2 threads; benchmarks/bench_flops.py times both layouts for every shape); LayerNorm then
    goes through :func:`channel_layer_norm`.
    """
    if dtype == torch.bfloat16:
        return torch.channels_last_3d if dim == 5 else torch.channels_last
    return torch.contiguous_format


def uses_cpu_layout(x: Tensor) -> bool:
    """Whether ops on ``x`` (4-D or 5-D) follow :func:`cpu_memory_format`: eager CPU tensors. Traced
    graphs and other devices take the plain path (each op keeps its input's layout)."""
    return x.device.type == "cpu" and x.dim() >= 4 and not torch.compiler.is_compiling()


def memory_format_of(x: Tensor) -> torch.memory_format:
    """Channels-last if ``x`` (4-D or 5-D) is laid out so, including channel slices of such tensors."""
    if x.dim() in (4, 5) and x.stride(1) == 1 and x.shape[1] > 1:
        return torch.channels_last_3d if x.dim() == 5 else torch.channels_last
    return torch.contiguous_format


def empty_like_layout(x: Tensor, *shape: int) -> Tensor:
    """An uninitialised tensor of ``shape`` with ``x``'s dtype and device, in the layout a convolution of
    ``x`` will run in: the CPU model layout, else ``x``'s own (a buffer the next layer reads as is)."""
    fmt = cpu_memory_format(x.dtype, len(shape)) if uses_cpu_layout(x) else memory_format_of(x)
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def channel_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over the channels (dim 1) of ``x`` (B, C, ...) at every position, output in ``x``'s layout.

    Channels-last (or a channel slice of it): the channel axis is innermost, LayerNorm reads a view.
    A contiguous channels-first CPU tensor is, per batch element, a (C, positions) matrix whose columns
    need normalising: exactly what batch normalisation does to a batch of C samples with one "channel"
    per position. ``F.batch_norm`` in training mode streams over the matrix in its own layout (no
    transpose; ``F.layer_norm`` would copy the input to channels-last and back, 5x the time), then
    the per-channel affine is applied in place. Statistics as LayerNorm's (biased variance, ``eps``
    inside the root), so the result equals it to float rounding.
    """
    if x.stride(1) == 1 or not x.is_contiguous() or not uses_cpu_layout(x) or x.shape[1] == 1:
        return F.layer_norm(x.movedim(1, -1), (x.shape[1],), weight, bias, eps).movedim(-1, 1)
    c = x.shape[1]
    outs = []
    for xi in x:  # (C, ...) per batch element
        y = F.batch_norm(xi.reshape(c, -1), None, None, training=True, eps=eps)  # (C, N), columns normalised
        outs.append(y.mul_(weight[:, None]).add_(bias[:, None]).view(xi.shape))
    return outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs)


def cat_frames(parts: list[Tensor]) -> Tensor:
    """``torch.cat(parts, dim=2)`` of videos (B, C, t_i, H, W) in the layout of the last part (``torch.cat``
    lays the result out channels-first when the first part is an expanded frame)."""
    last = parts[-1]
    if not uses_cpu_layout(last):
        return torch.cat(parts, dim=2)
    b, c, _, h, w = last.shape
    out = torch.empty(
        (b, c, sum(p.shape[2] for p in parts), h, w),
        dtype=last.dtype,
        device=last.device,
        memory_format=memory_format_of(last),
    )
    start = 0
    for p in parts:
        out[:, :, start : start + p.shape[2]] = p
        start += p.shape[2]
    return out


def conv(layer: nn.Conv2d | nn.Conv3d, x: Tensor, packer: WeightPacker | None = None) -> Tensor:
    """Apply a 2D (on (N, C, H, W)) or 3D convolution layer: oneDNN for fp32 and bf16 CPU 3D
    convolutions (:func:`conv3d`), the fp16 guard of :func:`_fp16_conv` for fp16 weights, else the
    layer's own. CPU inputs are first put in the model layout (:func:`cpu_memory_format`; a no-op
    after the first layer, since oneDNN's outputs keep their input's layout). ``packer``: see
    :class:`WeightPacker`."""
    if layer.weight.dtype == torch.float16:
        return _fp16_conv(layer, x)
    if uses_cpu_layout(x):
        x = x.contiguous(memory_format=cpu_memory_format(x.dtype, x.dim()))
    if isinstance(layer, nn.Conv3d):
        return conv3d(layer, x, packer)
    return layer._conv_forward(x, layer.weight, layer.bias)


def frames_to_images(x: Tensor) -> tuple[Tensor, int]:
    """(B, C, T, H, W) -> (B*T, C, H, W), returning T to undo it."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), t


def images_to_frames(x: Tensor, t: int) -> Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape(bt // t, t, c, h, w).transpose(1, 2)


def conv_frames(layer: nn.Conv2d, x: Tensor) -> Tensor:
    """A 2D convolution ``layer`` applied to every frame of a video (B, C, T, H, W).

    On a CPU it runs as the 3D convolution with kernel (1, kh, kw) (the 2D weight viewed with a unit time
    axis, stored unchanged), so the video keeps its layout: in channels-first layout the frame batch
    (B*T, C, H, W) is a copy, and the video it gives back is strided, which every later op would pay
    for. Elsewhere the plain twin: frames to images, the 2D convolution, back (the same numbers).
    """
    if (
        uses_cpu_layout(x)
        and layer.weight.dtype != torch.float16
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    ):
        x = x.contiguous(memory_format=cpu_memory_format(x.dtype, 5))
        w = layer.weight.unsqueeze(2)  # (O, I, 1, kh, kw), a view
        padding, stride, dilation = [0, *layer.padding], [1, *layer.stride], [1, *layer.dilation]
        if _mkldnn_ok(x, w):
            return torch.ops.aten.mkldnn_convolution(x, w, layer.bias, padding, stride, dilation, layer.groups)
        return F.conv3d(x, w, layer.bias, stride, padding, dilation, layer.groups)
    y, t = frames_to_images(x)
    return images_to_frames(conv(layer, y), t)
