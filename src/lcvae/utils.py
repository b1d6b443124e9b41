"""Small helpers shared across the package: "did you mean" hints, strict dataclass loading, and the
one atomic file writer (with the JSON and text shortcuts built on it)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def closest(name: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice most similar to ``name`` (difflib ratio >= ``cutoff``), or None."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


def suggest(name: str, choices: Iterable[str], *, listing: str = "valid keys", cutoff: float = 0.6) -> str:
    """The tail of an error about an unknown ``name``: "; did you mean 'x'?" when a choice is close
    (see :func:`closest`), else "; <listing>: a, b, c" (every choice, sorted)."""
    choices = list(choices)
    match = closest(name, choices, cutoff)
    return f"; did you mean {match!r}?" if match else f"; {listing}: {', '.join(sorted(choices))}"


def strict_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build a dataclass from a dict, rejecting unknown keys with a suggestion."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in d:
        if key not in fields:
            raise ValueError(f"unknown {cls.__name__} key {key!r}{suggest(key, fields)}")
    return cls(**d)


def format_duration(seconds: float) -> str:
    """Seconds as "MM:SS", or "H:MM:SS" from an hour on, for progress lines ("?" when not finite, e.g. an
    ETA before the first step)."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


# ------------------------------------------------------------------------------------ atomic files


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk (errors are real: a failed fsync means lost data)."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries to disk, which makes a rename in it durable. Some platforms and
    filesystems refuse to open or sync folders; then there is nothing more to do."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, move it into place (mode
    0644) and fsync the folder.

    A crash or a full disk mid-write leaves the previous file untouched and no partial file; after
    the return the new file survives a power loss. Temporary names start with ``.<name>.`` and end
    in ``.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fsync_file(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs and caches are shared data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically, newline-terminated; NaN and infinity are refused (write None)."""
    return write_text(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")
