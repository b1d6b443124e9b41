"""Comparison tables across evaluation runs, in the layout of the paper's tables.

Input: ``metrics.json`` files written by ``lcvae eval`` (:func:`lcvae.evaluation.write_report`) or the
ablation commands; a run folder given on the command line is searched recursively for them. Each
file is one (method, dataset) cell group:

* method: ``names[k]`` for every file under the k-th run folder when names are given; else the
  file's ``"method"`` entry if it has one; else the run folder's name, or, when the folder holds
  several results on one dataset (one subfolder per mask, say), ``<run>/<subfolder>``.
* Chn: the channel count diffusion sees, from the model config stored in the file (the packed
  channels with a mask, the latent channels without), as in the paper.
* dataset: ``data["name"]`` if present, else the stem of ``data["path"]`` (a manifest's file name
  without suffix, or a folder's name).
* PSNR / SSIM / LPIPS: the mean over clips; rFVD: the dataset-level value (or whatever the file
  reports as ``value``); a skipped metric is shown as "–" and its reason kept in the JSON. The
  LPIPS network's name is kept (``lpips_name``) so ST-LPIPS is never shown as LPIPS.

Rows: one per (method, Chn), in the order first seen; columns: PSNR SSIM LPIPS rFVD per dataset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lcvae.models.lcvae import LCVAEConfig
from lcvae.utils import write_json, write_text

METRICS = (("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 4), ("lpips", "LPIPS ↓", 4), ("rfvd", "rFVD ↓", 2))


def find_metrics(run_dir: str | Path) -> list[Path]:
    """``metrics.json`` files under a run folder (or the file itself), sorted."""
    path = Path(run_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder or metrics.json")
    found = sorted(p for p in path.rglob("metrics.json") if not any(part.startswith(".") for part in p.parts))
    if not found:
        raise FileNotFoundError(f"{run_dir}: no metrics.json inside; run `lcvae eval --out {run_dir}/...` first")
    return found


def _channels(data: dict[str, Any], source: Path) -> int | None:
    config = (data.get("model") or {}).get("config")
    if config is None:
        return None
    try:
        return LCVAEConfig.from_dict(config).diffusion_channels
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{source}: the stored model config cannot be read ({err})") from None


def _value(entry: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """(number, reason it is missing)."""
    if not entry:
        return None, "not in the file"
    if "skipped" in entry:
        return None, str(entry["skipped"])
    v = entry.get("value", entry.get("mean"))
    return (None, "no value") if v is None else (float(v), None)


def read_run(path: Path, method: str, metric_set: str = "vs_input") -> dict[str, Any]:
    """One metrics.json -> {method (the file's own, else ``method``), named_in_file, chn, dataset,
    values {metric: number|None}, missing {metric: why}, source}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    sets = data.get("metrics")
    if not isinstance(sets, dict) or not sets:
        raise ValueError(f"{path}: no 'metrics' section; is it a metrics.json from `lcvae eval`?")
    if metric_set not in sets:
        raise ValueError(f"{path}: no metric set {metric_set!r}; it has {sorted(sets)} (choose one with --set)")
    info = data.get("data") or {}
    dataset = info.get("name") or (Path(str(info["path"])).stem if info.get("path") else "dataset")
    values, missing = {}, {}
    for key, _, _ in METRICS:
        values[key], why = _value(sets[metric_set].get(key))
        if why is not None:
            missing[key] = why
    lpips_name = (sets[metric_set].get("lpips") or {}).get("name")
    if lpips_name:
        values["lpips_name"] = str(lpips_name)
    return {
        "method": str(data.get("method") or method),
        "named_in_file": bool(data.get("method")),
        "chn": _channels(data, path),
        "dataset": dataset,
        "values": values,
        "missing": missing,
        "source": str(path),
    }


def compare_runs(
    run_dirs: Sequence[str | Path], names: Sequence[str] | None = None, metric_set: str = "vs_input"
) -> dict[str, Any]:
    """Collect the runs into a table: {"datasets": [...], "rows": [{method, chn, cells {dataset: values}}], ...}."""
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"give one name per run folder: {len(run_dirs)} folders, {len(names)} names")
    entries = []
    for k, run in enumerate(run_dirs):
        run = Path(run)
        label = names[k] if names is not None else (run.stem if run.is_file() else run.name)
        found = [(path, read_run(path, label, metric_set)) for path in find_metrics(run)]
        datasets = [e["dataset"] for _, e in found]
        if names is None and len(set(datasets)) < len(datasets):
            # Several results on one dataset (e.g. one folder per mask): name them by their folders.
            for path, e in found:
                if not e["named_in_file"]:
                    e["method"] = f"{label}/{path.parent.relative_to(run).as_posix()}"
        for _, e in found:
            if names is not None:
                e["method"] = names[k]
            entries.append(e)
    datasets: list[str] = []
    rows: dict[tuple[str, int | None], dict[str, Any]] = {}
    for e in entries:
        if e["dataset"] not in datasets:
            datasets.append(e["dataset"])
        row = rows.setdefault(
            (e["method"], e["chn"]), {"method": e["method"], "chn": e["chn"], "cells": {}, "sources": {}}
        )
        if e["dataset"] in row["cells"]:
            raise ValueError(
                f"two results for method {e['method']!r} on {e['dataset']!r}: {row['sources'][e['dataset']]} "
                f"and {e['source']}; give the runs distinct names with --names"
            )
        row["cells"][e["dataset"]] = {**e["values"], **({"missing": e["missing"]} if e["missing"] else {})}
        row["sources"][e["dataset"]] = e["source"]
    return {
        "metric_set": metric_set,
        "datasets": datasets,
        "metrics": [m for m, _, _ in METRICS],
        "rows": list(rows.values()),
    }


