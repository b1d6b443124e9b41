"""Checkpoints: our folders, the official WF-VAE folder layout, reference .ckpt imports."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from lcvae.models.io import from_pretrained, import_reference_ckpt, load_config, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset

OFFICIAL_TINY = {
    "_class_name": "WFVAEModel", "_diffusers_version": "0.30.2", "attention_type": "AttnBlock3DFix",
    "base_channels": 32, "connect_res_layer_num": 1, "decoder_energy_flow_hidden_size": 16,
    "decoder_num_resblocks": 2, "dropout": 0.0, "encoder_energy_flow_hidden_size": 16, "encoder_num_resblocks": 2,
    "l1_dowmsample_block": "Downsample", "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l1_upsample_block": "Upsample", "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample", "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample", "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
    "latent_dim": 4, "norm_type": "layernorm", "scale": [0.18215] * 4, "shift": [0] * 4,
    "t_interpolation": "trilinear", "use_attention": True,
}


def random_model(preset: str, seed: int = 0) -> LCVAE:
    torch.manual_seed(seed)
    model = LCVAE(get_preset(preset))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # not the init: a round trip must carry these exact values
    return model.eval()


def test_save_and_load_are_bit_exact(tmp_path):
    model = random_model("lcvae-tiny")
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob("m/*.tmp"))


def test_official_folder_layout_loads_and_ignores_haar_constants(tmp_path):
    model = random_model("wfvae-tiny")
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(OFFICIAL_TINY))
    state = dict(model.backbone.state_dict())
    state["encoder.wavelet_transform_in.h_conv.conv.weight"] = torch.full((1, 1, 2, 2, 2), 0.3536)
    state["decoder.inverse_wavelet_transform_out.g"] = torch.full((1, 1, 2, 2, 2), 0.3536)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    cfg = load_config(folder)
    assert cfg.backbone == model.config.backbone and cfg.compression is None
    loaded = from_pretrained(folder)
    x = torch.randn(1, 3, 5, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def test_mismatched_checkpoint_names_the_differing_tensors(tmp_path):
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**OFFICIAL_TINY, "latent_dim": 8}))
    save_file(dict(random_model("wfvae-tiny").backbone.state_dict()), folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatch \(3\): encoder.conv_out.conv.weight: file \(8, 128, 3, 3, 3\) vs model \(16, 128, 3, 3, 3\)"):
        from_pretrained(folder)


def test_unsupported_official_variant_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**OFFICIAL_TINY, "t_interpolation": "nearest"}))
    with pytest.raises(ValueError, match="t_interpolation='nearest'; only 'trilinear'"):
        load_config(tmp_path)


def test_reference_ckpt_imports_ema_weights(tmp_path):
    model = random_model("lcvae-tiny-noncausal", seed=3)
    ema = {f"module.{k}": v.clone() for k, v in model.backbone.state_dict().items()}
    ema["module.encoder.wavelet_transform_l1.aa"] = torch.ones(1, 1, 2, 2) / 2
    torch.save({"ema_state_dict": ema, "state_dict": {"gen_model": {}}, "step": 7}, tmp_path / "ref.ckpt")
    loaded = from_pretrained(tmp_path / "ref.ckpt", config=get_preset("lcvae-tiny-noncausal"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="stores no configuration"):
        from_pretrained(tmp_path / "ref.ckpt")


class NotATensor:  # pickled objects beyond tensors must be refused
    pass


def test_reference_ckpt_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"ema_state_dict": {}, "thing": NotATensor()}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match="weights_only=True"):
        import_reference_ckpt(tmp_path / "bad.ckpt", get_preset("lcvae-tiny"))


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        load_config(str(tmp_path / "nothing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not an lcvae config"):
        load_config(tmp_path)
    assert load_config("lcvae-chn8") == get_preset("lcvae-chn8")
    assert isinstance(LCVAEConfig.from_dict(get_preset("lcvae-chn8").to_dict()), LCVAEConfig)
