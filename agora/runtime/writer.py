"""Delivering a unit's surviving records to the writer (one sink, a fan-out or a
router), each sink on its planned plane, and turning every per-record outcome into
counts and ``Failure`` entries for the committer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from agora.errors import ContractError
from agora.failures import classify_failure
from agora.planes import DataPlane
from agora.records import DLQStage, WriteResult
from agora.runtime.plan import Plan, SinkPlan
from agora.runtime.units import GONE, Failure, Unit, source_rows_of
from agora.sinks._members import NamedMember
from agora.sinks.base import BaseSink
from agora.sinks.csv import CsvSink
from agora.sinks.jsonl import JsonLinesSink
from agora.sinks.parquet import ParquetSink
from agora.sinks.router import SinkRouter

__all__ = ["SinkTally", "Writer"]


@dataclass(slots=True)
class SinkTally:
    """One sink's running counts: records it wrote, records it rejected."""

    written: int = 0
    failed: int = 0


class Writer:
    """Writes units; never raises for a sink failure (those become ``Failure`` entries)."""

    def __init__(self, plan: Plan, router: SinkRouter | None, *, sink_concurrency: int = 1) -> None:
        self.plan = plan
        self.router = router
        self.sink_plans = plan.sinks
        self.sink_concurrency = sink_concurrency if len(plan.sinks) > 1 else 1
        self.unrouted = 0
        self.per_sink: dict[str, SinkTally] = {sp.sink.sink_name: SinkTally() for sp in plan.sinks}
        # Hand-offs to the sinks (0.3.0's "writer flushes"): units with records to write,
        # the largest, and the seconds spent writing them.
        self.flushes = self.flush_max = 0
        self.flush_s = 0.0
        self._single = plan.sinks[0] if router is None and len(plan.sinks) == 1 else None

    async def write(self, unit: Unit) -> None:
        payload = _Payload(unit)
        n = payload.n
        if n == 0:
            return
        began = time.perf_counter()
        if self._single is not None:  # one sink, no router: the common case first
            sp = self._single
            results = await _write_one(sp, unit, payload, n)
            if results is None:  # every record written
                self.per_sink[sp.sink.sink_name].written += n
                unit.written += n
                self._count_flush(n, began)
                return
            outcome = _Outcome(n)
            self._collect(sp, results, outcome, payload)
            self._settle(unit, outcome, n)
            self._count_flush(n, began)
            return
        # Per-record bookkeeping is built lazily: the common case (every sink wrote every
        # record) costs O(sinks), not O(records).
        outcome = _Outcome(n)
        if self.router is not None:
            await self._write_routed(payload.rows(), outcome, payload)
        else:
            if self.sink_concurrency > 1:
                all_results = await self._write_concurrently(unit, payload, n)
            else:
                all_results = [await _write_one(sp, unit, payload, n) for sp in self.sink_plans]
            for sp, results in zip(self.sink_plans, all_results, strict=True):
                if results is not None:
                    self._collect(sp, results, outcome, payload)
                else:
                    self.per_sink[sp.sink.sink_name].written += n
                    outcome.all_written = True
        self._settle(unit, outcome, n)
        self._count_flush(n, began)

    def _settle(self, unit: Unit, outcome: _Outcome, n: int) -> None:
        """Count ``outcome`` into ``unit`` and hand it the failures, in record order."""
        written = outcome.written_count()
        errored = outcome.errored_count() if outcome.failed else 0
        if outcome.failed:
            unit.partially_written += len(outcome.failed) - errored
        unrouted = n - written - errored  # only a router leaves a record neither written nor failed
        unit.written += written
        unit.errored += errored
        if unrouted:
            unit.dropped += unrouted
            self.unrouted += unrouted
        if outcome.failed:
            for i in sorted(outcome.failed):
                unit.failures.extend(outcome.failed[i])

    def _count_flush(self, n: int, began: float) -> None:
        self.flushes += 1
        if n > self.flush_max:
            self.flush_max = n
        self.flush_s += time.perf_counter() - began

    async def _write_concurrently(self, unit: Unit, payload: _Payload,
                                  n: int) -> list[list[WriteResult] | Exception | None]:
        """Write every sink of the fan-out, at most ``sink_concurrency`` at once; results in
        sink order. Returns only when every write has ended, even if cancelled meanwhile:
        a write running in a thread cannot be stopped, and the sink must not be flushed or
        closed under it."""
        if any(sp.selected is not DataPlane.ARROW_BATCHES for sp in self.sink_plans):
            payload.rows()  # materialised once here, not raced for by the threads
        gate = asyncio.Semaphore(self.sink_concurrency)

        async def one(sp: SinkPlan) -> list[WriteResult] | Exception | None:
            async with gate:
                if writes_in_thread(sp.sink):
                    return await asyncio.to_thread(_run_on_private_loop,
                                                   _write_one(sp, unit, payload, n))
                return await _write_one(sp, unit, payload, n)

        tasks = [asyncio.ensure_future(one(sp)) for sp in self.sink_plans]
        cancelled = False
        while True:
            try:
                await asyncio.wait(tasks)
                break
            except asyncio.CancelledError:
                cancelled = True  # finish the writes first (bounded: one batch each)
        if cancelled:
            raise asyncio.CancelledError
        return [t.result() for t in tasks]

    def _collect(self, sp: SinkPlan, results: list[WriteResult] | Exception,
                 outcome: _Outcome, payload: _Payload) -> None:
        stats = self.per_sink[sp.sink.sink_name]
        if isinstance(results, Exception):
            results = [WriteResult.failed(results)] * outcome.n
        rows = payload.rows()
        for i, res in enumerate(results):
            if res.written:
                outcome.mark_written(i)
                stats.written += 1
            else:
                stats.failed += 1
                error = res.error or ContractError(
                    f"sink {sp.sink.sink_name!r} reported record {i} not written without an error"
                )
                outcome.fail(i, Failure(
                    DLQStage.SINK_WRITE, sp.sink.sink_name, error, payload[i],
                    processed_record=rows[i], is_sink=True,
                ))

    async def _write_routed(self, rows: list[Any], outcome: _Outcome, payload: _Payload) -> None:
        router = self.router
        assert router is not None
        for i, row in enumerate(rows):
            origin = payload[i]
            try:
                sink = router.select(row)
            except Exception as exc:
                outcome.fail(i, Failure(DLQStage.SINK_WRITE, "router", exc, origin, row, is_sink=True))
                continue
            if sink is None:
                continue
            stats = self.per_sink[sink.sink_name]
            try:
                await sink.write(row)
            except Exception as exc:
                stats.failed += 1
                outcome.fail(i, Failure(DLQStage.SINK_WRITE, sink.sink_name, exc, origin, row, is_sink=True))
                if not classify_failure(exc).dlq_eligible:
                    # The run stops on this failure of the medium: route nothing more of
                    # the unit (each further write is one more duplicate for the re-run,
                    # or one more wait on the outage); the rest is reported not written.
                    for j in range(i + 1, len(rows)):
                        outcome.fail(j, Failure(DLQStage.SINK_WRITE, sink.sink_name, exc,
                                                payload[j], rows[j], is_sink=True))
                    return
            else:
                stats.written += 1
                outcome.mark_written(i)


