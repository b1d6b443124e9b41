"""`from_pretrained` / `load_config` read every folder a user may hold: an AutoencoderKLLCVAE folder
(our model in diffusers' layout) and any diffusers video VAE folder, not only WF-VAE and Wan."""

from __future__ import annotations

import pytest
import torch

from lcvae.models.diffusers_vae import DiffusersVAEConfig
from lcvae.models.io import from_pretrained, load_config
from lcvae.models.lcvae import LCVAE
from lcvae.models.presets import get_preset

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_thread")

HV15 = {"latent_channels": 8, "block_out_channels": [8, 8, 16, 16, 16], "layers_per_block": 1}


def _video(frames: int, size: int) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_an_autoencoderkllcvae_folder_loads_as_the_same_lcvae(tmp_path):
    from lcvae import AutoencoderKLLCVAE

    torch.manual_seed(0)
    config = get_preset("lcvae-tiny")
    config.latent_mean, config.latent_std = [0.1, -0.2, 0.3, 0.0], [1.5, 0.5, 2.0, 1.0]
    model = LCVAE(config).eval()
    AutoencoderKLLCVAE.from_lcvae(model).save_pretrained(tmp_path / "hf")
    loaded = from_pretrained(tmp_path / "hf").eval()
    assert load_config(tmp_path / "hf").to_dict() == model.config.to_dict()
    x = _video(33, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.diffusion_latent(x), model.diffusion_latent(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x), rtol=0, atol=0)


def test_a_hunyuanvideo15_folder_loads_with_its_scaling_factor(tmp_path):
    torch.manual_seed(0)
    twin = diffusers.AutoencoderKLHunyuanVideo15(**HV15).eval()
    twin.register_to_config(scaling_factor=0.5)
    twin.save_pretrained(tmp_path / "vae")
    config = load_config(tmp_path / "vae")
    assert isinstance(config.backbone, DiffusersVAEConfig) and config.compression is None
    assert config.latent_mean == [0.0] * 8 and config.latent_std == [2.0] * 8  # z * 0.5 == (z - 0) / 2
    model = from_pretrained(tmp_path / "vae").eval()
    x = _video(5, 32)
    with torch.no_grad():
        want = twin.encode(x).latent_dist.mode() * 0.5
        assert (model.diffusion_latent(x) - want).abs().max() <= 1e-6


def test_a_folder_that_is_no_known_model_says_what_it_reads(tmp_path):
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match="not an lcvae config, an official WF-VAE folder nor a diffusers video VAE"):
        load_config(tmp_path)
