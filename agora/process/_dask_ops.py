"""The small parts of a Dask lease: its counters, what runs on a worker or its nanny,
and how a batch's result is awaited against its timeout clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from agora.process.handles import LaneCounters

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
class DaskLeaseMetrics(LaneCounters):
    """Counters of one lease, under the local pool's names (:class:`LaneCounters`), read
    for Dask: ``batches_invalidated`` stays 0 (a timeout touches only its own worker),
    ``worker_deaths`` counts the times a batch of this lease was caught in a worker death,
    and ``pool_recycles`` the workers restarted after a timeout or a cancellation."""

    workers_restarted: list[str] = field(default_factory=list)


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
