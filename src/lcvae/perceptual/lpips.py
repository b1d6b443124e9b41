"""LPIPS and ST-LPIPS: learned perceptual distances between images and videos.

LPIPS (Zhang et al., 2018) compares two images through a frozen ImageNet classifier:

    d(x, y) = sum_l  mean_{h,w}  w_l · (f̂_l(x) − f̂_l(y))²

where f_l are the activations after the l-th tapped ReLU (five taps), f̂_l is f_l divided by its
per-position L2 norm over channels, and w_l ≥ 0 is a learned 1×1 linear head per layer. Before
the network, inputs in [-1, 1] go through a fixed "scaling layer" (x − shift) / scale that maps
them to ImageNet statistics.

Two backbones, each in two variants:

- plain: torchvision's AlexNet / VGG16 ``features``, laid out index for index so a torchvision
  state dict (``features.0.weight``, ...) loads into it. The heads come from the ``lpips`` wheel.
- shift-tolerant (ST-LPIPS, Ghildyal & Liu 2022): every max-pool becomes MaxPool(stride 1)
  followed by a 3×3 binomial blur with stride 2 on a reflection-padded input; the AlexNet variant
  also moves the first conv's stride 4 into a stride-1 conv + blur. Backbone and heads were
  trained together and ship complete in the ``stlpips-pytorch`` wheel. Its numbers are a different
  metric and must be reported as "ST-LPIPS" (see :attr:`LPIPS.name`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lcvae.perceptual.weights import (
    TORCHVISION_CHECKPOINTS,
    WeightsUnavailable,
    find_hub_checkpoint,
    hub_checkpoint_dir,
    lpips_heads_path,
    read_state_dict,
    stlpips_weights_path,
)

logger = logging.getLogger(__name__)

NETS = ("alex", "vgg")
# ImageNet mean/std expressed for inputs in [-1, 1] (the lpips package's ScalingLayer constants).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# VGG16 "configuration D": conv widths, "M" for a pooling stage; the final pool is never tapped.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


@dataclass(frozen=True)
class LPIPSConfig:
    net: str = "alex"  # "alex" or "vgg"
    shift_tolerant: bool = False

    def __post_init__(self) -> None:
        if self.net not in NETS:
            raise ValueError(f"LPIPS net must be one of {NETS}, got {self.net!r}")

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the five tapped activations."""
        return (64, 192, 384, 256, 256) if self.net == "alex" else (64, 128, 256, 512, 512)


class BinomialBlur(nn.Module):
    """Anti-aliased stride-2 downsampling: reflection pad 2, depthwise 3×3 [1,2,1]ᵀ[1,2,1]/16 blur.

    (N, C, H, W) -> (N, C, ⌊(H+1)/2⌋+1, ⌊(W+1)/2⌋+1). The padding of 2 (not 1) is what the
    shift-tolerant networks were trained with.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps) / 16.0
        self.register_buffer("kernel", kernel.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
        return F.conv2d(x, self.kernel, stride=2, groups=x.shape[1])


def _alexnet_layers(shift_tolerant: bool) -> list[nn.Module]:
    relu = nn.ReLU
    if not shift_tolerant:  # torchvision alexnet().features[:12]
        return [
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            relu(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            relu(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            relu(),
            nn.Conv2d(384, 256, 3, padding=1),
            relu(),
            nn.Conv2d(256, 256, 3, padding=1),
            relu(),
        ]
    return [
        nn.Conv2d(3, 64, 11, stride=1, padding=2),
        BinomialBlur(64),
        relu(),
        nn.MaxPool2d(3, 1),
        BinomialBlur(64),
        nn.Conv2d(64, 192, 5, padding=2),
        relu(),
        nn.MaxPool2d(3, 1),
        BinomialBlur(192),
        nn.Conv2d(192, 384, 3, padding=1),
        relu(),
        nn.Conv2d(384, 256, 3, padding=1),
        relu(),
        nn.Conv2d(256, 256, 3, padding=1),
        relu(),
    ]


def _vgg16_layers(shift_tolerant: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_CFG:
        if item == "M":
            if shift_tolerant:
                layers += [nn.MaxPool2d(2, 1), BinomialBlur(channels)]
            else:
                layers += [nn.MaxPool2d(2, 2)]
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return layers


class Backbone(nn.Module):
    """A feature stack returning the activations after its tapped ReLUs.

    ``features`` keeps torchvision's indexing (pools and blurs occupy indices too), so a
    torchvision-format state dict maps onto it key for key.
    """

    def __init__(self, config: LPIPSConfig) -> None:
        super().__init__()
        build = _alexnet_layers if config.net == "alex" else _vgg16_layers
        self.features = nn.Sequential(*build(config.shift_tolerant))
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        if config.net == "alex":
            taps = relus
        else:  # VGG taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: each stage's last ReLU
            taps = [i for i in relus if i + 1 == len(self.features) or isinstance(self.features[i + 1], nn.MaxPool2d)]
        self.taps = tuple(taps)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def _unit_normalise(f: Tensor, eps: float = 1e-10) -> Tensor:
    # eps added to the norm (not under the root), as the published heads were calibrated with it
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance between image batches. Build with :func:`load_lpips` / :func:`load_st_lpips`."""

    def __init__(self, config: LPIPSConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in config.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    @property
    def name(self) -> str:
        """ "ST-LPIPS" for the shift-tolerant networks, "LPIPS" otherwise: never mix the two."""
        return "ST-LPIPS" if self.config.shift_tolerant else "LPIPS"

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(N, 3, H, W), (N, 3, H, W), values in [-1, 1] -> (N,) distances ≥ 0."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"LPIPS expects two (N, 3, H, W) batches of equal shape, got {tuple(x.shape)} "
                f"and {tuple(y.shape)}; for videos use lpips_video"
            )
        n = x.shape[0]
        # one pass over both batches: halves the number of backbone calls
        feats = self.backbone((torch.cat([x, y]) - self.shift) / self.scale)
        total = x.new_zeros(n)
        for f, head in zip(feats, self.heads):
            fx, fy = _unit_normalise(f[:n]), _unit_normalise(f[n:])
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total

    def load_torchvision_backbone(self, state: dict[str, Tensor]) -> None:
        """Load a torchvision AlexNet/VGG16 state dict (``features.*``; the classifier is ignored)."""
        if self.config.shift_tolerant:
            raise ValueError("ST-LPIPS backbones are not torchvision networks; use load_st_lpips")
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            feats = dict(state)  # a bare `features` Sequential saved on its own
        _load_strict(self.backbone.features, feats, f"torchvision {self.config.net} features")

    def load_heads(self, state: dict[str, Tensor]) -> None:
        """Load the lpips package's head file (keys ``lin{l}.model.1.weight``)."""
        heads = {
            f"{i}.weight": state[f"lin{i}.model.1.weight"]
            for i in range(len(self.heads))
            if f"lin{i}.model.1.weight" in state
        }
        _load_strict(self.heads, heads, "LPIPS linear heads")


