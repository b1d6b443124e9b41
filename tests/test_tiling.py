"""Spatial tiling: blending is a partition of unity and exact for spatially local networks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lcvae.models.autoencoder import WFVAE
from lcvae.models.tiling import tile_starts, tiled_apply
from lcvae.models.wfvae import WFVAEConfig


def test_tile_starts_cover_the_frame_on_the_stride_grid():
    starts = tile_starts(200, 64, 16, align=8)
    assert starts[0] == 0 and starts[-1] + 64 == 200
    assert all(s % 8 == 0 for s in starts)
    assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))  # every gap keeps >= 16 overlap
    assert tile_starts(50, 64, 16, align=8) == [0]
    with pytest.raises(ValueError, match="multiples of 8"):
        tile_starts(200, 60, 16, align=8)


@pytest.mark.parametrize("size, tile, overlap", [(96, 32, 8), (104, 48, 16), (64, 64, 16)])
def test_tiled_equals_whole_for_a_local_network(size, tile, overlap):
    x = torch.randn(1, 2, 3, size, size + 16)

    def down(t):  # each output pixel sees only its own 8x8 block
        return F.avg_pool3d(t, (1, 8, 8)) * 3.0 - 1.0

    def up(t):
        return F.interpolate(t, scale_factor=(1, 8, 8), mode="nearest") * 2.0

    assert torch.allclose(tiled_apply(down, x, tile, overlap, 1 / 8, align=8), down(x), atol=1e-6)
    z = down(x)
    assert torch.allclose(tiled_apply(up, z, tile // 8, overlap // 8, 8), up(z), atol=1e-6)


def test_constant_output_survives_blending():
    x = torch.zeros(1, 1, 1, 70, 90)
    out = tiled_apply(lambda t: torch.ones_like(t), x, 32, 12, 1.0)
    assert torch.allclose(out, torch.ones_like(out))


def test_model_tiling_with_one_tile_is_exact():
    torch.manual_seed(0)
    model = WFVAE(
        WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=4)
    ).eval()
    x = torch.randn(1, 3, 5, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.encode(x, tile=64).mean, model.encode(x).mean)
        z = model.encode(x).mean
        assert torch.equal(model.decode(z, tile=8), model.decode(z))
        tiled = model.decode(torch.randn(1, 4, 2, 12, 12), tile=8, overlap=4)
    assert tiled.shape == (1, 3, 5, 96, 96) and torch.isfinite(tiled).all()
