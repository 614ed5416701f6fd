"""``SinkFanOut``: every sink gets every record — as a pipeline's writer, or driven
directly (open, write, write_batch, write_arrow_batch, flush, close)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agora.planes import DataPlane, SinkDataPlaneSpec
from agora.sinks._members import (
    FanOutResult,
    NamedMember,
    parallel_write_hints,
    per_row_errors,
    write_member_rows,
)
from agora.sinks.base import BaseSink, as_sink

__all__ = ["FanOutResult", "SinkFanOut"]

if TYPE_CHECKING:
    from typing_extensions import TypeVar as _DefaultedTypeVar

    RecordT = _DefaultedTypeVar("RecordT", default=Any)
else:
    RecordT = TypeVar("RecordT")

_T = TypeVar("_T")


class SinkFanOut(Generic[RecordT]):
    """Every sink receives every record; a record counts as written if at least one sink
    wrote it. Each sink's failure is handled per record (DLQ / failure policy). On an
    Arrow chain each sink gets its own selected plane.

    Members are :class:`BaseSink` instances or objects with async ``open`` / ``write`` /
    ``close`` (adapted the way ``Pipeline.build()`` adapts them). Sinks that share a
    ``sink_name`` are told apart by the fan-out: the first keeps its name, the next are
    shown as ``name#2``, ``name#3``… (the first such name not already taken) in dead
    letters, per-sink counters and ``explain()``; the sinks themselves are not changed.
    One sink object listed twice is refused: it would receive every record twice.

    ``sink_concurrency`` (default 1: one sink after another) is how many sinks of the
    fan-out are written at once for each batch. In a pipeline the built-in file sinks
    (and any sink whose ``writes_in_thread`` attribute is true) are then written in worker
    threads — their encoding and I/O release the GIL, so they overlap for real; any other
    sink's write coroutine runs concurrently on the event loop. Results stay per sink and
    per record, the failure policies are unchanged, and a sink is never written by two
    threads at once nor flushed while a write of it is running.

    Driven directly, the fan-out is sequential unless made concurrent with
    :meth:`with_concurrency`: then ``open`` / ``flush`` / ``close`` and writes reach the
    sinks at the same time, and a sink that declares ``parallel_writes_safe`` without
    ``ordered_writes_required`` also has the records of one batch written at once."""

    def __init__(self, sinks: Iterable[Any], *, sink_concurrency: int = 1) -> None:
        if (not isinstance(sink_concurrency, int) or isinstance(sink_concurrency, bool)
                or sink_concurrency < 1):
            raise ValueError(
                f"SinkFanOut sink_concurrency must be an int >= 1 (sinks written at once); "
                f"got {sink_concurrency!r} — use 1 to write the sinks one after another"
            )
        self.sink_concurrency = sink_concurrency
        #: Set by :meth:`with_concurrency`: direct calls reach the sinks concurrently.
        self.concurrent = False
        self._given = list(sinks)
        if not self._given:
            raise ValueError("SinkFanOut needs at least one sink — pass a list of sinks")
        for i, obj in enumerate(self._given):
            for earlier in self._given[:i]:
                if earlier is obj:
                    raise ValueError(
                        f"SinkFanOut lists the same sink object twice "
                        f"({getattr(obj, 'sink_name', '') or type(obj).__name__!r}); it "
                        f"would receive every record twice — list it once, or pass two "
                        f"separate sink objects")
        self.sinks: list[BaseSink[Any]] = _distinct_names(
            [as_sink(obj, where="SinkFanOut") for obj in self._given])
        self._specs: list[SinkDataPlaneSpec] = [s.data_plane_spec() for s in self.sinks]

    def with_concurrency(self, max_concurrency: int | None = None) -> SinkFanOut[RecordT]:
        """A new fan-out over the same sinks whose direct calls run concurrently: up to
        ``max_concurrency`` sinks at once (default: all of them), and in a pipeline the
        same ``sink_concurrency``. This fan-out is left as it is."""
        if max_concurrency is not None and (
                not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool)
                or max_concurrency < 1):
            raise ValueError(
                f"SinkFanOut.with_concurrency max_concurrency must be an int >= 1 or None "
                f"(all sinks at once); got {max_concurrency!r}")
        fan: SinkFanOut[RecordT] = SinkFanOut(
            self._given, sink_concurrency=max_concurrency or len(self._given))
        fan.concurrent = True
        return fan

    def __iter__(self) -> Iterator[BaseSink[Any]]:
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)

    def bind_context(self, ctx: Any) -> None:
        """Hand ``ctx`` to each sink that has a ``bind_context`` method; the others are
        left alone."""
        for obj in self._given:
            bind = getattr(obj, "bind_context", None)
            if callable(bind):
                bind(ctx)

    # -- lifecycle, driven directly ----------------------------------------------------
    async def open(self) -> None:
        """Open every sink. If one fails, the sinks already open are closed again and the
        first error is raised."""
        if not self.concurrent:
            opened: list[BaseSink[Any]] = []
            for sink in self.sinks:
                try:
                    await sink.open()
                except Exception:
                    await _close_quietly(opened)
                    raise
                opened.append(sink)
            return
        outcomes = await self._each(lambda sink: sink.open())
        errors = [o for o in outcomes if isinstance(o, Exception)]
        if errors:
            await _close_quietly([s for s, o in zip(self.sinks, outcomes, strict=True)
                                  if not isinstance(o, Exception)])
            raise errors[0]

    async def flush(self) -> None:
        """Flush every sink — each one even if another fails; then the first error is
        raised."""
        await self._all_then_raise(lambda sink: sink.flush())

    async def close(self) -> None:
        """Close every sink — each one even if another fails; then the first error is
        raised."""
        await self._all_then_raise(lambda sink: sink.close())

    # -- writes, driven directly --------------------------------------------------------
    async def write(self, record: RecordT) -> FanOutResult:
        """Write ``record`` to every sink; never raises for a sink's failure."""
        async def one(sink: BaseSink[Any]) -> None:
            await sink.write(record)

        outcomes = await self._each(one)
        errors = tuple(o for o in outcomes if isinstance(o, Exception))
        return FanOutResult(written=len(errors) < len(outcomes), errors=errors)

    async def write_batch(self, records: Iterable[RecordT]) -> list[FanOutResult]:
        """Write ``records`` to every sink: one result per record, in order. A sink that
        takes Python batches natively gets them in one ``write_batch`` call; any other
        sink gets each record, the next written even when one fails."""
        rows = list(records)
        if not rows:
            return []
        per_sink = await self._each_indexed(
            lambda i, sink: write_member_rows(sink, self._specs[i], rows,
                                              parallel=self._row_parallelism(sink, len(rows))))
        return _merge(len(rows), [[o] * len(rows) if isinstance(o, Exception) else o
                                  for o in per_sink])

    async def write_arrow_batch(self, batch: Any) -> list[FanOutResult] | None:
        """Write an Arrow record batch to every sink: whole to a sink that takes Arrow
        natively, as rows (``batch.to_pylist()``, built once) to any other.

        Returns one result per row, in order — or None when the batch carries no row
        count (no ``num_rows``; not a ``RecordBatch``) and every sink took it whole.
        Raises TypeError when such a batch fails in some sink and has no ``to_pylist()``
        to count its rows by: the failure could not be reported per row."""
        rows: list[Any] | None = None

        def as_rows() -> list[Any]:
            nonlocal rows
            if rows is None:
                to_pylist = getattr(batch, "to_pylist", None)
                if not callable(to_pylist):
                    raise TypeError(
                        f"SinkFanOut.write_arrow_batch needs a record batch with to_pylist() "
                        f"for sinks that do not take Arrow natively; got "
                        f"{type(batch).__name__} — pass a pyarrow.RecordBatch")
                rows = list(to_pylist())
            return rows

        needs_rows = any(DataPlane.ARROW_BATCHES not in spec.native_planes
                         for spec in self._specs)
        if needs_rows:
            as_rows()  # built once here, never raced for by concurrent sink writes

        async def one(i: int, sink: BaseSink[Any]) -> _SinkOutcome:
            if DataPlane.ARROW_BATCHES in self._specs[i].native_planes:
                return _ArrowReturn(await sink.write_arrow_batch(batch))
            data = as_rows()
            return await write_member_rows(sink, self._specs[i], data,
                                           parallel=self._row_parallelism(sink, len(data)))

        outcomes = await self._each_indexed(one)
        n = _row_count(batch, rows)
        if n < 0:
            if all(isinstance(o, _ArrowReturn) and o.results is None for o in outcomes):
                return None
            sized = [o.results for o in outcomes
                     if isinstance(o, _ArrowReturn) and isinstance(o.results, list)]
            if sized:
                n = len(sized[0])
            else:
                try:
                    n = len(as_rows())
                except TypeError as exc:
                    first = next((o for o in outcomes if isinstance(o, Exception)), exc)
                    raise TypeError(
                        f"SinkFanOut.write_arrow_batch: a sink failed on a "
                        f"{type(batch).__name__} that has neither num_rows nor to_pylist(), "
                        f"so the failure cannot be reported per row — pass a "
                        f"pyarrow.RecordBatch") from first
        per_sink: list[list[Exception | None]] = []
        for sink, outcome in zip(self.sinks, outcomes, strict=True):
            if isinstance(outcome, Exception):
                per_sink.append([outcome] * n)
            elif isinstance(outcome, _ArrowReturn):
                per_sink.append(per_row_errors(sink, "write_arrow_batch", outcome.results, n))
            else:
                per_sink.append(outcome)
        return _merge(n, per_sink)

    # -- helpers -----------------------------------------------------------------------
    def _row_parallelism(self, sink: BaseSink[Any], n: int) -> int:
        if not self.concurrent:
            return 1
        safe, ordered = parallel_write_hints(sink)
        return n if safe and not ordered else 1

    async def _each(self, call: Callable[[BaseSink[Any]], Awaitable[_T]]
                    ) -> list[_T | Exception]:
        return await self._each_indexed(lambda _i, sink: call(sink))

    async def _each_indexed(self, call: Callable[[int, BaseSink[Any]], Awaitable[_T]]
                            ) -> list[_T | Exception]:
        """``call`` for every sink, in sink order: one after another, or up to
        ``sink_concurrency`` at once when concurrent. A raised exception is returned in
        the sink's place; every call has ended when this returns."""
        async def guarded(i: int, sink: BaseSink[Any]) -> _T | Exception:
            try:
                return await call(i, sink)
            except Exception as exc:
                return exc

        if not self.concurrent or len(self.sinks) == 1:
            return [await guarded(i, s) for i, s in enumerate(self.sinks)]
        gate = asyncio.Semaphore(self.sink_concurrency)

        async def gated(i: int, sink: BaseSink[Any]) -> _T | Exception:
            async with gate:
                return await guarded(i, sink)

        return list(await asyncio.gather(*(gated(i, s) for i, s in enumerate(self.sinks))))

    async def _all_then_raise(self, call: Callable[[BaseSink[Any]], Awaitable[None]]) -> None:
        for outcome in await self._each(call):
            if isinstance(outcome, Exception):
                raise outcome


