"""One self-contained ``report.html`` per study or demo run: table, curves, figures, labelled videos.

The page is a single file a person can mail or open offline: images and videos are embedded as
base64 data URIs, the CSS is inline, nothing is fetched. Its numbers come from the run's JSON and
nowhere else: each number cell carries ``data-key`` (the value's path in the JSON, e.g.
``models.lcvae-tiny.psnr``) and ``data-value`` (the exact JSON number) beside its rounded text
(:func:`format_number`), so a test can check the page against the JSON.

A few lines of inline script (no library) write a status into ``<pre id="report-self-check">``
once the page has loaded: how many images decoded, how many videos reached HAVE_CURRENT_DATA,
and any video errors. ``tests/test_report_page.py`` reads it back from headless Chromium.

Videos are H.264 in MP4 (what ``lcvae.data.write_video`` writes): every mainstream browser plays
it, Debian's Chromium included. :func:`label_panels` burns panel names ("input", "LC-VAE", ...)
into the pixels with a built-in 5x7 bitmap font, so a saved frame or a screen capture still says
which panel is which.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lcvae.utils import write_text

__all__ = ["format_number", "label_panels", "render_text", "write_report"]

# ----------------------------------------------------------------------------- bitmap font

# 5 columns x 7 rows per glyph, rows top to bottom separated by spaces; '#' is ink. Lower case is
# drawn as upper case.
_GLYPHS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# .#.#. .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "-": "..... ..... ..... ##### ..... ..... .....",
    " ": "..... ..... ..... ..... ..... ..... .....",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "/": "..... ....# ...#. ..#.. .#... #.... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
}
_GLYPH_MASKS = {c: np.array([[p == "#" for p in row] for row in g.split()], dtype=bool) for c, g in _GLYPHS.items()}
_BANDS = ((28, 28, 28), (52, 52, 52))  # label band shades, alternating so panel borders show
_INK = (255, 255, 255)


def render_text(text: str, scale: int = 1) -> np.ndarray:
    """Bool mask (7 * scale, (6 * len(text) - 1) * scale) of ``text`` in the built-in 5x7 font
    (one blank column between glyphs). Supports A-Z (lower case drawn as upper), 0-9, space and
    ``-.%()/:+_``; anything else is a ValueError."""
    if not text or scale < 1:
        raise ValueError(f"render_text needs non-empty text and scale >= 1, got {text!r}, scale={scale}")
    bad = sorted({c for c in text.upper() if c not in _GLYPH_MASKS})
    if bad:
        marks = "".join(c for c in _GLYPHS if not c.isalnum())
        raise ValueError(f"the label font has no glyph for {bad} in {text!r}; use A-Z, 0-9 and {marks!r}")
    gap = np.zeros((7, 1), dtype=bool)
    parts = [p for c in text.upper() for p in (_GLYPH_MASKS[c], gap)][:-1]
    return np.concatenate(parts, axis=1).repeat(scale, axis=0).repeat(scale, axis=1)


def label_panels(
    panels: Sequence[Any], labels: Sequence[str], *, upscale: int = 1, scale: int | None = None
) -> np.ndarray:
    """Side-by-side video with each panel's name drawn in a band above it.

    ``panels``: uint8 (T, H, W_i, 3) arrays (or CPU tensors) with equal T and H, left to right;
    ``upscale`` enlarges each by nearest neighbour first. ``scale``: font pixel size (default: the
    largest of 3, 2, 1 at which every label fits its panel). Returns uint8
    (T, band + H * upscale, sum(W_i) * upscale, 3); below the band the panels are unchanged. The
    band height is even, so an even-sized video stays encodable as 4:2:0 H.264.
    """
    if len(panels) != len(labels) or not panels:
        raise ValueError(
            f"need one label per panel and at least one panel, got {len(panels)} panels, {len(labels)} labels"
        )
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    arrays = [np.asarray(p) for p in panels]
    for i, a in enumerate(arrays):
        if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3 or a.shape[:2] != arrays[0].shape[:2]:
            raise ValueError(
                f"panel {i} ({labels[i]!r}) must be uint8 (T, H, W, 3) with the T and H of panel 0 "
                f"{tuple(arrays[0].shape[:2])}, got {a.dtype} {tuple(a.shape)}"
            )
    arrays = [a.repeat(upscale, axis=1).repeat(upscale, axis=2) for a in arrays]
    fits = [
        s for s in (3, 2, 1) if all(render_text(t, s).shape[1] + 2 * s <= a.shape[2] for t, a in zip(labels, arrays))
    ]
    if scale is None and not fits:
        raise ValueError(
            f"labels {list(labels)} do not fit panels of widths {[a.shape[2] for a in arrays]}; "
            f"shorten them or pass upscale > 1"
        )
    scale = scale or fits[0]
    band = 11 * scale + (11 * scale) % 2  # 2 * scale margin above and below the 7 * scale glyphs
    t, h = arrays[0].shape[:2]
    out = np.empty((t, band + h, sum(a.shape[2] for a in arrays), 3), dtype=np.uint8)
    x = 0
    for i, (a, text) in enumerate(zip(arrays, labels)):
        w = a.shape[2]
        out[:, :band, x : x + w] = _BANDS[i % 2]
        out[:, band:, x : x + w] = a
        mask = render_text(text, scale)[:, : max(0, w - 2 * scale)]  # an explicit scale may overflow: clip
        top, left = 2 * scale, x + (w - mask.shape[1]) // 2
        out[:, top : top + mask.shape[0], left : left + mask.shape[1]][:, mask] = _INK
        x += w
    return out


# ----------------------------------------------------------------------------- numbers and table

_PREFERRED = ("psnr", "ssim", "steps")
_HIGHER_BETTER = {"psnr", "ssim"}  # words of a column name that mark a metric where higher is better
_LOWER_BETTER = {"lpips", "fvd", "mae", "l1", "loss"}
_SPREAD = {"std", "spread", "sem", "err", "ci"}


def format_number(value: int | float) -> str:
    """How the page shows a JSON number: integers whole, |x| >= 1 with 2 decimals, else 4 decimals."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _models(results: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(name, JSON path prefix, metrics) per model, from ``models: {name: {...}}`` (the study) or
    ``rows: [{"model": name, ...}]`` (the quickstart)."""
    if isinstance(results.get("models"), Mapping):
        return [(str(n), f"models.{n}", m) for n, m in results["models"].items()]
    if isinstance(results.get("rows"), list):
        return [(str(r.get("model", i)), f"rows.{i}", r) for i, r in enumerate(results["rows"])]
    raise ValueError(
        "results must hold 'models' ({name: {metric: value}}) or 'rows' ([{'model': name, metric: value}]); "
        f"got keys {sorted(results)}"
    )


def _text_cell(v: Any) -> str | None:
    """A non-numeric value shown as text (a short list of scalars, a string, a flag), else None."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, list) and 0 < len(v) <= 8 and all(_is_number(x) or isinstance(x, str) for x in v):
        return "(" + ", ".join(str(x) for x in v) + ")"
    return None


