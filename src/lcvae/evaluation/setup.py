"""What an evaluation needs besides the loop: the metric networks, the dataset, a mask override.

Metric networks. LPIPS needs torchvision's ImageNet backbone (given by path or found in torch's
hub cache); ST-LPIPS ships complete in the stlpips-pytorch wheel; I3D needs the StyleGAN-V
TorchScript detector or a pytorch-i3d state dict. Whatever is missing is not faked: the metric
is reported as skipped with the loader's message, which says how to provide the weights.
``i3d_random`` builds an I3D with seeded random weights, the same on every rank, to exercise
the FVD pipeline without weights; its numbers are labelled and mean nothing.

Mask override (post-training compression, docs/compression.md#post-training-compression). :func:`with_compression` wraps a
loaded model's backbone in an LC-VAE with a chosen Multi-WT mask, applied only at inference, so
a plain WF-VAE checkpoint can be scored as if it had been compressed after training. The frame
rule becomes the compressed one (32k frames, or 1 + 32k causal).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lcvae.compression import LatentCompressor
from lcvae.data.datasets import ClipDataset
from lcvae.data.sources import open_clip_dataset
from lcvae.masks import MASKS, CompressionConfig, load_mask_json
from lcvae.models.lcvae import LCVAE, LCVAEConfig
from lcvae.perceptual import (
    LPIPS,
    I3DExtractor,
    InceptionI3d,
    VideoFeatureExtractor,
    WeightsUnavailable,
    load_i3d,
    load_lpips,
    load_st_lpips,
)
from lcvae.perceptual.weights import TORCHVISION_CHECKPOINTS, find_hub_checkpoint, hub_checkpoint_dir

logger = logging.getLogger(__name__)

LPIPS_CHOICES = ("alex", "vgg", "st-alex", "st-vgg", "none")
COMPRESS_CHOICES = tuple(m for m in MASKS if m != "custom")
RANDOM_I3D_SEED = 0
RANDOM_I3D_NOTE = (
    "I3D with random weights (seed 0): exercises the FVD pipeline only; "
    "the number is not an FVD and is comparable to nothing"
)


@dataclass
class MetricNetworks:
    """Loaded perceptual networks, or the reason each is missing."""

    lpips: LPIPS | None = None
    lpips_skipped: str | None = None
    extractor: VideoFeatureExtractor | None = None
    fvd_skipped: str | None = None
    fvd_note: str | None = None  # e.g. random weights

    @property
    def lpips_name(self) -> str | None:
        if self.lpips is None:
            return None
        return f"{self.lpips.name} ({self.lpips.config.net})"


def random_i3d() -> I3DExtractor:
    """I3D with seeded random weights, identical on every process (global RNG untouched).

    Convolutions get He-normal weights: PyTorch's default init shrinks activations layer by
    layer, which leaves random logits almost equal for every clip (FVDs ~1e-11).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_I3D_SEED)
        model = InceptionI3d()
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return I3DExtractor(model, name="i3d-random-weights")


def load_networks(
    lpips: str = "alex",
    lpips_backbone: str | None = None,
    i3d: str | None = None,
    i3d_random: bool = False,
    device: str | torch.device = "cpu",
) -> MetricNetworks:
    """LPIPS / ST-LPIPS and the FVD feature extractor for an evaluation.

    ``lpips``: "alex" or "vgg" (standard LPIPS: needs ``lpips_backbone`` or torch's hub cache),
    "st-alex" or "st-vgg" (ST-LPIPS, weights from the stlpips-pytorch wheel; a different metric),
    or "none". ``i3d``: a TorchScript detector or pytorch-i3d state dict (None: look in torch's
    hub cache); ``i3d_random``: random weights, labelled as such. Missing weights give a
    ``*_skipped`` message instead of an error.
    """
    if lpips not in LPIPS_CHOICES:
        raise ValueError(f"lpips must be one of {LPIPS_CHOICES}, got {lpips!r}")
    if i3d is not None and i3d_random:
        raise ValueError("give an I3D weight file or ask for random weights, not both")
    nets = MetricNetworks()
    if lpips == "none":
        nets.lpips_skipped = "not requested (--lpips none)"
    elif not lpips.startswith("st-") and _lpips_backbone_file(lpips, lpips_backbone) is None:
        nets.lpips_skipped = _lpips_missing(lpips, lpips_backbone)
        logger.warning("LPIPS skipped: %s", nets.lpips_skipped)
    else:
        try:
            net = load_st_lpips(lpips[3:]) if lpips.startswith("st-") else load_lpips(lpips, lpips_backbone)
            nets.lpips = net.to(device)
        except WeightsUnavailable as err:
            nets.lpips_skipped = str(err)
            logger.warning("LPIPS skipped: %s", err)
    if i3d_random:
        nets.extractor, nets.fvd_note = random_i3d().to(device), RANDOM_I3D_NOTE
    else:
        try:
            nets.extractor = load_i3d(i3d).to(device)
        except WeightsUnavailable as err:
            nets.fvd_skipped = str(err)
            logger.warning("FVD skipped: %s", err)
    return nets


