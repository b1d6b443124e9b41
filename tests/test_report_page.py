"""report.html: labelled side-by-side videos, and the page itself opened in headless Chromium.

The browser test needs Debian's chromium (scripts/install_browser.sh installs it); without one it
skips and says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lcvae.report_page import format_number, label_panels, render_text, write_report

LABELS = ["input", "LC-VAE", "WF-VAE", "PTLC"]


def _panels(t: int = 4, h: int = 12, w: int = 40, n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 200, (t, h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_render_text_draws_the_glyph_shapes() -> None:
    dash = render_text("-")
    assert dash.shape == (7, 5)
    assert dash[3].all() and dash.sum() == 5  # one full middle row, nothing else
    two = render_text("i-", scale=2)  # lower case drawn as upper case, one blank column between glyphs
    assert two.shape == (14, 22)
    assert not two[:, 10:12].any()
    assert two[:2, :10].sum() == 2 * 2 * 3  # top row of "I": three ink pixels, each 2x2
    with pytest.raises(ValueError, match="no glyph"):
        render_text("LC~VAE")


def test_label_panels_keeps_panels_and_labels_each_band() -> None:
    panels = _panels()
    out = label_panels(panels, LABELS, upscale=2)
    band = out.shape[1] - 24
    assert out.shape == (4, 22 + 24, 4 * 80, 3)  # band: 7 * 2 glyph rows + 2 * 2 margin each side
    for i, (p, label) in enumerate(zip(panels, LABELS)):
        cols = slice(80 * i, 80 * (i + 1))
        np.testing.assert_array_equal(out[:, band:, cols], p.repeat(2, axis=1).repeat(2, axis=2))
        ink = (out[:, :band, cols] == 255).all(axis=-1)
        scale = 2  # "LC-VAE" is 35 px wide at scale 1: 105 px at 3 overflows 80 px, 70 px at 2 fits
        assert ink.sum() == 4 * render_text(label, scale).sum() > 0, label
        assert (ink == ink[:1]).all()  # the same label on every frame
        background = out[0, :band, cols][~ink[0]]
        assert len(np.unique(background, axis=0)) == 1  # one flat shade behind the text


def test_label_panels_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one label per panel"):
        label_panels(_panels(n=2), ["input"])
    with pytest.raises(ValueError, match="do not fit"):
        label_panels(_panels(w=8, n=2), ["input", "LC-VAE"])
    mismatched = _panels(n=1) + _panels(h=10, n=1)
    with pytest.raises(ValueError, match="panel 1"):
        label_panels(mismatched, ["input", "LC-VAE"])


def test_format_number_rounds_for_display() -> None:
    assert [format_number(v) for v in (300, 24.1234, 0.812345, -0.00049, 1.0)] == [
        "300",
        "24.12",
        "0.8123",
        "-0.0005",
        "1.00",
    ]


# ----------------------------------------------------------------------------- headless browser

RESULTS = {
    "models": {
        "lcvae-tiny": {
            "psnr": 24.1289,
            "ssim": 0.812345,
            "steps": 300,
            "st-lpips": 0.1234567,
            "diffusion_shape": [4, 9, 8, 8],
        },
        "wfvae-tiny": {"psnr": 23.5, "ssim": 0.79, "steps": 300, "st-lpips": 0.2, "diffusion_shape": [4, 9, 8, 8]},
    },
    "seconds": 123.456,
    "metric": "ST-LPIPS",
}
# What the page must show for each JSON number, written out by hand (2 decimals from 1 up, else 4).
SHOWN = {
    "models.lcvae-tiny.psnr": "24.13",
    "models.lcvae-tiny.ssim": "0.8123",
    "models.lcvae-tiny.steps": "300",
    "models.lcvae-tiny.st-lpips": "0.1235",
    "models.wfvae-tiny.psnr": "23.50",
    "models.wfvae-tiny.ssim": "0.7900",
    "models.wfvae-tiny.steps": "300",
    "models.wfvae-tiny.st-lpips": "0.2000",
    "seconds": "123.46",
}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    """Collects the number cells (data-key -> (data-value, text)) and the self-check status."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[str, str]] = {}
        self.best: set[str] = set()  # data-keys of cells marked as the best value of their column
        self.check = ""
        self._open: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-key" in a:
            self._open = (a["data-key"] or "", a.get("data-value") or "")
            self.cells[self._open[0]] = (self._open[1], "")
            if "best" in (a.get("class") or "").split():
                self.best.add(self._open[0])
        elif a.get("id") == "report-self-check":
            self._open = ("#check", "")

    def handle_data(self, data: str) -> None:
        if self._open and self._open[0] == "#check":
            self.check += data
        elif self._open:
            key, value = self._open
            self.cells[key] = (value, self.cells[key][1] + data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def test_report_table_shows_every_json_number_and_marks_the_best(tmp_path: Path) -> None:
    results = {
        "rows": [
            {
                "model": "a",
                "psnr": {"mean": 25.0, "std": 0.9},
                "st-lpips": 0.3,
                "ssim": 0.5,
                "steps": 10,
                "per_clip": [{"psnr": 1.0}],
            },
            {
                "model": "b",
                "psnr": {"mean": 24.0, "std": 0.2},
                "st-lpips": 0.1,
                "ssim": 0.5,
                "steps": 10,
                "causal_compressed": True,
            },
        ]
    }
    page = _Page()
    page.feed(write_report(tmp_path, results, title="t").read_text())
    assert {k: text for k, (_, text) in page.cells.items()} == {
        "rows.0.psnr.mean": "25.00",
        "rows.0.psnr.std": "0.9000",
        "rows.0.st-lpips": "0.3000",
        "rows.0.ssim": "0.5000",
        "rows.0.steps": "10",
        "rows.1.psnr.mean": "24.00",
        "rows.1.psnr.std": "0.2000",
        "rows.1.st-lpips": "0.1000",
        "rows.1.ssim": "0.5000",
        "rows.1.steps": "10",
    }
    # higher PSNR and lower LPIPS win; a tie (SSIM), a spread column and a step count mark nothing
    assert page.best == {"rows.0.psnr.mean", "rows.1.st-lpips"}
    with pytest.raises(ValueError, match="'models'"):
        write_report(tmp_path, {"psnr": 1.0}, title="t")


def _open_in_chromium(page: Path, profile: Path) -> _Page:
    """The DOM of ``page`` after its scripts ran, as headless Chromium serialises it."""
    cmd = [
        _chromium(),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = _Page()
    parsed.feed(done.stdout)
    return parsed


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium on PATH: run scripts/install_browser.sh (Debian: apt-get install chromium)"
)
def test_report_page_loads_in_chromium_and_shows_the_json_numbers(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imsave

    from lcvae.data import write_video

    rng = np.random.default_rng(1)
    figures = {}
    for name in ("latent energy", "autocorrelation"):
        figures[name] = tmp_path / f"{name.replace(' ', '_')}.png"
        imsave(figures[name], rng.random((20, 30, 3)))
    panels = _panels(t=6, h=16, w=32)
    video_file = write_video(tmp_path / "side_by_side.mp4", label_panels(panels, LABELS, upscale=2), fps=8.0)
    curves = {
        "held-out PSNR (dB)": {
            "lcvae-tiny": [(0, 10.0, 0.5), (100, 20.0, 0.4), (200, 24.0, 0.3)],
            "wfvae-tiny": [(0, 11.0), (100, 19.0), (200, 23.5)],
        }
    }
    page = write_report(
        tmp_path / "run",
        RESULTS,
        title="tiny study",
        curves=curves,
        figures=figures,
        videos={"clip from file": video_file, "clip from frames": label_panels(panels[:2], LABELS[:2], upscale=2)},
        notes=["LC-VAE vs WF-VAE: inside the seed-to-seed noise."],
        video_fps=8.0,
    )
    assert page == tmp_path / "run" / "report.html"
    assert not list(page.parent.glob("*.tmp")) and [p.name for p in page.parent.iterdir()] == ["report.html"]
    text = page.read_text()
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert len(links) == 5 and all(link.startswith("data:") for link in links)  # self-contained: nothing to fetch

    dom = _open_in_chromium(page, tmp_path / "profile")
    status = json.loads(dom.check)
    assert status == {
        "images": 3,
        "images_loaded": 3,
        "videos": 2,
        "videos_loaded": 2,
        "video_errors": [],
        "done": True,
    }
    assert {k: text for k, (_, text) in dom.cells.items()} == SHOWN
    for key, (value, _) in dom.cells.items():
        node = RESULTS
        for part in key.split("."):
            node = node[part]
        assert json.loads(value) == node, key  # the exact JSON number travels with the cell


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium on PATH: run scripts/install_browser.sh (Debian: apt-get install chromium)"
)
def test_report_self_check_reports_a_broken_video(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    page = write_report(
        tmp_path,
        {"rows": [{"model": "m", "psnr": 20.0, "ssim": 0.5, "steps": 1}]},
        title="broken",
        videos={"broken": broken},
    )
    status = json.loads(_open_in_chromium(page, tmp_path / "profile").check)
    assert status["videos"] == 1 and status["videos_loaded"] == 0
    assert len(status["video_errors"]) == 1 and status["done"] is True