def _is_st(name: str | None) -> bool:
    return bool(name) and name.upper().startswith("ST-")


def format_markdown(table: dict[str, Any]) -> str:
    """The table as markdown: | Method | Chn | <dataset> PSNR ↑ | SSIM ↑ | LPIPS ↓ | rFVD ↓ | ... |.

    ST-LPIPS is a different metric from LPIPS (docs/evaluation.md#metrics): a dataset's column is headed ST-LPIPS when
    every number in it is ST-LPIPS; in a mixed column each ST-LPIPS cell is marked "(ST)"."""
    head, st_columns = ["Method", "Chn"], {}
    for d in table["datasets"]:
        names = [
            r["cells"][d].get("lpips_name") for r in table["rows"] if r["cells"].get(d, {}).get("lpips") is not None
        ]
        st_columns[d] = bool(names) and all(_is_st(n) for n in names)
        for i, (key, label, _) in enumerate(METRICS):
            label = "ST-LPIPS ↓" if key == "lpips" and st_columns[d] else label
            head.append(f"{d} {label}" if i == 0 else label)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in table["rows"]:
        cells = [row["method"], "–" if row["chn"] is None else str(row["chn"])]
        for d in table["datasets"]:
            values = row["cells"].get(d, {})
            for key, _, digits in METRICS:
                v = values.get(key)
                mark = " (ST)" if key == "lpips" and not st_columns[d] and _is_st(values.get("lpips_name")) else ""
                cells.append("–" if v is None else f"{v:.{digits}f}{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"metric set: {table['metric_set']}; PSNR/SSIM/LPIPS: mean over clips; rFVD: one value per dataset; "
        "–: not computed (reasons in the JSON)."
    )
    return "\n".join(lines) + "\n"


def write_comparison(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    metric_set: str = "vs_input",
) -> dict[str, Any]:
    """:func:`compare_runs` written to ``out_dir/table.json`` and ``out_dir/table.md``."""
    table = compare_runs(run_dirs, names, metric_set)
    write_json(Path(out_dir) / "table.json", table)
    write_text(Path(out_dir) / "table.md", format_markdown(table))
    return table
