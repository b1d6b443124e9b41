"""The paper's ablations as runs a user can repeat.

* Post-training compression (Table 4) and the keep-ratio sweep: :func:`mask_sweep` evaluates one
  trained model with each Multi-WT mask applied only at inference
  (:func:`lcvae.evaluation.with_compression`), plus the model as it is ("none"), all on the same
  clips (the compressed frame rule: 32k frames, or 1 + 32k causal), and tabulates them. A sweep over
  masks a model was *trained* with is a set of training runs compared with :mod:`lcvae.tables`.
* Adaptive top-k vs the fixed mask (supplement D.1, Fig. 12): :func:`selection_summary` reads the
  coefficient channels an adaptive run selected at each logged step and reports how often each was
  chosen and how much the selection overlaps the fixed mask of the same size (the paper mask for
  a 50 % selection) over training.
* Challenging-content subsets (supplement D.2, Table 7): :func:`evaluate_subsets` evaluates models
  on the manifests written by ``lcvae subsets`` and tabulates them.

Selection log: ``adaptive_selection.jsonl`` in the run folder, as ``lcvae.train.train_vae`` writes it
(one JSON object per logged step)::

    {"step": 1200, "overlap_paper": 0.97, "selection": [0, 1, 2, ...]}

``selection`` holds the sorted coefficient channels (0 .. 32C - 1, i = 4C*leaf + C*spatial subband
+ channel, see :mod:`lcvae.compression`) kept at that step; ``overlap_paper`` (optional) is the
trainer's own overlap with the paper mask, checked against the one computed here. C comes from
the run folder's ``config.json`` (its ``model`` section) unless given.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from lcvae.reports import write_json
from lcvae.compression import BANDS, LEAF_NAMES, CompressionConfig
from lcvae.tables import write_comparison

logger = logging.getLogger(__name__)

SELECTION_LOG = "adaptive_selection.jsonl"
_SAME_SIZE_MASK = {8: "keep25", 16: "paper", 24: "keep75"}  # kept channels per latent channel -> fixed mask


# ---------------------------------------------------------------- adaptive selection (Fig. 12)


def find_selection_log(path: str | Path) -> Path:
    """The selection log: the file itself, or ``adaptive_selection.jsonl`` inside a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = path / SELECTION_LOG
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"{path}: no {SELECTION_LOG}; train with an adaptive mask "
                            "(compression.adaptive: true) or pass the log file itself")


def read_selection_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows {"step", "selection" (sorted), "overlap_paper" (or None)} of a selection log, sorted by step."""
    path = find_selection_log(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: not a JSON object ({err})") from None
        if not isinstance(row, dict) or "step" not in row or "selection" not in row:
            raise ValueError(f"{path}:{n}: expected {{\"step\": int, \"selection\": [int, ...]}}, got keys "
                             f"{sorted(row) if isinstance(row, dict) else type(row).__name__}")
        rows.append({"step": int(row["step"]), "selection": sorted(int(i) for i in row["selection"]),
                     "overlap_paper": row.get("overlap_paper")})
    if not rows:
        raise ValueError(f"{path}: no selections logged")
    return sorted(rows, key=lambda r: r["step"])


def run_latent_channels(run_dir: str | Path) -> int | None:
    """C of the VAE latent of a ``lcvae train-vae`` run, from its ``config.json``; None without one."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    from lcvae.train.vae_config import ModelSection, resolve_model_config
    from lcvae.utils import strict_from_dict

    section = json.loads(path.read_text(encoding="utf-8")).get("model", {})
    return resolve_model_config(strict_from_dict(ModelSection, section)).backbone.latent_channels


