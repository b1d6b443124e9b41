"""The CPU memory-layout fast paths (lcvae.models.onednn, layers.conv_frames) against their plain twins.

On a CPU the model keeps its activations in one layout per dtype (channels-first fp32, channels-last
bf16); the plain twin is what traced graphs and other devices run, where every op keeps its input's
layout (``uses_cpu_layout`` false). Both must give the same numbers, op by op and for a whole model,
including after a dtype change, a state-dict load and an optimizer step.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import replace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from lcvae.models import layers, onednn
from lcvae.models.autoencoder import WFVAE
from lcvae.models.layers import conv_frames, frames_to_images, images_to_frames, upsample_time_nearest
from lcvae.models.onednn import cat_frames, channel_layer_norm, cpu_memory_format
from lcvae.models.wfvae import WFVAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=4)
CL = torch.channels_last_3d


@contextlib.contextmanager
def plain_layout():
    """Run the plain twin: no op follows the CPU model layout."""
    with mock.patch.object(onednn, "uses_cpu_layout", lambda x: False):
        with mock.patch.object(layers, "uses_cpu_layout", lambda x: False):
            yield


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channel_layer_norm_of_a_channels_first_video_is_layer_norm(batch, dtype):
    torch.manual_seed(0)
    x = torch.randn(batch, 24, 3, 8, 10).to(dtype)  # channels-first: the blocked-transpose path
    w, b = torch.randn(24).to(dtype), torch.randn(24).to(dtype)
    got = channel_layer_norm(x, w, b, 1e-6)
    want = F.layer_norm(x.movedim(1, -1), (24,), w, b, 1e-6).movedim(-1, 1)
    exact = F.layer_norm(x.double().movedim(1, -1), (24,), w.double(), b.double(), 1e-6).movedim(-1, 1)
    assert got.is_contiguous() and got.dtype == dtype  # stays channels-first
    if dtype == torch.float32:
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    else:  # bf16: as close to the exact value as LayerNorm's own kernel, up to one rounding
        assert (got.double() - exact).abs().max() <= (want.double() - exact).abs().max() + 2**-7 * exact.abs().max()
    cl = channel_layer_norm(x.contiguous(memory_format=CL), w, b, 1e-6)
    assert is_channels_last(cl) and torch.equal(cl, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "layer",
    [
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.Conv2d(8, 12, 1),
    ],
    ids=["3x3", "3x3-stride2", "1x1"],
)
def test_per_frame_convolution_as_3d_equals_convolving_each_frame(layer, dtype):
    """conv_frames runs a 2D layer as a (1, kh, kw) 3D convolution on the video; the twin convolves the
    frames as images. Frames of 16x16 and up take oneDNN, smaller ones PyTorch's own 3D kernel."""
    torch.manual_seed(1)
    layer = layer.to(dtype)
    for hw in (17, 8):
        x = torch.randn(2, 8, 3, hw, hw).to(dtype)
        with torch.no_grad():
            got = conv_frames(layer, x)
            y, t = frames_to_images(x)
            want = images_to_frames(layer(y), t)
        assert got.shape == want.shape
        assert got.is_contiguous(memory_format=cpu_memory_format(dtype, 5))
        tol = 1e-5 if dtype == torch.float32 else 1e-2
        assert (got.float() - want.float()).abs().max() <= tol * want.float().abs().max()


def test_cat_frames_is_torch_cat_in_the_layout_of_the_last_part():
    x = torch.randn(1, 6, 4, 5, 5).contiguous(memory_format=CL)
    parts = [x[:, :, :1].expand(-1, -1, 2, -1, -1), x]
    got = cat_frames(parts)
    assert torch.equal(got, torch.cat(parts, dim=2))
    assert is_channels_last(got)
    assert not is_channels_last(torch.cat(parts, dim=2))  # what torch.cat does with an expanded first part


def test_nearest_time_upsampling_is_repeat_interleave_and_keeps_the_layout():
    x = torch.randn(1, 4, 3, 5, 5).contiguous(memory_format=CL)
    got = upsample_time_nearest(x)
    assert torch.equal(got, x.repeat_interleave(2, dim=2))
    assert is_channels_last(got)


def test_model_layout_is_one_per_dtype():
    """conv() hands out the dtype's layout, so the stream after the first layer never switches."""
    layer = torch.nn.Conv3d(8, 8, 3, padding=1)
    x = torch.randn(1, 8, 3, 16, 16)
    assert layers.conv(layer, x).is_contiguous()
    assert is_channels_last(layers.conv(layer.to(torch.bfloat16), x.bfloat16()))


def encode_decode(model: WFVAE, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(model.encode(x, chunk=chunk).mode(), chunk=None if chunk is None else 1)


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, exact: torch.Tensor | None = None) -> None:
    """fp32: equal to 1e-5 of the output's range. bf16, where the two paths round their intermediates
    differently: as close to the fp32 model's output ``exact`` as the plain path (within 25 %)."""
    assert got.dtype == want.dtype == dtype and got.is_contiguous()
    err = (got.float() - want.float()).abs().max().item()
    if dtype == torch.float32:
        assert err <= 1e-5 * want.abs().max().item(), f"max |fast - plain| = {err:.3g}"
        return
    fast, plain = ((t.float() - exact).abs().max().item() for t in (got, want))
    assert fast <= 1.25 * plain + 1e-3, f"bf16 error against fp32: fast {fast:.3g}, plain {plain:.3g}"


VARIANTS = {
    "causal": (TINY, 9, (None, 4)),
    "groupnorm-noncausal": (replace(TINY, norm="groupnorm", causal=False), 8, (None,)),
    "nearest-time": (replace(TINY, t_interpolation="nearest"), 9, (None, 4)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_whole_model_in_cpu_layout_equals_its_plain_twin(variant, dtype):
    """Encoder and decoder of a tiny WF-VAE (2D and 3D residual blocks, attention, up- and downsampling,
    energy flows), whole-video and chunked, in the CPU layout and with every op keeping its input's."""
    cfg, frames, chunks = VARIANTS[variant]
    torch.manual_seed(2)
    model = WFVAE(cfg).eval()
    x = torch.rand(1, 3, frames, 32, 32) * 2 - 1
    half = copy.deepcopy(model).to(dtype)
    for chunk in chunks:
        exact = encode_decode(model, x, chunk)
        got = encode_decode(half, x.to(dtype), chunk)
        with plain_layout():
            want = encode_decode(half, x.to(dtype), chunk)
        assert_close(got, want, dtype, exact)


def test_cpu_layout_follows_weights_after_load_optimizer_step_and_cast():
    """Nothing derived from the weights is kept between calls: after load_state_dict, an optimizer step
    and a cast to bf16 the fast path still equals the plain one on the new weights."""
    torch.manual_seed(3)
    model = WFVAE(TINY)
    other = WFVAE(TINY)
    model.load_state_dict(other.state_dict())
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model.decode(model.encode(x).mode()).square().mean().backward()
    opt.step()
    model.eval()
    before = copy.deepcopy(other).eval()
    exact = encode_decode(model, x)
    for m, dtype in ((model, torch.float32), (copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16)):
        got = encode_decode(m, x.to(dtype))
        with plain_layout():
            want = encode_decode(m, x.to(dtype))
        assert_close(got, want, dtype, exact)
    assert (exact - encode_decode(before, x)).abs().max() > 1e-4  # the step changed the weights
