"""The two process-isolated batch middlewares: rows (pickled) and Arrow (shared memory).

Both run a user ``fn`` in a managed pool of worker processes (``pool.py``); what they
share lives in ``lane.py``. The runtime engine drives them through :meth:`submit`, from
up to ``max_in_flight_batches`` concurrent tasks, and commits the results in source order
itself; checkpoints, the DLQ and sinks never leave the main process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic

import pyarrow as pa

from agora.middleware.base import (  # InT/OutT: record types, defaulting to Any
    ArrowBatchMiddleware,
    BatchMiddleware,
    InT,
    MiddlewareContext,
    OutT,
)
from agora.process.executor import Executor
from agora.process.lane import DEFAULT_MAX_POOL_RECYCLES, ProcessLane
from agora.process.transport import ArrowTransport, RowTransport, encode_rows

__all__ = ["ArrowProcessBatchMiddleware", "ProcessBatchMiddleware"]



class ProcessBatchMiddleware(ProcessLane, BatchMiddleware, Generic[InT, OutT]):
    """Runs ``fn(list) -> list`` on batches of Python records in worker processes.

    ``fn`` must be a picklable (module-level) sync function returning one result per
    input record, in order (None drops a record). Records and results are pickled.
    A batch that raises, times out, kills its worker, returns the wrong length or cannot
    be pickled fails with :class:`~agora.errors.ProcessBatchError` (docs/process-lanes.md).
    ``ProcessBatchMiddleware[In, Out]`` names the record types for a type checker.
    """

    process_isolated = True
    _kind_label = "ProcessBatchMiddleware"
    _transport_factory = RowTransport

    def __init__(
        self,
        fn: Callable[[list[InT]], Sequence[OutT | None]],
        *,
        max_workers: int | None = None,
        ordered: bool = True,
        timeout_s: float | None = None,
        max_in_flight_batches: int = 4,
        name: str = "process_batch",
        max_pool_recycles: int = DEFAULT_MAX_POOL_RECYCLES,
        executor: Executor | None = None,
    ) -> None:
        self._configure(
            fn,
            max_workers=max_workers,
            ordered=ordered,
            timeout_s=timeout_s,
            max_in_flight_batches=max_in_flight_batches,
            name=name,
            max_pool_recycles=max_pool_recycles,
            executor=executor,
        )

    async def submit(self, batch_index: int, records: Sequence[Any]) -> list[Any]:
        """Run ``fn`` on the live ``records`` of batch ``batch_index`` in a worker.

        Returns a list of the same length (None = drop). Raises ProcessBatchError.
        Safe to cancel: a cancelled batch's result is discarded.
        """
        if not records:
            return []
        try:
            payload = encode_rows(list(records))
        except Exception as exc:  # noqa: BLE001
            self._count_local_failure()
            raise self._error(
                batch_index,
                f"the batch could not be pickled for the worker ({type(exc).__name__}: {exc}); "
                "records sent to a process middleware must be picklable",
            ) from exc
        results: list[Any] = await self._submit(batch_index, payload)
        return results

    async def process_batch(self, records: Sequence[Any], ctx: MiddlewareContext) -> list[Any]:
        """The plain BatchMiddleware entry point (numbers batches itself from 0 each run)."""
        if not self._started:
            raise self._not_running(self._auto_index)
        self._auto_index += 1
        return await self.submit(self._auto_index - 1, records)


class ArrowProcessBatchMiddleware(ProcessLane, ArrowBatchMiddleware):
    """Runs ``fn(RecordBatch) -> RecordBatch`` in worker processes; the row count must
    be preserved.

    The batch crosses the process boundary as Arrow IPC written into a shared-memory
    slot (one memcpy each way, never a pickle), or over the worker's pipe when
    ``/dev/shm`` cannot hold it. The batch ``fn`` receives is a read-only view, valid
    during the call: copy it if ``fn`` keeps it.
    """

    process_isolated = True
    _kind_label = "ArrowProcessBatchMiddleware"
    _transport_factory = ArrowTransport

    def __init__(
        self,
        fn: Callable[[pa.RecordBatch], pa.RecordBatch],
        *,
        max_workers: int | None = None,
        ordered: bool = True,
        timeout_s: float | None = None,
        max_in_flight_batches: int = 4,
        name: str = "arrow_process_batch",
        max_pool_recycles: int = DEFAULT_MAX_POOL_RECYCLES,
        executor: Executor | None = None,
    ) -> None:
        self._configure(
            fn,
            max_workers=max_workers,
            ordered=ordered,
            timeout_s=timeout_s,
            max_in_flight_batches=max_in_flight_batches,
            name=name,
            max_pool_recycles=max_pool_recycles,
            executor=executor,
        )

    async def submit(self, batch_index: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Run ``fn`` on ``batch`` in a worker; returns a batch with the same row count,
        in memory the caller owns. Raises ProcessBatchError. Safe to cancel."""
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(
                f"{self._kind_label} {self.name!r}: submit() takes a pyarrow.RecordBatch; "
                f"got {type(batch).__name__}"
            )
        return await self._submit(batch_index, batch)

    async def process_arrow_batch(
        self, batch: pa.RecordBatch, ctx: MiddlewareContext
    ) -> pa.RecordBatch:
        """The plain ArrowBatchMiddleware entry point (numbers batches itself from 0 each
        run)."""
        if not self._started:
            raise self._not_running(self._auto_index)
        self._auto_index += 1
        return await self.submit(self._auto_index - 1, batch)