def _load_strict(module: nn.Module, state: dict[str, Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{what} do not match the network: missing {missing[:6]}, unexpected "
            f"{unexpected[:6]}, wrong shape {wrong[:6]}; is this the right file for this net?"
        )
    module.load_state_dict(state, strict=True)


def _frozen(model: LPIPS) -> LPIPS:
    return model.eval().requires_grad_(False)


def load_lpips(net: str = "alex", backbone_path: str | os.PathLike | None = None) -> LPIPS:
    """The standard LPIPS metric: torchvision ImageNet backbone + the lpips wheel's v0.1 heads.

    The backbone comes from ``backbone_path`` (a torchvision state dict, .pth or .safetensors) or
    from torch's hub cache; nothing is downloaded. Raises WeightsUnavailable when neither exists.
    """
    config = LPIPSConfig(net=net)
    file_name = TORCHVISION_CHECKPOINTS[net]
    path = Path(backbone_path) if backbone_path is not None else find_hub_checkpoint(file_name)
    if path is None or not path.is_file():
        where = f"{backbone_path} does not exist" if backbone_path else "no backbone_path was given"
        raise WeightsUnavailable(
            f"LPIPS ({net}) needs torchvision's ImageNet {'AlexNet' if net == 'alex' else 'VGG16'} "
            f"weights, and {where}. Pass backbone_path=/path/to/{file_name} (a torchvision state "
            f"dict, .pth or .safetensors) or place {file_name} in {hub_checkpoint_dir()}; nothing "
            "is downloaded. ST-LPIPS (load_st_lpips) needs no extra files but is a different metric."
        )
    model = LPIPS(config)
    model.load_torchvision_backbone(read_state_dict(path))
    model.load_heads(read_state_dict(lpips_heads_path(net)))
    logger.info("LPIPS (%s): backbone %s", net, path)
    return _frozen(model)


def load_st_lpips(net: str = "alex") -> LPIPS:
    """ST-LPIPS (shift-tolerant) with the complete weights shipped in the stlpips-pytorch wheel."""
    model = LPIPS(LPIPSConfig(net=net, shift_tolerant=True))
    state = read_state_dict(stlpips_weights_path(net))
    load_st_lpips_state(model, state)
    return _frozen(model)


def load_st_lpips_state(model: LPIPS, state: dict[str, Tensor]) -> None:
    """Load a stlpips-format state dict (``net.slice{k}.{i}.*``, ``lin{l}.model.1.weight``).

    The file also stores its fixed tensors (scaling constants, blur kernels); they are checked
    against ours rather than loaded, so a file built for a different network fails loudly.
    """
    for name, ours in (("shift", model.shift), ("scale", model.scale)):
        theirs = state.get(f"scaling_layer.{name}")
        if theirs is None or not torch.allclose(theirs.reshape(-1), ours.reshape(-1)):
            raise ValueError(f"ST-LPIPS file's scaling_layer.{name} differs from the LPIPS constant")
    feats: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith("net.slice"):
            continue
        index, param = key.split(".", 2)[2].split(".", 1)  # "net.slice2.5.weight" -> "5", "weight"
        layer = model.backbone.features[int(index)]
        if param == "filt":
            if not isinstance(layer, BinomialBlur) or not torch.allclose(value, layer.kernel):
                raise ValueError(f"ST-LPIPS file's blur {key} does not match the 3×3 binomial blur")
            continue
        feats[f"{index}.{param}"] = value
    _load_strict(model.backbone.features, feats, f"ST-LPIPS {model.config.net} backbone")
    model.load_heads(state)


def lpips_video(model: LPIPS, x: Tensor, y: Tensor, frames_per_chunk: int = 16) -> Tensor:
    """Per-frame LPIPS averaged over frames.

    x, y: (B, 3, T, H, W), values in [-1, 1] -> (B,). Frames go through the network
    ``frames_per_chunk`` at a time, so memory does not grow with T.
    """
    if x.shape != y.shape or x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(
            f"lpips_video expects two (B, 3, T, H, W) videos of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    b, _, t, h, w = x.shape
    # (B, 3, T, H, W) -> (B*T, 3, H, W)
    xf = x.transpose(1, 2).reshape(b * t, 3, h, w)
    yf = y.transpose(1, 2).reshape(b * t, 3, h, w)
    step = max(1, frames_per_chunk)
    d = torch.cat([model(xf[i : i + step], yf[i : i + step]) for i in range(0, b * t, step)])
    return d.view(b, t).mean(dim=1)
