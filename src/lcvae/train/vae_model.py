"""The model side of the VAE recipe: the training forward pass, posterior noise, starting from a
pretrained backbone, and the perceptual loss network.

``TrainForward`` calls ``LCVAE.forward`` with the posterior noise passed in, so that the noise of a
sample depends only on (seed, step, dataset index) (``posterior_noise``), not on how a batch is split
over processes; DDP wraps it. ``init_backbone_from`` adapts a different latent width on the two
layers that see it. Gradient checkpointing is a model flag (``model.gradient_checkpointing = True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from lcvae.models.io import CONFIG_NAME, OFFICIAL_WEIGHTS, WEIGHTS_NAME, load_backbone_state, load_config
from lcvae.models.lcvae import LCVAE
from lcvae.perceptual import LPIPS, load_lpips, load_st_lpips
from lcvae.train.vae_config import PerceptualSection

logger = logging.getLogger(__name__)

__all__ = ["TrainForward", "posterior_noise", "init_backbone_from", "load_perceptual"]


class TrainForward(nn.Module):
    """LCVAE's training path with the posterior noise as an input (DDP wraps this module).

    x: (B, 3, T, H, W) in [-1, 1]; noise: (B, C, T', h, w) standard normal, or None for the posterior
    mean. Returns (reconstruction, mean, logvar, encoder (w2, w3), decoder (w2, w3)); the energy-flow
    tensors are None for backbones without them.
    """

    def __init__(self, model: LCVAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, noise: Tensor | None) -> tuple:
        out = self.model(x, sample_posterior=noise is not None, noise=noise)
        return out.reconstruction, out.posterior.mean, out.posterior.logvar, out.encoder_flow, out.decoder_flow


def posterior_noise(latent_shape: Sequence[int], indices: Sequence[int], step: int, seed: int) -> Tensor:
    """(B, *latent_shape) standard normal noise; sample b depends only on (seed, step, indices[b])."""
    out = []
    for index in indices:
        state = np.random.SeedSequence([seed, 0x6E6F6973, step, int(index)]).generate_state(2, dtype=np.uint32)
        g = torch.Generator().manual_seed((int(state[0]) << 32) | int(state[1]))
        out.append(torch.randn(tuple(latent_shape), generator=g))
    return torch.stack(out)


def _read_backbone_state(folder: Path) -> dict[str, Tensor]:
    if (folder / WEIGHTS_NAME).is_file():  # ours: the LCVAE state dict, backbone under "backbone."
        state = load_file(folder / WEIGHTS_NAME)
        return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if (folder / OFFICIAL_WEIGHTS).is_file():
        return load_file(folder / OFFICIAL_WEIGHTS)
    raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME} (ours) or {OFFICIAL_WEIGHTS} (official WF-VAE)")


def _check_causality(model: LCVAE, folder: Path, allow_change: bool) -> None:
    """A causal backbone started from a non-causal one (or back) computes another function with the same
    weights (the latent of a clip changes by tens of percent): refused unless ``allow_change``."""
    if not (folder / CONFIG_NAME).is_file():
        logger.warning("%s has no %s: cannot check that its causality matches this model's", folder, CONFIG_NAME)
        return
    source, own = getattr(load_config(folder).backbone, "causal", None), getattr(model.config.backbone, "causal", None)
    if source is None or own is None or source == own:
        return
    kind = {True: "causal", False: "non-causal"}
    if not allow_change:
        raise ValueError(
            f"model.init_from {folder} is a {kind[source]} backbone but the model being trained is "
            f"{kind[own]}: the copied weights would compute a different latent. Pick a "
            f"{kind[source]} model (e.g. model.backbone={{causal: {str(source).lower()}}}), or set "
            f"model.init_allow_causality_change=true to start from it anyway"
        )
    logger.warning(
        "initialising a %s model from the %s backbone %s (model.init_allow_causality_change=true): "
        "the starting latent differs from the source's",
        kind[own],
        kind[source],
        folder,
    )


def init_backbone_from(model: LCVAE, folder: str | Path, allow_causality_change: bool = False) -> list[str]:
    """Start ``model``'s backbone from a pretrained folder (ours or the official WF-VAE).

    The source's causality must equal the model's (a ValueError names both) unless
    ``allow_causality_change``. A different latent width C_src -> C is adapted on the two layers
    that see it; n = min(C_src, C): ``encoder.conv_out`` (rows = C means, then C log-variances):
    the first n mean rows and the first n log-variance rows are copied, further rows keep their
    fresh initialisation; ``decoder.conv_in`` (input columns = latent channels): the first n
    columns are copied and the others are zero, so the backbone's decoder ignores the new channels
    at the start. With C < C_src the extra source channels are dropped. Every other tensor must
    match exactly (an error lists what does not). Returns the adapted names.

    What the started model computes: without compression (and with C = C_src) exactly the source's
    reconstruction. With a compressor, the latent is projected by the mask before decoding (the
    copied channels too), so the starting model is *not* the source: training has to adapt the
    decoder to the masked latent (tests/test_train_vae.py measures the gap).
    """
    folder = Path(folder)
    _check_causality(model, folder, allow_causality_change)
    state = {k: v for k, v in _read_backbone_state(folder).items() if "wavelet_transform" not in k}
    own = model.backbone.state_dict()
    adapted = []
    for name in ("encoder.conv_out.conv.weight", "encoder.conv_out.conv.bias"):
        src, dst = state.get(name), own.get(name)
        if src is None or dst is None or src.shape == dst.shape or src.shape[1:] != dst.shape[1:]:
            continue
        cs, cd = src.shape[0] // 2, dst.shape[0] // 2
        n = min(cs, cd)
        new = dst.clone()
        new[:n], new[cd : cd + n] = src[:n], src[cs : cs + n]
        state[name] = new
        adapted.append(name)
    name = "decoder.conv_in.conv.weight"
    src, dst = state.get(name), own.get(name)
    if (
        src is not None
        and dst is not None
        and src.shape != dst.shape
        and src.shape[0] == dst.shape[0]
        and src.shape[2:] == dst.shape[2:]
    ):
        n = min(src.shape[1], dst.shape[1])
        new = torch.zeros_like(dst)
        new[:, :n] = src[:, :n]
        state[name] = new
        adapted.append(name)
    load_backbone_state(model, state, str(folder))
    if adapted:
        logger.info("initialised from %s; latent width adapted in %s", folder, ", ".join(adapted))
    else:
        logger.info("initialised from %s", folder)
    return adapted


def load_perceptual(p: PerceptualSection) -> LPIPS:
    """The perceptual loss network: ST-LPIPS (weights in stlpips-pytorch) or LPIPS (torchvision weights)."""
    kind, net = p.net.rsplit("-", 1)
    return load_st_lpips(net) if kind == "st-lpips" else load_lpips(net, p.backbone_weights)