def selection_summary(records: Sequence[dict[str, Any]], latent_channels: int, from_step: int | None = None,
                      against: str | None = None) -> dict[str, Any]:
    """Selection frequencies and overlap with the fixed mask of the same size.

    ``records``: rows of :func:`read_selection_log` (``overlap_paper``, when present, must agree with
    the overlap computed here against the paper mask, else C or the index layout is wrong).
    overlap(step) = |selected ∩ fixed| / K (K kept channels, the same count in both). The late window
    is the steps >= ``from_step`` (default: the last quarter of the logged step range); in it,
    ``late_frequency[i]`` is the fraction of logged steps that selected channel i and ``consensus``
    the K most frequently selected channels, whose overlap with the fixed mask is
    ``consensus_overlap`` (the paper's "98 % channel overlap" after 20k steps).
    """
    c = latent_channels
    total = BANDS * c
    sizes = {len(r["selection"]) for r in records}
    if len(sizes) != 1:
        raise ValueError(f"every logged selection must keep the same number of channels, got sizes {sorted(sizes)}")
    k = sizes.pop()
    bad = [i for r in records for i in r["selection"] if not 0 <= i < total]
    if bad:
        raise ValueError(f"selected index {bad[0]} is outside 0..{total - 1} for {c} latent channels; check latent_channels")
    if against is None:
        against = _SAME_SIZE_MASK.get(k // c) if k % c == 0 else None
        if against is None:
            raise ValueError(f"no fixed mask keeps {k} of {total} channels; name one to compare with (against=...)")
    fixed = CompressionConfig(latent_channels=c, mask=against).resolved_indices()
    if len(fixed) != k:
        raise ValueError(f"mask {against!r} keeps {len(fixed)} channels, the selections {k}; compare masks of equal size")
    fixed_set = set(fixed)
    steps = [r["step"] for r in records]
    chosen = torch.zeros(len(records), total, dtype=torch.float64)
    for row, r in enumerate(records):
        chosen[row, r["selection"]] = 1.0
    overlap = [len(fixed_set.intersection(r["selection"])) / k for r in records]
    paper = set(CompressionConfig(latent_channels=c, mask="paper").resolved_indices())
    for r in records:
        logged = r.get("overlap_paper")
        if logged is not None and len(paper) == k and abs(logged - len(paper.intersection(r["selection"])) / k) > 1e-6:
            raise ValueError(f"step {r['step']}: the log's overlap_paper {logged} differs from the overlap computed for "
                             f"{c} latent channels; check latent_channels")
    if from_step is None:
        from_step = steps[0] + math.ceil(0.75 * (steps[-1] - steps[0]))
    late = torch.tensor([s >= from_step for s in steps])
    if not bool(late.any()):
        raise ValueError(f"no logged step at or after from_step={from_step} (last step {steps[-1]})")
    late_freq = chosen[late].mean(0)
    consensus = sorted(torch.argsort(-late_freq, stable=True)[:k].tolist())
    leaf_share = chosen[late].view(-1, 8, 4 * c).sum(-1).mean(0) / k
    return {
        "latent_channels": c, "kept": k, "against": against, "steps": steps, "overlap": overlap,
        "frequency": chosen.mean(0).tolist(), "late_from_step": from_step, "last_step": steps[-1],
        "late_steps": int(late.sum()), "late_frequency": late_freq.tolist(),
        "late_mean_overlap": float(torch.tensor(overlap)[late].mean()), "final_overlap": overlap[-1],
        "consensus": consensus, "consensus_overlap": len(fixed_set.intersection(consensus)) / k,
        "late_leaf_share": dict(zip(LEAF_NAMES, leaf_share.tolist())),
    }


def adaptive_report(log: str | Path, out_dir: str | Path, latent_channels: int | None = None,
                    from_step: int | None = None, against: str | None = None, figure: bool = True) -> dict[str, Any]:
    """Read a run's selection log, write ``selection.json`` (and ``selection.png``) to ``out_dir``."""
    path = find_selection_log(log)
    records = read_selection_log(path)
    c = latent_channels or run_latent_channels(path.parent)
    if c is None:
        raise ValueError(f"no config.json beside {path} to read the latent channel count from; pass latent_channels "
                         "(--latent-channels, C of the VAE latent)")
    summary = {"log": str(path), **selection_summary(records, c, from_step, against)}
    out = Path(out_dir)
    if figure:
        from lcvae.plots import selection_figure

        raster = torch.zeros(len(records), BANDS * c)
        for row, r in enumerate(records):
            raster[row, r["selection"]] = 1.0
        summary["figure"] = selection_figure(summary, out / "selection.png", raster).name
    write_json(out / "selection.json", summary)
    return summary


# ---------------------------------------------------------------- evaluations (Tables 4 and 7)


def _evaluation():
    import lcvae.evaluation as evaluation

    return evaluation


def common_frames(configs: Sequence, at_least: int = 16) -> list[int]:
    """Per model, the shortest clip it accepts of at least F frames, F = the longest of the models'
    own shortest clips (>= ``at_least``): one clip length for all when the frame rules allow it."""
    default_frames = _evaluation().default_frames
    longest = max(default_frames(c, at_least) for c in configs)
    return [default_frames(c, longest) for c in configs]


def mask_sweep(model: str, data: str, out_dir: str | Path, masks: Sequence[str], options=None, *,
               name: str | None = None, frames: int | None = None, size: int | None = 256, start_frame: int = 0,
               data_format: str = "auto", random_weights: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` with each mask applied at inference only ("none": as it is), write each
    report to ``out_dir/<mask>/`` and the comparison to ``out_dir/table.{json,md}``.

    ``masks``: names (paper, keep25, keep50, keep75, reference), mask .json files, or "none". All
    use the same clips: by default the shortest count the compressed model accepts (>= 16).
    """
    ev = _evaluation()
    from lcvae.models.io import load_config

    if not masks:
        raise ValueError("give at least one mask (e.g. none paper, or keep25 keep50 keep75)")
    options = options or ev.EvalOptions()
    config = load_config(model)
    if frames is None:
        # The compressed rule (32k or 1 + 32k) is the stricter one; the plain model accepts it too.
        frames = ev.default_frames(_compressed(config)) if any(m != "none" for m in masks) else ev.default_frames(config)
    base = name or Path(model).name
    out, runs, names = Path(out_dir), [], []
    for mask in masks:
        folder = out / _folder_name(mask)
        ev.evaluate_checkpoint(model, data, folder, options, data_format=data_format, frames=frames, size=size,
                               start_frame=start_frame, compress=None if mask == "none" else mask,
                               random_weights=random_weights)
        runs.append(folder)
        names.append(base if mask == "none" else f"{base} + {Path(mask).stem} mask at inference")
    return _write_table(out, runs, names)


def _compressed(config):
    from dataclasses import replace

    c = config.backbone.latent_channels
    return replace(config, compression=CompressionConfig(latent_channels=c, causal=config.backbone.causal),
                   latent_mean=None, latent_std=None)


def _folder_name(mask: str) -> str:
    return Path(mask).stem if mask.endswith(".json") else mask


def evaluate_subsets(models: Sequence[str], subsets_dir: str | Path, out_dir: str | Path, options=None, *,
                     names: Sequence[str] | None = None, frames: int | None = None, size: int | None = None,
                     random_weights: bool = False) -> dict[str, Any]:
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
            ev.evaluate_checkpoint(model, str(Path(subsets_dir) / info["manifest"]), out / label / subset, options,
                                   data_format="manifest", frames=n, size=size or clip.get("size"),
                                   start_frame=clip.get("start_frame", 0), frame_stride=clip.get("frame_stride", 1),
                                   random_weights=random_weights)
        runs.append(out / label)
    return _write_table(out, runs, names)


def _write_table(out: Path, runs: list[Path], names: list[str]) -> dict[str, Any]:
    return write_comparison(runs, out, names)


# ---------------------------------------------------------------- entry points from paths (the commands)


def open_clips(data: str | Path, data_format: str = "auto", *, frames: int, size: int | None, start_frame: int = 0,
               frame_stride: int = 1, multiple: int | None = None):
    """A dataset of fixed clips (start ``start_frame``, short side resized and centre-cropped to ``size``)
    from a folder, a manifest, UCF-101 / Sky Timelapse (``data_format``) or a single video file."""
    from lcvae.data import VIDEO_EXTENSIONS, ClipDataset, VideoEntry

    path = Path(data)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and data_format in ("auto", "file"):
        return ClipDataset([VideoEntry(str(path))], source=path, searched="the given video file", num_frames=frames,
                           frame_stride=frame_stride, start_frame=start_frame, short_side=size, crop=size,
                           multiple=multiple)
    return _evaluation().open_dataset(path, data_format, frames=frames, size=size, frame_stride=frame_stride,
                                      start_frame=start_frame, multiple=multiple)


def analyze_checkpoint(model: str, data: str, out_dir: str | Path, *, data_format: str = "auto", frames: int | None = None,
                       size: int | None = 128, start_frame: int = 0, frame_stride: int = 1, max_clips: int | None = None,
                       batch_size: int = 1, device: str = "cpu", bf16: bool = False, chunk: int | None = None,
                       leaves: bool = True, figures: bool = True, max_channels: int = 16, progress: bool = True,
                       random_weights: bool = False) -> dict[str, Any]:
    """``lcvae analyze``: the latent frequency analysis of ``model`` (a checkpoint folder, or a preset
    with ``random_weights``) over ``data``, written to ``out_dir`` (:func:`lcvae.analysis.analyze_dataset`).

    Clips default to the shortest length holding one Multi-WT group (32 frames, 33 causal).
    """
    from lcvae.analysis import analyze_dataset
    from lcvae.inference import load_model
    from lcvae.reports import write_analysis

    if size is not None and size % 16:
        raise ValueError(f"size must be a multiple of 16 (the latent must halve once more for the Haar level), "
                         f"got {size}; use {max(16, size - size % 16)} or {size - size % 16 + 16}")
    vae = load_model(model, device, random_weights)
    frames = frames or _evaluation().default_frames(_compressed(vae.config))
    dataset = open_clips(data, data_format, frames=frames, size=size, start_frame=start_frame,
                         frame_stride=frame_stride, multiple=16 if size is None else None)
    result, used = analyze_dataset(vae, dataset, batch_size=batch_size, max_clips=max_clips, device=device,
                                   dtype=torch.bfloat16 if bf16 else None, chunk=chunk, leaves=leaves, progress=progress)
    source = {"model": model, "random_weights": random_weights, "model_config": vae.config.to_dict(), "data": str(data),
              "frames": frames, "size": size, "start_frame": start_frame, "frame_stride": frame_stride, **used}
    return write_analysis(result, out_dir, figures=figures, max_channels=max_channels, source=source,
                          clip_name=Path(used["clips"][0]).name)


def analyze_latent_files(paths: Sequence[str | Path], out_dir: str | Path, leaves: bool = True, figures: bool = True,
                         max_channels: int = 16) -> dict[str, Any]:
    """``lcvae analyze --latents``: the analysis of backbone latents saved by ``lcvae encode --raw``."""
    from lcvae.analysis import analyze_latents, read_latent_files
    from lcvae.reports import write_analysis

    latents, causal = read_latent_files(paths)
    result = analyze_latents(latents, causal=causal, leaves=leaves)
    return write_analysis(result, out_dir, figures=figures, max_channels=max_channels,
                          source={"latent_files": [str(p) for p in paths]},
                          clip_name=Path(paths[0]).name)


def subsets_from_data(data: str, out_dir: str | Path, *, data_format: str = "auto", frames: int = 33,
                      size: int | None = 256, start_frame: int = 0, frame_stride: int = 1, top_k: int | None = None,
                      quantile: float | None = None, block: int = 32, min_std: float = 0.02,
                      max_clips: int | None = None, progress: bool = True) -> dict[str, Any]:
    """``lcvae subsets``: score the clips of ``data`` and write the texture-heavy and fast-motion
    manifests (:mod:`lcvae.subsets`) to ``out_dir``."""
    from lcvae.subsets import score_dataset, write_subsets

    if (top_k is None) == (quantile is None):
        raise ValueError("give exactly one of top_k (a count) or quantile (in [0, 1))")
    dataset = open_clips(data, data_format, frames=frames, size=size, start_frame=start_frame, frame_stride=frame_stride)
    rows, skipped = score_dataset(dataset, block, min_std, max_clips, progress)
    clip = {"num_frames": frames, "size": size, "start_frame": start_frame, "frame_stride": frame_stride,
            "block": block, "min_std": min_std}
    return write_subsets(rows, out_dir, top_k, quantile, clip, {"data": str(data), "clips_skipped": skipped})
