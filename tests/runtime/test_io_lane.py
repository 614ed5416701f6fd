"""The I/O lane: up to N records in flight per async stage, yet sinks, DLQ and the
checkpoint see records strictly in source order; failures are handled once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import (
    AsyncMiddleware,
    DeliveryConfig,
    FailurePolicy,
    MapMiddleware,
    Middleware,
    Pipeline,
    PipelineError,
)
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore


class ReverseLatency(AsyncMiddleware):
    """Later records of each group of ``spread`` finish first; counts calls in flight."""

    def __init__(self, concurrency: int, *, spread: int = 8, fail_ids: set[int] = frozenset(),
                 drop_ids: set[int] = frozenset()) -> None:
        self.name = "enrich"
        self.concurrency = concurrency
        self.spread = spread
        self.fail_ids = fail_ids
        self.drop_ids = drop_ids
        self.running = 0
        self.peak = 0
        self.finished: list[int] = []

    async def process(self, record: dict[str, Any], ctx: Any) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.002 * (self.spread - record["id"] % self.spread))
        finally:
            self.running -= 1
        self.finished.append(record["id"])
        if record["id"] in self.fail_ids:
            raise ValueError(f"lookup failed for {record['id']}")
        if record["id"] in self.drop_ids:
            return None
        return {**record, "enriched": True}


class MemoryDLQ(FlakySink):
    def __init__(self) -> None:
        super().__init__(name="dlq")

    async def write_batch(self, records):  # keeps the DLQRecord objects
        self.rows.extend(records)
        return None


def rows(n: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(n)]


def run(mw: Any, n: int = 40, *, extra: tuple[Any, ...] = (), **delivery: Any):
    sink = FlakySink()
    store = RecordingStore()
    bound = (Pipeline(RecordingSource(rows(n)))
             .pipe(mw, *extra)
             .build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1,
                                                  **delivery)))
    summary = bound.run_sync()
    return sink, store, summary


@pytest.mark.timeout(20)
def test_out_of_order_completion_reaches_the_sink_in_source_order():
    mw = ReverseLatency(8)
    seen: list[int] = []
    sink, _, s = run(mw, extra=(MapMiddleware(lambda r: seen.append(r["id"]) or r),))
    assert mw.peak == 8
    assert mw.finished[:8] != sorted(mw.finished[:8])  # completion really was out of order
    assert [r["id"] for r in sink.rows] == list(range(40)) == seen
    assert all(r["enriched"] for r in sink.rows)
    assert s.records_written == 40
    m = s.by_middleware["enrich"]
    assert (m["lane"], m["concurrency"], m["peak_in_flight"]) == ("io", 8, 8)
    assert m["in"] == m["out"] == 40
    assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_p99_ms"]


@pytest.mark.timeout(20)
def test_concurrency_bounds_records_in_flight_across_units():
    mw = ReverseLatency(3)
    sink, _, _ = run(mw, batch_size=5)  # groups of 5 records, still at most 3 calls at once
    assert mw.peak == 3
    assert [r["id"] for r in sink.rows] == list(range(40))


class CheckpointWatch(AsyncMiddleware):
    """Records the saved checkpoint as each call starts: never past an unfinished record."""

    concurrency = 6

    def __init__(self, store: RecordingStore) -> None:
        self.name = "watch"
        self.store = store
        self.open_ids: set[int] = set()
        self.violations: list[tuple[Any, int]] = []

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        self.open_ids.add(record["id"])
        await asyncio.sleep(0.001 * (6 - record["id"] % 6))
        for saved in self.store.saves:
            if any(i < saved for i in self.open_ids):  # position saved covers open record i
                self.violations.append((saved, min(self.open_ids)))
        self.open_ids.discard(record["id"])
        return record


@pytest.mark.timeout(20)
def test_checkpoint_never_passes_a_record_in_flight():
    store = RecordingStore()
    mw = CheckpointWatch(store)
    sink = FlakySink()
    (Pipeline(RecordingSource(rows(60))).pipe(mw)
     .build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1)).run_sync())
    assert mw.violations == []
    assert store.saves == sorted(store.saves) and store.saves[-1] == 60
    assert len(store.saves) > 5  # it did advance during the run, not only at the end


@pytest.mark.timeout(20)
def test_failing_record_goes_to_the_dlq_once_in_source_order():
    dlq = MemoryDLQ()
    sink, _, s = run(ReverseLatency(8, fail_ids={3, 17}, drop_ids={5}), dlq=dlq)
    assert [r["id"] for r in sink.rows] == [i for i in range(40) if i not in (3, 5, 17)]
    assert [(d.record, d.middleware, d.stage) for d in dlq.rows] == [
        ({"id": 3}, "enrich", "middleware"), ({"id": 17}, "enrich", "middleware")]
    assert "lookup failed for 3" in dlq.rows[0].error_message
    assert s.records_errored == 2 and s.records_dropped == 1


@pytest.mark.timeout(20)
def test_fail_closed_stops_at_the_failing_record_and_keeps_the_prefix():
    with pytest.raises(ValueError, match="lookup failed for 9"):
        run(ReverseLatency(8, fail_ids={9}), failure_policy=FailurePolicy.FAIL_CLOSED)


@pytest.mark.timeout(20)
def test_fail_closed_checkpoint_stops_before_the_failing_record():
    store = RecordingStore()
    sink = FlakySink()
    bound = (Pipeline(RecordingSource(rows(40))).pipe(ReverseLatency(8, fail_ids={9}))
             .build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1,
                                                  failure_policy=FailurePolicy.FAIL_CLOSED)))
    with pytest.raises(ValueError):
        bound.run_sync()
    assert [r["id"] for r in sink.rows] == list(range(9))
    assert max(store.saves) <= 9  # never past record 9, which failed


@pytest.mark.timeout(20)
def test_max_buffer_size_bounds_records_held():
    mw = ReverseLatency(16)
    sink, _, _ = run(mw, max_buffer_size=4)
    assert mw.peak <= 5  # the engine commits once more than 4 records are held
    assert [r["id"] for r in sink.rows] == list(range(40))


class OldSpelling(Middleware):
    """Upstream's spelling: ``submit(record, ctx)`` plus ``min_concurrency``."""

    min_concurrency = 4

    def __init__(self) -> None:
        self.name = "old"
        self.running = self.peak = 0

    async def submit(self, record: dict[str, int], ctx: Any) -> Any:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.001 * (4 - record["id"] % 4))
        self.running -= 1
        return {**record, "old": True}


