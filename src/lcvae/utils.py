"""Small helpers shared across the package."""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(choices))}"


def strict_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build a dataclass from a dict, rejecting unknown keys with a suggestion."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in d:
        if key not in fields:
            raise ValueError(f"unknown {cls.__name__} key {key!r}{suggest(key, fields)}")
    return cls(**d)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place (mode 0644).

    A crash or a full disk mid-write leaves the previous file untouched and no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
