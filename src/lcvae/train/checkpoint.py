"""Checkpoint I/O: atomic, weights_only-loadable, keep-last-k, with RNG state and resolved config.

Layout under a run folder ``root``::

    root/step_000010000/
        <name>.safetensors   one per weight group passed in ``weights`` (model, ema, disc, ...)
        state.pt             nested training state (optimisers, step, RNG, data position, ...)
        config.yaml          resolved config (if given)

A checkpoint is written into a hidden temp folder ``root/.tmp-step_...`` (each file fsynced),
which is then renamed into place with ``os.replace``: a rename within one folder is atomic, so a
step folder either exists complete or not at all. A save killed mid-write leaves only a temp
folder, which ``latest_checkpoint`` ignores and the next save removes (only rank 0 saves, so no
other writer can own it).

``state.pt`` is written with ``torch.save`` and read with ``torch.load(weights_only=True)``; before
saving, the state is checked to hold only tensors, numbers, strings, bools, None, lists, tuples and
dicts, so a save never produces a file that cannot be loaded. ``capture_rng_state`` converts the
numpy and Python RNG states (tuples holding arrays) into that vocabulary.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from lcvae.config import to_dict
from lcvae.utils import fsync_dir, fsync_file

logger = logging.getLogger(__name__)

__all__ = [
    "resolve_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "set_aside_after",
    "LoadedCheckpoint",
]

_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def _write_synced(path: Path, produce: Callable[[Path], None]) -> None:
    """Let ``produce`` write ``path``, then fsync it (files are streamed, never held as bytes)."""
    produce(path)
    fsync_file(path)


# ---------------------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """torch CPU, CUDA (all devices, if available), numpy global and Python ``random`` states, as
    tensors and primitives only."""
    np_state = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``: afterwards the RNGs produce the same numbers as at capture."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    if "cuda" in state:
        if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
        else:
            logger.warning("checkpoint holds CUDA RNG states for %d devices; not restored here", len(state["cuda"]))


# ------------------------------------------------------------------------------------ save / load


def _check_weights_only(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.Size)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_weights_only(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"checkpoint state key {where}[{k!r}] must be str or int, got {type(k).__name__}")
            _check_weights_only(v, f"{where}[{k!r}]")
        return
    raise ValueError(
        f"checkpoint state {where} is a {type(value).__name__}, which torch.load(weights_only=True) cannot "
        f"read back; store tensors, numbers, strings, lists or dicts (e.g. torch.from_numpy(array), .tolist())"
    )


def _safetensors_ready(tensors: Mapping[str, torch.Tensor], group: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"weights[{group!r}][{name!r}] is a {type(t).__name__}; weight groups hold tensors only")
        t = t.detach().cpu()
        # safetensors refuses tensors sharing storage (tied weights, views); store each as its own copy.
        ptr = t.untyped_storage().data_ptr()
        t = t.clone() if ptr in seen else t.contiguous()
        seen.add(ptr)
        out[name] = t
    return out


def _step_dir_name(step: int) -> str:
    return f"step_{step:09d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / "state.pt").is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint folder with the highest step, or None if there is none."""
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints; returns the deleted folders."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 (or None to keep everything), got {keep_last}")
    doomed = list_checkpoints(root)[:-keep_last]
    for p in doomed:
        shutil.rmtree(p)
        logger.info("removed old checkpoint %s", p)
    return doomed


def set_aside_after(root: str | Path, step: int) -> list[Path]:
    """Rename the checkpoints of steps after ``step`` to ``diverged-step_*`` (kept for inspection, but no
    longer found by ``latest_checkpoint``, resumed from or counted by ``keep_last``); returns the new paths."""
    moved = []
    for p in list_checkpoints(root):
        if int(_STEP_DIR.match(p.name).group(1)) > step:
            target = p.with_name(f"diverged-{p.name}")
            if target.exists():
                shutil.rmtree(target)
            os.replace(p, target)
            logger.warning("set aside %s as %s: it holds weights from after the divergence", p, target.name)
            moved.append(target)
    if moved:
        fsync_dir(root)
    return moved


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    state: Mapping[str, Any],
    config: Any = None,
    keep_last: int | None = None,
    _writer: Callable[[Path, Callable[[Path], None]], None] = _write_synced,
) -> Path:
    """Atomically write ``root/step_{step:09d}`` and return its path.

    weights: groups of tensors, one safetensors file each (e.g. {"model": model.state_dict()}).
    state:   nested tensors/primitives (optimiser state dicts, ``capture_rng_state()``, data position,
             ``EMA.state_dict()``...); "step" is added.
    config:  the resolved config (a config dataclass or its ``lcvae.config.to_dict``), saved as config.yaml.
    keep_last: after a successful save, delete all but this many newest checkpoints.
    ``_writer`` is the file-writing primitive (tests replace it to simulate a crash mid-write).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    for group in weights:
        if group == "state" or not _NAME.match(group):
            raise ValueError(f"weight group name {group!r} must match [A-Za-z0-9_-]+ and not be 'state'")
    full_state = {**state, "step": step}
    _check_weights_only(full_state, "state")
    plain_config = to_dict(config) if config is not None else None
    if plain_config is not None and not isinstance(plain_config, dict):
        raise ValueError(f"config must be a config dataclass or a mapping, got {type(config).__name__}")

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_TMP_PREFIX}step_*"):
        logger.warning("removing %s left by an interrupted save", stale)
        shutil.rmtree(stale, ignore_errors=True)

    final = root / _step_dir_name(step)
    tmp = root / f"{_TMP_PREFIX}{final.name}.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for group, tensors in weights.items():
            ready = _safetensors_ready(tensors, group)
            _writer(tmp / f"{group}.safetensors", lambda p, ready=ready: save_safetensors(ready, str(p)))
        _writer(tmp / "state.pt", lambda p: torch.save(full_state, p))
        if config is not None:
            text = yaml.safe_dump(plain_config, sort_keys=False)
            _writer(tmp / "config.yaml", lambda p: p.write_text(text, encoding="utf-8"))
        fsync_dir(tmp)
        if final.exists():
            # Re-saving a step: move the old one aside first (os.replace cannot overwrite a non-empty dir).
            old = root / f"{_TMP_PREFIX}old-{final.name}.{uuid.uuid4().hex}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)
    logger.info("saved checkpoint %s", final)
    if keep_last is not None:
        prune_checkpoints(root, keep_last)
    return final


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    weights: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    config: dict[str, Any] | None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Read a checkpoint folder written by ``save_checkpoint`` (state via weights_only torch.load)."""
    path = Path(path)
    if not (path / "state.pt").is_file():
        raise ValueError(f"{path} is not a checkpoint folder (no state.pt); use latest_checkpoint(root) to find one")
    device = str(map_location)
    weights = {p.stem: load_safetensors(p, device=device) for p in sorted(path.glob("*.safetensors"))}
    state = torch.load(path / "state.pt", map_location=map_location, weights_only=True)
    config_path = path / "config.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    return LoadedCheckpoint(path=path, step=int(state["step"]), weights=weights, state=state, config=config)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder as given, or the newest one of a run folder (``run/checkpoints/step_*``)."""
    path = Path(path)
    if (path / "state.pt").is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"{path} is neither a training checkpoint (step_* folder with state.pt) nor a run folder holding one"
    )
