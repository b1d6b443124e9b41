"""What the trainers do when a run goes wrong: divergence, a preemption signal.

Divergence. Both trainers skip a step whose loss or gradient norm is non-finite (no weight moves)
and stop after ``max_nonfinite`` such steps in a row. When every step fails, the weights that the
last *successful* update produced are the likely culprit (a too-large learning rate makes finite
gradients whose update leaves weights that give only NaN), so the state saved at the stop is the
one from before that update: :class:`PreviousState` keeps a copy of what each update changes,
taken just before it. Cost: one extra copy of the updated weights, their optimiser moments and
the EMA in device memory (about 4x the parameter bytes of the generator; e.g. 4.8 GB for 300 M
fp32 parameters) and one device-to-device copy per step (milliseconds against a step of seconds).

Preemption. Clusters send SIGTERM some time before they kill a job. :class:`StopSignals` turns
SIGTERM and SIGINT into a request: the trainer finishes the current step, all ranks agree to stop
after the same step (a reduced flag), a checkpoint is written atomically, and the process exits
with :data:`EXIT_INTERRUPTED`. A second signal stops at once (the default action).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn

from lcvae.train.ema import EMA

logger = logging.getLogger(__name__)

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "TrainingDiverged",
    "TrainingInterrupted",
    "PreviousState",
    "StopSignals",
    "ignore_stop_signals",
]

EXIT_DIVERGED = 3
EXIT_INTERRUPTED = os.EX_TEMPFAIL if hasattr(os, "EX_TEMPFAIL") else 75  # 75: "temporary failure, retry"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingDiverged(RuntimeError):
    """Too many non-finite steps in a row; the last good state was saved to ``checkpoint``."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class TrainingInterrupted(RuntimeError):
    """A stop signal (SIGTERM, SIGINT) arrived; the state after ``step`` was saved to ``checkpoint``
    (rank 0; None elsewhere) and the same command resumes from it."""

    def __init__(self, message: str, checkpoint: Path | None, step: int, signal_name: str) -> None:
        super().__init__(message)
        self.checkpoint, self.step, self.signal_name = checkpoint, step, signal_name


# ------------------------------------------------------------------------------------- divergence


def _copy_tree(src: Any, dst: Any = None) -> Any:
    """A copy of nested dicts/lists of tensors and primitives; tensors are written into ``dst``'s
    matching tensors, so after the first call a copy allocates no memory."""
    if isinstance(src, torch.Tensor):
        if isinstance(dst, torch.Tensor) and (dst.shape, dst.dtype, dst.device) == (src.shape, src.dtype, src.device):
            return dst.copy_(src)
        return src.detach().clone()
    if isinstance(src, dict):
        return {k: _copy_tree(v, dst.get(k) if isinstance(dst, dict) else None) for k, v in src.items()}
    if isinstance(src, (list, tuple)):
        old = dst if isinstance(dst, (list, tuple)) and len(dst) == len(src) else [None] * len(src)
        return type(src)(_copy_tree(v, d) for v, d in zip(src, old))
    return copy.deepcopy(src)


Part = nn.Module | torch.optim.Optimizer | EMA


def _live_state(part: Part) -> Any:
    """The part's state as references to its live tensors (copied by ``_copy_tree``)."""
    if isinstance(part, EMA):
        return {"decay": part.decay, "num_updates": part.num_updates, "params": part.params, "buffers": part.buffers}
    return part.state_dict()


class PreviousState:
    """The named parts (modules, optimisers, EMAs) as they were before the last update.

    ``keep(*names)`` right before an update copies the parts it will change; ``restore()`` puts
    back the parts of the last update (the others did not change in it), giving exactly the state
    before that update. Call ``forget()`` after restoring nothing should be undone (e.g. resume).
    """

    def __init__(self, **parts: Part) -> None:
        self.parts = parts
        self._saved: dict[str, Any] = {}
        self._last: tuple[str, ...] = ()

    @torch.no_grad()
    def keep(self, *names: str) -> None:
        for name in names:
            self._saved[name] = _copy_tree(_live_state(self.parts[name]), self._saved.get(name))
        self._last = names

    @torch.no_grad()
    def amend(self, name: str, entries: dict[str, torch.Tensor]) -> None:
        """Overwrite entries of the kept state of ``name`` (a module), e.g. BatchNorm statistics that
        the step's forward passes changed before ``keep`` ran, with their values from before them."""
        for key, value in entries.items():
            self._saved[name][key].copy_(value)

    @torch.no_grad()
    def restore(self) -> bool:
        """Undo the last update; False when there was none to undo (nothing changed)."""
        if not self._last:
            return False
        for name in self._last:
            # a fresh copy: load_state_dict may keep the given tensors, which must not alias the snapshot
            self.parts[name].load_state_dict(_copy_tree(self._saved[name]))
        self._last = ()
        return True


# ------------------------------------------------------------------------------------- preemption


class StopSignals:
    """Context manager: SIGTERM / SIGINT set ``received`` (the signal's name) instead of killing the
    process; a second one restores the previous handlers and re-raises itself. Outside the main
    thread (where Python cannot install handlers) it does nothing."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        logger.warning(
            "%s received: finishing this step, then writing a checkpoint and stopping "
            "(send it again to stop at once, losing the steps since the last checkpoint)",
            self.received,
        )

    def _restore(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self._restore()


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGTERM / SIGINT (a cluster signals the whole
    process group), so the main process can finish its step with them; it shuts them down itself."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
