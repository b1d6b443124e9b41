"""Any diffusers video VAE as an LC-VAE backbone.

The compressor only needs a latent (B, C, T', H', W') and a decoder that takes one back, so a
diffusers autoencoder with the ``latent_dist`` interface (``encode(x).latent_dist.parameters`` are
the posterior mean and log-variance stacked on the channel axis, ``decode(z).sample`` the video)
meets the backbone protocol of ``lcvae.models.backbone`` through this adapter. Plugging one in is
a config, not code::

    from lcvae.masks import CompressionConfig
    from lcvae.models.diffusers_vae import DiffusersVAEConfig
    from lcvae.models.lcvae import LCVAE, LCVAEConfig

    backbone = DiffusersVAEConfig(
        model_class="AutoencoderKLHunyuanVideo",      # any class exported by diffusers
        model_config={"latent_channels": 32},        # its constructor arguments
        latent_channels=32,
        attributes={"use_framewise_encoding": False, "use_framewise_decoding": False},
    )
    model = LCVAE(LCVAEConfig(backbone, CompressionConfig(mask="paper")))

What the adapter checks, because diffusers models do not: the frame rule (causal 1 + t*k frames,
else t*k; Wan, for one, silently drops frames that do not fit), the frame size (multiples of s), and
that the model really maps t x s x s both ways (on every encoder and decoder output, which also
catches model-specific rules such as CogVideoX decoding only odd latent lengths). t and s are read
from the constructor arguments of the classes in ``KNOWN_CLASSES`` (Wan 2.1 4 x 8 x 8; Wan 2.2,
HunyuanVideo 1.5 4 x 16 x 16; LTX-2 8 x 32 x 32), else 4 x 8 x 8 unless the config says otherwise;
classes that cannot be a backbone are refused with the reason (``REFUSED_CLASSES``). What the adapter
cannot know, and the config says: the latent width, whether the model is causal, and which weight is
the decoder's last layer (for the adaptive GAN weight).

Two things differ between diffusers VAEs and need care, see ``docs/backbones.md``:

* output clamping: some decoders clamp to [-1, 1] (Wan), which zeroes the gradient of every pixel
  outside that range; subclass and override ``_decode`` to return the unclamped output, as
  ``lcvae.models.wan`` does;
* temporal batching: each model streams (or tiles) frames its own way; ``attributes`` sets the
  model's switches (e.g. HunyuanVideo's ``use_framewise_*``, which blend overlapping temporal
  tiles and so are not exact). ``chunk`` is therefore refused here; ``lcvae.models.wan`` accepts it
  because Wan always streams exactly.

The diffusers model is stored as ``self.vae``, so its weights are named ``vae.<diffusers name>``
(``diffusers_prefix``); diffusers is imported only when a model is built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lcvae.masks import CompressionConfig
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.models.tiling import tiled_apply
from lcvae.models.vae import DecoderOutput, DiagonalGaussian, EncoderOutput, FrameRule
from lcvae.utils import strict_from_dict, suggest

__all__ = [
    "DiffusersVAEConfig",
    "DiffusersBackbone",
    "DiffusersVAE",
    "diffusers_class",
    "read_diffusers_folder",
    "diffusers_folder_state",
    "diffusers_vae_config",
    "native_statistics",
    "lcvae_from_diffusers_folder",
    "KNOWN_CLASSES",
    "REFUSED_CLASSES",
]

DIFFUSERS_CONFIG = "config.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
_LATENT_KEYS = ("latent_channels", "z_dim")  # how diffusers classes name the latent width


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
        for key in _LATENT_KEYS:
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


def _resolve_last_layer(model: nn.Module, name: str) -> str:
    """Parameter name of the decoder's last layer weight, from a parameter or module name."""
    params = dict(model.named_parameters())
    for candidate in (name, f"{name}.weight", f"{name}.conv.weight"):
        if candidate in params:
            return candidate
    convs = [n for n in params if n.startswith("decoder.") and n.endswith("weight") and "conv_out" in n]
    raise ValueError(
        f"last_layer {name!r} names no parameter or module with a weight in this model; "
        f"decoder output weights: {convs or 'none found'}"
    )