class _Payload:
    """The records of one unit as the writer delivers them, and — only if a record fails —
    the records as the source emitted them (``payload[i]``), for dead letters."""

    __slots__ = ("unit", "n", "_rows", "_idx", "_src")

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self._idx: list[int] | None = None
        self._src: list[Any] | None = None
        if unit.batch is not None:
            self._rows: list[Any] | None = None  # materialised once, shared by row-plane sinks
            self.n = unit.batch.num_rows
        elif unit.values is None:
            self._rows, self.n = [], 0
        elif unit.dropped == 0 and unit.errored == 0:
            self._rows = unit.values  # nothing removed upstream: no copy
            self.n = len(unit.values)
        else:
            values = unit.values
            self._idx = [i for i, v in enumerate(values) if v is not GONE]
            self._rows = [values[i] for i in self._idx]
            self.n = len(self._rows)

    def rows(self) -> list[Any]:
        if self._rows is None:
            self._rows = self.unit.batch.to_pylist()
        return self._rows

    def __getitem__(self, i: int) -> Any:
        if self._src is None:
            unit = self.unit
            if unit.batch is not None:
                self._src = source_rows_of(unit) or self.rows()
            elif unit.source_rows is None:
                self._src = self.rows()
            elif self._idx is None:
                self._src = unit.source_rows
            else:
                self._src = [unit.source_rows[j] for j in self._idx]
        return self._src[i]


