"""I3D (Inception-v1 inflated to 3D, Kinetics-400) for FVD features.

Carreira & Zisserman's I3D: the Inception-v1 image network with every k×k kernel inflated to
t×k×k, trained on Kinetics-400. All convolutions and pools use TensorFlow "SAME" padding
computed from the input size (total pad max(k − s, 0) if s divides the size, else
max(k − size mod s, 0); the smaller half in front), because the weights were trained in TF.

Module and parameter names follow pytorch-i3d (piergiaj) exactly, so its state dicts
(``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias``, ...)
load with strict=True.

FVD features. The FVD of Unterthiner et al. embeds a clip with the TF-hub I3D's 400 Kinetics
logits (pre-softmax); the StyleGAN-V TorchScript detector used by the paper returns those same
400 logits when called with ``return_features=True``. :func:`load_i3d` therefore gives 400-d
features from either weight source: for our network, the logits after pytorch-i3d's final
average pool (kernel 2×7×7), averaged over the remaining time positions. Note that the
pytorch-i3d weights (converted from DeepMind's release) are not the TF-hub weights the
TorchScript file reproduces, so FVDs from the two sources are not comparable with each other.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lcvae.perceptual.weights import (
    WeightsUnavailable,
    find_hub_checkpoint,
    hub_checkpoint_dir,
    is_torchscript_file,
    read_state_dict,
)

logger = logging.getLogger(__name__)

FEATURE_DIM = 400
INPUT_SIZE = 224
MIN_FRAMES = 9  # three stride-2 stages must leave ≥ 2 time steps for the 2×7×7 average pool

# Inception-v1 mixed blocks: (name, input channels, [b0, b1a, b1b, b2a, b2b, b3b] widths).
MIXED = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


def same_pad(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad (N, C, T, H, W) as TensorFlow's SAME padding would for this kernel and stride."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """SAME-padded Conv3d, then BatchNorm (eps 1e-3, as trained in TF) and ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with SAME zero padding: inputs follow a ReLU, so zeros never win over real values."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1×1; 1×1→3³; 1×1→3³; 3³ max-pool→1×1) concatenated on channels."""

    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, widths[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D with pytorch-i3d's parameter names.

    Input (B, 3, T, H, W), values in [-1, 1], T ≥ 9 and H, W ≥ 193 (224 is the trained size).
    """

    def __init__(self, num_classes: int = FEATURE_DIM) -> None:
        super().__init__()
        # attribute order is the forward order; pools hold no parameters
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name, cin, widths in MIXED[:2]:
            self.add_module(name, InceptionBlock(cin, widths))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name, cin, widths in MIXED[2:7]:
            self.add_module(name, InceptionBlock(cin, widths))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name, cin, widths in MIXED[7:]:
            self.add_module(name, InceptionBlock(cin, widths))
        self.logits = Unit3D(1024, num_classes, norm=False, relu=False, bias=True)

    def pooled(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, 1024, T'', H'', W''): Mixed_5c after the 2×7×7 average pool."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (B, 3, T, H, W) clips, got {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if t < MIN_FRAMES or min(h, w) < 193:
            raise ValueError(
                f"I3D needs at least {MIN_FRAMES} frames of at least 193×193 pixels, got "
                f"{t}×{h}×{w}; resize clips to {INPUT_SIZE}×{INPUT_SIZE} (preprocess_clips) and "
                f"use ≥ 16 frames as FVD16 does"
            )
        for name, module in self.named_children():
            if name != "logits":
                x = module(x)
        return F.avg_pool3d(x, (2, 7, 7), stride=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, num_classes, T'') logits per remaining time step."""
        return self.logits(self.pooled(x)).flatten(2)

    def features(self, x: Tensor, kind: str = "logits") -> Tensor:
        """FVD embedding, averaged over time: "logits" (B, 400), or "pool" (B, 1024)."""
        if kind == "logits":
            return self.forward(x).mean(dim=2)
        if kind == "pool":
            return self.pooled(x).flatten(2).mean(dim=2)
        raise ValueError(f"I3D feature kind must be 'logits' or 'pool', got {kind!r}")


def preprocess_clips(x: Tensor, size: int = INPUT_SIZE) -> Tensor:
    """Resize every frame to size×size (bilinear, aspect not kept), as the detector's resize=True.

    (B, 3, T, H, W), values in [-1, 1] -> (B, 3, T, size, size). Crop first if the aspect ratio
    matters to you; values are not rescaled.
    """
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, T, H, W) clips, got {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    if (h, w) == (size, size):
        return x
    # (B, 3, T, H, W) -> (B*T, 3, H, W) for a per-frame 2D resize
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    return frames.view(b, t, c, size, size).transpose(1, 2)


class VideoFeatureExtractor(Protocol):
    """What FVD needs: ``extractor(videos)`` with (B, 3, T, H, W) in [-1, 1] -> (B, dim) float."""

    name: str
    dim: int

    def __call__(self, videos: Tensor) -> Tensor: ...


class I3DExtractor:
    """Our InceptionI3d behind the common interface (frames resized to 224, 400 logits)."""

    dim = FEATURE_DIM

    def __init__(self, model: InceptionI3d, name: str = "i3d-pytorch") -> None:
        self.model, self.name = model.eval().requires_grad_(False), name

    def to(self, device: torch.device | str) -> I3DExtractor:
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> Tensor:
        return self.model.features(preprocess_clips(videos)).float()


class TorchScriptI3D:
    """The StyleGAN-V TorchScript detector (``i3d_torchscript.pt``) behind the common interface.

    Called as StyleGAN-V's descendants call it on float clips in [-1, 1]:
    ``detector(videos, rescale=False, resize=True, return_features=True)`` -> (B, 400) logits.
    """

    dim = FEATURE_DIM

    def __init__(self, module: torch.jit.ScriptModule, name: str = "i3d-torchscript") -> None:
        self.module, self.name = module.eval(), name

    def to(self, device: torch.device | str) -> TorchScriptI3D:
        self.module.to(device)
        return self

    @torch.no_grad()
    def __call__(self, videos: Tensor) -> Tensor:
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) clips, got {tuple(videos.shape)}")
        out = self.module(videos, rescale=False, resize=True, return_features=True)
        return out.reshape(videos.shape[0], -1).float()


