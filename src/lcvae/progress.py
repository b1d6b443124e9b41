"""Progress of long commands: one helper for every command that runs for minutes.

On a terminal (stderr is a TTY) the progress is a tqdm bar with the rate and the time left.
Elsewhere (a log file, a cluster job, a test) a bar would write carriage-return garbage, so the
same numbers go to the log at INFO level, at most once per ``interval`` seconds and once at the
end; ``lcvae -v`` shows them. ``enabled=False`` silences both (``--no-progress``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from lcvae.utils import format_duration

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOG_INTERVAL_S = 30.0


class Progress:
    """Counts ``unit``s of work towards ``total`` (None: unknown) under the label ``desc``.

    Use as a context manager, or call :meth:`close`. ``update(n)`` adds done work;
    ``set_postfix(text)`` names the current stage (e.g. "decoding").
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        interval: float = LOG_INTERVAL_S,
        tty: bool | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.done, self.postfix = 0, ""
        self.enabled = enabled
        self.start = self.last_log = time.monotonic()
        use_bar = enabled and (sys.stderr.isatty() if tty is None else tty)
        self.bar = None
        if use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def line(self, final: bool = False) -> str:
        """The state in words: "desc: 3/10 clip, 0.52 clip/s, 00:06 elapsed, 00:13 left (stage)";
        ``final``: no time left, and "(done)" or "(stopped at n/total)" instead of the stage."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        text = f"{self.desc}: {count} {self.unit}, {rate:.3g} {self.unit}/s, {format_duration(elapsed)} elapsed"
        if final:
            return text + (" (stopped early)" if self.total is not None and self.done < self.total else " (done)")
        if self.total is not None and 0 < rate and self.done < self.total:
            text += f", {format_duration((self.total - self.done) / rate)} left"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last_log >= self.interval:
            self.last_log = time.monotonic()
            logger.info("%s", self.line())

    def set_total(self, total: int | None) -> None:
        """Change the amount of work (e.g. once the input's length is known)."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def set_postfix(self, text: str) -> None:
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled:
            logger.info("%s", self.line(final=True))
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(
    iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it", enabled: bool = True
) -> Iterator[T]:
    """Iterate ``iterable`` while showing :class:`Progress` (``total`` defaults to ``len``)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update()
