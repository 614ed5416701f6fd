"""The run summary tells the truth: per-sink counts, fan-out failures under every policy,
the record that stopped a fail-closed run, every consumed record accounted for once,
and ``last_summary`` always describing the run that just ended."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from agora import (
    DataPlane,
    DeliveryConfig,
    FailurePolicy,
    SyncInMemoryCheckpointStore,
    MapMiddleware,
    MemorySink,
    Pipeline,
    PipelineError,
    SinkFanOut,
)
from agora.middleware.builtins import ArrowFilterMiddleware, FilterMiddleware
from agora.runtime.summary import SinkCounts
from tests.runtime.doubles import FlakySink, RecordingSource

ROWS = [{"id": i} for i in range(10)]


def _accounted(s) -> None:
    assert s.records_consumed == (s.records_written + s.records_dropped + s.records_errored
                                  + s.records_abandoned), s


def _fan_out(policy, *, dlq=None):
    good = FlakySink(name="good")
    bad = FlakySink(name="bad", fail=lambda r: r["id"] == 4)
    bound = Pipeline(RecordingSource(ROWS), id="fan").build(
        SinkFanOut([good, bad]), delivery=DeliveryConfig(failure_policy=policy, dlq=dlq))
    return bound


def test_a_failed_fan_out_write_under_log_and_continue_shows_per_sink_and_in_the_counts():
    summary = _fan_out(FailurePolicy.LOG_AND_CONTINUE).run_sync()
    assert summary.by_sink == {"good": SinkCounts(written=10, failed=0),
                               "bad": SinkCounts(written=9, failed=1)}
    assert summary.records_written == 10 and summary.records_errored == 0
    assert summary.records_partially_written == 1
    assert summary.runtime["failures_continued_without_dlq"] == 1
    text = str(summary)
    assert "sink bad: written 9 failed 1" in text and "rejected by a sink 1" in text
    data = summary.to_dict()
    assert data["by_sink"]["bad"]["failed"] == 1 and data["records_partially_written"] == 1
    _accounted(summary)


def test_a_failed_fan_out_write_with_a_dlq_is_counted_the_same_way_and_dead_lettered():
    dlq = FlakySink(name="dlq")
    summary = _fan_out(FailurePolicy.FAIL_CLOSED, dlq=dlq).run_sync()
    assert summary.by_sink["bad"] == SinkCounts(written=9, failed=1)
    assert summary.records_partially_written == 1 and summary.runtime["dlq_writes"] == 1
    assert [r.sink for r in dlq.rows] == ["bad"]


def test_a_failed_fan_out_write_that_stops_a_fail_closed_run_is_in_its_summary():
    bound = _fan_out(FailurePolicy.FAIL_CLOSED)
    with pytest.raises(ValueError, match="bad rejects"):
        bound.run_sync()
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "failed"
    assert summary.error == {"type": "ValueError", "message": "bad rejects {'id': 4}"}
    assert summary.by_sink["bad"].failed == 1 and summary.records_partially_written == 1
    assert "error: ValueError: bad rejects" in str(summary)
    _accounted(summary)


def test_the_record_that_stops_a_fail_closed_run_is_counted_like_the_middleware_line():
    def poison(r):
        if r["id"] == 5:
            raise RuntimeError("poison")
        return r

    bound = Pipeline(RecordingSource(ROWS), id="fc").pipe(MapMiddleware(poison, name="m")).build(
        MemorySink())
    with pytest.raises(RuntimeError, match="poison"):
        bound.run_sync()
    s = bound.last_summary
    assert s is not None
    assert s.records_errored == s.by_middleware["m"]["errored"] == 1
    assert s.records_written == 5 and s.outcome == "failed"
    _accounted(s)


def test_last_summary_after_a_cleanup_error_is_this_run_s_not_the_previous_one():
    sink = FlakySink()
    bound = Pipeline(RecordingSource(ROWS), id="cl").build(
        sink, delivery=DeliveryConfig(checkpoint=SyncInMemoryCheckpointStore()))
    first = bound.run_sync(max_records=3)
    sink.fail_close = True
    with pytest.raises(OSError, match="close failed"):
        bound.run_sync()
    second = bound.last_summary
    assert second is not None and second.run_id != first.run_id
    assert second.outcome == "failed" and second.error["type"] == "OSError"
    assert second.records_written == 7


def test_last_summary_is_cleared_when_a_run_never_starts():
    bound = Pipeline(RecordingSource(ROWS), id="np").build(MemorySink())
    bound.run_sync()
    assert bound.last_summary is not None
    with pytest.raises(ValueError, match="max_records"):
        bound.run_sync(max_records=-1)
    assert bound.last_summary is None  # never the previous run's summary


def test_a_successful_summary_says_completed_and_round_trips_as_json():
    s = Pipeline(RecordingSource(ROWS), id="ok").build(MemorySink()).run_sync()
    assert s.outcome == "completed" and s.error is None and not s.interrupted
    data = json.loads(json.dumps(s.to_dict()))
    assert data["outcome"] == "completed" and data["runtime"]["interruption"] is None
    assert str(s).startswith(f"run {s.run_id} of pipeline ok: completed")


@pytest.mark.parametrize("plane", [DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES,
                                   DataPlane.ARROW_BATCHES])
def test_every_consumed_record_is_accounted_for_once_on_every_lane(plane):
    chunks: list = ROWS
    chain: list = [FilterMiddleware(lambda r: r["id"] % 3 != 0, name="f")]
    if plane is not DataPlane.PYTHON_ROWS:
        chunks = [ROWS[0:4], ROWS[4:10]]
    if plane is DataPlane.ARROW_BATCHES:
        import pyarrow.compute as pc

        chunks = [pa.Table.from_pylist(c).to_batches()[0] for c in chunks]
        chain = [ArrowFilterMiddleware(lambda b: pc.not_equal(pc.bit_wise_and(b["id"], 1), 1),
                                       name="f")]
    sink = FlakySink(name="s", fail=lambda r: r["id"] == 8,
                     native=(DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES))
    s = Pipeline(RecordingSource(chunks, plane=plane), id="acc").pipe(*chain).build(
        sink, delivery=DeliveryConfig(failure_policy="log_and_continue")).run_sync()
    assert s.records_errored == 1 and s.by_sink["s"].failed == 1
    assert s.records_dropped == s.by_middleware["f"]["dropped"] > 0
    _accounted(s)


def test_plan_errors_still_raise_pipeline_error():
    from agora import ArrowMapMiddleware

    bound = Pipeline(RecordingSource(ROWS)).pipe(ArrowMapMiddleware(lambda b: b)).build(MemorySink())
    with pytest.raises(PipelineError):
        bound.run_sync()
    assert bound.last_summary is None


def test_a_stop_whose_final_flush_fails_is_reported_as_failed_not_interrupted():
    import asyncio
    import time

    def slow(r):
        time.sleep(0.0005)
        return r

    sink = FlakySink(fail_flush=True)
    bound = Pipeline(RecordingSource([{"id": i} for i in range(100_000)]), id="ff").pipe(
        MapMiddleware(slow)).build(sink, delivery=DeliveryConfig(
            checkpoint=SyncInMemoryCheckpointStore(), checkpoint_every=50_000))

    async def main():
        task = asyncio.create_task(bound.run())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(OSError, match="flush failed"):  # the real problem, not the cancel
            await task

    asyncio.run(main())
    s = bound.last_summary
    assert s is not None and s.outcome == "failed" and s.error["type"] == "OSError"
    assert s.runtime["interruption"]["reason"] == "cancelled"
    assert s.last_checkpoint is None  # nothing is covered by a checkpoint it could not flush
