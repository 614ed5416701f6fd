"""Startup/shutdown order, rollback, original exceptions, cancellation, repeated runs,
run_sync with and without a running loop, and the max_records wrapper per source kind."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from agora import (
    DataPlane,
    DeliveryConfig,
    SyncInMemoryCheckpointStore,
    MapMiddleware,
    MemorySink,
    Pipeline,
    PipelineError,
)
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore

ROWS = [{"id": i} for i in range(10)]


class Hooked(MapMiddleware):
    def __init__(self, name, log, fail_start=False, fail_stop=False):
        super().__init__(lambda r: r, name=name)
        self.log, self.fail_start, self.fail_stop = log, fail_start, fail_stop

    def on_start(self, ctx):
        self.log.append(f"{self.name}.on_start")
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    async def on_stop(self, ctx):
        self.log.append(f"{self.name}.on_stop")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


def build(log, *, source_kw=None, sink_kw=None, mw_kw=None, dlq=True):
    store = RecordingStore(log=log)
    dlq_sink = FlakySink(name="dlq", log=log) if dlq else None
    return Pipeline(RecordingSource(ROWS, log=log, **(source_kw or {})), id="p").pipe(
        Hooked("m1", log, **(mw_kw or {})), Hooked("m2", log)).build(
        FlakySink(name="sink", log=log, **(sink_kw or {})),
        delivery=DeliveryConfig(checkpoint=store, dlq=dlq_sink, checkpoint_every=100))


def test_startup_and_shutdown_order():
    log: list[str] = []
    build(log).run_sync()
    start = log[: log.index("source.open") + 1]
    assert start == ["store.open", "store.load", "source.prepare_resume", "m1.on_start",
                     "m2.on_start", "sink.open", "dlq.open", "source.open"]
    end = log[log.index("store.save") - 2:]
    # the flushes before the save make the checkpointed prefix durable; each output is
    # flushed again as it is closed (FlakySink's close flushes too)
    assert end == ["sink.flush", "dlq.flush", "store.save", "source.close", "m2.on_stop",
                   "m1.on_stop", "dlq.flush", "dlq.close", "dlq.flush", "sink.flush",
                   "sink.close", "sink.flush", "store.close"]


def test_failure_in_startup_rolls_back_what_started():
    log: list[str] = []
    with pytest.raises(OSError, match="sink open failed"):
        build(log, sink_kw={"fail_open": True}).run_sync()
    assert "source.open" not in log and "dlq.open" not in log
    assert log[-3:] == ["m2.on_stop", "m1.on_stop", "store.close"]
    assert "sink.close" not in log  # it never opened


def test_middleware_start_failure_stops_the_failed_one_and_nothing_later():
    log: list[str] = []
    with pytest.raises(RuntimeError, match="m1 cannot start"):
        build(log, mw_kw={"fail_start": True}).run_sync()
    # m1's on_start raised part-way: its on_stop releases what it may have acquired
    assert log[log.index("m1.on_start"):] == ["m1.on_start", "m1.on_stop", "store.close"]


def test_source_open_failure_closes_the_source_and_everything_else():
    log: list[str] = []
    with pytest.raises(OSError, match="source open failed"):
        build(log, source_kw={"fail_open": True}).run_sync()
    assert log[log.index("source.open"):] == [
        "source.open", "source.close", "m2.on_stop", "m1.on_stop", "dlq.flush", "dlq.close",
        "dlq.flush", "sink.flush", "sink.close", "sink.flush", "store.close"]


def test_source_read_error_is_raised_as_is_and_sinks_are_closed():
    log: list[str] = []
    with pytest.raises(OSError, match="source read failed at unit 4"):
        build(log, source_kw={"fail_at": 4}).run_sync()
    assert "sink.close" in log and "m1.on_stop" in log and "store.save" not in log


def test_cleanup_errors_never_mask_the_original():
    log: list[str] = []
    with pytest.raises(OSError, match="source read failed"):
        build(log, source_kw={"fail_at": 2}, sink_kw={"fail_close": True},
              mw_kw={"fail_stop": True}).run_sync()
    assert "store.close" in log  # every cleanup step still ran


def test_cleanup_error_surfaces_when_the_run_itself_succeeded():
    log: list[str] = []
    with pytest.raises(OSError, match="close failed"):
        build(log, sink_kw={"fail_close": True}).run_sync()
    assert "store.close" in log  # every cleanup step still ran


def test_a_failing_stop_hook_is_reported_not_raised():
    log: list[str] = []
    summary = build(log, mw_kw={"fail_stop": True}).run_sync()
    assert summary.records_written == len(ROWS) and summary.outcome == "completed"
    assert summary.middleware_stop_failures == {
        "m1": {"type": "RuntimeError", "message": "m1 cannot stop"}}
    assert log.index("m2.on_stop") < log.index("m1.on_stop") < log.index("sink.close")


def test_cancellation_shuts_down_cleanly_and_reraises():
    log: list[str] = []

    entered = asyncio.Event()

    class Stuck(MapMiddleware):
        async def process(self, record, ctx):
            entered.set()
            await asyncio.Event().wait()  # never set: only cancellation ends the run
            return record

    bound = (Pipeline(RecordingSource(ROWS, log=log)).pipe(Stuck(lambda r: r))
             .build(FlakySink(log=log)))

    async def main():
        task = asyncio.create_task(bound.run())
        await asyncio.wait_for(entered.wait(), timeout=10)  # the run is mid-record
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert "source.close" in log and "flaky.close" in log


def test_repeated_runs_resume_and_accumulate():
    store = SyncInMemoryCheckpointStore()
    sink = MemorySink()
    source = RecordingSource(ROWS)
    bound = Pipeline(source, id="rep").build(sink, delivery=DeliveryConfig(checkpoint=store))
    first = bound.run_sync(max_records=4)
    second = bound.run_sync()
    third = bound.run_sync()
    assert [r["id"] for r in sink.records] == list(range(10))
    assert (first.records_consumed, second.records_consumed, third.records_consumed) == (4, 6, 0)
    assert first.run_id != second.run_id and bound.last_summary is third


def test_run_sync_inside_a_running_loop():
    sink = MemorySink()
    bound = Pipeline(RecordingSource(ROWS)).build(sink)

    async def main():
        return bound.run_sync()

    summary = asyncio.run(main())
    assert summary.records_written == 10


def test_overlapping_runs_rejected():
    entered = asyncio.Event()
    release = asyncio.Event()

    class Gated(MapMiddleware):
        async def process(self, record, ctx):
            entered.set()
            await release.wait()
            return record

    sink = MemorySink()
    bound = Pipeline(RecordingSource(ROWS)).pipe(Gated(lambda r: r)).build(sink)

    async def main():
        t1 = asyncio.create_task(bound.run())
        await asyncio.wait_for(entered.wait(), timeout=10)  # the first run is in progress
        with pytest.raises(PipelineError, match="already running"):
            await bound.run()
        release.set()
        await t1
        assert len(sink.records) == len(ROWS)  # the rejected call did not disturb it

    asyncio.run(main())


class TestMaxRecords:
    def test_rows_exact_and_never_over_read(self):
        source = RecordingSource(ROWS)
        s = Pipeline(source).build(MemorySink()).run_sync(max_records=3)
        assert s.records_consumed == 3 and source.pulled == 3

    def test_zero_reads_nothing_and_negative_rejected(self):
        source = RecordingSource(ROWS)
        s = Pipeline(source).build(MemorySink()).run_sync(max_records=0)
        assert s.records_consumed == 0 and source.pulled == 0
        with pytest.raises(ValueError, match="max_records"):
            Pipeline(source).build(MemorySink()).run_sync(max_records=-1)

    @pytest.mark.parametrize("plane", [DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES])
    def test_batches_trimmed_at_the_boundary_with_checkpoint_inside(self, plane):
        chunks = [ROWS[0:4], ROWS[4:8], ROWS[8:10]]
        if plane is DataPlane.ARROW_BATCHES:
            chunks = [pa.Table.from_pylist(c).to_batches()[0] for c in chunks]
        source = RecordingSource(chunks, plane=plane)
        sink = MemorySink()
        store = SyncInMemoryCheckpointStore()
        bound = Pipeline(source, id="lim").build(sink, delivery=DeliveryConfig(checkpoint=store))
        s = bound.run_sync(max_records=6)
        assert s.records_consumed == 6 and [r["id"] for r in sink.records] == list(range(6))
        assert source.pulled == 2
        # RecordingSource encodes "2 rows into batch 1" as 1 + 2/1000: never past a row
        assert s.last_checkpoint is not None and s.last_checkpoint.value == pytest.approx(1.002)

    def test_explain_reports_the_limit(self):
        assert Pipeline(RecordingSource(ROWS)).build(MemorySink()).explain(max_records=7).max_records == 7


def test_a_second_run_on_the_same_checkpoint_key_is_refused_without_touching_anything(tmp_path):
    from agora import CheckpointError, SyncSQLiteCheckpointStore

    def bound(log):
        return Pipeline(RecordingSource(ROWS, log=log), id="shared").build(
            FlakySink(log=log), delivery=DeliveryConfig(
                checkpoint=SyncSQLiteCheckpointStore(tmp_path / "c.db")))

    holder = SyncSQLiteCheckpointStore(tmp_path / "c.db")
    holder.claim("shared")  # as a run in progress would
    log: list[str] = []
    with pytest.raises(CheckpointError, match="in use"):
        bound(log).run_sync()
    assert log == []  # nothing resumed, opened or read
    holder.close()
    log2: list[str] = []
    assert bound(log2).run_sync().records_written == 10  # free again after the holder is done
