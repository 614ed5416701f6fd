"""Applying middleware to units: per record, per Python batch, per Arrow batch, and
the awaitable process-isolated variants. Failures are recorded on the unit, never
raised: the committer handles them in source order."""

from __future__ import annotations

import inspect
from typing import Any

from agora.errors import ContractError, InternalError
from agora.middleware.base import (
    AnyMiddleware,
    ArrowBatchMiddleware,
    ArrowRowFilter,
    BatchMiddleware,
    Middleware,
    MiddlewareContext,
)
from agora.middleware.io import io_concurrency_of
from agora.protocols import ProcessStage
from agora.records import DLQStage
from agora.runtime.interrupt import StopFlag
from agora.runtime.io_lane import IOLane
from agora.runtime.units import GONE, UNKNOWN_ROWS, Failure, RowMap, Unit, source_rows_of

__all__ = ["Stage", "process_stage_of"]


def process_stage_of(mw: AnyMiddleware) -> ProcessStage | None:
    """``mw`` as a process-isolated stage, or None if it runs in-process. Planning has
    already refused a middleware that sets ``process_isolated`` without the seam."""
    if not mw.process_isolated:
        return None
    if not isinstance(mw, ProcessStage):
        raise InternalError(f"middleware {mw.name!r} is process_isolated but has no submit()")
    return mw


