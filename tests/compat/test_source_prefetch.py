"""Source prefetch (``supports_prefetch = True``, ``prefetch_limit = N``): a bounded
read-ahead that keeps source order, raises a source failure after the emissions read
before it, stops with the run, and never lets a checkpoint pass an emission still queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agora import (
    BaseSink,
    BaseSource,
    DeliveryConfig,
    FailurePolicy,
    InMemoryCheckpointStore,
    IterableSource,
    MemorySink,
    Pipeline,
    PipelineError,
)
from agora.planes import DataPlane, SourceDataPlaneSpec
from agora.runtime.prefetch import DEFAULT_PREFETCH_LIMIT, SourcePrefetch

READER_TASK = "agora-source-prefetch"


class PrefetchRows(IterableSource):
    """A checkpoint-capable row source (its position: records emitted) that asks to be
    read ahead by ``limit``; ``read`` counts what the reader took from it."""

    supports_prefetch = True

    def __init__(self, records: list[Any], *, limit: int = 2) -> None:
        super().__init__(records, name="prefetch_rows")
        self.prefetch_limit = limit
        self.closes = 0

    @property
    def read(self) -> int:
        return self.current_checkpoint()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


class EndlessPrefetchSource(BaseSource[int]):
    """Yields 0, 1, 2 … forever, each after ``pause`` seconds; notes when its stream ends."""

    source_name = "endless_prefetch"
    supports_prefetch = True
    prefetch_limit = 3

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.yielded = 0
        self.closes = 0
        self.stream_closed = False

    async def stream(self) -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(self.pause)
                self.yielded += 1
                yield self.yielded - 1
        finally:
            self.stream_closed = True

    async def close(self) -> None:
        self.closes += 1


class BreaksAfter(BaseSource[int]):
    """Yields ``records`` then raises ``RuntimeError("source broke after …")``."""

    source_name = "breaks_after"
    supports_prefetch = True
    prefetch_limit = 2

    def __init__(self, records: list[int]) -> None:
        self.records = records

    async def stream(self) -> AsyncIterator[int]:
        for record in self.records:
            yield record
        raise RuntimeError(f"source broke after {self.records[-1]}")


class SlowSink(BaseSink):
    """Keeps rows, sleeping ``pause`` seconds per row; raises on rows ``fail(row)`` is
    true for; ``gaps`` notes, at each write, how far the source had been read past it."""

    sink_name = "slow"

    def __init__(self, *, pause: float = 0.005, fail: Callable[[Any], bool] = lambda r: False,
                 read: Callable[[], int] | None = None) -> None:
        self.pause = pause
        self.fail = fail
        self.read = read
        self.rows: list[Any] = []
        self.gaps: list[int] = []

    async def write(self, record: Any) -> None:
        if self.read is not None:
            self.gaps.append(self.read() - len(self.rows))
        await asyncio.sleep(self.pause)
        if self.fail(record):
            raise ValueError(f"slow sink rejects {record!r}")
        self.rows.append(record)


def _reader_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == READER_TASK and not t.done()]


# -- order, bound, figures ----------------------------------------------------------------

def test_prefetch_keeps_source_order_and_reports_what_it_measured() -> None:
    source = PrefetchRows(list(range(20)), limit=2)
    sink = SlowSink(read=lambda: source.read)
    summary = Pipeline(source).build(sink).run_sync()
    assert sink.rows == list(range(20))
    assert summary.records_written == 20
    runtime = summary.runtime
    assert runtime.source_prefetch_enabled is True
    assert runtime.source_prefetch_limit == 2
    # The sink is slower than the source: the queue filled, and never past its bound.
    assert 1 <= runtime.source_prefetch_max_depth <= 2
    assert runtime.source_prefetch_block_count >= 1
    # Read ahead of the record being written: at most the bound plus that record.
    assert max(sink.gaps) <= 2 + 1
    assert max(sink.gaps) >= 2  # the read-ahead really ran ahead
    assert summary.to_dict()["runtime"]["source_prefetch_limit"] == 2


def test_a_source_that_does_not_ask_is_read_on_demand_with_no_reader_task() -> None:
    seen: list[list[asyncio.Task[Any]]] = []

    class Watching(BaseSink):
        sink_name = "watching"

        async def write(self, record: Any) -> None:
            seen.append(_reader_tasks())

    bound = Pipeline(IterableSource([1, 2, 3])).build(Watching())
    assert bound.explain().source_prefetch_limit is None
    summary = bound.run_sync()
    assert len(seen) == 3 and all(tasks == [] for tasks in seen)
    assert (summary.runtime.source_prefetch_enabled, summary.runtime.source_prefetch_limit,
            summary.runtime.source_prefetch_max_depth,
            summary.runtime.source_prefetch_block_count) == (False, 0, 0, 0)


def test_explain_shows_the_read_ahead_bound_and_the_default() -> None:
    explain = Pipeline(PrefetchRows([1], limit=4)).build(MemorySink()).explain()
    assert explain.source_prefetch_limit == 4
    assert explain.to_dict()["source_prefetch_limit"] == 4
    assert "read ahead 4" in str(explain)

    class NoLimitGiven(BaseSource[int]):
        supports_prefetch = True

        async def stream(self) -> AsyncIterator[int]:
            yield 1

    default = Pipeline(NoLimitGiven()).build(MemorySink()).explain()
    assert default.source_prefetch_limit == DEFAULT_PREFETCH_LIMIT


@pytest.mark.parametrize("limit", [0, -1, "2", 2.5, True, None])
def test_a_bad_prefetch_limit_is_a_build_error_naming_the_source(limit: Any) -> None:
    source = PrefetchRows([1, 2], limit=limit)
    sink = MemorySink()
    bound = Pipeline(source).build(sink)
    with pytest.raises(PipelineError, match=r"source 'prefetch_rows': prefetch_limit must be "
                       r"an int >= 1; got .* — set it"):
        bound.explain()
    with pytest.raises(PipelineError, match="prefetch_limit must be an int >= 1"):
        bound.run_sync()
    assert source.read == 0 and sink.records == []  # nothing was read or written


def test_the_reader_never_holds_more_than_the_limit_untaken() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        source = EndlessPrefetchSource()
        prefetch = SourcePrefetch(source.stream(), limit=3, position=lambda: source.yielded)
        ahead: list[int] = []
        taken: list[int] = []
        for _ in range(10):
            taken.append(await prefetch.__anext__())
            for _ in range(5):  # give the reader every chance to run further ahead
                await asyncio.sleep(0)
            ahead.append(source.yielded - len(taken))
        await prefetch.aclose()
        assert source.stream_closed and _reader_tasks() == []
        return taken, ahead

    taken, ahead = asyncio.run(scenario())
    assert taken == list(range(10))
    assert max(ahead) == 3  # it fills up to the bound, and never past it


def test_the_read_ahead_counts_against_max_buffer_size() -> None:
    source = PrefetchRows(list(range(30)), limit=10)
    sink = SlowSink(read=lambda: source.read)
    summary = Pipeline(source).build(sink, delivery=DeliveryConfig(
        max_buffer_size=3)).run_sync()
    assert sink.rows == list(range(30))
    # Records read and not yet written stay within max_buffer_size (one emission more
    # at most), though the read-ahead alone would allow 10.
    assert max(sink.gaps) <= 3 + 1
    assert summary.runtime.source_prefetch_max_depth <= 3
    assert summary.runtime.source_prefetch_block_count >= 1


def test_max_records_stops_a_prefetching_source_at_the_limit() -> None:
    source = EndlessPrefetchSource()
    sink = MemorySink()
    summary = Pipeline(source).build(sink).run_sync(max_records=5)
    assert sink.records == [0, 1, 2, 3, 4]
    assert summary.records_consumed == 5
    assert source.yielded == 5  # the read-ahead sits above the limit: nothing past it is read
    assert source.closes == 1 and source.stream_closed


@pytest.mark.timeout(20)
def test_a_slow_prefetching_source_with_a_flush_deadline_loses_and_repeats_nothing() -> None:
    # The pump gives up *waiting* for the next record after the flush deadline and asks
    # again later: a wait given up must never drop or repeat a queued record.
    source = EndlessPrefetchSource(pause=0.003)
    sink = MemorySink()
    summary = Pipeline(source).build(sink, delivery=DeliveryConfig(
        batch_size=4, batch_flush_interval_ms=1)).run_sync(max_records=40)
    assert sink.records == list(range(40))
    assert summary.records_written == 40 and summary.runtime.source_prefetch_enabled


def test_a_prefetching_batch_source_keeps_order_and_each_batch_position() -> None:
    class PrefetchBatches(BaseSource[Any]):
        source_name = "prefetch_batches"
        supports_checkpoint = True
        supports_prefetch = True
        prefetch_limit = 2

        def __init__(self) -> None:
            self.emitted = 0

        def data_plane_spec(self) -> SourceDataPlaneSpec:
            return SourceDataPlaneSpec.for_plane(self.source_name, DataPlane.PYTHON_BATCHES)

        def current_checkpoint(self) -> int:
            return self.emitted

        async def prepare_resume(self, checkpoint: Any) -> None:
            value = getattr(checkpoint, "value", checkpoint)
            self.emitted = 0 if value is None else int(value)

        async def stream_batches(self) -> AsyncIterator[Any]:
            while self.emitted < 6:
                batch = [{"id": 3 * self.emitted + i} for i in range(3)]
                self.emitted += 1
                yield batch

    store = InMemoryCheckpointStore()
    source = PrefetchBatches()
    sink = SlowSink(fail=lambda r: r["id"] == 7)  # in the third batch
    bound = Pipeline(source, id="batches").build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    with pytest.raises(ValueError, match="rejects"):
        bound.run_sync()
    # The batch holding the failed record is written but for it, then the run stops.
    assert [r["id"] for r in sink.rows] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert source.emitted >= 4  # batches past the failed one had been read ahead
    assert bound.last_summary is not None
    assert bound.last_summary.last_checkpoint_value == 2  # after batch 1, not a queued one


# -- failures -------------------------------------------------------------------------

def test_a_source_failure_comes_after_the_records_read_before_it() -> None:
    sink = SlowSink()
    bound = Pipeline(BreaksAfter([10, 20, 30])).build(sink)
    with pytest.raises(RuntimeError, match="source broke after 30"):
        bound.run_sync()
    assert sink.rows == [10, 20, 30]  # nothing queued was lost, nothing turned into a clean end
    assert bound.last_summary is not None and bound.last_summary.outcome == "failed"


def test_a_failed_run_saves_a_checkpoint_before_the_records_still_queued() -> None:
    store = InMemoryCheckpointStore()
    source = PrefetchRows(list(range(10)), limit=3)
    sink = SlowSink(fail=lambda r: r == 4, read=lambda: source.read)
    bound = Pipeline(source, id="queued").build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    with pytest.raises(ValueError, match="slow sink rejects 4"):
        bound.run_sync()
    assert sink.rows == [0, 1, 2, 3]
    # When record 4 failed the reader had already read past it (records 5… were queued):
    assert sink.gaps[-1] >= 2
    summary = bound.last_summary
    assert summary is not None and summary.last_checkpoint_value == 4  # after record 3
    assert source.closes == 1

    # A new run resumes at record 4: nothing that was only queued is skipped.
    again = PrefetchRows(list(range(10)), limit=3)
    good = SlowSink(pause=0.0)
    Pipeline(again, id="queued").build(
        good, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1)).run_sync()
    assert good.rows == list(range(4, 10))


def test_ack_callbacks_belong_to_their_own_records_though_the_reader_ran_ahead() -> None:
    class AckedRows(PrefetchRows):
        def __init__(self, records: list[Any]) -> None:
            super().__init__(records, limit=3)
            self.acked: list[Any] = []
            self._current: Any = None

        def delivery_success_callback(self) -> Callable[[], Any]:
            current = self._current  # the record just emitted, as 0.3.0 sources do it

            async def ack() -> None:
                self.acked.append(current)

            return ack

        async def stream(self) -> AsyncIterator[Any]:
            async for record in super().stream():
                self._current = record
                yield record

    source = AckedRows(list(range(8)))
    sink = SlowSink(fail=lambda r: r == 5, read=lambda: source.read)
    Pipeline(source).build(sink, delivery=DeliveryConfig(
        failure_policy=FailurePolicy.LOG_AND_CONTINUE)).run_sync()
    assert max(sink.gaps) >= 2  # the reader was ahead while records were written
    # Each written record is acknowledged by its own callback — the failed one (no DLQ
    # captured it) by none — never by the callback of a record read ahead meanwhile.
    assert source.acked == [0, 1, 2, 3, 4, 6, 7]


# -- stopping -------------------------------------------------------------------------

@pytest.mark.timeout(20)
def test_cancelling_the_run_stops_the_reader_and_closes_the_source_once() -> None:
    source = EndlessPrefetchSource(pause=0.001)
    sink = SlowSink(pause=0.002)

    async def scenario() -> None:
        task = asyncio.create_task(Pipeline(source).build(sink).run())
        while len(sink.rows) < 5:
            await asyncio.sleep(0.005)
        assert _reader_tasks() != []  # the vacuity guard: the reader was running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _reader_tasks() == []

    asyncio.run(scenario())
    assert source.closes == 1 and source.stream_closed
    assert source.yielded - len(sink.rows) <= 3 + 1  # read ahead by the bound at most


@pytest.mark.timeout(20)
def test_a_failing_sink_stops_the_reader_and_closes_the_source_once() -> None:
    source = EndlessPrefetchSource()
    sink = SlowSink(fail=lambda r: r == 3)

    async def scenario() -> None:
        with pytest.raises(ValueError, match="rejects 3"):
            await Pipeline(source).build(sink).run()
        assert _reader_tasks() == []

    asyncio.run(scenario())
    assert source.closes == 1 and source.stream_closed
    assert source.yielded <= 4 + 3  # up to the failing record, plus the bound
