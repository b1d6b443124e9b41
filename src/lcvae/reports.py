"""Files written by the analysis and ablation commands, each atomically (temporary file in the same
folder, then ``os.replace``), so an interrupted run never leaves a half-written file that looks complete.

``analysis.json`` holds every number of a :class:`lcvae.analysis.LatentAnalysis` (NaN written as
null) plus where it came from; ``subband_images.safetensors`` the first clip's subband maps; the PNG
figures come from :mod:`lcvae.plots`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lcvae.analysis import LatentAnalysis
from lcvae.utils import atomic_write


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically; NaN is refused (use None)."""
    return write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_analysis(result: LatentAnalysis, out_dir: str | Path, *, figures: bool = True, max_channels: int = 16,
                   source: dict | None = None, clip_name: str | None = None) -> dict:
    """Write ``analysis.json`` (every number), the first clip's subband maps and the figures."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    data = {"source": source or {}, **result.to_dict(), "figures": []}
    if result.subband_images is not None:
        maps = {"maps": result.subband_images.float().contiguous()}
        layout = {"layout": "(subband s = 4*t_hi + 2*h_hi + w_hi, channel, H/2, W/2), first coefficient frame of the first clip"}
        atomic_write(out / "subband_images.safetensors", lambda tmp: save_file(maps, tmp, metadata=layout))
    if figures:
        from lcvae.plots import analysis_figures

        data["figures"] = [p.name for p in analysis_figures(result, out, max_channels, clip_name)]
    write_json(out / "analysis.json", data)
    return data
