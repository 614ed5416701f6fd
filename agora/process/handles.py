"""The worker pool's records and helpers: tickets (one submitted batch), worker handles,
metrics, the registry a finalizer kills, and the start method with its preload list."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing.connection import Connection
from collections.abc import Sequence
from typing import Any

from agora.process.shm import Slot
from agora.process.worker import EXIT_MEMORY_ERROR

__all__ = [
    "PRELOAD",
    "PoolMetrics",
    "PoolState",
    "RemoteTraceback",
    "Registry",
    "Ticket",
    "WorkerHandle",
    "await_forkserver_exit",
    "describe_exit",
    "forkserver_pid",
    "forkserver_preload",
    "kill_group",
    "mp_context",
]

#: Modules every worker has imported before it is forked, so a new worker (and a new
#: generation after a recycle) is ready in milliseconds instead of re-importing pyarrow.
#: ``forkserver_hook`` comes first so that it also captures a later module's failure.
PRELOAD = [
    "agora.process.forkserver_hook", "pyarrow", "pyarrow.ipc", "ctypes", "agora.process.worker",
]


class PoolState(StrEnum):
    """Where a pool is in its life; see :attr:`WorkerPool.state`."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    ISOLATING = "isolating"  # re-running the batches caught in a worker death, one by one
    BROKEN = "broken"  # recycle budget spent or fn unloadable: every batch fails fast
    STOPPED = "stopped"


class RemoteTraceback(Exception):
    """The worker-side traceback of ``fn``'s exception (set as ``__cause__``)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class PoolMetrics:
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
    #: batches / results that crossed over the pipe because shared memory could not hold them
    shm_fallbacks_in: int = 0
    shm_fallbacks_out: int = 0
    rss_peak_by_pid: dict[int, int] = field(default_factory=dict)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)

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


def mp_context(
    extra_preload: Sequence[str] = (), *, drop: Sequence[str] = ()
) -> multiprocessing.context.BaseContext:
    """forkserver with pyarrow preloaded where available (never plain fork from a
    threaded process), spawn elsewhere.

    ``extra_preload`` (the module defining ``fn``) joins the preload list, so workers of
    every generation start with it imported instead of importing it on first use — which
    would add its import time to every pool recycle. Modules the application already
    asked the forkserver to preload are kept, except those in ``drop`` (used to retry
    without a module whose import killed the forkserver). The list only takes effect
    when the forkserver starts (it serves the whole process afterwards).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        current = list(forkserver_preload())
        wanted = [
            m for m in (*PRELOAD, *current, *extra_preload)
            if m and m != "__main__" and m not in drop
        ]
        ctx.set_forkserver_preload(list(dict.fromkeys(wanted)))
        return ctx
    return multiprocessing.get_context("spawn")


def forkserver_preload() -> list[str]:
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    return list(getattr(server, "_preload_modules", None) or [])


def forkserver_pid() -> int | None:
    """The pid of this process's forkserver, if one was started."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def await_forkserver_exit(limit_s: float = 2.0) -> None:
    """Wait (briefly) until a forkserver that hung up can be reaped, so that the next
    process start launches a new one instead of talking to the dying one. It is not
    reaped here (``WNOWAIT``): multiprocessing reaps it and then starts the new one."""
    pid = forkserver_pid()
    deadline = time.monotonic() + limit_s
    while pid is not None and time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)
