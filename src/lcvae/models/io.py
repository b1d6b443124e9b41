"""Saving and loading models: our pretrained folders, the official WF-VAE folder, reference .ckpt files.

Our folder: ``config.json`` ({"format": "lcvae", "config": LCVAEConfig}) + ``model.safetensors``.
Official WF-VAE-L: a diffusers-style folder, ``config.json`` (``_class_name: WFVAEModel``) +
``diffusion_pytorch_model.safetensors`` whose names match our backbone; the fixed Haar filters it
also stores are constants (exact values are computed instead) and are ignored. A key missing from
its ``config.json`` takes upstream's default (``UPSTREAM_DEFAULTS``), as upstream's own loader
would. With ``norm_type: groupnorm`` upstream stores a bare ``GroupNorm`` (``norm1.weight``) where
our ``Norm`` wrapper has ``norm1.norm.weight``; such names are mapped.
Reference LC-VAE training checkpoints: ``.ckpt`` with ``ema_state_dict`` (names prefixed ``module.``),
else (saved without EMA) the generator under ``state_dict.gen_model`` or ``state_dict``; read with
``torch.load(weights_only=True)``. The Haar constants of its temporal wavelet module
(``temporal_processor.*``) are dropped like the backbone's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.presets import PRESETS, get_preset
from lcvae.models.wfvae import WFVAEConfig
from lcvae.utils import atomic_write, suggest

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_LCVAE = "AutoencoderKLLCVAE"  # the class name lcvae.models.diffusers_lcvae saves under

# Upstream WF-VAE's constructor defaults (WFVAEModel.__init__), used for keys its config.json lacks.
UPSTREAM_DEFAULTS = {
    "latent_dim": 8,
    "base_channels": 128,
    "encoder_num_resblocks": 2,
    "encoder_energy_flow_hidden_size": 64,
    "decoder_num_resblocks": 2,
    "decoder_energy_flow_hidden_size": 128,
    "attention_type": "AttnBlock3DFix",
    "use_attention": True,
    "dropout": 0.0,
    "norm_type": "groupnorm",
    "t_interpolation": "nearest",
    "connect_res_layer_num": 1,
    "l1_dowmsample_block": "Downsample",
    "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Upsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample",
    "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
}
# Module choices this backbone implements; any other value (given or defaulted) is refused.
_IMPLEMENTED = {
    "attention_type": "AttnBlock3DFix",
    "l1_dowmsample_block": "Downsample",
    "l1_downsample_wavelet": "HaarWaveletTransform2D",
    "l2_dowmsample_block": "Spatial2xTime2x3DDownsample",
    "l2_downsample_wavelet": "HaarWaveletTransform3D",
    "l1_upsample_block": "Upsample",
    "l1_upsample_wavelet": "InverseHaarWaveletTransform2D",
    "l2_upsample_block": "Spatial2xTime2x3DUpsample",
    "l2_upsample_wavelet": "InverseHaarWaveletTransform3D",
}
# Magnitudes of Haar filter taps: 1/sqrt(2)^k for one to three 1D levels, and 0.
_HAAR_TAPS = torch.tensor([0.0, 1.0, 2**-0.5, 0.5, 2**-1.5, 0.25])


def save_pretrained(model: LCVAE, folder: str | Path) -> Path:
    """Write config.json and model.safetensors (atomically) to ``folder``."""
    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, p))
    text = json.dumps({"format": "lcvae", "config": model.config.to_dict()}, indent=2)
    atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(text))
    return folder


def load_config(source: str | Path) -> LCVAEConfig:
    """A preset name, our folder, the official WF-VAE folder, a diffusers video VAE folder (Wan,
    HunyuanVideo 1.5, LTX-2, ...) or an ``AutoencoderKLLCVAE`` folder -> LCVAEConfig."""
    if isinstance(source, str) and source in PRESETS:
        return get_preset(source)
    path = Path(source)
    if path.is_file() and path.suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        raise ValueError(
            f"{path} is a weights file; give the checkpoint folder that holds it and its "
            f"{CONFIG_NAME} (e.g. {path.parent}), or a preset name"
        )
    cfg_file = path / CONFIG_NAME if path.is_dir() else path
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"{str(source)!r} is neither a folder with {CONFIG_NAME} nor a preset{suggest(str(source), list(PRESETS))}"
        )
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{cfg_file} is not a JSON model config ({err}); give a checkpoint folder "
            f"with {CONFIG_NAME} or a preset name"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg_file} holds JSON {type(raw).__name__}, not a model config object")
    if raw.get("format") == "lcvae":
        return LCVAEConfig.from_dict(raw["config"])
    if raw.get("_class_name") == "WFVAEModel":
        return LCVAEConfig(backbone=official_config(raw))
    if raw.get("_class_name") == "AutoencoderKLWan":  # a diffusers Wan 2.1 / 2.2 VAE folder
        from lcvae.models.wan import lcvae_config_from_diffusers

        return lcvae_config_from_diffusers(raw)
    if raw.get("_class_name") == DIFFUSERS_LCVAE:  # our model saved in diffusers' layout
        return LCVAEConfig.from_dict(
            {**raw["lcvae_config"], "latent_mean": raw.get("latents_mean"), "latent_std": raw.get("latents_std")}
        )
    if str(raw.get("_class_name", "")).startswith("AutoencoderKL") and path.is_dir():  # another diffusers video VAE
        from lcvae.models.diffusers_vae import diffusers_folder_state, diffusers_vae_config, native_statistics

        backbone = diffusers_vae_config(path)
        stats = native_statistics(raw, diffusers_folder_state(path), backbone.latent_channels)
        mean, std = stats if stats is not None else (None, None)
        return LCVAEConfig(backbone=backbone, latent_mean=mean, latent_std=std)
    raise ValueError(
        f"{cfg_file}: not an lcvae config, an official WF-VAE folder nor a diffusers video VAE folder "
        "(no 'format' or known '_class_name')"
    )


def official_config(raw: dict) -> WFVAEConfig:
    """Translate the official WF-VAE config.json (missing keys take upstream's defaults); reject
    variants this backbone does not implement."""
    cfg = {**UPSTREAM_DEFAULTS, **raw}
    for key, value in _IMPLEMENTED.items():
        if cfg[key] != value:
            given = f"has {key}={cfg[key]!r}" if key in raw else f"has no {key}, and upstream's default is {cfg[key]!r}"
            raise ValueError(
                f"official config {given}; only {value!r} is implemented"
                + (f' (add "{key}": "{value}" only if the weights were trained with it)' if key not in raw else "")
            )
    return WFVAEConfig(
        base_channels=cfg["base_channels"],
        encoder_energy_flow=cfg["encoder_energy_flow_hidden_size"],
        decoder_energy_flow=cfg["decoder_energy_flow_hidden_size"],
        latent_channels=cfg["latent_dim"],
        encoder_num_resblocks=cfg["encoder_num_resblocks"],
        decoder_num_resblocks=cfg["decoder_num_resblocks"],
        connect_res_layers=cfg["connect_res_layer_num"],
        norm=cfg["norm_type"],
        attention=cfg["use_attention"],
        causal=True,
        dropout=cfg["dropout"],
        t_interpolation=cfg["t_interpolation"],
    )


def _is_haar_constant(t: Tensor) -> bool:
    mags = t.detach().float().abs().flatten()
    return bool(((mags[:, None] - _HAAR_TAPS).abs().min(dim=1).values < 1e-6).all())


def _drop_constants(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Drop stored Haar filters: the backbone's ``*wavelet_transform*`` and the reference LC-VAE's
    ``temporal_processor.*`` (refused if one holds anything but Haar taps: that would be weights)."""
    learned = [k for k, v in state.items() if k.startswith("temporal_processor.") and not _is_haar_constant(v)]
    if learned:
        raise ValueError(
            f"{source}: {len(learned)} temporal_processor tensors hold values other than Haar "
            f"filter taps (e.g. {learned[0]}); this loader knows them only as constants"
        )
    return {k: v for k, v in state.items() if "wavelet_transform" not in k and not k.startswith("temporal_processor.")}


def _map_bare_groupnorm(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """Upstream's ``norm_type: groupnorm`` is a bare ``nn.GroupNorm``: ``X.weight`` for our ``X.norm.weight``."""
    out = dict(state)
    for key in own:
        head, sep, leaf = key.rpartition(".norm.")
        if sep and leaf in ("weight", "bias") and key not in out and f"{head}.{leaf}" in out:
            out[key] = out.pop(f"{head}.{leaf}")
    return out


def load_backbone_state(model: LCVAE, state: dict[str, Tensor], source: str) -> None:
    """Load backbone weights (names ``encoder.*`` / ``decoder.*``), ignoring stored Haar constants.

    Any missing, unexpected or differently shaped tensor is an error that names them. Backbones
    wrapping a diffusers model (``lcvae.models.diffusers_vae``) take names with or without their
    ``vae.`` prefix and load through their own ``load_diffusers_state`` (Wan widens a narrower latent).
    """
    if hasattr(model.backbone, "load_diffusers_state"):
        prefix = model.backbone.diffusers_prefix
        model.backbone.load_diffusers_state({k.removeprefix(prefix): v for k, v in state.items()}, source)
        return
    own = model.backbone.state_dict()
    state = _map_bare_groupnorm(_drop_constants(state, source), own)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"{source} does not match this model configuration:"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))
        lines.append("  pick the preset (or --config) that matches the checkpoint; `lcvae info --list` lists them")
        raise ValueError("\n".join(lines))
    model.backbone.load_state_dict(state, strict=True)


