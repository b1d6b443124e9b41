"""Half precision as a model dtype: ``model.to(torch.bfloat16)`` / ``.to(torch.float16)``.

bf16 runs every op in bf16 and must stay within 40 dB PSNR of fp32. fp16 keeps activations in fp32
between layers and runs only the (input-scaled) convolutions in fp16, so activations beyond fp16's
65504 stay finite; what still overflows fails with an error naming bf16. CPU runs fp16 convolutions
(slowly), so the fp16 tests use small inputs; speed in fp16 is a CUDA matter (benchmarks/gpu_bench.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lcvae.models.layers import _fp16_conv, conv
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b``, both mapped from [-1, 1] to [0, 1] (peak 1)."""
    mse = ((a.float() - b.float()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def smooth_videos(n: int, frames: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, frames, size, size) in [-1, 1]: a few drifting low-frequency sinusoids per channel."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).view(-1, 1, 1) / frames
    yy = torch.arange(size).view(1, -1, 1) / size
    xx = torch.arange(size).view(1, 1, -1) / size
    out = torch.zeros(n, 3, frames, size, size)
    for i in range(n):
        for c in range(3):
            for _ in range(3):
                fy, fx, ft, phase = (torch.rand(4, generator=g) * torch.tensor([3.0, 3.0, 2.0, 6.28])).tolist()
                out[i, c] += torch.sin(6.28 * (fy * yy + fx * xx + ft * t) + phase) / 3
    return out.clamp(-1, 1)


def _copy(model: LCVAE, dtype: torch.dtype) -> LCVAE:
    twin = LCVAE(model.config).eval()
    twin.load_state_dict(model.state_dict())
    return twin.to(dtype)


@pytest.fixture(scope="module")
def trained_tiny() -> LCVAE:
    """lcvae-tiny fitted to a smooth video for 20 Adam steps (~15 s on one core): weights shaped by data,
    unlike random ones, whose activations no training has kept in range (the harder case, tested too)."""
    torch.manual_seed(0)
    model = LCVAE(get_preset("lcvae-tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x = smooth_videos(1, 33, 32, seed=0)
    losses = []
    for _ in range(20):
        out = model(x, sample_posterior=False)
        loss = F.mse_loss(out.reconstruction, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]  # it did learn something
    return model.eval()


def test_bf16_trained_tiny_within_40db_of_fp32(trained_tiny):
    x = smooth_videos(1, 33, 64, seed=1)
    half = _copy(trained_tiny, torch.bfloat16)
    with torch.no_grad():
        want = trained_tiny.reconstruct(x)
        got = half.reconstruct(x.bfloat16())
        z = trained_tiny.diffusion_latent(x)
        z_half = half.diffusion_latent(x.bfloat16())
    assert got.dtype == z_half.dtype == torch.bfloat16
    assert psnr(got, want) >= 40
    # the latent diffusion sees: bf16 keeps 8 mantissa bits, so ~1 % of the latent's spread
    assert (z_half.float() - z).abs().max() <= 0.05 * z.abs().max()


def test_bf16_random_tiny_within_40db_of_fp32():
    torch.manual_seed(3)
    model = LCVAE(get_preset("lcvae-tiny")).eval()
    x = torch.rand(1, 3, 33, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        assert psnr(_copy(model, torch.bfloat16).reconstruct(x.bfloat16()), model.reconstruct(x)) >= 40


def test_half_model_casts_every_float_buffer_and_keeps_index_buffers():
    config = LCVAEConfig(
        **{**get_preset("lcvae-tiny").__dict__, "latent_mean": [0.1, 0.2, 0.3, 0.4], "latent_std": [1.5, 2.0, 2.5, 3.0]}
    )
    model = LCVAE(config).to(torch.bfloat16)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.bfloat16, name
        else:
            assert t.dtype == torch.long, name  # e.g. the compressor's kept_index
    assert model.latent_std.flatten().tolist() == [1.5, 2.0, 2.5, 3.0]  # exact in bf16
    assert set(model.compressor.signs.unique().tolist()) == {-1.0, 1.0}


def test_bf16_tiled_and_chunked_close_to_fp32():
    torch.manual_seed(5)
    model = LCVAE(get_preset("lcvae-tiny")).eval()
    half = _copy(model, torch.bfloat16)
    x = torch.rand(1, 3, 33, 64, 64, generator=torch.Generator().manual_seed(6)) * 2 - 1
    with torch.no_grad():
        tiled = half.reconstruct(x.bfloat16(), tile=48, overlap=16)
        z = half.diffusion_latent(x.bfloat16())
        chunked = half.decode_latent(z, chunk=3)
        assert tiled.dtype == chunked.dtype == torch.bfloat16
        assert psnr(tiled, model.reconstruct(x, tile=48, overlap=16)) >= 40
        assert psnr(chunked, model.decode_latent(z.float(), chunk=3)) >= 40


def test_fp16_conv_equals_fp32_conv_beyond_fp16_range():
    """The plain twin of the fp16 guard: an input peaking at 1e6 (fp16 overflows at 65504)."""
    torch.manual_seed(7)
    for layer, shape in (
        (torch.nn.Conv3d(8, 16, 3, padding=1), (1, 8, 3, 10, 10)),
        (torch.nn.Conv2d(8, 16, 3), (2, 8, 9, 9)),
    ):
        x = torch.randn(*shape) * 1e6
        want = layer(x)
        assert want.abs().max() > 65504
        got = _fp16_conv(layer.half(), x)
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert (got - want).abs().max() <= 2e-3 * want.abs().max()
        assert not torch.isfinite(
            F.conv2d(x.half(), layer.weight, layer.bias)
            if x.dim() == 4
            else F.conv3d(x.half(), layer.weight, layer.bias, padding=1)
        ).all()
        layer.float()
        assert torch.equal(conv(layer, x), layer(x))  # fp32 layers: the plain convolution


def test_fp16_model_survives_activations_beyond_fp16_range():
    """The encoder's residual stream goes past 65504 (its first convolutions' biases set to 6e4, like the
    "massive activations" of trained networks); the output, after the last norm, is in range: the fp16
    model matches fp32 where all-fp16 arithmetic would give inf."""
    torch.manual_seed(8)
    model = LCVAE(get_preset("wfvae-tiny")).eval()
    with torch.no_grad():
        model.backbone.encoder.down1[0].bias.fill_(6e4)  # itself still an fp16 number
        model.backbone.encoder.down2[0].bias.fill_(6e4)
    peaks = []
    for block in model.backbone.encoder.down2:
        block.register_forward_hook(lambda m, i, o: peaks.append(float(o.abs().max())))
    x = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(9)) * 2 - 1
    with torch.no_grad():
        want = model.backbone.encode_moments(x).moments
        assert max(peaks) > 65504  # all-fp16 arithmetic would hold inf here
        got = _copy(model, torch.float16).backbone.encode_moments(x.half()).moments
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    assert (got.float() - want).abs().max() <= 1e-2 * want.abs().max()


def test_fp16_overflowing_output_fails_naming_bf16():
    torch.manual_seed(10)
    model = LCVAE(get_preset("wfvae-tiny")).eval()
    with torch.no_grad():
        model.backbone.decoder.conv_out.weight.mul_(1e7)
    z = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        assert model.decode_latent(z).abs().max() > 65504
        with pytest.raises(FloatingPointError, match="bf16"):
            _copy(model, torch.float16).decode_latent(z.half())
        assert torch.isfinite(_copy(model, torch.bfloat16).decode_latent(z.bfloat16())).all()


def test_fp16_trained_tiny_within_40db_of_fp32(trained_tiny):
    x = smooth_videos(1, 33, 32, seed=2)
    with torch.no_grad():
        got = _copy(trained_tiny, torch.float16).reconstruct(x.half())
        want = trained_tiny.reconstruct(x)
    assert got.dtype == torch.float16
    assert psnr(got, want) >= 50  # fp16 keeps 11 mantissa bits against bf16's 8
