"""Figures for the latent analysis, the ablations and the quickstart (PNG, matplotlib's Agg canvas, no pyplot state).

matplotlib is an optional dependency (the ``plots`` extra); it is imported only when a figure is
drawn. Every figure has a title saying what is shown, labelled axes with units, and a colour bar
for heat maps, so it reads without the code. Numbers live in the JSON files written beside them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lcvae.analysis import SPATIAL_NAMES, SUBBAND_NAMES, LatentAnalysis
from lcvae.masks import LEAF_NAMES, CompressionConfig, split_index
from lcvae.utils import atomic_write

_PAPER_LEAVES = (0, 1, 2, 4)
_LOW, _HIGH, _GREY = "#2b6cb0", "#dd6b20", "#a0aec0"


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError("figures need matplotlib: pip install 'lcvae[plots]' (or matplotlib)") from err
    return matplotlib, Figure, FigureCanvasAgg


def _figure(width: float, height: float):
    _, Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _ticks(n: int, limit: int = 16) -> list[int]:
    step = 1 if n <= limit else math.ceil(n / limit)
    return list(range(0, n, step))


def heatmap(
    values: Tensor,
    rows: Sequence[str],
    title: str,
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    colorbar: str,
    log: bool = False,
    symmetric: float | None = None,
    columns: Sequence[str] | None = None,
    separators: Sequence[int] = (),
    annotate: bool | None = None,
) -> Path:
    """A (rows x columns) heat map; NaN cells are grey. ``log``: log10 colour scale (energies);
    ``symmetric``: diverging colours on [-symmetric, symmetric] (correlations)."""
    matplotlib, _, _ = _matplotlib()
    data = values.detach().double().cpu().numpy()
    n_rows, n_cols = data.shape
    fig = _figure(min(3.0 + 0.45 * n_cols, 16.0), 1.2 + 0.42 * n_rows)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdBu_r" if symmetric else "viridis"].with_extremes(bad=_GREY)
    if log:
        positive = data[data > 0]
        lo = float(positive.min()) if positive.size else 1e-12
        hi = float(positive.max()) if positive.size else 1.0
        lo = max(lo, hi * 1e-8)
        norm = matplotlib.colors.LogNorm(vmin=lo, vmax=max(hi, lo * 10))
        data = data.clip(min=lo)
    elif symmetric:
        norm = matplotlib.colors.Normalize(vmin=-symmetric, vmax=symmetric)
    else:
        norm = None
    image = ax.imshow(data, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label=colorbar, shrink=0.9)
    ax.set_yticks(range(n_rows), list(rows))
    cols = list(columns) if columns is not None else [str(i) for i in range(n_cols)]
    ticks = _ticks(n_cols, 32)
    ax.set_xticks(ticks, [cols[i] for i in ticks], fontsize=8 if n_cols > 16 else 10)
    for x in separators:
        ax.axvline(x - 0.5, color="white", linewidth=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate if annotate is not None else n_cols <= 16:
        raw = values.detach().double().cpu().numpy()
        for r in range(n_rows):
            for c in range(n_cols):
                v = raw[r, c]
                text = "–" if math.isnan(v) else (f"{v:.2g}" if log else f"{v:.2f}")
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if not symmetric or abs(v) > 0.5 * symmetric else "black",
                )
    return _save(fig, path)


def energy_bars(result: LatentAnalysis, path: str | Path) -> Path:
    """Fig. 10: share of the latent energy per 3D Haar subband."""
    share = (result.subband_share * 100).tolist()
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    colors = [_LOW] * 4 + [_HIGH] * 4
    bars = ax.bar(SUBBAND_NAMES, share, color=colors)
    for bar, v in zip(bars, share):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.1f}%", ha="center", va="bottom", fontsize=9)
    low = sum(share[:4])
    ax.bar([0], [0], color=_LOW, label=f"temporal-low (L··): {low:.1f}% in all")
    ax.bar([0], [0], color=_HIGH, label=f"temporal-high (H··): {100 - low:.1f}% in all")
    ax.legend(loc="upper right")
    ax.set_ylim(0, max(share) * 1.15 + 1e-9)
    ax.set_xlabel("3D Haar subband of the latent (letters: time, height, width band; L low, H high)")
    ax.set_ylabel("share of total latent energy (%)")
    ax.set_title(
        f"Latent energy per subband ({result.clips} clips, {result.channels} channels; mean squared magnitude)"
    )
    return _save(fig, path)


def leaf_bars(result: LatentAnalysis, path: str | Path) -> Path:
    """Energy share per Multi-WT leaf, and the share each mask keeps."""
    share = (result.leaf_share * 100).tolist()
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.4, 1])
    colors = [_LOW if j in _PAPER_LEAVES else _HIGH for j in range(8)]
    bars = left.bar(LEAF_NAMES, share, color=colors)
    for bar, v in zip(bars, share):
        left.text(
            bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{v:.1f}%", ha="center", va="bottom", fontsize=9
        )
    left.bar([0], [0], color=_LOW, label="kept by the paper mask")
    left.bar([0], [0], color=_HIGH, label="zeroed by the paper mask")
    left.legend(loc="upper right")
    left.set_ylim(0, max(share) * 1.15 + 1e-9)
    left.set_xlabel("Multi-WT leaf (temporal bands of split 2, split 1, 3D level)")
    left.set_ylabel("share of total latent energy (%)")
    left.set_title("Energy per Multi-WT leaf")
    names = [k for k, v in result.kept_share.items() if v is not None]
    kept = [100 * result.kept_share[k] for k in names]
    fractions = [
        100 * len(CompressionConfig(mask=k).resolved_indices(result.channels)) / (32 * result.channels) for k in names
    ]
    x = range(len(names))
    right.bar([i - 0.2 for i in x], kept, width=0.4, color=_LOW, label="energy kept")
    right.bar([i + 0.2 for i in x], fractions, width=0.4, color=_GREY, label="coefficients kept")
    for i, v in zip(x, kept):
        right.text(i - 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    right.set_xticks(list(x), names)
    right.set_ylim(0, 125)
    right.set_ylabel("% of total")
    right.set_xlabel("mask")
    right.set_title("Energy each mask keeps vs its size")
    right.legend(loc="upper center", ncol=2, fontsize=8)
    return _save(fig, path)


def subband_image_grid(maps: Tensor, path: str | Path, max_channels: int = 16, title: str | None = None) -> Path:
    """Figs. 13-14: maps (8, C, h, w) of one clip's first coefficient frame; rows subbands, columns
    channels; each row has its own symmetric colour scale (printed in the row label)."""
    matplotlib, _, _ = _matplotlib()
    s, c = maps.shape[:2]
    n = min(c, max_channels)
    fig = _figure(1.1 * n + 1.8, 1.1 * s + 0.9)
    axes = fig.subplots(s, n, squeeze=False)
    cmap = matplotlib.colormaps["RdBu_r"]
    for r in range(s):
        scale = float(maps[r, :n].abs().max()) or 1.0
        for k in range(n):
            ax = axes[r][k]
            ax.imshow(maps[r, k].double().cpu().numpy(), cmap=cmap, vmin=-scale, vmax=scale, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"ch {k}", fontsize=9)
            if k == 0:
                ax.set_ylabel(f"{SUBBAND_NAMES[r]}\n±{scale:.2g}", rotation=0, ha="right", va="center", fontsize=9)
    more = f" (first {n} of {c} channels)" if n < c else ""
    fig.suptitle(title or f"Subband maps of one clip, first coefficient frame{more}; blue < 0 < red, scale per row")
    return _save(fig, path)


def analysis_figures(
    result: LatentAnalysis, folder: str | Path, max_channels: int = 16, clip_name: str | None = None
) -> list[Path]:
    """Every analysis figure into ``folder``; returns their paths. ``clip_name`` names the clip of the subband maps."""
    folder = Path(folder)
    channels = [str(i) for i in range(result.channels)]
    rho_rows = [
        f"{n} (mean {v:.2f})" if not math.isnan(v) else f"{n} (–)"
        for n, v in zip(SUBBAND_NAMES, _row_means(result.subband_autocorrelation))
    ]
    paths = [
        energy_bars(result, folder / "energy_subbands.png"),
        heatmap(
            result.subband_energy,
            SUBBAND_NAMES,
            "Latent energy per subband and channel (mean squared magnitude)",
            folder / "energy_heatmap.png",
            xlabel="latent channel",
            ylabel="3D Haar subband (t, h, w)",
            colorbar="mean squared magnitude (log scale)",
            log=True,
            columns=channels,
        ),
        heatmap(
            result.subband_autocorrelation,
            rho_rows,
            "Lag-1 temporal autocorrelation per subband and channel",
            folder / "autocorrelation_heatmap.png",
            xlabel="latent channel",
            ylabel="3D Haar subband (t, h, w)",
            colorbar="lag-1 autocorrelation ρ(1) (grey: undefined)",
            symmetric=1.0,
            columns=channels,
        ),
    ]
    if result.leaf_energy is not None:
        c = result.channels
        columns = [f"{SPATIAL_NAMES[split_index(c, i)[1]]}{split_index(c, i)[2]}" for i in range(4 * c)]
        rows = [f"{n}{' (kept)' if j in _PAPER_LEAVES else ''}" for j, n in enumerate(LEAF_NAMES)]
        paths.append(leaf_bars(result, folder / "energy_leaves.png"))
        paths.append(
            heatmap(
                result.leaf_energy.reshape(8, 4 * c),
                rows,
                "Energy per Multi-WT coefficient (leaf x spatial subband, channel); '(kept)': paper mask",
                folder / "leaf_energy_heatmap.png",
                xlabel="spatial subband and latent channel within the leaf",
                ylabel="Multi-WT leaf (b2 b1 b0)",
                colorbar="mean squared magnitude (log scale)",
                log=True,
                columns=columns,
                separators=[c * k for k in range(1, 4)],
                annotate=False,
            )
        )
    if result.subband_images is not None:
        n = min(result.channels, max_channels)
        title = (
            f"Subband maps of {clip_name or 'the first clip'}, first coefficient frame"
            + (f", channels 0-{n - 1} of {result.channels}" if n < result.channels else "")
            + "\nblue < 0 < red; one symmetric colour scale per row (±value in the row label)"
        )
        paths.append(subband_image_grid(result.subband_images, folder / "subband_images.png", max_channels, title))
    return paths


def _row_means(x: Tensor) -> list[float]:
    out = []
    for row in x:
        ok = row[~torch.isnan(row)]
        out.append(float(ok.mean()) if ok.numel() else math.nan)
    return out


def selection_figure(summary: dict[str, Any], path: str | Path, raster: Tensor | None = None) -> Path:
    """Fig. 12 from ``lcvae.ablations.selection.selection_summary``: (raster) which coefficient channels were selected
    at each logged step; selection frequency per channel over the late window; overlap with the
    fixed mask of the same size over training. ``raster``: (steps, 32C) 0/1, rows in step order."""
    c = summary["latent_channels"]
    steps, overlap = summary["steps"], [100 * v for v in summary["overlap"]]
    fig = _figure(12.0, 10.0 if raster is not None else 7.0)
    axes = fig.subplots(
        3 if raster is not None else 2, 1, height_ratios=[1.3, 1.3, 1][-(3 if raster is not None else 2) :]
    )
    against = summary["against"]
    if raster is not None:
        ax = axes[0]
        rows = raster.double()
        if rows.shape[0] > 300:  # one image row per bin of steps: the fraction selected in the bin
            edges = torch.linspace(0, rows.shape[0], 301).long()
            rows = torch.stack([rows[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:])])
        ax.imshow(
            rows.numpy(),
            cmap="Greys",
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, 32 * c - 0.5, steps[-1], steps[0]),
        )
        for j in range(1, 8):
            ax.axvline(4 * c * j - 0.5, color=_HIGH, linewidth=1)
        ax.set_xticks([4 * c * j + 2 * c - 0.5 for j in range(8)], list(LEAF_NAMES))
        ax.set_xlabel("coefficient channel, grouped by Multi-WT leaf (b2 b1 b0); black = selected")
        ax.set_ylabel("training step")
        ax.set_title(f"Adaptive top-{summary['kept']} selection at each logged step ({len(steps)} steps)")
    top, bottom = axes[-2], axes[-1]
    freq = torch.tensor(summary["late_frequency"], dtype=torch.float64).view(8, 4 * c)
    image = top.imshow(freq.numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=top, label="fraction of steps selected")
    fixed = set(CompressionConfig(mask=against).resolved_indices(c))
    kept_leaves = [j for j in range(8) if all(4 * c * j + k in fixed for k in range(4 * c))]
    top.set_yticks(range(8), [f"{n}{f' ({against})' if j in kept_leaves else ''}" for j, n in enumerate(LEAF_NAMES)])
    for k in range(1, 4):
        top.axvline(c * k - 0.5, color="white", linewidth=2)
    top.set_xticks([c * k + (c - 1) / 2 for k in range(4)], [f"spatial {n}, channels 0-{c - 1}" for n in SPATIAL_NAMES])
    top.set_ylabel("Multi-WT leaf (b2 b1 b0)")
    top.set_title(
        f"Selection frequency per coefficient channel, steps {summary['late_from_step']}-{summary['last_step']}; "
        f"its top {summary['kept']} overlap the {against} mask by {100 * summary['consensus_overlap']:.1f}%"
    )
    bottom.plot(steps, overlap, color=_LOW, linewidth=1.2, marker="o" if len(steps) < 30 else None)
    bottom.set_ylim(min(overlap + [50.0]) - 2, 101)
    bottom.set_xlabel("training step")
    bottom.set_ylabel(f"overlap with the {against} mask (%)")
    bottom.set_title(f"Overlap of each step's selection with the fixed {against} mask (last: {overlap[-1]:.1f}%)")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------- quickstart (models side by side)


def model_energy_bars(shares: dict[str, Sequence[float]], path: str | Path) -> Path:
    """Share of each model's latent energy per 3D Haar subband (``shares``: model -> 8 fractions in
    ``SUBBAND_NAMES`` order), grouped bars on a log scale."""
    fig = _figure(7.5, 3.9)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(shares))
    for i, (name, share) in enumerate(shares.items()):
        ax.bar([s + i * width for s in range(8)], [100 * v for v in share], width, label=name)
    ax.set_xticks([s + width * (len(shares) - 1) / 2 for s in range(8)], SUBBAND_NAMES)
    ax.set(
        ylabel="share of latent energy (%)",
        xlabel="3D Haar subband of the VAE latent (t, h, w)",
        yscale="log",
        title="Latent energy per subband",
    )
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def loss_curves(curves: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Training L1 per pixel of each model against wall time (left) and step (right); ``curves``:
    model -> {"step", "time_s", "mae"} lists."""
    fig = _figure(10.5, 3.9)
    by_time, by_step = fig.subplots(1, 2)
    for name, c in curves.items():
        label = f"{name} ({c['step'][-1] if c['step'] else 0} steps)"
        by_time.plot(c["time_s"], c["mae"], label=label)
        by_step.plot(c["step"], c["mae"], label=label)
    for ax, xlabel in ((by_time, "training time (s)"), (by_step, "step")):
        ax.set(xlabel=xlabel, ylabel="L1 per pixel (training clips, [-1, 1] scale)", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training loss")
    return _save(fig, path)


def heldout_curves(
    curves: dict[str, dict[str, list]],
    path: str | Path,
    title: str = "Held-out learning curves",
    marks: Sequence[tuple[float, str]] = (),
    bar: float | None = None,
) -> Path:
    """Held-out PSNR (left) and SSIM (right) against training steps; ``curves``: label -> {"steps",
    "psnr", "ssim"} lists, with optional "psnr_std"/"ssim_std" (seed spread, drawn as a band).
    ``marks``: (step, text) drawn as labelled vertical lines (e.g. where a training stage begins);
    ``bar``: a PSNR level drawn as a horizontal line."""
    fig = _figure(10.5, 3.9)
    axes = fig.subplots(1, 2)
    for ax in axes:
        for step, text in marks:
            ax.axvline(step, color="0.6", linestyle="--", linewidth=0.8)
            ax.text(step, 0.02, f" {text}", transform=ax.get_xaxis_transform(), fontsize=7, color="0.4")
    if bar is not None:
        axes[0].axhline(bar, color="0.3", linestyle=":", linewidth=0.9, label=f"{bar:g} dB")
    for label, c in curves.items():
        for ax, key in zip(axes, ("psnr", "ssim")):
            line = ax.plot(c["steps"], c[key], marker="o", markersize=3, label=label)[0]
            std = c.get(f"{key}_std")
            if std and all(s is not None for s in std):
                band = [(m - s, m + s) for m, s in zip(c[key], std)]
                ax.fill_between(c["steps"], *zip(*band), color=line.get_color(), alpha=0.2)
    for ax, ylabel in zip(axes, ("held-out PSNR (dB)", "held-out SSIM")):
        ax.set(xlabel="training step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)
