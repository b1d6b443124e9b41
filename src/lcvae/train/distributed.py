"""Small helpers for one-process-per-GPU training under ``torchrun`` (DDP; docs/training.md#distributed-training-resume-failures).

``init_distributed`` reads the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Without WORLD_SIZE it returns a single-process setup and creates no process group, so
the same recipe runs as ``python -m ...`` on a laptop. Backend: nccl when CUDA is available, gloo
otherwise. Every other helper works whether or not a process group exists.

Stalled ranks. The process group gets a timeout (``DEFAULT_TIMEOUT_S``, 10 minutes, instead of
torch's 30 for gloo): a rank that stops answering (stopped, swapping, hung in I/O) makes the others
fail after that long instead of hanging the job. It must exceed the longest time one rank works
while the others wait in a collective: rank 0 writing a checkpoint (seconds to a few minutes for
the paper models on a shared disk), validating or writing sample videos. With gloo the timeout
applies to every collective and surfaces as an error that :func:`stalled_rank_errors` turns into
:class:`RankTimeout` naming the ranks that did not answer; with nccl torch's watchdog aborts the
process after the same timeout with its own message.
"""

from __future__ import annotations

import logging
import os
import random
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from lcvae.train.checkpoint import capture_rng_state

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RankTimeout",
    "stalled_rank_errors",
    "any_rank_each",
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_reduce_mean",
    "mean_over_ranks",
    "any_rank",
    "min_over_ranks",
    "gather_rng_states",
    "setup_logging",
    "seed_everything",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return get_rank() == 0


def _env_int(name: str) -> int:
    raw = os.environ[name]
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from err


DEFAULT_TIMEOUT_S = 600.0


def init_distributed(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistInfo:
    """Join the torchrun process group (or set up a single process) and pick this rank's device;
    collectives that wait longer than ``timeout_s`` seconds for another rank fail."""
    if timeout_s <= 0:
        raise ValueError(f"the process group timeout must be > 0 seconds, got {timeout_s}")
    if "WORLD_SIZE" not in os.environ:
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is set but {missing} are not; launch with torchrun (it sets all of them)")
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not is_distributed():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    logger.info("rank %d/%d (local %d) on %s, backend %s", rank, world_size, local_rank, device, backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_reduce_mean(values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
    """Mean over ranks of a dict of scalars (e.g. losses for logging). All ranks must pass the same
    keys; a mismatch is detected (one extra tiny collective) and raises instead of mixing values."""
    keys = sorted(values)
    local = [float(values[k].detach()) if isinstance(values[k], torch.Tensor) else float(values[k]) for k in keys]
    if not is_distributed():
        return dict(zip(keys, local))
    device = _collective_device()
    signature = float(zlib.crc32("\0".join(keys).encode("utf-8")))
    check = torch.tensor([signature, -signature], dtype=torch.float64, device=device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX)
    if check[0].item() != -check[1].item():
        raise ValueError(f"all_reduce_mean: ranks passed different keys (rank {get_rank()} has {keys})")
    packed = torch.tensor(local, dtype=torch.float64, device=device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    packed /= get_world_size()
    return dict(zip(keys, packed.tolist()))


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks as a new tensor (``t`` is left alone), e.g. the gradient norms of
    the adaptive GAN weight. Without a process group: a copy of ``t``."""
    t = t.clone()
    if not is_distributed():
        return t
    dist.all_reduce(t)
    return t / get_world_size()


def _reduce_scalar(value: float, op: dist.ReduceOp) -> float:
    t = torch.tensor([float(value)], device=_collective_device())
    dist.all_reduce(t, op=op)
    return t.item()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a non-finite loss somewhere)."""
    return bool(_reduce_scalar(float(flag), dist.ReduceOp.MAX)) if is_distributed() else flag


def any_rank_each(*flags: bool) -> tuple[bool, ...]:
    """``any_rank`` of several flags in one collective (e.g. "over the time budget", "signalled")."""
    if not is_distributed():
        return tuple(bool(f) for f in flags)
    t = torch.tensor([float(f) for f in flags], device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def min_over_ranks(value: int) -> int:
    """The smallest ``value`` over ranks (e.g. the fewest good clips any rank got in a batch)."""
    return int(_reduce_scalar(float(value), dist.ReduceOp.MIN)) if is_distributed() else value


def gather_rng_states() -> list[dict]:
    """Every rank's RNG state (``capture_rng_state``), in rank order, on every rank; collective
    under torchrun, so all ranks must call it (a checkpoint stores the list, rank r restores entry r)."""
    state = capture_rng_state()
    if not is_distributed():
        return [state]
    states: list = [None] * get_world_size()
    dist.all_gather_object(states, state)
    return states


class RankTimeout(TimeoutError):
    """A collective waited longer than the process-group timeout: some rank stopped answering."""


def _silent_ranks(grace_s: float) -> list[int] | None:
    """Ranks that did not also report a timeout within ``grace_s`` (every live rank blocked on the
    same collective times out within one timeout of the first); None if the rendezvous store
    (torchrun's agent, or rank 0 without torchrun) does not answer either."""
    me, world = get_rank(), get_world_size()
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set_timeout(timedelta(seconds=max(grace_s, 1.0)))
        store.set(f"lcvae/timed-out/{me}", "1")
        deadline = time.monotonic() + grace_s
        while True:
            silent = [r for r in range(world) if not store.check([f"lcvae/timed-out/{r}"])]
            if not silent or time.monotonic() >= deadline:
                return silent
            time.sleep(0.2)
    except (RuntimeError, AttributeError):  # DistStoreError is a RuntimeError
        return None


def _is_timeout(err: BaseException) -> bool:
    text = str(err).lower()
    return "timed out" in text or "timeout" in text


@contextmanager
def stalled_rank_errors(timeout_s: float, setting: str) -> Iterator[None]:
    """Turn a collective's timeout inside the block into :class:`RankTimeout` naming the ranks that did
    not answer; ``setting`` is the config key of the timeout, for the message."""
    try:
        yield
    except RuntimeError as err:
        if not is_distributed() or not _is_timeout(err):
            raise
        silent = _silent_ranks(min(timeout_s, 60.0))
        if silent is None:
            who = "any rank, nor from the rendezvous store (its host, rank 0 or torchrun's agent, is stalled too)"
        elif silent:
            who = "rank " + ", ".join(map(str, silent))
        else:
            who = "a rank that answered later (every rank reported the timeout)"
        raise RankTimeout(
            f"rank {get_rank()}: a collective waited more than {setting}={timeout_s:g} s; no answer from "
            f"{who}. A process stalled, was stopped or died: check its log and host. If a rank legitimately "
            f"works that long alone (checkpoint writes, validation, samples), raise {setting}."
        ) from err


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup_logging(level: int = logging.INFO, rank: int | None = None) -> None:
    """Configure the root logger for a recipe: ``level`` on rank 0, warnings and errors elsewhere,
    each line tagged with its rank."""
    rank = get_rank() if rank is None else rank
    handler = logging.StreamHandler()
    handler.addFilter(_RankFilter(rank))
    handler.setFormatter(logging.Formatter("%(asctime)s [rank %(rank)d] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if rank == 0 else max(level, logging.WARNING))


def seed_everything(seed: int, rank: int | None = None) -> int:
    """Seed Python, numpy and torch (CPU and all CUDA devices) with ``seed + rank`` so that ranks draw
    different data augmentations and noise; returns the seed used."""
    rank = get_rank() if rank is None else rank
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    per_rank = seed + rank
    random.seed(per_rank)
    np.random.seed(per_rank % 2**32)
    torch.manual_seed(per_rank)
    return per_rank