class DiffusersBackbone(nn.Module):
    """Backbone protocol on top of a diffusers video autoencoder ``vae`` (see the module docstring).

    Videos are (B, 3, T, H, W) in [-1, 1]; latents (B, C, T', H/s, W/s) with T' = (T - 1) / t + 1
    (causal) or T / t, for the temporal and spatial factors t and s of ``frame_rule``.
    """

    diffusers_prefix = "vae."  # our weight names = this prefix + the diffusers names
    accepts_chunk = False  # True when the diffusers model always streams frames exactly (Wan)

    def __init__(self, config: Any, vae: nn.Module, last_layer: str) -> None:
        super().__init__()
        self.config = config
        self.vae = vae
        self._last_layer = _resolve_last_layer(vae, last_layer)

    # -- shapes -------------------------------------------------------------------------------
    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def encoder(self) -> nn.Module:
        return self.vae.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.vae.decoder

    @property
    def frame_rule(self) -> FrameRule:
        return self.config.frame_rule

    def _check_latent(self, z: Tensor) -> None:
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent (B, {self.latent_channels}, T', h, w), got shape {tuple(z.shape)}")

    def _check_chunk(self, chunk: int | None, encoder: bool) -> None:
        if chunk is None:
            return
        if not self.accepts_chunk:
            raise ValueError(
                f"{type(self.vae).__name__} batches frames its own way: leave chunk unset and choose the model's "
                f"temporal batching through the backbone config's 'attributes'"
            )
        t = self.frame_rule.temporal_factor
        if encoder and (chunk <= 0 or chunk % t):
            raise ValueError(f"encoder chunk must be a positive multiple of {t} frames, got {chunk}")
        if not encoder and chunk <= 0:
            raise ValueError(f"decoder chunk must be at least 1 latent frame, got {chunk}")

    @property
    def last_layer(self) -> Tensor:
        """Weight of the decoder's final layer, for the adaptive GAN weight."""
        return self.vae.get_parameter(self._last_layer)

    # -- the diffusers calls (override these for model quirks) ---------------------------------
    def _moments(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, 2C, T', H/s, W/s): posterior mean then log-variance."""
        return self.vae.encode(x).latent_dist.parameters

    def _decode(self, z: Tensor) -> Tensor:
        """(B, C, T', h, w) -> (B, 3, T, s*h, s*w), as the diffusers model returns it."""
        return self.vae.decode(z).sample

    # -- protocol -------------------------------------------------------------------------------
    def encode_moments(self, x: Tensor, chunk: int | None = None) -> EncoderOutput:
        """Posterior moments of a video (B, 3, T, H, W) in [-1, 1]; no energy-flow terms."""
        self.frame_rule.check(x)
        return self._encode_moments(x, chunk)

    def _encode_moments(self, x: Tensor, chunk: int | None) -> EncoderOutput:
        """``encode_moments`` without the input check; the output shape is still verified."""
        self._check_chunk(chunk, encoder=True)
        moments = self._moments(x)
        b, _, t, h, w = x.shape
        rule = self.frame_rule
        want = (b, 2 * self.latent_channels, rule.latent_frames(t), h // rule.spatial_factor, w // rule.spatial_factor)
        if tuple(moments.shape) != want:
            raise ValueError(
                f"the diffusers encoder gave moments {tuple(moments.shape)} for a video {tuple(x.shape)}, expected "
                f"{want}: this backbone config says {rule.temporal_factor} (time) x {rule.spatial_factor} x "
                f"{rule.spatial_factor} with {self.latent_channels} latent channels "
                f"({'causal' if self.config.causal else 'non-causal'}); check the backbone config"
            )
        return EncoderOutput(moments)

    def decode_output(self, z: Tensor, chunk: int | None = None) -> DecoderOutput:
        """Video (B, 3, T, s*h, s*w) from a latent (B, C, T', h, w); no energy-flow terms."""
        self._check_latent(z)
        self._check_chunk(chunk, encoder=False)
        video = self._decode(z)
        b, _, t, h, w = z.shape
        s = self.frame_rule.spatial_factor
        want = (b, 3, self.frame_rule.video_frames(t), s * h, s * w)
        if tuple(video.shape) != want:
            raise ValueError(
                f"the diffusers decoder gave {tuple(video.shape)} for a latent {tuple(z.shape)}, expected {want}; "
                f"{type(self.vae).__name__} has its own frame rule (CogVideoX, for one, decodes only an odd number "
                f"of latent frames: use 1 + 8k video frames)"
            )
        return DecoderOutput(video)

    def encode(
        self, x: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> DiagonalGaussian:
        """Posterior of (B, 3, T, H, W) in [-1, 1]; ``tile``: ``tile``-pixel tiles overlapping by
        ``overlap`` (default ``frame_rule.default_overlap``; see tiling.py)."""
        self.frame_rule.check(x)
        if tile is None:
            return DiagonalGaussian(self._encode_moments(x, chunk).moments)
        overlap = self.frame_rule.default_overlap(tile) if overlap is None else overlap
        s = self.frame_rule.spatial_factor
        moments = tiled_apply(lambda t: self._encode_moments(t, chunk).moments, x, tile, overlap, 1 / s, align=s)
        return DiagonalGaussian(moments)

    def decode(
        self, z: Tensor, chunk: int | None = None, tile: int | None = None, overlap: int | None = None
    ) -> Tensor:
        """(B, C, T', h, w) latent -> (B, 3, T, s*h, s*w) video; ``tile`` and ``overlap`` in latent pixels
        (default overlap a quarter tile)."""
        self._check_latent(z)
        if tile is not None:
            overlap = self.frame_rule.default_overlap(tile, latent=True) if overlap is None else overlap
            return tiled_apply(lambda t: self.decode(t, chunk), z, tile, overlap, self.frame_rule.spatial_factor)
        return self.decode_output(z, chunk).sample

    def load_diffusers_state(self, state: Mapping[str, Tensor], source: str = "state") -> None:
        """Load weights named as in the diffusers model (no ``vae.`` prefix); strict, errors name the keys."""
        own = self.vae.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [
            f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
            for k in own
            if k in state and state[k].shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            parts = [
                f"{title} ({len(items)}): {', '.join(items[:6])}"
                for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
                if items
            ]
            raise ValueError(f"{source} does not match this backbone config: " + "; ".join(parts))
        self.vae.load_state_dict(dict(state), strict=True)


class DiffusersVAE(DiffusersBackbone):
    """The generic adapter: builds ``config.model_class(**config.model_config)`` and sets ``attributes``."""

    def __init__(self, config: DiffusersVAEConfig) -> None:
        vae = diffusers_class(config.model_class)(**config.model_config)
        for name, value in config.attributes.items():
            if not hasattr(vae, name):
                known = [n for n in vars(vae) if not n.startswith("_")]
                raise ValueError(f"{config.model_class} has no attribute {name!r}{suggest(name, known)}")
            setattr(vae, name, value)
        super().__init__(config, vae, config.last_layer)


def read_diffusers_folder(folder: str | Path) -> dict:
    """The ``config.json`` of a diffusers model folder (e.g. ``Wan2.1-T2V-1.3B-Diffusers/vae``)."""
    path = Path(folder) / DIFFUSERS_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder}: no {DIFFUSERS_CONFIG}; pass the folder holding the VAE (often '<model>/vae')"
        )
    raw = json.loads(path.read_text())
    if "_class_name" not in raw:
        raise ValueError(f"{path}: not a diffusers config (no '_class_name')")
    return raw


def diffusers_folder_state(folder: str | Path) -> dict[str, Tensor]:
    """The weights of a diffusers model folder (one safetensors file; sharded folders are refused)."""
    from safetensors.torch import load_file

    path = Path(folder) / DIFFUSERS_WEIGHTS
    if not path.is_file():
        found = sorted(p.name for p in Path(folder).glob("*.safetensors"))
        raise FileNotFoundError(
            f"{folder}: no {DIFFUSERS_WEIGHTS} (found {found or 'no safetensors'}); "
            f"re-save the model with diffusers' save_pretrained(safe_serialization=True)"
        )
    return load_file(path)


def diffusers_vae_config(
    folder: str | Path,
    latent_channels: int | None = None,
    causal: bool = True,
    last_layer: str = "decoder.conv_out",
    attributes: dict[str, Any] | None = None,
) -> DiffusersVAEConfig:
    """A generic backbone config for a diffusers VAE folder; the latent width is read from its config
    when it names it (``latent_channels`` or ``z_dim``), else pass it."""
    raw = read_diffusers_folder(folder)
    model_config = {k: v for k, v in raw.items() if not k.startswith("_")}
    width = latent_channels or next((model_config[k] for k in _LATENT_KEYS if k in model_config), None)
    if width is None:
        raise ValueError(
            f"{folder}: the config names no latent width ({' or '.join(_LATENT_KEYS)}); pass latent_channels="
        )
    return DiffusersVAEConfig(
        model_class=raw["_class_name"],
        model_config=model_config,
        latent_channels=width,
        causal=causal,
        last_layer=last_layer,
        attributes=attributes or {},
    )


def native_statistics(raw: dict, state: Mapping[str, Tensor], width: int) -> tuple[list[float], list[float]] | None:
    """Per-channel (mean, std) that normalise a diffusers VAE's own latent as (z - mean) / std, or None.

    Read from ``latents_mean`` / ``latents_std`` in the config (Wan, MiniMax-H3) or in the weights
    (LTX-2 stores them as buffers), else from a ``scaling_factor`` f (z * f = (z - 0) / (1 / f):
    HunyuanVideo 1.5). Values of another width (diffusers' defaults written into a folder that does
    not set them) are ignored.
    """
    for mean, std in (
        (raw.get("latents_mean"), raw.get("latents_std")),
        (state.get("latents_mean"), state.get("latents_std")),
    ):
        if mean is not None and std is not None and len(mean) == width and len(std) == width:
            return [float(v) for v in mean], [float(v) for v in std]
    factor = raw.get("scaling_factor")
    if factor:
        return [0.0] * width, [1.0 / float(factor)] * width
    return None


def lcvae_from_diffusers_folder(
    folder: str | Path, compression: CompressionConfig | None = None, **backbone: Any
) -> LCVAE:
    """An LCVAE on the diffusers VAE saved in ``folder`` (weights loaded, nothing downloaded).

    ``backbone``: fields of :class:`DiffusersVAEConfig` beyond what the folder says (``causal``,
    ``last_layer``, ``attributes``, ``latent_channels``). ``compression``: a ``CompressionConfig`` or
    None. Without compression the model's own latent statistics (:func:`native_statistics`) become
    the config's ``latent_mean`` / ``latent_std``; a compressed latent is another tensor, whose
    statistics ``lcvae latent-stats`` measures. For Wan folders use
    ``lcvae.models.wan.wan_lcvae_from_diffusers`` (or ``from_pretrained``), which also handles the
    output clamp and widening.
    """
    raw = read_diffusers_folder(folder)
    state = diffusers_folder_state(folder)
    config = diffusers_vae_config(folder, **backbone)
    stats = None if compression is not None else native_statistics(raw, state, config.latent_channels)
    mean, std = stats if stats is not None else (None, None)
    model = LCVAE(LCVAEConfig(backbone=config, compression=compression, latent_mean=mean, latent_std=std))
    model.backbone.load_diffusers_state(state, str(folder))
    return model