def load_i3d(path: str | os.PathLike | None = None) -> I3DExtractor | TorchScriptI3D:
    """An I3D feature extractor from a weight file; nothing is downloaded.

    ``path`` may be the StyleGAN-V TorchScript ``i3d_torchscript.pt`` (torch.jit.load) or a
    pytorch-i3d state dict such as ``rgb_imagenet.pt`` (.pt/.pth with weights_only=True, or
    .safetensors; loaded strictly). With ``path=None`` the file ``i3d_torchscript.pt`` is looked
    for in torch's hub cache. Raises WeightsUnavailable when nothing is found.
    """
    file = Path(path) if path is not None else find_hub_checkpoint("i3d_torchscript.pt")
    if file is None or not file.is_file():
        where = f"{path} does not exist" if path is not None else "no path was given"
        raise WeightsUnavailable(
            f"FVD needs I3D (Kinetics-400) weights, and {where}. Provide either the StyleGAN-V "
            "TorchScript detector i3d_torchscript.pt (the paper's FVD) or a pytorch-i3d state "
            "dict such as rgb_imagenet.pt (.pt/.pth/.safetensors) via the I3D path option, or "
            f"place i3d_torchscript.pt in {hub_checkpoint_dir()}; nothing is downloaded"
        )
    if is_torchscript_file(file):
        logger.info("I3D: TorchScript detector %s", file)
        # the published detector exists only as TorchScript, so jit's deprecation has no remedy here
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`torch.jit", category=DeprecationWarning)
            module = torch.jit.load(str(file), map_location="cpu")
        return TorchScriptI3D(module)
    model = InceptionI3d()
    model.load_state_dict(read_state_dict(file), strict=True)
    logger.info("I3D: pytorch-i3d state dict %s", file)
    return I3DExtractor(model)