@pytest.mark.timeout(20)
def test_submit_and_min_concurrency_spelling_joins_the_lane():
    mw = OldSpelling()
    sink, _, _ = run(mw, n=12)
    assert mw.peak == 4
    assert [r["id"] for r in sink.rows] == list(range(12)) and sink.rows[0]["old"]


@pytest.mark.parametrize("bad", [0, -2, 2.5, "8", True])
def test_a_bad_concurrency_is_refused_at_planning_naming_the_stage(bad: Any):
    mw = ReverseLatency(4)
    mw.concurrency = bad
    source, sink = RecordingSource(rows(3)), FlakySink()
    bound = Pipeline(source).pipe(mw).build(sink)
    msg = r"middleware 'enrich': concurrency must be an int >= 1"
    with pytest.raises(PipelineError, match=msg):
        bound.explain()
    with pytest.raises(PipelineError, match=msg):
        bound.run_sync()
    assert source.pulled == 0 and sink.log == []  # refused before any data moved


def test_explain_and_summary_show_the_lane():
    bound = Pipeline(RecordingSource(rows(3))).pipe(ReverseLatency(5)).build(FlakySink())
    ex = bound.explain()
    assert ex.middleware[0].io_concurrency == 5
    assert "I/O lane, up to 5 in flight" in str(ex)
    s = bound.run_sync()
    assert "I/O lane: limit 5 of 5, peak in flight 3" in str(s)


def test_a_subclass_is_named_after_itself_unless_it_sets_a_name():
    class FetchPrices(AsyncMiddleware):
        pass

    class Named(AsyncMiddleware):
        name = "lookup"

    assert (FetchPrices().name, Named().name) == ("FetchPrices", "lookup")