class Stage:
    """One middleware bound to its context and counters (``by_middleware[name]``)."""

    def __init__(self, mw: AnyMiddleware, ctx: MiddlewareContext, *, per_record_batches: bool,
                 stop: StopFlag | None = None) -> None:
        self.mw = mw
        # Checked before every record of the per-record loops: a signal handler sets it
        # even while synchronous middleware keeps the event loop from running.
        self.stop = stop or StopFlag()
        self.ctx = ctx
        self.name = mw.name
        self.kind = mw.kind
        self.process: ProcessStage | None = process_stage_of(mw)
        self.process_isolated = self.process is not None
        # The Arrow filter hook: the runtime filters, so it can trace the source rows.
        self.row_filter: ArrowRowFilter | None = (
            mw if isinstance(mw, ArrowRowFilter) and self.process is None else None)
        # On the row lane a BatchMiddleware is fed one-record batches (row semantics).
        self.per_record_batches = per_record_batches
        self.counters = ctx.metrics
        for key in ("in", "out", "dropped", "errored"):
            self.counters.setdefault(key, 0)
        # An async per-record middleware declaring a concurrency runs on the I/O lane.
        n = io_concurrency_of(mw)
        self.io_lane = IOLane(mw, ctx, n) if n is not None and isinstance(mw, Middleware) else None

    @property
    def window(self) -> int | None:
        """How many units may overlap in this stage, or None for an inline stage."""
        if self.process is not None:
            return self.process.max_in_flight_batches
        return self.io_lane.concurrency if self.io_lane is not None else None

    async def apply(self, unit: Unit) -> None:
        if unit.abandoned:
            return
        mw = self.mw
        if self.io_lane is not None:
            await self.io_lane.apply(unit, self.stop)
        elif isinstance(mw, ArrowBatchMiddleware):
            await self._apply_arrow(unit, mw)
        elif isinstance(mw, Middleware):
            await self._apply_rows(unit, mw)
        elif self.per_record_batches:
            await self._apply_batch_per_record(unit, mw)
        else:
            await self._apply_batch(unit, mw)

    # -- Python records ---------------------------------------------------------------
    async def _apply_rows(self, unit: Unit, mw: Middleware) -> None:
        values = unit.values
        assert values is not None
        process, ctx, c, stop = mw.process, self.ctx, self.counters, self.stop
        for i, value in enumerate(values):
            if value is GONE:
                continue
            if stop.requested and stop.should_abandon():
                unit.abandoned = True
                return
            c["in"] += 1
            try:
                out = process(value, ctx)
                if inspect.isawaitable(out):
                    out = await out
            except Exception as exc:
                values[i] = GONE
                c["errored"] += 1
                unit.errored += 1
                unit.failures.append(Failure(DLQStage.MIDDLEWARE, self.name, exc,
                                             _src(unit, i)))
                continue
            if out is None:
                values[i] = GONE
                unit.dropped += 1
                c["dropped"] += 1
            else:
                values[i] = out
                c["out"] += 1

    async def _apply_batch_per_record(self, unit: Unit, mw: BatchMiddleware) -> None:
        values = unit.values
        assert values is not None
        stop = self.stop
        for i, value in enumerate(values):
            if value is GONE:
                continue
            if stop.requested and stop.should_abandon():
                unit.abandoned = True
                return
            await self._run_python_batch(unit, mw, [i], [value])

    async def _apply_batch(self, unit: Unit, mw: BatchMiddleware) -> None:
        values = unit.values
        assert values is not None
        idx = [i for i, v in enumerate(values) if v is not GONE]
        if not idx:
            return
        await self._run_python_batch(unit, mw, idx, [values[i] for i in idx])

    async def _run_python_batch(self, unit: Unit, mw: BatchMiddleware, idx: list[int],
                                live: list[Any]) -> None:
        values = unit.values
        assert values is not None
        c = self.counters
        c["in"] += len(live)
        try:
            if self.process is not None:
                out = await self.process.submit(unit.seq, live)
            else:
                out = mw.process_batch(live, self.ctx)
                if inspect.isawaitable(out):
                    out = await out
            out = list(out) if not isinstance(out, list) else out
            if len(out) != len(live):
                raise ContractError(
                    f"middleware {self.name!r} returned {len(out)} results for {len(live)} "
                    f"records in batch {unit.seq}; process_batch must return one result per "
                    f"input (None to drop)"
                )
        except Exception as exc:
            c["errored"] += len(live)
            unit.errored += len(live)
            for i in idx:
                unit.failures.append(Failure(DLQStage.BATCH_MIDDLEWARE, self.name, exc,
                                             _src(unit, i)))
                values[i] = GONE
            return
        for i, result in zip(idx, out, strict=True):
            if result is None:
                values[i] = GONE
                unit.dropped += 1
                c["dropped"] += 1
            else:
                values[i] = result
                c["out"] += 1

    # -- Arrow --------------------------------------------------------------------------
    async def _apply_arrow(self, unit: Unit, mw: ArrowBatchMiddleware) -> None:
        batch = unit.batch
        if batch is None:
            return
        c = self.counters
        n_in = batch.num_rows
        c["in"] += n_in
        mask = None
        try:
            if self.process is not None:
                out = await self.process.submit(unit.seq, batch)
            elif self.row_filter is not None:
                mask = self.row_filter.arrow_filter_mask(batch, self.ctx)
                if inspect.isawaitable(mask):
                    mask = await mask
                out = batch.filter(mask)  # the mask is kept: it says which source rows survive
            else:
                out = mw.process_arrow_batch(batch, self.ctx)
                if inspect.isawaitable(out):
                    out = await out
            if not hasattr(out, "num_rows") or not hasattr(out, "schema"):
                raise ContractError(
                    f"middleware {self.name!r} returned {type(out).__name__} for batch "
                    f"{unit.seq}; process_arrow_batch must return a pyarrow.RecordBatch"
                )
            if out.num_rows > n_in:
                raise ContractError(
                    f"middleware {self.name!r} returned {out.num_rows} rows for a "
                    f"{n_in}-row batch {unit.seq}; Arrow middleware may filter rows but not add them"
                )
        except Exception as exc:
            c["errored"] += n_in
            unit.errored += n_in
            rows = source_rows_of(unit) or batch.to_pylist()
            for row in rows:
                unit.failures.append(Failure(DLQStage.BATCH_MIDDLEWARE, self.name, exc, row))
            unit.batch = None
            return
        if out.num_rows != n_in:
            unit.row_map = _narrow(unit.row_map, mask, batch)
        dropped = n_in - out.num_rows
        unit.dropped += dropped
        c["dropped"] += dropped
        c["out"] += out.num_rows
        unit.batch = out


def _narrow(row_map: RowMap, mask: Any, batch: Any) -> RowMap:
    """Compose the source-row map with a filter's mask (untraceable without one)."""
    if mask is None or row_map is UNKNOWN_ROWS:
        return UNKNOWN_ROWS
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        if isinstance(mask, pc.Expression):
            # Evaluate the expression once more over the batch plus a row-number column.
            numbered = batch.append_column(
                "__agora_row__", pa.array(range(batch.num_rows), pa.int64()))
            kept = numbered.filter(mask).column("__agora_row__")
        else:
            if not isinstance(mask, (pa.Array, pa.ChunkedArray)):
                mask = pa.array(mask, pa.bool_())
            kept = pc.indices_nonzero(pc.fill_null(mask, False))
    except (pa.ArrowException, TypeError, ValueError):
        return UNKNOWN_ROWS  # tracing is best effort; the filter itself already succeeded
    return kept if row_map is None else pc.take(row_map, kept)


def _src(unit: Unit, i: int) -> Any:
    rows = unit.source_rows
    return rows[i] if rows is not None else None