def _num_cell(key: str, v: int | float, css: str = "num") -> str:
    return (
        f'<td class="{css}" data-key="{html.escape(key)}" data-value="{html.escape(json.dumps(v))}">'
        f"{format_number(v)}</td>"
    )


def _best(models: list[tuple[str, str, Mapping[str, Any]]], col: str) -> set[str]:
    """Models with the best value of a known quality metric (not of its spread) in column ``col``;
    none when all models tie."""
    values = {name: m[col] for name, _, m in models if _is_number(m.get(col))}
    words = set(re.split(r"[-_. ]", col.lower()))
    if len(set(values.values())) < 2 or words & _SPREAD or not words & (_HIGHER_BETTER | _LOWER_BETTER):
        return set()
    top = (max if words & _HIGHER_BETTER else min)(values.values())
    return {n for n, v in values.items() if v == top}


def _cells(m: Mapping[str, Any]) -> dict[str, Any]:
    """A model's showable values by column: its scalars, plus one level of number-only dicts
    (``{"psnr": {"mean": .., "std": ..}}`` gives ``psnr.mean``, ``psnr.std``)."""
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(v, Mapping) and v and all(_is_number(x) for x in v.values()):
            out.update({f"{k}.{k2}": x for k2, x in v.items()})
        elif k != "model" and (_is_number(v) or _text_cell(v) is not None):
            out[k] = v
    return out


def _table(results: Mapping[str, Any]) -> str:
    models = [(name, prefix, _cells(m)) for name, prefix, m in _models(results)]
    cols: list[str] = []
    for _, _, m in models:
        cols += [k for k in m if k not in cols]
    rank = {w: i for i, w in enumerate(_PREFERRED)}
    cols.sort(key=lambda c: rank.get(c.split(".")[0], len(rank)))  # stable: psnr.mean, psnr.std stay together
    best = {c: _best(models, c) for c in cols}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for name, prefix, m in models:
        cells = []
        for c in cols:
            v = m.get(c)
            if _is_number(v):
                cells.append(_num_cell(f"{prefix}.{c}", v, "num best" if name in best[c] else "num"))
            else:
                cells.append(f"<td>{html.escape(_text_cell(v) or '')}</td>")
        rows.append(f'<tr><th scope="row">{html.escape(name)}</th>{"".join(cells)}</tr>')
    run = [
        f'<span>{html.escape(k)}: <b data-key="{html.escape(k)}" data-value="{json.dumps(v)}">{format_number(v)}</b></span>'
        for k, v in results.items()
        if _is_number(v)
    ]
    run += [f"<span>{html.escape(k)}: <b>{html.escape(v)}</b></span>" for k, v in results.items() if isinstance(v, str)]
    return f"<table><thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" + (
        f'<p class="run">{" ".join(run)}</p>' if run else ""
    )


# ----------------------------------------------------------------------------- media


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_MIME = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def _file_uri(path: str | Path) -> str:
    path = Path(path)
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"cannot embed {path}: use one of {', '.join(_MIME)}")
    return _data_uri(path.read_bytes(), mime)