class _ArrowReturn:
    """What a sink's ``write_arrow_batch`` returned, kept until the row count is known."""

    __slots__ = ("results",)

    def __init__(self, results: Any) -> None:
        self.results = results


_SinkOutcome = _ArrowReturn | list[Exception | None]


def _row_count(batch: Any, rows: list[Any] | None) -> int:
    """Rows in ``batch`` (``num_rows``, else the rows built from it); -1 when unknown."""
    n = getattr(batch, "num_rows", None)
    if isinstance(n, int):
        return n
    return len(rows) if rows is not None else -1


def _merge(n: int, per_sink: list[list[Exception | None]]) -> list[FanOutResult]:
    """Per-sink lists of error-or-None → one result per record, errors in sink order."""
    out: list[FanOutResult] = []
    for i in range(n):
        errors = tuple(e for errs in per_sink if (e := errs[i]) is not None)
        out.append(FanOutResult(written=len(errors) < len(per_sink), errors=errors))
    return out


def _distinct_names(sinks: list[BaseSink[Any]]) -> list[BaseSink[Any]]:
    """``sinks`` with every repeated name made distinct (``name#2``, ``name#3``…)."""
    taken = {s.sink_name for s in sinks}
    seen: set[str] = set()
    out: list[BaseSink[Any]] = []
    for sink in sinks:
        name = sink.sink_name
        if name not in seen:
            seen.add(name)
            out.append(sink)
            continue
        k = 2
        while f"{name}#{k}" in taken:
            k += 1
        distinct = f"{name}#{k}"
        taken.add(distinct)
        seen.add(distinct)
        out.append(NamedMember(sink, distinct))
    return out


async def _close_quietly(sinks: list[BaseSink[Any]]) -> None:
    """Close sinks after another sink failed to open; the open failure is what the caller
    raises, so a close error here would only hide it."""
    for sink in sinks:
        try:
            await sink.close()
        except Exception:  # the original open error is raised by the caller
            pass
