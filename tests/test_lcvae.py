"""LC-VAE model: the compressor between encoder and decoder, diffusion latents, frame rules, configs."""

from __future__ import annotations

import pytest
import torch

from lcvae.masks import CompressionConfig
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS, get_preset


@pytest.fixture(scope="module")
def tiny() -> LCVAE:
    torch.manual_seed(0)
    return LCVAE(get_preset("lcvae-tiny")).eval()


def test_training_forward_has_named_outputs_and_kl_on_full_posterior(tiny):
    x = torch.randn(2, 3, 33, 32, 32)
    out = tiny(x, generator=torch.Generator().manual_seed(0), return_coefficients=True)
    assert out.reconstruction.shape == x.shape
    assert out.posterior.mean.shape == (2, 8, 9, 4, 4)  # all 8 channels, before compression
    assert out.coefficients.groups.shape == (2, 256, 1, 2, 2) and out.coefficients.head.shape == (2, 8, 1, 4, 4)
    # the decoder saw the compressed latent, which differs from z only in the dropped coefficients
    assert torch.allclose(tiny.compressor(out.z), out.z_hat, atol=1e-6)
    assert not torch.allclose(out.z, out.z_hat, atol=1e-3)
    assert out.posterior.kl().shape == (2,)
    fast = tiny(x, generator=torch.Generator().manual_seed(0))  # fused projection, same result
    assert fast.coefficients is None and torch.allclose(fast.reconstruction, out.reconstruction, atol=1e-5)


def test_without_compression_it_is_the_plain_backbone():
    torch.manual_seed(1)
    model = LCVAE(get_preset("wfvae-tiny")).eval()
    x = torch.randn(1, 3, 9, 16, 16)
    with torch.no_grad():
        ref = model.backbone.decode(model.backbone.encode(x).mode())
        assert torch.equal(model.reconstruct(x), ref)
        assert torch.equal(model.diffusion_latent(x), model.backbone.encode(x).mode())


def test_decoding_the_diffusion_latent_equals_reconstruction(tiny):
    x = torch.randn(1, 3, 33, 32, 32)
    with torch.no_grad():
        packed = tiny.diffusion_latent(x)
        assert packed.shape == (1, 4, 10, 4, 4)  # causal: 2 pseudo-frames for the image frame + 8
        assert torch.allclose(tiny.decode_latent(packed), tiny.reconstruct(x), atol=1e-5)


def test_diffusion_latent_has_the_size_of_a_half_width_wfvae_latent():
    model_cfg = get_preset("lcvae-chn8")
    assert model_cfg.diffusion_channels == 8
    # "Chn 8" gives diffusion (8, 8, 32, 32) for 32 frames at 256^2: the size of an 8-channel WF-VAE latent
    shape = LCVAE(
        LCVAEConfig(
            backbone=get_preset("lcvae-tiny-noncausal").backbone,
            compression=get_preset("lcvae-tiny-noncausal").compression,
        )
    ).diffusion_shape(32, 256, 256)
    assert shape == (4, 8, 32, 32)
    assert LCVAE(get_preset("lcvae-tiny")).diffusion_shape(65, 64, 64) == (4, 2 + 16, 8, 8)
    keep25 = LCVAEConfig(backbone=get_preset("lcvae-tiny").backbone, compression=CompressionConfig(mask="keep25"))
    assert keep25.diffusion_shape(33, 64, 64) == (2, 4 + 8, 8, 8)  # the image frame fills C / C' = 4 frames
    with torch.device("meta"):  # building on the meta device (for sizes) must work with compression too
        assert LCVAE(keep25).compressor.packed_channels == 2
    z = torch.randn(1, 8, 9, 8, 8)
    assert LCVAE(keep25).latent_to_diffusion(z).shape == (1, 2, 12, 8, 8)