class _Outcome:
    """Per-record results of one unit across sinks, allocated only when needed."""

    __slots__ = ("n", "all_written", "mask", "failed")

    def __init__(self, n: int) -> None:
        self.n = n
        self.all_written = False  # some sink wrote every record
        self.mask: bytearray | None = None
        self.failed: dict[int, list[Failure]] = {}

    def mark_written(self, i: int) -> None:
        if self.mask is None:
            self.mask = bytearray(self.n)
        self.mask[i] = 1

    def fail(self, i: int, failure: Failure) -> None:
        self.failed.setdefault(i, []).append(failure)

    def is_written(self, i: int) -> bool:
        return self.all_written or (self.mask is not None and self.mask[i] == 1)

    def written_count(self) -> int:
        if self.all_written:
            return self.n
        return 0 if self.mask is None else self.mask.count(1)

    def errored_count(self) -> int:
        return sum(1 for i in self.failed if not self.is_written(i))


#: Sinks whose writes only touch their own file and encoder and release the GIL while
#: encoding: safe to write from a worker thread. Exact types: a subclass may add state
#: bound to the event loop, so it must opt in with ``writes_in_thread = True``.
_THREAD_SAFE_SINKS: frozenset[type] = frozenset({CsvSink, JsonLinesSink, ParquetSink})


def writes_in_thread(sink: BaseSink) -> bool:
    """Whether a concurrent fan-out writes ``sink`` in a worker thread (a member renamed
    by its fan-out is judged as the sink it is)."""
    while isinstance(sink, NamedMember):
        sink = sink.inner
    flag = getattr(sink, "writes_in_thread", None)
    if flag is not None:
        return bool(flag)
    return type(sink) in _THREAD_SAFE_SINKS


def _run_on_private_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a sink's write coroutine to its end in this worker thread, on a loop of its own
    (a write that awaits, e.g. ``asyncio.to_thread``, works as on the main loop)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


async def _write_one(sp: SinkPlan, unit: Unit, payload: _Payload,
                     n: int) -> list[WriteResult] | Exception | None:
    """One sink's write of one unit, on its planned plane; never raises for a sink error."""
    if sp.selected is DataPlane.ARROW_BATCHES:
        return await _call(sp, "write_arrow_batch", sp.sink.write_arrow_batch, unit.batch, n)
    if sp.selected is DataPlane.PYTHON_BATCHES:
        return await _call(sp, "write_batch", sp.sink.write_batch, payload.rows(), n)
    return await _write_rows(sp, payload.rows())


async def _call(sp: SinkPlan, method: str,
                write: Callable[[Any], Awaitable[list[WriteResult] | None]], payload: Any,
                n: int) -> list[WriteResult] | Exception | None:
    try:
        results = await write(payload)
    except Exception as exc:
        return exc
    if results is None:
        return None
    if not isinstance(results, list) or len(results) != n or not all(
        isinstance(r, WriteResult) for r in results
    ):
        got = f"{len(results)} items" if isinstance(results, list) else type(results).__name__
        return ContractError(
            f"sink {sp.sink.sink_name!r} returned {got} from {method}() for {n} records; it "
            f"must return None or exactly one WriteResult per input record, in order"
        )
    return results


async def _write_rows(sp: SinkPlan, rows: list[Any]) -> list[WriteResult] | None:
    """Write ``rows`` one by one. After a failure of the medium (not DLQ-eligible: the
    run will stop on it) the rest are not tried — each try would wait on the same
    outage — and are reported not written, with that error."""
    write = sp.sink.write
    results: list[WriteResult] | None = None
    for i, row in enumerate(rows):
        try:
            await write(row)
        except Exception as exc:
            if results is None:
                results = [WriteResult.ok()] * i
            results.append(WriteResult.failed(exc))
            if not classify_failure(exc).dlq_eligible:
                results.extend([WriteResult.failed(exc)] * (len(rows) - i - 1))
                return results
        else:
            if results is not None:
                results.append(WriteResult.ok())
    return results
