"""Named model configurations: the official WF-VAE, the paper's LC-VAEs, LC-VAEs on Wan 2.1 and on the
2025-26 VAEs (Wan 2.2, HunyuanVideo 1.5, LTX-2; docs/backbones.md), and tiny CPU models.

The paper's "Chn N" is the channel count diffusion sees: an LC-VAE "Chn 8" has a 16-channel VAE
latent, half of whose Multi-WT coefficients are kept. The reference LC-VAE checkpoints were trained
non-causal (a hard-coded flag disabled causality), so the ``lcvae-chnN`` presets are non-causal and
take 32k frames; ``-causal`` variants take 1 + 32k frames and pass the first latent frame through
uncompressed. The reference trained with its handcrafted masks (``mask="reference"``); the paper's
Eq. 5 mask is ``mask="paper"``.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from lcvae.masks import CompressionConfig
from lcvae.models.diffusers_vae import DiffusersVAEConfig
from lcvae.models.lcvae import LCVAEConfig
from lcvae.models.wan import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, WAN22, WanVAEConfig
from lcvae.models.wfvae import WFVAEConfig
from lcvae.utils import suggest

_WFVAE_L = WFVAEConfig(base_channels=192, encoder_energy_flow=128, decoder_energy_flow=128, latent_channels=16)
_WFVAE_S = WFVAEConfig(base_channels=128, encoder_energy_flow=128, decoder_energy_flow=128)
_LC_BACKBONE = WFVAEConfig(base_channels=192, encoder_energy_flow=64, decoder_energy_flow=128, causal=False)
_TINY = WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=8)
_WAN_TINY = WanVAEConfig(latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
# The 2025-26 VAEs by their released diffusers constructor arguments (docs/backbones.md: HunyuanVideo
# 1.5 is diffusers' defaults, LTX-2 the 2.0 VAE with its non-causal decoder); the weights come from the
# model's diffusers folder (``init_from``), whose config.json must build the same modules.
_HV15_SCALING = 1.03682  # HunyuanVideo 1.5's scaling_factor: its latent enters diffusion as z * 1.03682
_HV15 = DiffusersVAEConfig(
    "AutoencoderKLHunyuanVideo15",
    latent_channels=32,
    last_layer="decoder.conv_out",
    model_config={
        "latent_channels": 32,
        "block_out_channels": [128, 256, 512, 1024, 1024],
        "layers_per_block": 2,
        "spatial_compression_ratio": 16,
        "temporal_compression_ratio": 4,
        "scaling_factor": _HV15_SCALING,
    },
)
_LTX2 = DiffusersVAEConfig(
    "AutoencoderKLLTX2Video",
    latent_channels=128,
    model_config={
        "latent_channels": 128,
        "block_out_channels": [256, 512, 1024, 2048],
        "decoder_block_out_channels": [256, 512, 1024],
        "layers_per_block": [4, 6, 6, 2, 2],
        "decoder_layers_per_block": [5, 5, 5, 5],
        "patch_size": 4,
        "patch_size_t": 1,
        "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
        "encoder_causal": True,
        "decoder_causal": False,
        "decoder_spatial_padding_mode": "reflect",
        "spatial_compression_ratio": 32,
        "temporal_compression_ratio": 8,
    },
)
_PAPER = CompressionConfig(mask="paper")


def _lcvae(backbone: WFVAEConfig, channels: int, mask: str, causal: bool) -> LCVAEConfig:
    bb = replace(backbone, latent_channels=channels, causal=causal)
    return LCVAEConfig(backbone=bb, compression=CompressionConfig(mask=mask))


PRESETS: dict[str, LCVAEConfig] = {
    "wfvae-l-16": LCVAEConfig(backbone=_WFVAE_L),
    "wfvae-s-4": LCVAEConfig(backbone=replace(_WFVAE_S, latent_channels=4)),
    "wfvae-s-8": LCVAEConfig(backbone=replace(_WFVAE_S, latent_channels=8)),
    "wfvae-tiny": LCVAEConfig(backbone=replace(_TINY, latent_channels=4)),
    "lcvae-tiny": _lcvae(_TINY, 8, "paper", causal=True),
    "lcvae-tiny-noncausal": _lcvae(_TINY, 8, "paper", causal=False),
    # Wan 2.1 VAE (supplement E.2); weights from a local diffusers folder (lcvae.models.wan)
    "wan21": LCVAEConfig(backbone=WanVAEConfig(), latent_mean=WAN21_LATENTS_MEAN, latent_std=WAN21_LATENTS_STD),
    "lcvae-wan21": LCVAEConfig(backbone=WanVAEConfig(latent_channels=32), compression=_PAPER),
    "wan-tiny": LCVAEConfig(backbone=_WAN_TINY),
    "lcvae-wan-tiny": LCVAEConfig(
        backbone=replace(_WAN_TINY, latent_channels=8), compression=CompressionConfig(mask="paper")
    ),
}
PRESETS |= {
    "wan22": LCVAEConfig(backbone=WAN22),
    "lcvae-wan22": LCVAEConfig(backbone=WAN22, compression=_PAPER),
    "hunyuanvideo15": LCVAEConfig(backbone=_HV15, latent_mean=[0.0] * 32, latent_std=[1 / _HV15_SCALING] * 32),
    "lcvae-hunyuanvideo15": LCVAEConfig(backbone=_HV15, compression=_PAPER),
    "ltx2": LCVAEConfig(backbone=_LTX2),
    "lcvae-ltx2": LCVAEConfig(backbone=_LTX2, compression=_PAPER),
}
for _chn, _c in ((4, 8), (8, 16), (16, 32)):
    PRESETS[f"lcvae-chn{_chn}"] = _lcvae(_LC_BACKBONE, _c, "reference", causal=False)
    PRESETS[f"lcvae-chn{_chn}-causal"] = _lcvae(_LC_BACKBONE, _c, "paper", causal=True)

DESCRIPTIONS: dict[str, str] = {
    "wfvae-l-16": "official WF-VAE-L, 16 latent channels, causal (loads the public checkpoint)",
    "wfvae-s-4": "WF-VAE-S, 4 latent channels, causal",
    "wfvae-s-8": "WF-VAE-S, 8 latent channels, causal",
    "wfvae-tiny": "tiny WF-VAE (B=32), 4 latent channels: diffusion-latent size of lcvae-tiny; CPU tests and demos",
    "lcvae-tiny": "tiny LC-VAE (B=32), 8-channel VAE latent, 4 diffusion channels, causal",
    "lcvae-tiny-noncausal": "tiny LC-VAE, non-causal (32k frames)",
    **{
        f"lcvae-chn{n}": f"paper LC-VAE 'Chn {n}' ({2 * n}-channel VAE latent), reference non-causal form, handcrafted mask"
        for n in (4, 8, 16)
    },
    **{
        f"lcvae-chn{n}-causal": f"causal LC-VAE 'Chn {n}', paper mask, first latent frame uncompressed"
        for n in (4, 8, 16)
    },
    "wan21": "Wan 2.1 VAE (diffusers AutoencoderKLWan), z=16, causal, with Wan's latent statistics",
    "lcvae-wan21": "LC-VAE on Wan 2.1 widened to z=32, paper mask: 16 diffusion channels, first latent frame uncompressed",
    "wan-tiny": "tiny Wan VAE (base_dim 8), 4 latent channels; CPU tests and demos",
    "lcvae-wan-tiny": "tiny LC-VAE on the Wan VAE, 8-channel latent, 4 diffusion channels, causal",
    "wan22": "Wan 2.2 VAE (AutoencoderKLWan, residual, 2x2 patch), 4x16x16, z=48, causal; statistics from its folder",
    "lcvae-wan22": "LC-VAE on Wan 2.2, z=48, paper mask: 24 diffusion channels (MiniMax-H3's latent width), 1 + 32k frames, 32-px multiples",
    "hunyuanvideo15": "HunyuanVideo 1.5 VAE (AutoencoderKLHunyuanVideo15), 4x16x16, z=32, causal, with its scaling factor",
    "lcvae-hunyuanvideo15": "LC-VAE on HunyuanVideo 1.5, z=32, paper mask: 16 diffusion channels, 1 + 32k frames, 32-px multiples",
    "ltx2": "LTX-2 video VAE (AutoencoderKLLTX2Video), 8x32x32, z=128, causal encoder; statistics in its weights",
    "lcvae-ltx2": "LC-VAE on LTX-2, z=128, paper mask: 64 diffusion channels, 1 + 64k frames, 64-px multiples",
}


def get_preset(name: str) -> LCVAEConfig:
    """A copy of preset ``name``: changing it (e.g. setting latent statistics) leaves the preset as it is."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}{suggest(name, list(PRESETS))}")
    return copy.deepcopy(PRESETS[name])
