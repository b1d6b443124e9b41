"""``lcvae analyze`` from paths to files: run the latent analysis (:mod:`lcvae.analysis`) on a
checkpoint over a dataset, or on saved latents, and write what it found.

``analysis.json`` holds every number of a :class:`lcvae.analysis.LatentAnalysis` (NaN written as
null) plus where it came from; ``subband_images.safetensors`` the first clip's subband maps; the PNG
figures come from :mod:`lcvae.plots`. Every file is written atomically (:func:`lcvae.utils.atomic_write`),
so an interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lcvae.analysis import LatentAnalysis
from lcvae.utils import atomic_write, write_json


def write_analysis(
    result: LatentAnalysis,
    out_dir: str | Path,
    *,
    figures: bool = True,
    max_channels: int = 16,
    source: dict | None = None,
    clip_name: str | None = None,
) -> dict:
    """Write ``analysis.json`` (every number), the first clip's subband maps and the figures."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    data = {"source": source or {}, **result.to_dict(), "figures": []}
    if result.subband_images is not None:
        maps = {"maps": result.subband_images.float().contiguous()}
        layout = {
            "layout": "(subband s = 4*t_hi + 2*h_hi + w_hi, channel, H/2, W/2), first coefficient frame of the first clip"
        }
        atomic_write(out / "subband_images.safetensors", lambda tmp: save_file(maps, tmp, metadata=layout))
    if figures:
        from lcvae.plots import analysis_figures

        data["figures"] = [p.name for p in analysis_figures(result, out, max_channels, clip_name)]
    write_json(out / "analysis.json", data)
    return data


def analyze_checkpoint(
    model: str,
    data: str,
    out_dir: str | Path,
    *,
    data_format: str = "auto",
    frames: int | None = None,
    size: int | None = 128,
    start_frame: int = 0,
    frame_stride: int = 1,
    max_clips: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    chunk: int | None = None,
    leaves: bool = True,
    figures: bool = True,
    max_channels: int = 16,
    progress: bool = True,
    random_weights: bool = False,
) -> dict[str, Any]:
    """The latent frequency analysis of ``model`` (a checkpoint folder, or a preset with
    ``random_weights``) over ``data`` (a kind of :mod:`lcvae.data.sources`), written to ``out_dir``.

    Clips default to the shortest length holding one Multi-WT group (32 frames, 33 causal).
    """
    from lcvae.analysis import analyze_dataset
    from lcvae.evaluation import default_frames, open_dataset, with_default_mask
    from lcvae.inference import load_model

    vae = load_model(model, device, random_weights, dtype=dtype)
    # the analysis takes one 3D Haar level of the latent, so frames must suit the model with compression
    m = with_default_mask(vae.config).frame_rule.pixel_step
    if size is not None and size % m:
        raise ValueError(
            f"size must be a multiple of {m} (the latent must halve once more for the Haar level), "
            f"got {size}; use {max(m, size - size % m)} or {size - size % m + m}"
        )
    frames = frames or default_frames(with_default_mask(vae.config))
    dataset = open_dataset(
        data,
        data_format,
        frames=frames,
        size=size,
        start_frame=start_frame,
        frame_stride=frame_stride,
        multiple=m if size is None else None,
    )
    result, used = analyze_dataset(
        vae,
        dataset,
        batch_size=batch_size,
        max_clips=max_clips,
        device=device,
        chunk=chunk,
        leaves=leaves,
        progress=progress,
    )
    source = {
        "model": model,
        "random_weights": random_weights,
        "model_config": vae.config.to_dict(),
        "data": str(data),
        "frames": frames,
        "size": size,
        "start_frame": start_frame,
        "frame_stride": frame_stride,
        **used,
    }
    return write_analysis(
        result,
        out_dir,
        figures=figures,
        max_channels=max_channels,
        source=source,
        clip_name=Path(used["clips"][0]).name,
    )


def analyze_latent_files(
    paths: Sequence[str | Path], out_dir: str | Path, leaves: bool = True, figures: bool = True, max_channels: int = 16
) -> dict[str, Any]:
    """The analysis of backbone latents saved by ``lcvae encode --raw``, written to ``out_dir``."""
    from lcvae.analysis import analyze_latents, read_latent_files

    latents, causal = read_latent_files(paths)
    result = analyze_latents(latents, causal=causal, leaves=leaves)
    return write_analysis(
        result,
        out_dir,
        figures=figures,
        max_channels=max_channels,
        source={"latent_files": [str(p) for p in paths]},
        clip_name=Path(paths[0]).name,
    )
