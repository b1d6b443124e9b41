"""Other diffusers video VAEs through the generic adapter (HunyuanVideo, CogVideoX): equal to the
diffusers model's own encode/decode, compression and training path, folders, configs, errors.

Tiny random-weight models, 32x32 frames, one CPU thread.
"""

from __future__ import annotations

import json

import pytest
import torch

from lcvae.losses import GeneratorLoss, LossConfig
from lcvae.masks import CompressionConfig
from lcvae.models.diffusers_vae import DiffusersVAE, DiffusersVAEConfig, lcvae_from_diffusers_folder
from lcvae.models.io import from_pretrained, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.wan import WanVAE, WanVAEConfig

diffusers = pytest.importorskip("diffusers")

TINY_CONFIGS = {
    "AutoencoderKLHunyuanVideo": {
        "latent_channels": 4,
        "block_out_channels": [8, 8, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
    },
    "AutoencoderKLCogVideoX": {
        "latent_channels": 4,
        "block_out_channels": [8, 8, 16, 16],
        "layers_per_block": 1,
        "norm_num_groups": 4,
    },
}
WHOLE_VIDEO = {"use_framewise_encoding": False, "use_framewise_decoding": False}  # HunyuanVideo's temporal tiling off


pytestmark = pytest.mark.usefixtures("one_thread")


def video(frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def hunyuan(compression: CompressionConfig | None = None) -> LCVAE:
    """The documented recipe (docs/backbones.md), at tiny size."""
    backbone = DiffusersVAEConfig(
        model_class="AutoencoderKLHunyuanVideo",
        model_config=TINY_CONFIGS["AutoencoderKLHunyuanVideo"],
        latent_channels=4,
        attributes=WHOLE_VIDEO,
    )
    torch.manual_seed(0)
    return perturbed(LCVAE(LCVAEConfig(backbone=backbone, compression=compression)), 1)


@pytest.mark.parametrize("model_class", sorted(TINY_CONFIGS))
def test_reconstruction_equals_the_diffusers_models_own_encode_decode(model_class):
    torch.manual_seed(0)
    cfg = DiffusersVAEConfig(model_class=model_class, model_config=TINY_CONFIGS[model_class], latent_channels=4)
    model = perturbed(LCVAE(LCVAEConfig(backbone=cfg)), 2)
    twin = getattr(diffusers, model_class)(**TINY_CONFIGS[model_class]).eval()  # built apart, same weights
    twin.load_state_dict({k.removeprefix("backbone.vae."): v for k, v in model.state_dict().items()})
    x = video(9)
    with torch.no_grad():
        ref = twin.encode(x).latent_dist
        post = model.encode(x)
        assert post.mean.shape == (1, 4, 3, 4, 4)
        torch.testing.assert_close(post.mean, ref.mean, rtol=0, atol=0)
        torch.testing.assert_close(post.logvar, ref.logvar, rtol=0, atol=0)
        torch.testing.assert_close(model.reconstruct(x), twin.decode(ref.mode()).sample, rtol=0, atol=0)
    assert model.last_layer is model.backbone.vae.get_parameter("decoder.conv_out.conv.weight")


def test_the_documented_hunyuan_example_trains_with_compression_on():
    model = hunyuan(CompressionConfig(mask="paper"))
    model.train()
    x = video(33, seed=3)
    out = model(x, generator=torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == x.shape and out.posterior.mean.shape == (1, 4, 9, 4, 4)
    assert torch.equal(out.z_hat[:, :, 0], out.z[:, :, 0])  # the causal image frame is not compressed
    assert out.encoder_flow == (None, None)  # no energy-flow terms: the wavelet loss must stay off
    disc = lambda v: v.mean(dim=(1, 2, 3, 4))  # noqa: E731 - a differentiable stand-in critic
    loss = GeneratorLoss(LossConfig(perceptual_weight=0.0, reduction="mean"))(
        x,
        out.reconstruction,
        out.posterior.mean,
        out.posterior.logvar,
        step=0,
        discriminator=disc,
        last_layer=model.last_layer,
    )
    assert loss.adaptive_weight > 0 and torch.isfinite(loss.total)
    loss.total.backward()
    assert model.last_layer.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="encoder_coeffs"):
        GeneratorLoss(LossConfig(perceptual_weight=0.0, wavelet_weight=0.1))(
            x,
            out.reconstruction,
            out.posterior.mean,
            out.posterior.logvar,
            step=0,
            discriminator=disc,
            last_layer=model.last_layer,
            encoder_coeffs=None,
        )
    model.eval()
    with torch.no_grad():
        packed = model.diffusion_latent(x)
        assert packed.shape == (1, 2, 10, 4, 4) == (1, *model.diffusion_shape(33, 32, 32))
        torch.testing.assert_close(model.decode_latent(packed), model.reconstruct(x), rtol=0, atol=1e-4)


def test_generic_config_survives_json_and_save_pretrained(tmp_path):
    model = hunyuan()
    cfg = model.config
    assert LCVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.to_dict()["backbone"]["type"] == "diffusers"
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == cfg and isinstance(loaded.backbone, DiffusersVAE)
    assert loaded.backbone.vae.use_framewise_encoding is False  # attributes are part of the config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_local_diffusers_folder_loads_through_the_generic_adapter(tmp_path):
    torch.manual_seed(0)
    vae = perturbed(diffusers.AutoencoderKLCogVideoX(**TINY_CONFIGS["AutoencoderKLCogVideoX"]), 4)
    vae.save_pretrained(tmp_path / "cog", safe_serialization=True)
    model = lcvae_from_diffusers_folder(tmp_path / "cog").eval()
    assert model.config.backbone.model_class == "AutoencoderKLCogVideoX" and model.config.backbone.latent_channels == 4
    x = video(9, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(
            model.reconstruct(x), vae.decode(vae.encode(x).latent_dist.mode()).sample, rtol=0, atol=0
        )


def test_wan_through_the_generic_adapter_is_the_clamped_wan_adapter():
    wan_cfg = WanVAEConfig(latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
    torch.manual_seed(0)
    wan = perturbed(WanVAE(wan_cfg), 6)
    with torch.no_grad():
        wan.vae.decoder.conv_out.weight.mul_(8.0)
    generic = DiffusersVAE(DiffusersVAEConfig("AutoencoderKLWan", wan_cfg.diffusers_kwargs(), latent_channels=4)).eval()
    generic.load_state_dict(wan.state_dict())
    z = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        ours, clamped = wan.decode(z), generic.decode(z)
    assert ours.abs().max() > 1 and clamped.abs().max() <= 1
    torch.testing.assert_close(ours.clamp(-1, 1), clamped, rtol=0, atol=1e-6)


def test_bad_configs_say_what_to_change():
    with pytest.raises(ValueError, match="did you mean 'AutoencoderKLHunyuanVideo'"):
        DiffusersVAE(DiffusersVAEConfig("AutoencoderKLHunyuanVide", latent_channels=16))
    with pytest.raises(ValueError, match=r"latent_channels.*= 4 but latent_channels = 8"):
        DiffusersVAEConfig("AutoencoderKLHunyuanVideo", TINY_CONFIGS["AutoencoderKLHunyuanVideo"], latent_channels=8)
    with pytest.raises(ValueError, match="decoder.conv_out.conv.weight"):
        DiffusersVAE(
            DiffusersVAEConfig(
                "AutoencoderKLHunyuanVideo",
                TINY_CONFIGS["AutoencoderKLHunyuanVideo"],
                latent_channels=4,
                last_layer="decoder.head",
            )
        )
    with pytest.raises(ValueError, match="did you mean 'use_framewise_encoding'"):
        DiffusersVAE(
            DiffusersVAEConfig(
                "AutoencoderKLHunyuanVideo",
                TINY_CONFIGS["AutoencoderKLHunyuanVideo"],
                latent_channels=4,
                attributes={"use_framewise_encode": False},
            )
        )
    # the width the config promises is checked against what the model produces
    unsized = {k: v for k, v in TINY_CONFIGS["AutoencoderKLHunyuanVideo"].items() if k != "latent_channels"}
    model = DiffusersVAE(DiffusersVAEConfig("AutoencoderKLHunyuanVideo", unsized, latent_channels=4))
    with pytest.raises(ValueError, match=r"moments \(1, 32, 3, 4, 4\).*expected \(1, 8, 3, 4, 4\)"):
        model.encode(video(9))
    with pytest.raises(ValueError, match="leave chunk unset"):
        hunyuan().encode(video(9), chunk=4)


def test_a_models_own_frame_rule_surfaces_as_an_error_not_a_wrong_length():
    torch.manual_seed(0)
    cog = LCVAE(
        LCVAEConfig(
            DiffusersVAEConfig("AutoencoderKLCogVideoX", TINY_CONFIGS["AutoencoderKLCogVideoX"], latent_channels=4)
        )
    ).eval()
    with torch.no_grad():
        assert cog.reconstruct(video(9)).shape[2] == 9  # 3 latent frames: fine
        assert cog.config.latent_shape(5, 32, 32)[1] == 2
        with pytest.raises(ValueError, match=r"\(1, 3, 8, 32, 32\).*expected \(1, 3, 5, 32, 32\).*1 \+ 8k"):
            cog.reconstruct(video(5))  # CogVideoX decodes 2 latent frames into 8 video frames