def _lpips_backbone_file(net: str, given: str | None) -> Path | None:
    """The torchvision backbone file LPIPS ``net`` would load: ``given``, else torch's hub cache."""
    if given is not None:
        return Path(given) if Path(given).is_file() else None
    return find_hub_checkpoint(TORCHVISION_CHECKPOINTS[net])


def _lpips_missing(net: str, given: str | None) -> str:
    """Why LPIPS ``net`` is skipped, in the words of the command line (``--lpips-backbone``)."""
    file_name = TORCHVISION_CHECKPOINTS[net]
    why = f"--lpips-backbone {given} does not exist" if given else "no --lpips-backbone was given"
    return (
        f"LPIPS ({net}) needs torchvision's ImageNet {'AlexNet' if net == 'alex' else 'VGG16'} weights "
        f"({file_name}), and {why} nor is the file in {hub_checkpoint_dir()}; nothing is downloaded. "
        f"Give it with --lpips-backbone PATH (Python: lpips_backbone=PATH), or score ST-LPIPS with "
        f"--lpips st-{net} (weights ship with stlpips-pytorch; a different metric, reported under its own name)"
    )


def open_dataset(
    path: str | Path,
    data_format: str = "auto",
    *,
    frames: int,
    size: int | None,
    frame_stride: int = 1,
    start_frame: int = 0,
    split_file: str | None = None,
    multiple: int | None = None,
    threads: int = 1,
) -> ClipDataset:
    """An evaluation dataset: fixed start, short side resized to ``size`` and centre-cropped to
    ``size``×``size`` (``size=None`` keeps frames as they are; ``multiple`` then crops them to
    the model's spatial multiple). ``data_format``: a kind of :mod:`lcvae.data.sources` ("auto": a
    video file is one clip, another file a manifest, a folder a folder of videos)."""
    return open_clip_dataset(
        data_format,
        path,
        split_file=split_file,
        num_frames=frames,
        frame_stride=frame_stride,
        start_frame=start_frame,
        random_start=False,
        short_side=size,
        crop=size,
        multiple=multiple,
        threads=threads,
    )


def compression_config(model: LCVAE, mask: str) -> CompressionConfig:
    """The CompressionConfig for a named mask (``COMPRESS_CHOICES``) or a reference mask JSON
    file (``{"selected_indices": [...]}``) on this model's latent."""
    if mask.endswith(".json"):
        c = model.config.backbone.latent_channels
        return CompressionConfig(mask="custom", kept_indices=load_mask_json(mask, c))
    if mask not in COMPRESS_CHOICES:
        raise ValueError(f"compression mask must be one of {COMPRESS_CHOICES} or a mask .json file, got {mask!r}")
    return CompressionConfig(mask=mask)


def with_default_mask(config: LCVAEConfig) -> LCVAEConfig:
    """``config`` with the paper mask and no latent statistics: its frame rule is the compressed one
    (32k frames, or 1 + 32k causal), the stricter rule every mask at inference shares."""
    return replace(config, compression=CompressionConfig(), latent_mean=None, latent_std=None)


def with_compression(model: LCVAE, mask: str | CompressionConfig) -> LCVAE:
    """The same backbone (parameters shared, not copied) with a Multi-WT mask at inference.

    ``mask``: a name in ``COMPRESS_CHOICES``, a mask .json path, or a CompressionConfig. Any
    mask the model had is replaced, and its diffusion-latent statistics are dropped (they
    describe a different latent). The result is in eval mode on the model's device.
    """
    comp = mask if isinstance(mask, CompressionConfig) else compression_config(model, mask)
    if model.compressor is not None:
        logger.info("replacing the model's %r mask with %r", model.config.compression.mask, comp.mask)
    config = LCVAEConfig(backbone=model.config.backbone, compression=comp)
    device = next(model.parameters()).device
    with torch.device("meta"):  # no second backbone is allocated or initialised
        wrapped = LCVAE(config)
    wrapped.backbone = model.backbone
    wrapped.compressor = LatentCompressor(comp, config.backbone.latent_channels, config.backbone.causal).to(device)
    channels = config.diffusion_channels
    wrapped.latent_mean = torch.zeros(1, channels, 1, 1, 1, device=device)
    wrapped.latent_std = torch.ones(1, channels, 1, 1, 1, device=device)
    left = [n for n, t in [*wrapped.named_parameters(), *wrapped.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(
            f"with_compression left tensors unmaterialised: {left}; LCVAE gained state this function does not rebuild"
        )
    return wrapped.eval()