def from_pretrained(source: str | Path, config: LCVAEConfig | None = None) -> LCVAE:
    """Our folder, the official WF-VAE folder, a diffusers Wan VAE folder (widened when ``config`` asks
    for a wider latent), or a reference .ckpt (needs ``config``, e.g. a preset)."""
    path = Path(source)
    if path.is_file() and path.suffix == ".ckpt":
        if config is None:
            raise ValueError("a reference .ckpt stores no configuration: pass config= (e.g. get_preset('lcvae-chn8'))")
        return import_reference_ckpt(path, config)
    if not path.is_dir():
        raise FileNotFoundError(f"{source}: no such folder or .ckpt file")
    config = config or load_config(path)
    model = LCVAE(config)
    if (path / WEIGHTS_NAME).is_file():
        state = load_file(path / WEIGHTS_NAME)
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        load_backbone_state(model, backbone, str(path / WEIGHTS_NAME))
    elif (path / OFFICIAL_WEIGHTS).is_file():
        state = load_file(path / OFFICIAL_WEIGHTS)
        if all(k.startswith("lcvae.") for k in state):  # AutoencoderKLLCVAE: the whole LCVAE under "lcvae."
            prefix = "lcvae.backbone."
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        load_backbone_state(model, state, str(path / OFFICIAL_WEIGHTS))
    else:
        raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} or {OFFICIAL_WEIGHTS}")
    return model


def import_reference_ckpt(path: str | Path, config: LCVAEConfig) -> LCVAE:
    """Reference LC-VAE ``.ckpt`` -> LCVAE: EMA weights when present, else the generator weights."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling of non-tensor objects is refused by weights_only
        raise ValueError(f"{path}: cannot be read with torch.load(weights_only=True): {err}") from err
    if isinstance(ckpt.get("ema_state_dict"), dict) and ckpt["ema_state_dict"]:
        state = ckpt["ema_state_dict"]
    elif isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"].get("gen_model", ckpt["state_dict"])
    else:
        raise ValueError(f"{path}: no 'ema_state_dict' or 'state_dict' entry (keys: {sorted(ckpt)[:10]})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = LCVAE(config)
    load_backbone_state(model, state, str(path))
    return model
