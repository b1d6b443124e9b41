"""Checkpoints: our folders, the official WF-VAE folder layout, reference .ckpt imports."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from lcvae.models.io import from_pretrained, import_reference_ckpt, load_config, save_pretrained
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import get_preset

OFFICIAL_TINY = {
    "_class_name": "WFVAEModel",
    "_diffusers_version": "0.30.2",
    "attention_type": "AttnBlock3DFix",
    "base_channels": 32,
    "connect_res_layer_num": 1,
    "decoder_energy_flow_hidden_size": 16,
    "decoder_num_resblocks": 2,
    "dropout": 0.0,
    "encoder_energy_flow_hidden_size": 16,
    "encoder_num_resblocks": 2,
    "l1_dowmsample_block": "Downsample",
    "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l1_upsample_block": "Upsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample",
    "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
    "latent_dim": 4,
    "norm_type": "layernorm",
    "scale": [0.18215] * 4,
    "shift": [0] * 4,
    "t_interpolation": "trilinear",
    "use_attention": True,
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
    with pytest.raises(
        ValueError,
        match=r"shape mismatch \(3\): encoder.conv_out.conv.weight: file \(8, 128, 3, 3, 3\) vs model \(16, 128, 3, 3, 3\)",
    ):
        from_pretrained(folder)


def test_unsupported_official_variant_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**OFFICIAL_TINY, "attention_type": "AttnBlock3D"}))
    with pytest.raises(ValueError, match="has attention_type=.AttnBlock3D.; only .AttnBlock3DFix. is implemented$"):
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


# Upstream WFVAEModel.__init__ defaults, read from its source (PKU-YuanGroup/WF-VAE,
# causalvideovae/model/vae/modeling_wfvae.py), as (our WFVAEConfig field, value).
UPSTREAM_FIELD_DEFAULTS = {
    "latent_dim": ("latent_channels", 8),
    "base_channels": ("base_channels", 128),
    "encoder_num_resblocks": ("encoder_num_resblocks", 2),
    "encoder_energy_flow_hidden_size": ("encoder_energy_flow", 64),
    "decoder_num_resblocks": ("decoder_num_resblocks", 2),
    "decoder_energy_flow_hidden_size": ("decoder_energy_flow", 128),
    "use_attention": ("attention", True),
    "dropout": ("dropout", 0.0),
    "norm_type": ("norm", "groupnorm"),
    "connect_res_layer_num": ("connect_res_layers", 1),
}
CHANGED = {
    "latent_dim": 4,
    "base_channels": 32,
    "encoder_num_resblocks": 1,
    "encoder_energy_flow_hidden_size": 16,
    "decoder_num_resblocks": 3,
    "decoder_energy_flow_hidden_size": 32,
    "use_attention": False,
    "dropout": 0.1,
    "norm_type": "layernorm",
    "connect_res_layer_num": 2,
}


@pytest.mark.parametrize("key", sorted(UPSTREAM_FIELD_DEFAULTS))
def test_missing_official_key_takes_upstream_default(tmp_path, key):
    field, default = UPSTREAM_FIELD_DEFAULTS[key]
    raw = {**OFFICIAL_TINY, **CHANGED}
    assert getattr(load_config_from(tmp_path, raw).backbone, field) != default  # the key matters
    del raw[key]
    assert getattr(load_config_from(tmp_path, raw).backbone, field) == default


def load_config_from(folder, raw):
    (folder / "config.json").write_text(json.dumps(raw))
    return load_config(folder)


@pytest.mark.parametrize(
    "key",
    [
        "attention_type",
        "l1_dowmsample_block",
        "l1_downsample_wavelet",
        "l2_dowmsample_block",
        "l2_downsample_wavelet",
        "l1_upsample_block",
        "l1_upsample_wavelet",
        "l2_upsample_block",
        "l2_upsample_wavelet",
    ],
)
def test_missing_module_choice_defaults_to_the_implemented_one(tmp_path, key):
    raw = dict(OFFICIAL_TINY)
    del raw[key]
    assert load_config_from(tmp_path, raw).backbone == load_config_from(tmp_path, OFFICIAL_TINY).backbone


def test_missing_t_interpolation_is_upstreams_nearest(tmp_path):
    raw = dict(OFFICIAL_TINY)
    del raw["t_interpolation"]
    assert load_config_from(tmp_path, raw).backbone.t_interpolation == "nearest"
    assert load_config_from(tmp_path, OFFICIAL_TINY).backbone.t_interpolation == "trilinear"


def test_official_groupnorm_folder_with_bare_groupnorm_names_loads(tmp_path):
    # Upstream's norm_type "groupnorm" is a bare nn.GroupNorm, so its checkpoint says
    # "encoder.norm_out.weight" where ours (a Norm wrapper) says "encoder.norm_out.norm.weight".
    # Save our own groupnorm model in the official layout with the names renamed that way.
    cfg = get_preset("wfvae-tiny")
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, norm="groupnorm"))
    torch.manual_seed(1)
    model = LCVAE(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = {
        k.replace(".norm.weight", ".weight").replace(".norm.bias", ".bias"): v
        for k, v in model.backbone.state_dict().items()
    }
    assert "encoder.norm_out.weight" in state and "decoder.mid.1.norm.weight" in state  # attention norm
    assert "encoder.norm_out.norm.weight" not in state and not any(".norm.norm." in k for k in state)
    folder = tmp_path / "official-gn"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**OFFICIAL_TINY, "norm_type": "groupnorm"}))
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    loaded = from_pretrained(folder)
    assert loaded.config.backbone.norm == "groupnorm"
    x = torch.randn(1, 3, 5, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def haar_constants() -> dict[str, torch.Tensor]:
    """20 Haar filter tensors as the reference LC-VAE stores for its temporal wavelet module."""
    s = 2**-0.5
    out = {}
    for level in range(10):
        out[f"temporal_processor.levels.{level}.h"] = torch.tensor([s, s]).view(1, 1, 2)
        out[f"temporal_processor.levels.{level}.g"] = torch.tensor([s, -s]).view(1, 1, 2)
    return out


def test_reference_ckpt_without_ema_loads_the_generator_and_drops_temporal_haar(tmp_path):
    model = random_model("lcvae-tiny", seed=4)
    gen = {**{k: v.clone() for k, v in model.backbone.state_dict().items()}, **haar_constants()}
    assert sum(k.startswith("temporal_processor.") for k in gen) == 20
    torch.save({"ema_state_dict": {}, "state_dict": {"gen_model": gen}}, tmp_path / "noema.ckpt")
    loaded = from_pretrained(tmp_path / "noema.ckpt", config=get_preset("lcvae-tiny"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # Plain state_dict (no gen_model level) with DDP's "module." prefix loads too.
    plain = {f"module.{k}": v for k, v in gen.items()}
    torch.save({"state_dict": plain}, tmp_path / "plain.ckpt")
    loaded = from_pretrained(tmp_path / "plain.ckpt", config=get_preset("lcvae-tiny"))
    assert torch.equal(loaded.backbone.encoder.conv_out.conv.weight, model.backbone.encoder.conv_out.conv.weight)
    # A temporal_processor tensor that is not Haar taps would be learned weights: refused, named.
    gen["temporal_processor.levels.0.h"] = torch.tensor([0.3, 0.9]).view(1, 1, 2)
    torch.save({"state_dict": {"gen_model": gen}}, tmp_path / "learned.ckpt")
    with pytest.raises(ValueError, match=r"1 temporal_processor tensors .*temporal_processor.levels.0.h"):
        from_pretrained(tmp_path / "learned.ckpt", config=get_preset("lcvae-tiny"))


def test_load_config_of_a_weights_file_or_non_json_names_the_folder(tmp_path):
    model = random_model("lcvae-tiny")
    save_pretrained(model, tmp_path / "m")
    with pytest.raises(
        ValueError, match=r"model.safetensors is a weights file; give the checkpoint folder .* \(e.g. .*m\)"
    ):
        load_config(tmp_path / "m" / "model.safetensors")
    (tmp_path / "cfg.json").write_bytes(b"\xff\xfe binary")
    with pytest.raises(ValueError, match="is not a JSON model config"):
        load_config(tmp_path / "cfg.json")
