"""The worker pool's records and helpers: tickets (one submitted batch), worker handles,
generation handles, metrics and the registry a finalizer kills."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any

from agora.process.shm import Slot
from agora.process.worker import EXIT_MEMORY_ERROR

__all__ = [
    "LaneCounters",
    "PoolGeneration",
    "PoolMetrics",
    "PoolState",
    "RemoteTraceback",
    "Registry",
    "Ticket",
    "WorkerHandle",
    "describe_exit",
    "kill_group",
]


class PoolState(StrEnum):
    """Where a pool is in its life; see :attr:`WorkerPool.state`."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    IDLE = "idle"  # released by its lease, kept warm by a shared WorkerPool for the next
    ISOLATING = "isolating"  # re-running the batches caught in a worker death, one by one
    BROKEN = "broken"  # recycle budget spent or fn unloadable: every batch fails fast
    STOPPED = "stopped"


@dataclass(frozen=True, eq=False)
class PoolGeneration:
    """One generation of a middleware's workers, as the middleware shows it: the same
    object for as long as the generation serves batches; a recycle (timeout, worker
    death) brings a new one. Compared by identity."""

    middleware_name: str
    generation: int


class RemoteTraceback(Exception):
    """The worker-side traceback of ``fn``'s exception (set as ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class LaneCounters:
    """The counters every executor's lease keeps, under one set of names, so that a run
    summary reads the same whichever executor ran the batches."""

    batches_submitted: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    batches_timed_out: int = 0
    batches_invalidated: int = 0
    worker_deaths: int = 0
    pool_recycles: int = 0
    recycle_seconds: float = 0.0
    peak_in_flight: int = 0
    transport_bytes_in: int = 0
    transport_bytes_out: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches_submitted": self.batches_submitted,
            "batches_ok": self.batches_ok,
            "batches_failed": self.batches_failed,
            "batches_timed_out": self.batches_timed_out,
            "batches_invalidated": self.batches_invalidated,
            "worker_deaths": self.worker_deaths,
            "pool_recycles": self.pool_recycles,
            "recycle_seconds": round(self.recycle_seconds, 6),
            "peak_in_flight": self.peak_in_flight,
            "transport_bytes_in": self.transport_bytes_in,
            "transport_bytes_out": self.transport_bytes_out,
        }


@dataclass
class PoolMetrics(LaneCounters):
    """A local pool's counters: the shared ones, the shared-memory fallbacks and the
    workers' sampled memory and CPU."""

    #: batches / results that crossed over the pipe because shared memory could not hold them
    shm_fallbacks_in: int = 0
    shm_fallbacks_out: int = 0
    rss_peak_by_pid: dict[int, int] = field(default_factory=dict)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "shm_fallbacks_in": self.shm_fallbacks_in,
            "shm_fallbacks_out": self.shm_fallbacks_out,
            "worker_peak_rss_bytes": max(self.rss_peak_by_pid.values(), default=0),
            "worker_peak_rss_by_pid": {str(p): v for p, v in self.rss_peak_by_pid.items()},
            "worker_cpu_seconds": round(sum(self.cpu_by_pid.values()), 6),
        }


@dataclass(eq=False)
class Ticket:
    """One batch: submitted, queued, running on a worker, then resolved once."""

    batch_index: int
    payload: Any
    future: asyncio.Future[Any]
    generation: int = 0
    seq: int = -1
    worker: WorkerHandle | None = None
    timer: asyncio.TimerHandle | None = None
    suspect: bool = False
    settled: bool = False


@dataclass(eq=False)
class WorkerHandle:
    generation: int
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    in_slot: Slot
    out_slot: Slot
    pid: int
    ticket: Ticket | None = None
    ready: bool = False
    retired: bool = False
    dead: bool = False
    slots_dirty: bool = False
    note: str = ""


class Registry:
    """What must die if the pool is dropped without ``stop()`` (used by a finalizer that
    must not reference the pool itself)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()
        self.slots: set[Slot] = set()

    def kill_all(self) -> None:
        for pid in list(self.pids):
            kill_group(pid)
        self.pids.clear()
        for slot in list(self.slots):
            slot.release()
        self.slots.clear()


def kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (the worker leads it) and the worker itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def describe_exit(exitcode: int | None, note: str) -> str:
    if note:
        return note
    if exitcode is None:
        return "worker died (it closed its pipe; exit status unknown)"
    if exitcode == EXIT_MEMORY_ERROR:
        return f"worker died (fn raised MemoryError; the worker exited with code {exitcode})"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker died (killed by {name}, exit code {exitcode})"
    return f"worker died (exited with code {exitcode})"
