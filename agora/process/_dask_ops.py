"""The small parts of a Dask lease: its counters, what runs on a worker or its nanny,
and how a batch's result is awaited against its timeout clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

__all__ = [
    "DaskLeaseMetrics",
    "STOP_GRACE_S",
    "WorkerLost",
    "compact",
    "expire",
    "result_unless_expired",
    "size_of",
    "stop_worker_process",
    "worker_rss",
]

#: How long the nanny gives a worker running a stuck batch to close in an orderly way
#: (so the scheduler knows it left on purpose and charges no other task for it) before it
#: kills the process. Short, because the stuck code will not cooperate anyway.
STOP_GRACE_S = 0.5

@dataclass
class DaskLeaseMetrics:
    """Counters of one lease, under the local pool's names (``PoolMetrics``)."""

    batches_submitted: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    batches_timed_out: int = 0
    batches_invalidated: int = 0  # always 0: a timeout touches only its own worker
    worker_deaths: int = 0  # times a batch of this lease was caught in a worker death
    pool_recycles: int = 0  # workers restarted after a timeout or a cancellation
    recycle_seconds: float = 0.0
    peak_in_flight: int = 0
    transport_bytes_in: int = 0
    transport_bytes_out: int = 0
    workers_restarted: list[str] = field(default_factory=list)

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


def compact(payload: Any) -> Any:
    """A sliced ``RecordBatch`` copied into its own buffers: pickling a slice would ship
    its whole parent (measured: a 1000-row slice of a 1M-row batch pickles to 17 MB)."""
    if not isinstance(payload, pa.RecordBatch):
        return payload
    if payload.get_total_buffer_size() <= 2 * payload.nbytes + 4096:
        return payload
    columns = [pa.concat_arrays([column]) for column in payload.columns]
    return pa.RecordBatch.from_arrays(columns, schema=payload.schema)


def size_of(value: Any) -> int:
    if isinstance(value, tuple):  # a row batch's result: (input length, pickle)
        value = value[1]
    if isinstance(value, pa.RecordBatch):
        return int(value.nbytes)
    return len(value) if isinstance(value, bytes | bytearray) else 0


def worker_rss() -> tuple[int, int]:
    """Runs on a worker: its pid and resident set size."""
    import psutil

    proc = psutil.Process()
    return proc.pid, int(proc.memory_info().rss)


class WorkerLost(Exception):
    """A batch's worker died (Dask's ``KilledWorker``); the lease decides what follows."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def stop_worker_process(dask_worker: Any) -> str:
    """Runs in the worker's nanny: stop the worker process, without waiting for its
    busy threads, killing it after ``STOP_GRACE_S``. The nanny then starts a fresh one."""
    process = dask_worker.process
    if process is None:
        return "no worker process"
    await process.kill(timeout=STOP_GRACE_S / 0.8, executor_wait=False,
                       reason="agora-batch-timeout")
    return "stopped"


def expire(clock: asyncio.Future[None]) -> None:
    if not clock.done():
        clock.set_result(None)


async def result_unless_expired(future: Any, expired: asyncio.Future[None]) -> Any:
    """The batch's result, or ``TimeoutError`` once its clock expired first."""
    waiter = asyncio.ensure_future(_result_of(future))
    try:
        await asyncio.wait({waiter, expired}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        waiter.cancel()
        raise
    if waiter.done():
        return waiter.result()
    waiter.cancel()
    raise TimeoutError


async def _result_of(future: Any) -> Any:
    return await future
