"""The config of a diffusers video VAE backbone: class by name, constructor arguments, and its t x s x s factors.

``KNOWN_CLASSES`` reads the temporal and spatial factors from the constructor arguments of the classes
that are not 4 x 8 x 8; ``REFUSED_CLASSES`` names the classes that cannot be a backbone, and why. The
adapter itself is ``lcvae.models.diffusers_vae``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from lcvae.models.vae import FrameRule
from lcvae.utils import strict_from_dict, suggest

LATENT_KEYS = ("latent_channels", "z_dim")  # how diffusers classes name the latent width


def diffusers_class(name: str) -> type:
    """The diffusers class called ``name`` (imported on use: diffusers is an optional dependency)."""
    try:
        import diffusers
    except ImportError as err:  # pragma: no cover - diffusers is installed in the dev environment
        raise ImportError("this backbone needs diffusers: pip install 'lcvae[diffusers]'") from err
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        choices = [n for n in dir(diffusers) if n.startswith("AutoencoderKL")]
        raise ValueError(f"diffusers has no model class {name!r}{suggest(name, choices)}")
    return cls


def _json_plain(value: Any, what: str) -> Any:
    """Tuples -> lists etc., so a config equals itself after a JSON round trip."""
    try:
        return json.loads(json.dumps(value))
    except TypeError as err:
        raise ValueError(f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from None


def _wan_factors(cfg: dict[str, Any]) -> tuple[int, int]:
    return int(cfg.get("scale_factor_temporal") or 4), int(cfg.get("scale_factor_spatial") or 8)


def _hunyuanvideo15_factors(cfg: dict[str, Any]) -> tuple[int, int]:
    return int(cfg.get("temporal_compression_ratio", 4)), int(cfg.get("spatial_compression_ratio", 16))


def _ltx2_factors(cfg: dict[str, Any]) -> tuple[int, int]:
    """LTX-2 patchifies (``patch_size`` in space, ``patch_size_t`` in time), then each encoder block
    whose ``spatio_temporal_scaling`` flag is set downsamples by its ``downsample_type``."""
    types = cfg.get("downsample_type", ("spatial", "temporal", "spatiotemporal", "spatiotemporal"))
    flags = cfg.get("spatio_temporal_scaling", (True,) * len(types))
    flags = (flags,) * len(types) if isinstance(flags, bool) else flags
    strides = {"conv": (2, 2), "spatial": (1, 2), "temporal": (2, 1), "spatiotemporal": (2, 2)}
    t, s = int(cfg.get("patch_size_t", 1)), int(cfg.get("patch_size", 4))
    for kind, on in zip(types, flags):
        if on:
            t, s = t * strides[kind][0], s * strides[kind][1]
    return t, s


# (temporal factor, spatial factor) from the constructor arguments of classes that are not 4 x 8 x 8
KNOWN_CLASSES: dict[str, Callable[[dict[str, Any]], tuple[int, int]]] = {
    "AutoencoderKLWan": _wan_factors,
    "AutoencoderKLHunyuanVideo15": _hunyuanvideo15_factors,
    "AutoencoderKLLTX2Video": _ltx2_factors,
}

# classes that cannot be an LC-VAE backbone, and why
REFUSED_CLASSES: dict[str, str] = {
    "AutoencoderKLMiniMaxH3": (
        "its encoder runs independent 17-frame clips and drops 3 latent frames at the end, so 17n + 5 "
        "video frames give 5n + 2 latent frames: no fixed temporal factor maps frames to latent frames, "
        "and the 8-frame groups of the compressor would cut across its 5-frame clips; its decoder "
        "cross-fades overlapping clips (not exact, not streamable) and its pixels are ImageNet-normalised "
        "[0, 1] RGB, not [-1, 1]. Its 24-channel latent is the diffusion budget of lcvae-wan22"
    ),
}


@dataclass(frozen=True)
class DiffusersVAEConfig:
    """A diffusers video VAE by class name and constructor arguments.

    ``last_layer``: the decoder's final layer, a parameter name or a module name in the diffusers
    model (a module's ``weight``, or ``conv.weight`` for diffusers' causal-conv wrappers).
    ``attributes``: attributes set on the model after construction (its runtime switches).
    ``temporal_factor`` / ``spatial_factor``: video frames per latent frame and pixels per latent
    pixel; None reads them from ``model_config`` for the classes in ``KNOWN_CLASSES``, else 4 and 8.
    """

    model_class: str
    model_config: dict[str, Any] = field(default_factory=dict)
    latent_channels: int = 16
    causal: bool = True
    last_layer: str = "decoder.conv_out"
    attributes: dict[str, Any] = field(default_factory=dict)
    temporal_factor: int | None = None
    spatial_factor: int | None = None

    def __post_init__(self) -> None:
        if self.model_class in REFUSED_CLASSES:
            raise ValueError(
                f"{self.model_class} cannot be an LC-VAE backbone here: {REFUSED_CLASSES[self.model_class]}"
            )
        object.__setattr__(self, "model_config", _json_plain(dict(self.model_config), "model_config"))
        object.__setattr__(self, "attributes", _json_plain(dict(self.attributes), "attributes"))
        for key in LATENT_KEYS:
            width = self.model_config.get(key)
            if width is not None and width != self.latent_channels:
                raise ValueError(
                    f"model_config[{key!r}] = {width} but latent_channels = {self.latent_channels}; set both to the same width"
                )
        known = KNOWN_CLASSES.get(self.model_class)
        native = known(self.model_config) if known else (4, 8)
        for name, value in zip(("temporal_factor", "spatial_factor"), native):
            given = getattr(self, name)
            if given is None:
                object.__setattr__(self, name, value)
            elif known and given != value:
                raise ValueError(
                    f"{name}={given}, but this {self.model_class} config compresses by {value}; leave {name} unset"
                )
            elif given < 1:
                raise ValueError(f"{name} must be >= 1, got {given}")

    @property
    def frame_rule(self) -> FrameRule:
        """t x s x s compression (checked on every call); causal: 1 + t*k frames, else t*k."""
        return FrameRule(causal=self.causal, temporal_factor=self.temporal_factor, spatial_factor=self.spatial_factor)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiffusersVAEConfig:
        return strict_from_dict(cls, d)
