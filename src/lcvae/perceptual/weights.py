"""Where the perceptual networks' weights come from, and reading them safely.

Nothing here downloads. Weights are found in three places only:

- a path the user gives (torchvision / pytorch-i3d state dicts as ``.pt``/``.pth`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``; TorchScript files via ``torch.jit.load``);
- torch's hub download cache (``torch.hub.get_dir()/checkpoints``), which is filled when a user
  with network access ran torchvision once;
- files shipped inside installed wheels: the LPIPS linear heads in ``lpips`` and the complete
  ST-LPIPS networks in ``stlpips-pytorch``. Those packages are located with
  ``importlib.util.find_spec`` and never imported: both import torchvision, which is not installed.

When nothing is found, :class:`WeightsUnavailable` says exactly what to provide; callers report
the metric as skipped instead of inventing a number.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import zipfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# torchvision's ImageNet checkpoints, by the file names its downloader stores in the hub cache.
TORCHVISION_CHECKPOINTS = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


class WeightsUnavailable(FileNotFoundError):
    """Pretrained weights are not on this machine. The message says how to provide them."""


def hub_checkpoint_dir() -> Path:
    """torch's download cache for checkpoints: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_hub_checkpoint(file_name: str) -> Path | None:
    """The cached checkpoint ``file_name`` in torch's hub cache, or None if absent."""
    path = hub_checkpoint_dir() / file_name
    return path if path.is_file() else None


def package_file(package: str, relative: str) -> Path | None:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None


def lpips_heads_path(net: str) -> Path:
    """The LPIPS v0.1 linear-head file for ``net`` ("alex" or "vgg") shipped in the lpips wheel."""
    path = package_file("lpips", f"weights/v0.1/{net}.pth")
    if path is None:
        raise WeightsUnavailable(
            f"the LPIPS linear heads 'lpips/weights/v0.1/{net}.pth' were not found: install the "
            "lpips wheel without its dependencies (pip install --no-deps lpips); torchvision is "
            "not needed because only this weight file is read"
        )
    return path


def stlpips_weights_path(net: str) -> Path:
    """The complete ST-LPIPS network for ``net`` shipped in the stlpips-pytorch wheel."""
    path = package_file("stlpips_pytorch", f"weights/vST0.0/{net}_shift_tolerant.pth")
    if path is None:
        raise WeightsUnavailable(
            f"the ST-LPIPS weights 'stlpips_pytorch/weights/vST0.0/{net}_shift_tolerant.pth' were "
            "not found: install the stlpips-pytorch wheel without its dependencies "
            "(pip install --no-deps stlpips-pytorch)"
        )
    return path


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a TorchScript archive (it holds compiled ``code/``), not a pickled dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a state-dict file: ``.safetensors``, or a torch pickle read with weights_only=True.

    A checkpoint that nests its weights under "state_dict" or "model" is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if is_torchscript_file(path):
        raise ValueError(
            f"{path} is a TorchScript archive, not a state dict; load it with torch.jit.load "
            "(lcvae.perceptual.load_i3d accepts it)"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    # DataParallel / DDP checkpoints prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    logger.info("read %d tensors from %s", len(state), path)
    return state
