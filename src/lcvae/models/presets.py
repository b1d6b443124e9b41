"""Named model configurations: the official WF-VAE, the paper's LC-VAEs, and tiny CPU models.

The paper's "Chn N" is the channel count diffusion sees: an LC-VAE "Chn 8" has a 16-channel VAE
latent, half of whose Multi-WT coefficients are kept. The reference LC-VAE checkpoints were trained
non-causal (a hard-coded flag disabled causality), so the ``lcvae-chnN`` presets are non-causal and
take 32k frames; ``-causal`` variants take 1 + 32k frames and pass the first latent frame through
uncompressed. The reference trained with its handcrafted masks (``mask="reference"``); the paper's
Eq. 5 mask is ``mask="paper"``.
"""

from __future__ import annotations

from dataclasses import replace

from lcvae.masks import CompressionConfig
from lcvae.models.lcvae import LCVAEConfig
from lcvae.models.wan import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, WanVAEConfig
from lcvae.models.wfvae import WFVAEConfig
from lcvae.utils import suggest

_WFVAE_L = WFVAEConfig(base_channels=192, encoder_energy_flow=128, decoder_energy_flow=128, latent_channels=16)
_WFVAE_S = WFVAEConfig(base_channels=128, encoder_energy_flow=128, decoder_energy_flow=128)
_LC_BACKBONE = WFVAEConfig(base_channels=192, encoder_energy_flow=64, decoder_energy_flow=128, causal=False)
_TINY = WFVAEConfig(base_channels=32, encoder_energy_flow=16, decoder_energy_flow=16, latent_channels=8)
_WAN_TINY = WanVAEConfig(latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1)


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
    "lcvae-wan21": LCVAEConfig(backbone=WanVAEConfig(latent_channels=32),
                               compression=CompressionConfig(mask="paper")),
    "wan-tiny": LCVAEConfig(backbone=_WAN_TINY),
    "lcvae-wan-tiny": LCVAEConfig(backbone=replace(_WAN_TINY, latent_channels=8),
                                  compression=CompressionConfig(mask="paper")),
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
    **{f"lcvae-chn{n}": f"paper LC-VAE 'Chn {n}' ({2 * n}-channel VAE latent), reference non-causal form, handcrafted mask" for n in (4, 8, 16)},
    **{f"lcvae-chn{n}-causal": f"causal LC-VAE 'Chn {n}', paper mask, first latent frame uncompressed" for n in (4, 8, 16)},
    "wan21": "Wan 2.1 VAE (diffusers AutoencoderKLWan), z=16, causal, with Wan's latent statistics",
    "lcvae-wan21": "LC-VAE on Wan 2.1 widened to z=32, paper mask: 16 diffusion channels, first latent frame uncompressed",
    "wan-tiny": "tiny Wan VAE (base_dim 8), 4 latent channels; CPU tests and demos",
    "lcvae-wan-tiny": "tiny LC-VAE on the Wan VAE, 8-channel latent, 4 diffusion channels, causal",
}


def get_preset(name: str) -> LCVAEConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}{suggest(name, list(PRESETS))}")
    return PRESETS[name]
