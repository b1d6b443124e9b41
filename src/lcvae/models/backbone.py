"""What LC-VAE needs from a video VAE backbone, and the registry of backbones.

The compressor works on any latent (B, C, T', H', W'), so any VAE that meets this protocol can be
trained, evaluated, analysed and cached through the same code:

* ``config`` with ``latent_channels``, ``causal`` and ``frame_rule`` (a :class:`lcvae.models.vae.FrameRule`
  with the temporal factor t and spatial factor s: causal 1 + t*k frames, the first latent frame is
  the image frame; non-causal t*k frames),
  ``to_dict()`` / ``from_dict()``;
* ``encode_moments(x, chunk=None) -> EncoderOutput`` (posterior mean and log-variance stacked on the
  channel axis; energy-flow coefficients when the backbone has them, else ``None``);
* ``decode_output(z, chunk=None) -> DecoderOutput``;
* ``encode(x, chunk=None, tile=None, overlap=None) -> DiagonalGaussian`` and
  ``decode(z, chunk=None, tile=None, overlap=None)`` (default overlap ``frame_rule.default_overlap``);
* ``last_layer``: the weight of the final decoder layer, for the adaptive GAN weight.

The output types and the posterior live in :mod:`lcvae.models.vae`. Compression factors are the
backbone's own (4 x 8 x 8 for WF-VAE and Wan 2.1, 4 x 16 x 16 for Wan 2.2 and HunyuanVideo 1.5,
8 x 32 x 32 for LTX-2; docs/backbones.md); everything downstream asks the frame rule. A backbone is registered with :func:`register_backbone` under
the ``type`` name its config dict carries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from lcvae.models.vae import DecoderOutput, DiagonalGaussian, EncoderOutput, FrameRule
from lcvae.utils import suggest


class BackboneConfig(Protocol):
    latent_channels: int
    causal: bool

    @property
    def frame_rule(self) -> FrameRule: ...

    def to_dict(self) -> dict: ...


class Backbone(Protocol):
    config: Any

    def encode_moments(self, x: Tensor, chunk: int | None = None) -> EncoderOutput: ...
    def decode_output(self, z: Tensor, chunk: int | None = None) -> DecoderOutput: ...
    def encode(
        self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> DiagonalGaussian: ...
    def decode(
        self, z: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> Tensor: ...

    @property
    def last_layer(self) -> Tensor: ...


@dataclass(frozen=True)
class BackboneEntry:
    config_class: str  # "module:Class", imported on use so optional dependencies stay optional
    model_class: str

    def load(self, which: str) -> Any:
        module, name = getattr(self, which).split(":")
        return getattr(importlib.import_module(module), name)


BACKBONES: dict[str, BackboneEntry] = {
    "wfvae": BackboneEntry("lcvae.models.wfvae:WFVAEConfig", "lcvae.models.autoencoder:WFVAE"),
    # diffusers-based backbones: diffusers itself is imported only when a model is built
    "wan": BackboneEntry("lcvae.models.wan:WanVAEConfig", "lcvae.models.wan:WanVAE"),
    "diffusers": BackboneEntry(
        "lcvae.models.diffusers_vae:DiffusersVAEConfig", "lcvae.models.diffusers_vae:DiffusersVAE"
    ),
}


def register_backbone(name: str, config_class: str, model_class: str) -> None:
    """Register a backbone type by import paths ("package.module:Class")."""
    BACKBONES[name] = BackboneEntry(config_class, model_class)


def _entry(name: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone type {name!r}{suggest(name, list(BACKBONES))}")
    return BACKBONES[name]


def backbone_type(config: Any) -> str:
    for name, entry in BACKBONES.items():
        if entry.config_class.split(":")[1] == type(config).__name__:
            return name
    raise ValueError(f"{type(config).__name__} is not a registered backbone config")


def backbone_config_from_dict(d: dict) -> Any:
    """Config dict with an optional ``type`` (default "wfvae") -> that backbone's config dataclass."""
    d = dict(d)
    cls = _entry(d.pop("type", "wfvae")).load("config_class")
    return cls.from_dict(d)


def backbone_config_to_dict(config: Any) -> dict:
    return {"type": backbone_type(config), **config.to_dict()}


def build_backbone(config: Any) -> nn.Module:
    factory: Callable[[Any], nn.Module] = _entry(backbone_type(config)).load("model_class")
    return factory(config)
