"""The run folder's logs: ``metrics.jsonl`` rows, TensorBoard events and the progress line.

A resumed run redoes the steps after its checkpoint. Rows and events those steps wrote before the
interruption are dropped when the run resumes (:func:`truncate_jsonl`, :func:`open_tensorboard`), so
every step appears once, with the values of the run that continued.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lcvae.utils import format_duration, write_text

logger = logging.getLogger(__name__)

__all__ = ["append_jsonl", "truncate_jsonl", "open_tensorboard", "progress_line"]


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _done_by(row: dict, step: int) -> bool:
    """Whether ``row`` was written by the first ``step`` steps: progress and validation rows carry the
    number of steps done, events and adaptive selections the number done before their step."""
    during = "event" in row or "selection" in row
    return row["step"] < step if during else row["step"] <= step


def truncate_jsonl(path: Path, step: int) -> int:
    """Drop the rows of ``path`` that steps after ``step`` wrote (atomic rewrite); returns how many.
    Rows written after N steps carry ``step: N``; rows written during a step (``event``, ``selection``)
    carry the number of steps done before it. A line cut off by a crash is dropped too."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(row, dict) and "step" in row and not _done_by(row, step):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_text(path, "".join(f"{line}\n" for line in kept))
        logger.info("%s: dropped %d rows of steps after %d, which the resumed run redoes", path, dropped, step)
    return dropped


def open_tensorboard(folder: Path, start_step: int) -> Any:
    """A SummaryWriter on ``folder`` for a run that continues after ``start_step`` steps (0: from
    scratch); events of later steps that an earlier run there had written are purged (logged again)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder), purge_step=start_step + 1)


def progress_line(
    step: int, max_steps: int, kind: str, logs: dict, rate: float, eta: float, name: str | None, gan: bool
) -> str:
    """``step 20/100 [G] total 0.1 mae 0.05 ... | 1.2 step/s, ETA 1:07`` (perceptual loss named ``name``)."""
    shown = [
        ("total", "total"),
        ("mae", "mae"),
        ("perceptual", name),
        ("kl", "kl"),
        ("gan", "gan" if gan else None),
        ("adaptive_weight", "λ" if gan else None),
        ("d_hinge", "d"),
    ]
    parts = [f"{label} {logs[key]:.4g}" for key, label in shown if key in logs and label is not None]
    return f"step {step}/{max_steps} [{kind}] " + " ".join(parts) + f" | {rate:.2f} step/s, ETA {format_duration(eta)}"