def test_latent_statistics_normalise_and_invert(tiny):
    x = torch.randn(1, 3, 33, 32, 32)
    cfg = LCVAEConfig(
        backbone=tiny.config.backbone,
        compression=tiny.config.compression,
        latent_mean=[0.5, -1.0, 0.0, 2.0],
        latent_std=[2.0, 0.5, 1.0, 4.0],
    )
    norm = LCVAE(cfg).eval()
    norm.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        raw, scaled = tiny.diffusion_latent(x), norm.diffusion_latent(x)
        mean = torch.tensor(cfg.latent_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(cfg.latent_std).view(1, -1, 1, 1, 1)
        assert torch.allclose(scaled, (raw - mean) / std, atol=1e-6)
        assert torch.allclose(norm.decode_latent(scaled), tiny.decode_latent(raw), atol=1e-5)
    with pytest.raises(ValueError, match="4 values"):
        LCVAE(LCVAEConfig(backbone=cfg.backbone, compression=cfg.compression, latent_mean=[0.0], latent_std=[1.0]))


@pytest.mark.parametrize(
    "preset, frames, msg",
    [
        ("lcvae-tiny", 17, "1 \\+ 32k frames.*got 17; use 1 or 33"),
        ("lcvae-tiny-noncausal", 33, "multiple of 32 frames.*got 33; use 32 or 64"),
        ("wfvae-tiny", 8, "1 \\+ 4k frames.*use 5 or 9"),
    ],
)
def test_frame_rules_with_compression(preset, frames, msg):
    with pytest.raises(ValueError, match=msg):
        LCVAE(get_preset(preset)).encode(torch.zeros(1, 3, frames, 16, 16))


def test_compressed_models_need_sizes_divisible_by_16():
    with pytest.raises(ValueError, match="multiples of 16"):
        LCVAE(get_preset("lcvae-tiny")).encode(torch.zeros(1, 3, 33, 24, 16))


def test_chunked_reconstruction_equals_whole(tiny):
    x = torch.randn(1, 3, 65, 16, 16)
    with torch.no_grad():
        whole = tiny.reconstruct(x)
        chunked = tiny.reconstruct(x, chunk=8, decode_chunk=3)
    assert (whole - chunked).abs().max() <= 1e-4


def test_config_round_trip_and_strictness():
    for name, cfg in PRESETS.items():
        assert LCVAEConfig.from_dict(cfg.to_dict()) == cfg, name
    with pytest.raises(ValueError, match="did you mean 'compression'"):
        LCVAEConfig.from_dict({"compresion": None})
    with pytest.raises(ValueError, match="did you mean 'latent_channels'"):
        LCVAEConfig.from_dict({"backbone": {"latent_channel": 4}})
    with pytest.raises(ValueError, match="did you mean 'lcvae-chn8'"):
        get_preset("lcvae-chn-8")


def test_saved_configs_with_latent_width_and_causality_in_compression_still_load():
    cfg = get_preset("lcvae-tiny")  # 8 latent channels, causal
    old = cfg.to_dict()
    assert old["compression"] == {"mask": "paper", "kept_indices": None, "adaptive": False}
    old["compression"] = {**old["compression"], "latent_channels": 8, "causal": True}
    assert LCVAEConfig.from_dict(old) == cfg
    for key, wrong in (("latent_channels", 4), ("causal", False)):
        bad = {**old, "compression": {**old["compression"], key: wrong}}
        with pytest.raises(ValueError, match=f"compression.{key} is {wrong!r} but the backbone's {key} is"):
            LCVAEConfig.from_dict(bad)
    keep50 = {**old, "compression": {**old["compression"], "mask": "keep50"}}
    assert LCVAEConfig.from_dict(keep50).compression.mask == "paper"


def test_paper_presets_use_the_documented_masks():
    assert get_preset("lcvae-chn8").compression.mask == "reference"
    assert get_preset("lcvae-chn8").backbone.causal is False
    assert get_preset("lcvae-chn8-causal").compression.mask == "paper"
    assert get_preset("wfvae-l-16").compression is None


def test_backbone_registry_round_trip_and_errors():
    from lcvae.models.backbone import backbone_config_from_dict, backbone_config_to_dict

    cfg = get_preset("lcvae-tiny").backbone
    d = backbone_config_to_dict(cfg)
    assert d["type"] == "wfvae" and backbone_config_from_dict(d) == cfg
    no_type = {k: v for k, v in d.items() if k != "type"}
    assert backbone_config_from_dict(no_type) == cfg  # configs written before backbone types default to WF-VAE
    with pytest.raises(ValueError, match="unknown backbone type 'wfvea'; did you mean 'wfvae'"):
        backbone_config_from_dict({**d, "type": "wfvea"})
