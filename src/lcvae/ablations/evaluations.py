"""Evaluation ablations (Tables 4 and 7): ``lcvae ablate ptlc | keep-ratio | subsets``.

* Post-training compression (Table 4) and the keep-ratio sweep: :func:`mask_sweep` evaluates one
  trained model with each Multi-WT mask applied only at inference
  (:func:`lcvae.evaluation.with_compression`), plus the model as it is ("none"), all on the same
  clips (the compressed frame rule: 32k frames, or 1 + 32k causal), and tabulates them. A sweep over
  masks a model was *trained* with is a set of training runs compared with :mod:`lcvae.comparison`.
* Challenging-content subsets (supplement D.2, Table 7): :func:`evaluate_subsets` evaluates models
  on the manifests written by ``lcvae subsets`` and tabulates them.

Each evaluation goes to its own folder (``lcvae eval``'s report) and the table to
``out_dir/table.{json,md}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lcvae.comparison import write_comparison

__all__ = ["common_frames", "mask_sweep", "evaluate_subsets"]


def _evaluation():
    # Imported on use: lcvae.evaluation loads the perceptual networks' modules and PyAV.
    import lcvae.evaluation as evaluation

    return evaluation


def common_frames(configs: Sequence, at_least: int = 16) -> list[int]:
    """Per model, the shortest clip it accepts of at least F frames, F = the longest of the models'
    own shortest clips (>= ``at_least``): one clip length for all when the frame rules allow it."""
    default_frames = _evaluation().default_frames
    longest = max(default_frames(c, at_least) for c in configs)
    return [default_frames(c, longest) for c in configs]


def mask_sweep(
    model: str,
    data: str,
    out_dir: str | Path,
    masks: Sequence[str],
    options=None,
    *,
    name: str | None = None,
    frames: int | None = None,
    size: int | None = None,
    start_frame: int = 0,
    data_format: str = "auto",
    random_weights: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` with each mask applied at inference only ("none": as it is), write each
    report to ``out_dir/<mask>/`` and the comparison to ``out_dir/table.{json,md}``.

    ``masks``: names (paper, keep25, keep75, reference), mask .json files, or "none". All
    use the same clips: by default the shortest count the compressed model accepts (>= 16).
    """
    ev = _evaluation()
    from lcvae.models.io import load_config

    if not masks:
        raise ValueError("give at least one mask (e.g. none paper, or keep25 paper keep75)")
    options = options or ev.EvalOptions()
    config = load_config(model)
    if frames is None:
        # The compressed rule (32k or 1 + 32k) is the stricter one; the plain model accepts it too.
        frames = (
            ev.default_frames(ev.with_default_mask(config))
            if any(m != "none" for m in masks)
            else ev.default_frames(config)
        )
    base = name or Path(model).name
    out, runs, names = Path(out_dir), [], []
    for mask in masks:
        folder = out / _folder_name(mask)
        ev.evaluate_checkpoint(
            model,
            data,
            folder,
            options,
            data_format=data_format,
            frames=frames,
            size=size,
            start_frame=start_frame,
            compress=None if mask == "none" else mask,
            random_weights=random_weights,
        )
        runs.append(folder)
        names.append(base if mask == "none" else f"{base} + {Path(mask).stem} mask at inference")
    return write_comparison(runs, out, names)


def _folder_name(mask: str) -> str:
    return Path(mask).stem if mask.endswith(".json") else mask


def evaluate_subsets(
    models: Sequence[str],
    subsets_dir: str | Path,
    out_dir: str | Path,
    options=None,
    *,
    names: Sequence[str] | None = None,
    frames: int | None = None,
    size: int | None = None,
    random_weights: bool = False,
) -> dict[str, Any]:
    """Evaluate each model on each subset manifest listed in ``subsets_dir/subsets.json`` (from
    ``lcvae subsets``) into ``out_dir/<name>/<subset>/``, and tabulate (Table 7's layout).

    Clips start where they were scored and use the scored size unless ``size`` is given; the clip
    length is one for all models where their frame rules allow (:func:`common_frames`).
    """
    ev = _evaluation()
    from lcvae.models.io import load_config

    summary_path = Path(subsets_dir) / "subsets.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} not found; run `lcvae subsets --out {subsets_dir}` first")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    clip = summary.get("clip_options", {})
    names = list(names) if names is not None else [Path(m).name for m in models]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(f"give one distinct name per model; got models {list(models)} and names {names}")
    configs = [load_config(m) for m in models]
    lengths = [frames] * len(models) if frames is not None else common_frames(configs, clip.get("num_frames", 16))
    options = options or ev.EvalOptions()
    out, runs = Path(out_dir), []
    for model, label, n in zip(models, names, lengths):
        for subset, info in summary["subsets"].items():
            ev.evaluate_checkpoint(
                model,
                str(Path(subsets_dir) / info["manifest"]),
                out / label / subset,
                options,
                data_format="manifest",
                frames=n,
                size=size or clip.get("size"),
                start_frame=clip.get("start_frame", 0),
                frame_stride=clip.get("frame_stride", 1),
                random_weights=random_weights,
            )
        runs.append(out / label)
    return write_comparison(runs, out, names)