def _curve_png(metric: str, series: Mapping[str, Sequence[Sequence[float]]]) -> bytes:
    """One learning-curve PNG: mean against step per model, shaded mean +- spread where given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.3), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model, points in series.items():
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[0] == 0 or pts.shape[1] not in (2, 3):
            raise ValueError(
                f"curve {metric!r}/{model!r} needs (step, mean) or (step, mean, spread) points, got shape {pts.shape}"
            )
        (line,) = ax.plot(pts[:, 0], pts[:, 1], marker="o" if len(pts) < 30 else None, ms=3, label=model)
        if pts.shape[1] == 3 and np.any(pts[:, 2] > 0):
            ax.fill_between(pts[:, 0], pts[:, 1] - pts[:, 2], pts[:, 1] + pts[:, 2], color=line.get_color(), alpha=0.2)
    ax.set(xlabel="step", ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _video_uri(video: Any, fps: float) -> str:
    if isinstance(video, (str, Path)):
        return _file_uri(video)
    from lcvae.data.video import encode_to_bytes

    return _data_uri(encode_to_bytes(np.asarray(video), fps, fmt="mp4"), "video/mp4")


def _figure(uri: str, caption: str) -> str:
    cap = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


# ----------------------------------------------------------------------------- page

_CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1180px;padding:0 1em;color:#1a202c}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #cbd5e0;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.35em .8em;border-bottom:1px solid #e2e8f0;text-align:left}
thead th{background:#edf2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:700;color:#22543d}
.run{color:#4a5568}.run span{margin-right:1.4em}.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figure img,figure video{max-width:100%;border:1px solid #e2e8f0}figcaption{color:#4a5568;font-size:.9em}
ul.notes li{margin:.2em 0}pre{background:#f7fafc;padding:1em;overflow:auto;font-size:12px}"""

# Writes the load status for humans (hidden) and tests: images decoded, videos with a first frame.
_SELF_CHECK = """(()=>{const out=document.getElementById("report-self-check");const vids=[...document.querySelectorAll("video")];
function report(){const imgs=[...document.images];const bad=vids.filter(v=>v.error).map(v=>v.id+": error code "+v.error.code);
const ok=vids.filter(v=>!v.error&&v.readyState>=2).length;out.textContent=JSON.stringify({images:imgs.length,
images_loaded:imgs.filter(i=>i.complete&&i.naturalWidth>0).length,videos:vids.length,videos_loaded:ok,video_errors:bad,
done:document.readyState==="complete"&&ok+bad.length===vids.length});}
vids.forEach(v=>{v.addEventListener("loadeddata",report);v.addEventListener("error",report);});
window.addEventListener("load",report);report();})();"""


def write_report(
    out_dir: str | Path,
    results: Mapping[str, Any],
    *,
    title: str,
    curves: Mapping[str, Mapping[str, Sequence[Sequence[float]]]] | None = None,
    figures: Mapping[str, str | Path] | None = None,
    videos: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    video_fps: float = 24.0,
    filename: str = "report.html",
) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    results: the run's JSON (``models: {name: {psnr, ssim, steps, ...}}`` or ``rows: [{model, ...}]``);
        its numbers fill the table, and the whole JSON is shown folded at the end.
    curves: ``{metric: {model: [(step, mean) or (step, mean, spread), ...]}}``, one plot per metric.
    figures: ``{caption: image file}`` (PNG, JPEG, SVG), embedded as they are.
    videos: ``{caption: MP4/WebM file or uint8 (T, H, W, 3) frames}``; frames are encoded as H.264
        at ``video_fps``. Label their panels in the pixels first with :func:`label_panels`.
    notes: plain-text sentences shown under the title (claims, caveats).
    """
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<h2>Results</h2>{_table(results)}")
    if curves:
        imgs = "".join(_figure(_data_uri(_curve_png(m, s), "image/png"), m) for m, s in curves.items())
        parts.append(f'<h2>Learning curves</h2><div class="grid">{imgs}</div>')
    if figures:
        imgs = "".join(_figure(_file_uri(p), caption) for caption, p in figures.items())
        parts.append(f'<h2>Figures</h2><div class="grid">{imgs}</div>')
    if videos:
        items = "".join(
            f'<figure><video id="video-{i}" src="{_video_uri(v, video_fps)}" controls loop muted autoplay playsinline '
            f'preload="auto"></video><figcaption>{html.escape(caption)}</figcaption></figure>'
            for i, (caption, v) in enumerate(videos.items())
        )
        parts.append(f"<h2>Videos</h2>{items}")
    raw = html.escape(json.dumps(results, indent=2, allow_nan=False))
    parts.append(
        f"<details><summary>{html.escape(filename)} was made from this JSON</summary><pre>{raw}</pre></details>"
    )
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>\n'
        f'<body>\n{chr(10).join(parts)}\n<pre id="report-self-check" hidden>pending</pre>\n'
        f"<script>{_SELF_CHECK}</script>\n</body></html>\n"
    )
    return write_text(Path(out_dir) / filename, page)
