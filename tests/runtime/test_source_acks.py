"""Source acks: ``BaseSource.ack(checkpoint)`` is called in source order, after the
records it covers are durable in the sinks and the DLQ, never for a record still in
flight or not yet handled when a run stops — and a failing ack does not stop the run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agora import AsyncMiddleware, DeliveryConfig, FailurePolicy, MapMiddleware, Pipeline
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore
from tests.runtime.test_io_lane import MemoryDLQ, ReverseLatency, rows


class AckingSource(RecordingSource):
    """Records every ack; checks, at each ack, that what it covers is durable: the sink
    has flushed every written record before the position, the DLQ every failed one."""

    def __init__(self, n: int, *, sink: FlakySink, dlq: Any = None, fail_acks: int = 0,
                 error: type[Exception] = OSError) -> None:
        super().__init__(rows(n))
        self.sink = sink
        self.dlq = dlq
        self.fail_acks = fail_acks
        self.error = error
        self.acks: list[Any] = []
        self.not_durable: list[tuple[Any, str]] = []

    async def ack(self, checkpoint: Any) -> None:
        self.acks.append(checkpoint)
        durable = {r["id"] for r in self.sink.rows[: self.sink.flushed_count]}
        if self.dlq is not None:
            durable |= {d.record["id"] for d in self.dlq.rows[: self.dlq.flushed_count]}
        missing = [i for i in range(checkpoint) if i not in durable]
        if missing:
            self.not_durable.append((checkpoint, f"records {missing} not durable"))
        if len(self.acks) <= self.fail_acks:
            raise self.error(f"queue commit {len(self.acks)} failed")


def job(source: AckingSource, *mw: Any, dlq: Any = None, **delivery: Any) -> Any:
    pipe = Pipeline(source).pipe(*mw) if mw else Pipeline(source)
    return pipe.build(source.sink, delivery=DeliveryConfig(dlq=dlq, **delivery))


@pytest.mark.timeout(20)
def test_acks_come_in_source_order_under_out_of_order_completion():
    sink = FlakySink()
    source = AckingSource(40, sink=sink)
    mw = ReverseLatency(8)
    job(source, mw, checkpoint=RecordingStore(), checkpoint_every=3).run_sync()
    assert mw.finished[:8] != sorted(mw.finished[:8])  # calls really finished out of order
    assert source.acks == sorted(source.acks) and len(set(source.acks)) == len(source.acks)
    assert source.acks[-1] == 40 and len(source.acks) >= 13  # every 3 records, and the end
    assert source.not_durable == []


@pytest.mark.timeout(20)
def test_an_ack_covers_dead_lettered_records_only_once_the_dlq_is_durable():
    sink, dlq = FlakySink(), MemoryDLQ()

    async def flush() -> None:
        dlq.flushed_count = len(dlq.rows)

    dlq.flushed_count = 0
    dlq.flush = flush  # type: ignore[method-assign]
    source = AckingSource(20, sink=sink, dlq=dlq)
    job(source, ReverseLatency(4, fail_ids={2, 11}), dlq=dlq, checkpoint_every=2).run_sync()
    assert [d.record["id"] for d in dlq.rows] == [2, 11]
    assert source.acks == sorted(source.acks) and source.acks[-1] == 20
    assert source.not_durable == []


@pytest.mark.timeout(20)
def test_acks_are_called_without_a_checkpoint_store():
    sink = FlakySink()
    source = AckingSource(9, sink=sink)
    job(source, checkpoint_every=4).run_sync()
    assert source.acks == [4, 8, 9] and source.not_durable == []


@pytest.mark.timeout(20)
def test_no_ack_for_records_not_handled_when_the_run_fails():
    def boom(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 7:
            raise ValueError("record 7 is bad")
        return r

    sink = FlakySink()
    source = AckingSource(20, sink=sink)
    store = RecordingStore()
    with pytest.raises(ValueError, match="record 7"):
        job(source, MapMiddleware(boom), checkpoint=store, checkpoint_every=2,
            failure_policy=FailurePolicy.FAIL_CLOSED).run_sync()
    assert source.acks == [2, 4, 6]  # never 7 or beyond: record 7 stopped the run
    assert source.acks == store.saves and source.not_durable == []


@pytest.mark.timeout(20)
def test_no_ack_when_the_sink_flush_fails():
    sink = FlakySink(fail_flush=True)
    source = AckingSource(6, sink=sink)
    with pytest.raises(OSError, match="flush failed"):
        job(source, checkpoint_every=2).run_sync()
    assert source.acks == []


class Stuck(AsyncMiddleware):
    """Record ``at`` never answers; the others answer at once."""

    concurrency = 4

    def __init__(self, at: int) -> None:
        self.name = "stuck"
        self.at = at
        self.reached = asyncio.Event()

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        if record["id"] == self.at:
            self.reached.set()
            await asyncio.Event().wait()
        return record


@pytest.mark.timeout(20)
def test_no_ack_after_a_cancelled_run_for_the_records_in_flight():
    sink = FlakySink()
    source = AckingSource(30, sink=sink)
    mw = Stuck(at=10)
    bound = job(source, mw, checkpoint_every=1)

    async def main() -> None:
        task = asyncio.create_task(bound.run(handle_signals=False))
        await asyncio.wait_for(mw.reached.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert source.acks and source.acks == sorted(source.acks)
    assert max(source.acks) <= 10  # record 10 never answered: nothing at or past it acked
    assert source.not_durable == []


@pytest.mark.timeout(20)
def test_a_failing_ack_is_logged_naming_the_source_and_the_run_goes_on(
        caplog: pytest.LogCaptureFixture):
    sink = FlakySink()
    source = AckingSource(8, sink=sink, fail_acks=2)
    with caplog.at_level(logging.ERROR, logger="agora.delivery"):
        summary = job(source, checkpoint_every=2).run_sync()
    assert summary.records_written == 8 and [r["id"] for r in sink.rows] == list(range(8))
    assert source.acks == [2, 4, 6, 8]  # the two failed acks were followed by later ones
    failures = [r for r in caplog.records if "an ack failed" in r.message]
    assert len(failures) == 2 and "'recording'" in failures[0].message
    assert "queue commit 1 failed" in failures[0].message  # an OSError's text is kept
    assert (summary.checkpoint.acks, summary.checkpoint.ack_failures) == (2, 2)
    assert summary.runtime["source_acks"] == 2 and summary.runtime["source_ack_failures"] == 2


@pytest.mark.timeout(20)
def test_a_failing_ack_does_not_log_a_foreign_message(caplog: pytest.LogCaptureFixture):
    sink = FlakySink()
    source = AckingSource(2, sink=sink, fail_acks=1, error=ValueError)
    with caplog.at_level(logging.ERROR, logger="agora.delivery"):
        job(source).run_sync()
    [failure] = [r for r in caplog.records if "an ack failed" in r.message]
    assert "queue commit" not in failure.message and "ValueError" in failure.message


@pytest.mark.timeout(20)
def test_max_records_passes_acks_to_the_wrapped_source():
    sink = FlakySink()
    source = AckingSource(10, sink=sink)
    job(source, checkpoint_every=2).run_sync(max_records=5)
    assert source.acks == [2, 4, 5]


class UpstreamHookSource(RecordingSource):
    """Upstream's spelling: ``delivery_success_callback()`` returns, right after each
    record, an async callback for that record."""

    def __init__(self, units: list[Any], *, sink: FlakySink, **kw: Any) -> None:
        super().__init__(units, **kw)
        self.sink = sink
        self.acked: list[Any] = []
        self.not_durable: list[Any] = []

    def delivery_success_callback(self) -> Any:
        unit = self.units[self.pos - 1]

        async def ack() -> None:
            self.acked.append(unit)
            if unit["id"] not in [r["id"] for r in self.sink.rows[: self.sink.flushed_count]]:
                self.not_durable.append(unit)

        return ack


@pytest.mark.timeout(20)
def test_upstream_per_record_callbacks_run_in_source_order_once_durable():
    sink = FlakySink()
    source = UpstreamHookSource(rows(30), sink=sink)
    (Pipeline(source).pipe(ReverseLatency(8))
     .build(sink, delivery=DeliveryConfig(checkpoint_every=4)).run_sync())
    assert [u["id"] for u in source.acked] == list(range(30))
    assert source.not_durable == []


@pytest.mark.timeout(20)
def test_upstream_callbacks_stop_at_the_record_that_stopped_the_run():
    def boom(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 5:
            raise ValueError("record 5 is bad")
        return r

    sink = FlakySink()
    source = UpstreamHookSource(rows(12), sink=sink)
    with pytest.raises(ValueError):
        (Pipeline(source).pipe(MapMiddleware(boom))
         .build(sink, delivery=DeliveryConfig(checkpoint_every=2,
                                              failure_policy=FailurePolicy.FAIL_CLOSED))
         .run_sync())
    assert [u["id"] for u in source.acked] == [0, 1, 2, 3]


@pytest.mark.timeout(20)
def test_upstream_callbacks_come_once_per_batch_on_the_batch_lane_and_through_max_records():
    from agora import DataPlane

    batches = [[{"id": 3 * b + i} for i in range(3)] for b in range(4)]
    sink = FlakySink()
    source = UpstreamHookSource(batches, sink=sink, plane=DataPlane.PYTHON_BATCHES)
    source.delivery_success_callback = lambda: _note(source)  # type: ignore[method-assign]
    Pipeline(source).build(sink).run_sync(max_records=9)
    assert source.acked == [1, 2, 3]  # one per batch (positions count batches); 9 rows = 3


def _note(source: UpstreamHookSource) -> Any:
    pos = source.pos

    async def ack() -> None:
        source.acked.append(pos)

    return ack


@pytest.mark.timeout(20)
def test_with_a_background_store_write_an_ack_comes_only_once_the_store_holds_it(tmp_path):
    """``SyncSQLiteCheckpointStore`` is written on the checkpoint thread: the ack of a position
    waits for that write, so at every ack the store already names it (or a later one)."""
    from agora import SyncSQLiteCheckpointStore

    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    assert store.saves_in_thread is True  # the case under test: background writes
    stored_at_ack: list[tuple[Any, Any]] = []

    class Checking(AckingSource):
        async def ack(self, checkpoint: Any) -> None:
            loaded = store.load(key)
            stored_at_ack.append((checkpoint, None if loaded is None else loaded.value))
            await super().ack(checkpoint)

    sink = FlakySink()
    source = Checking(30, sink=sink)
    bound = job(source, checkpoint=store, checkpoint_every=4)
    key = bound.checkpoint_key  # the default checkpoint key
    bound.run_sync()
    assert source.acks == sorted(source.acks) and source.acks[-1] == 30
    assert stored_at_ack and all(saved is not None and saved >= acked
                                 for acked, saved in stored_at_ack), stored_at_ack
    assert source.not_durable == []
