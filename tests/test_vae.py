"""FrameRule: valid sizes, latent shapes, nearest counts, padding and tiling defaults, by hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from lcvae.masks import CompressionConfig
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset
from lcvae.models.vae import DiagonalGaussian, FrameRule

BACKBONE_CAUSAL = FrameRule(causal=True)
BACKBONE = FrameRule(causal=False)
LC_CAUSAL = FrameRule(causal=True).grouped(8, 2)
LC = FrameRule(causal=False).grouped(8, 2)


def test_steps_and_descriptions():
    assert (BACKBONE_CAUSAL.frame_step, BACKBONE_CAUSAL.pixel_step) == (4, 8)
    assert (LC_CAUSAL.frame_step, LC_CAUSAL.pixel_step) == (32, 16)
    assert LC_CAUSAL.describe() == "1 + 32k frames" and LC.describe() == "32k frames"
    assert [LC_CAUSAL.frames(k) for k in (0, 1, 2)] == [1, 33, 65]
    assert [LC.frames(k) for k in (1, 2)] == [32, 64]


@pytest.mark.parametrize(
    "rule, frames, expected",
    [
        (BACKBONE_CAUSAL, 1, (1, 1)),
        (BACKBONE_CAUSAL, 10, (9, 13)),
        (BACKBONE_CAUSAL, 0, (None, 1)),
        (BACKBONE, 3, (None, 4)),
        (BACKBONE, 30, (28, 32)),
        (BACKBONE, 32, (32, 32)),
        (LC_CAUSAL, 17, (1, 33)),
        (LC_CAUSAL, 33, (33, 33)),
        (LC_CAUSAL, 40, (33, 65)),
        (LC, 16, (None, 32)),
        (LC, 33, (32, 64)),
    ],
)
def test_nearest_valid(rule, frames, expected):
    assert rule.nearest_valid(frames) == expected
    assert rule.is_valid(frames) == (expected == (frames, frames))


def test_latent_shapes_and_their_inverse():
    assert BACKBONE_CAUSAL.latent_shape(17, 64, 40) == (5, 8, 5)
    assert BACKBONE.latent_shape(8, 16, 16) == (2, 2, 2)
    assert LC_CAUSAL.latent_shape(65, 256, 256) == (17, 32, 32)
    assert LC.latent_shape(32, 256, 256) == (8, 32, 32)
    assert [BACKBONE_CAUSAL.video_frames(t) for t in (1, 5, 9)] == [1, 17, 33]
    assert [BACKBONE.video_frames(t) for t in (2, 8)] == [8, 32]
    with pytest.raises(ValueError, match=r"1 \+ 32k frames.*got 17; use 1 or 33"):
        LC_CAUSAL.latent_shape(17, 64, 64)
    with pytest.raises(ValueError, match="multiples of 16, got 24x16; resize or crop to 32x16"):
        LC.latent_shape(32, 24, 16)


def test_pad_amounts_reach_the_next_valid_size():
    assert LC_CAUSAL.pad_amounts(33, 64, 64) == (0, 0, 0)
    assert LC_CAUSAL.pad_amounts(20, 60, 17) == (13, 4, 15)
    assert LC.pad_amounts(1, 1, 16) == (31, 15, 0)
    assert BACKBONE.pad_amounts(9, 8, 9) == (3, 0, 7)
    t, h, w = 50, 100, 70
    dt, dh, dw = LC_CAUSAL.pad_amounts(t, h, w)
    LC_CAUSAL.latent_shape(t + dt, h + dh, w + dw)  # valid after padding


def test_default_overlap_is_a_quarter_tile_on_the_stride_grid():
    assert [BACKBONE.default_overlap(t) for t in (64, 72, 100, 256)] == [16, 16, 24, 64]
    assert [BACKBONE.default_overlap(t, latent=True) for t in (2, 8, 9, 32)] == [1, 2, 2, 8]


def test_check_names_the_video_layout():
    with pytest.raises(ValueError, match=r"expected a video \(B, 3, T, H, W\)"):
        BACKBONE.check(torch.zeros(1, 4, 8, 16, 16))
    BACKBONE.check(torch.zeros(1, 3, 8, 16, 16))


def test_configs_and_models_report_their_rule():
    assert get_preset("wfvae-tiny").frame_rule == BACKBONE_CAUSAL
    assert get_preset("lcvae-tiny").frame_rule == LC_CAUSAL
    assert get_preset("lcvae-chn8").frame_rule == LC
    assert get_preset("lcvae-wan-tiny").frame_rule == LC_CAUSAL
    assert LCVAE(get_preset("lcvae-tiny")).frame_rule == LC_CAUSAL
    cfg = LCVAEConfig(backbone=get_preset("wfvae-tiny").backbone, compression=CompressionConfig(mask="keep25"))
    assert cfg.latent_shape(33, 32, 32) == (4, 9, 4, 4)


def test_posterior_sample_uses_the_given_noise():
    moments = torch.cat(
        [torch.full((1, 2, 1, 1, 1), 1.0), torch.full((1, 2, 1, 1, 1), 2 * torch.log(torch.tensor(3.0)))], 1
    )
    post = DiagonalGaussian(moments)
    noise = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1, 1)
    torch.testing.assert_close(post.sample(noise=noise), torch.tensor([2.5, -2.0]).view(1, 2, 1, 1, 1))


def test_kl_of_an_fp16_posterior_is_finite_and_equals_the_fp32_one():
    moments = torch.cat([torch.full((1, 2, 1, 2, 2), 3.0), torch.full((1, 2, 1, 2, 2), 20.0)], dim=1)
    want = 0.5 * (9.0 + math.exp(20.0) - 1.0 - 20.0) * 8  # 8 latent elements, by hand
    for dtype in (torch.float32, torch.float16):
        kl = DiagonalGaussian(moments.to(dtype)).kl()
        assert kl.dtype == torch.float32 and torch.isfinite(kl).all()
        assert abs(kl.item() - want) / want < 1e-6


def test_get_preset_returns_a_copy_that_can_be_changed_freely():
    config = get_preset("lcvae-tiny")
    config.latent_mean, config.latent_std = [1.0] * 4, [2.0] * 4
    assert get_preset("lcvae-tiny").latent_mean is None
