"""A sink failure of the medium (timeout, lost connection, any OS error) stops the run
under every failure policy: nothing of its unit is dead-lettered, checkpointed or acked,
and the next run delivers it. A failure of the record is still dead-lettered, with the
failure's classification in the dead letter and counted in the summary."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agora import (
    AlertSeverity,
    DeliveryConfig,
    FailureClassification,
    FailureDecision,
    FailurePolicy,
    JsonLinesDLQSink,
    MalformedRecord,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SinkFanOut,
    SinkRouter,
    SQLiteDLQSink,
    WriteResult,
    read_dlq,
)
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore
from tests.runtime.test_source_acks import AckingSource

ROWS = [{"id": i} for i in range(10)]


class MediumDownSink(FlakySink):
    """A sink whose medium fails (``error``, a ``ConnectionError`` by default) on the
    records ``fail(record)`` picks, through ``write`` and through ``write_batch``."""

    def __init__(self, *, error: type[BaseException] = ConnectionError, **kw: Any) -> None:
        super().__init__(**kw)
        self.error = error
        self.attempts: list[Any] = []

    async def write(self, record: Any) -> None:
        self.attempts.append(record)
        if self.fail(record):
            raise self.error(f"{self.sink_name}: backend unreachable")
        self.rows.append(record)

    async def write_batch(self, records: list[Any]) -> list[WriteResult]:
        self.batch_calls += 1
        out = []
        for r in records:
            if self.fail(r):
                out.append(WriteResult.failed(self.error(f"{self.sink_name}: backend unreachable")))
            else:
                self.rows.append(r)
                out.append(WriteResult.ok())
        return out


def id_is(n: int) -> Any:
    return lambda r: r["id"] == n


def build(sink: Any, *, units: list[Any] = ROWS, chain: tuple[Any, ...] = (),
          store: Any = None, **delivery: Any) -> Any:
    source = RecordingSource(units)
    pipe = Pipeline(source, id="t").pipe(*chain) if chain else Pipeline(source, id="t")
    return pipe.build(sink, delivery=DeliveryConfig(
        checkpoint=store if store is not None else RecordingStore(), checkpoint_every=1,
        **delivery))


@pytest.mark.parametrize("policy", [FailurePolicy.FAIL_CLOSED, FailurePolicy.LOG_AND_CONTINUE])
@pytest.mark.parametrize("with_dlq", [True, False])
def test_medium_failure_stops_the_run_under_every_policy(policy: FailurePolicy,
                                                         with_dlq: bool) -> None:
    dlq = MemorySink(name="dlq") if with_dlq else None
    store = RecordingStore()
    bound = build(MediumDownSink(fail=id_is(5)), store=store, dlq=dlq, failure_policy=policy)
    with pytest.raises(ConnectionError, match="backend unreachable"):
        bound.run_sync()
    assert store.saves[-1] == 5  # the handled prefix 0..4, never past the unwritten record
    if dlq is not None:
        assert dlq.records == []


def test_checkpoint_stops_before_the_unwritten_unit_and_a_rerun_delivers_it() -> None:
    store = RecordingStore()
    down = MediumDownSink(fail=id_is(5))
    with pytest.raises(ConnectionError):
        build(down, store=store, dlq=MemorySink(name="dlq")).run_sync()
    assert [r["id"] for r in down.rows] == [0, 1, 2, 3, 4]
    back = MediumDownSink()  # the medium is back
    summary = build(back, store=store, dlq=MemorySink(name="dlq")).run_sync()
    assert summary.checkpoint.resumed_from == 5
    assert [r["id"] for r in back.rows] == [5, 6, 7, 8, 9]
    assert store.saves[-1] == 10


def test_the_source_is_not_acked_for_the_unwritten_unit() -> None:
    sink = MediumDownSink(fail=id_is(3))
    source = AckingSource(6, sink=sink)
    bound = Pipeline(source).build(sink, delivery=DeliveryConfig(
        dlq=MemorySink(name="dlq"), checkpoint=RecordingStore(), checkpoint_every=1))
    with pytest.raises(ConnectionError):
        bound.run_sync()
    assert source.acks and max(source.acks) == 3  # records 0..2 only
    assert source.not_durable == []


def test_the_stop_keeps_the_sinks_exception_and_explains_itself_once() -> None:
    sink = MediumDownSink(fail=lambda r: True, error=TimeoutError, name="warehouse")
    with pytest.raises(TimeoutError) as info:
        build(sink, dlq=MemorySink(name="dlq")).run_sync()
    notes = info.value.__notes__
    assert len(notes) == 1
    assert "sink 'warehouse' failed with TimeoutError (classified timeout" in notes[0]
    assert "not of the record" in notes[0] and "re-run" in notes[0]
    assert "failure_decision" in notes[0]  # how to say it is the record's fault after all


def test_the_summary_of_the_stopped_run_counts_the_medium_failure() -> None:
    bound = build(MediumDownSink(fail=id_is(2), error=TimeoutError), dlq=MemorySink(name="dlq"))
    with pytest.raises(TimeoutError):
        bound.run_sync()
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "failed"
    assert summary.failures.by_classification == {"timeout": 1}
    assert summary.runtime.failure_alert_severity_counts == {"warning": 1}
    assert summary.dlq.writes == 0


def test_a_row_sink_is_not_tried_again_for_the_rest_of_the_unit_after_the_medium_failed() -> None:
    sink = MediumDownSink(fail=lambda r: True, native=())  # rows only: one write() per record
    with pytest.raises(ConnectionError):
        build(sink, dlq=MemorySink(name="dlq"), batch_size=5).run_sync()
    assert sink.attempts == [{"id": 0}]  # one outage costs one call, not batch_size calls


def test_per_record_write_results_carrying_a_medium_failure_stop_the_run() -> None:
    dlq = MemorySink(name="dlq")
    store = RecordingStore()
    sink = MediumDownSink(fail=id_is(7), error=OSError)
    with pytest.raises(OSError, match="backend unreachable"):
        build(sink, store=store, dlq=dlq, batch_size=5).run_sync()
    assert dlq.records == [] and store.saves[-1] == 5  # the unit 5..9 stays unhandled


def test_a_whole_batch_write_raising_a_medium_failure_stops_the_run() -> None:
    dlq = MemorySink(name="dlq")
    sink = FlakySink(fail=id_is(4), mode="raise")  # write_batch raises OSError for the batch
    with pytest.raises(OSError, match="batch write failed"):
        build(sink, dlq=dlq, batch_size=5).run_sync()
    assert dlq.records == []


def test_a_failure_of_the_record_is_still_dead_lettered_with_its_classification() -> None:
    dlq = MemorySink(name="dlq")
    summary = build(FlakySink(fail=id_is(5)), dlq=dlq).run_sync()  # ValueError: the record's
    [rec] = dlq.records
    assert rec.details == {"failure": {
        "classification": "unknown", "retryable": False, "dlq_eligible": True,
        "alert_severity": "error", "reason": "ValueError", "details": {}}}
    assert summary.failures.by_classification == {"unknown": 1}
    assert summary.failures.by_severity == {"error": 1}
    assert summary.last_checkpoint_value == 10


class SelfAwareOSError(OSError):
    """An ``OSError`` its sink knows to be the record's fault (e.g. a path built from it)."""

    failure_decision = FailureDecision(
        classification=FailureClassification.CONSTRAINT_VIOLATION, retryable=False,
        dlq_eligible=True, alert_severity=AlertSeverity.ERROR, reason="bad partition value")


def test_an_attached_decision_makes_an_os_error_the_records_fault() -> None:
    dlq = MemorySink(name="dlq")
    sink = MediumDownSink(fail=id_is(5), error=SelfAwareOSError)
    summary = build(sink, dlq=dlq).run_sync()
    [rec] = dlq.records
    assert rec.record == {"id": 5}
    assert rec.details is not None
    assert rec.details["failure"]["classification"] == "constraint_violation"
    assert rec.details["failure"]["reason"] == "bad partition value"
    assert summary.records_written == 9 and summary.last_checkpoint_value == 10


def test_fan_out_one_sink_wrote_the_other_lost_its_connection() -> None:
    store = RecordingStore()
    first = FlakySink(name="first")
    second = MediumDownSink(name="second", fail=id_is(4))
    dlq = MemorySink(name="dlq")
    with pytest.raises(ConnectionError):
        build(SinkFanOut([first, second]), store=store, dlq=dlq).run_sync()
    assert dlq.records == [] and store.saves[-1] == 4
    assert {"id": 4} in first.rows  # written by the first sink, yet not handled
    first_again = FlakySink(name="first")
    second_again = MediumDownSink(name="second")
    summary = build(SinkFanOut([first_again, second_again]), store=store, dlq=dlq).run_sync()
    # Re-delivered to both: at least once, as after any crash.
    assert [r["id"] for r in first_again.rows] == [4, 5, 6, 7, 8, 9]
    assert [r["id"] for r in second_again.rows] == [4, 5, 6, 7, 8, 9]
    assert summary.records_written == 6


def test_concurrent_fan_out_stops_the_same_way() -> None:
    dlq = MemorySink(name="dlq")
    fan = SinkFanOut([FlakySink(name="a"), MediumDownSink(name="b", fail=id_is(2))],
                     sink_concurrency=2)
    with pytest.raises(ConnectionError):
        build(fan, dlq=dlq, batch_size=5).run_sync()
    assert dlq.records == []


def test_a_routed_sink_losing_its_connection_stops_the_run() -> None:
    dlq = MemorySink(name="dlq")
    down = MediumDownSink(name="odd", fail=lambda r: True)
    router: SinkRouter[dict[str, int]] = (
        SinkRouter().route(lambda r: r["id"] % 2 == 1, down).default(FlakySink(name="even")))
    with pytest.raises(ConnectionError):
        build(router, dlq=dlq).run_sync()
    assert dlq.records == []


def test_a_router_routes_nothing_more_of_the_unit_after_a_medium_failure() -> None:
    # one unit of 10 records: id 1 goes to the sink whose medium is down; nothing after it
    # is written anywhere (the run stops and re-delivers the whole unit)
    down = MediumDownSink(name="odd", fail=lambda r: True)
    even = FlakySink(name="even")
    router: SinkRouter[dict[str, int]] = (
        SinkRouter().route(lambda r: r["id"] % 2 == 1, down).default(even))
    store = RecordingStore()
    with pytest.raises(ConnectionError):
        build(router, store=store, batch_size=10).run_sync()
    assert [r["id"] for r in down.attempts] == [1]
    assert [r["id"] for r in even.rows] == [0]
    assert store.saves == []  # the unit was never handled: no position saved


def test_a_middleware_failure_of_the_medium_stays_a_record_failure() -> None:
    def lookup(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 3:
            raise ConnectionError("lookup service unreachable")
        return r

    dlq = MemorySink(name="dlq")
    summary = build(FlakySink(), chain=(MapMiddleware(lookup, name="lookup"),), dlq=dlq).run_sync()
    [rec] = dlq.records
    assert rec.stage == "middleware" and rec.middleware == "lookup"
    assert rec.details is not None and rec.details["failure"]["classification"] == "connectivity"
    assert summary.records_written == 9
    assert summary.runtime.failure_classification_counts == {"connectivity": 1}


def test_counts_cover_every_stage_per_class_and_severity() -> None:
    def strict(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 1:
            raise UnicodeEncodeError("ascii", "é", 0, 1, "no")
        return r

    units: list[Any] = [{"id": 0}, {"id": 1}, MalformedRecord(raw="x,", reason="bad", location="f:3"),
                        {"id": 3}, {"id": 4}]
    dlq = MemorySink(name="dlq")
    summary = build(FlakySink(fail=id_is(4)), units=units,
                    chain=(MapMiddleware(strict, name="strict"),), dlq=dlq).run_sync()
    assert summary.failures.by_classification == {
        "serialization": 1, "deserialization": 1, "unknown": 1}
    assert summary.failures.by_severity == {"error": 3}
    runtime = summary.to_dict()["runtime"]
    assert runtime["failure_classification_counts"] == dict(summary.failures.by_classification)
    assert "failures by class: deserialization 1, serialization 1, unknown 1" in str(summary)
    assert len(dlq.records) == 3


def test_a_run_without_failures_reports_empty_counts() -> None:
    summary = build(FlakySink()).run_sync()
    assert summary.runtime.failure_classification_counts == {}
    assert summary.runtime.failure_alert_severity_counts == {}
    assert "failures by class" not in str(summary)


def test_a_source_failure_is_classified_and_counted() -> None:
    source = RecordingSource(ROWS, fail_at=3)  # raises OSError while reading
    dlq = MemorySink(name="dlq")
    bound = Pipeline(source, id="t").build(FlakySink(), delivery=DeliveryConfig(dlq=dlq))
    with pytest.raises(OSError, match="source read failed"):
        bound.run_sync()
    [rec] = dlq.records
    assert rec.stage == "source_stream"
    assert rec.details is not None and rec.details["failure"]["classification"] == "connectivity"
    assert bound.last_summary is not None
    assert bound.last_summary.failures.by_classification == {"connectivity": 1}


class DetailedError(ValueError):
    def __init__(self, message: str, details: Any) -> None:
        super().__init__(message)
        self.dlq_details = details


@pytest.mark.parametrize(("own", "expected_extra"), [
    ({"table": "orders", "column": "qty"}, {"table": "orders", "column": "qty"}),
    ("row 17 of page 3", {"provider_details": "row 17 of page 3"}),
])
def test_details_a_program_attached_are_merged_with_the_decision(own: Any,
                                                                 expected_extra: Any) -> None:
    dlq = MemorySink(name="dlq")

    class Sink(FlakySink):
        async def write(self, record: Any) -> None:
            raise DetailedError("rejected", own)

    build(Sink(native=()), units=[{"id": 1}], dlq=dlq).run_sync()
    [rec] = dlq.records
    assert rec.details is not None
    assert rec.details["failure"]["classification"] == "unknown"
    assert {k: v for k, v in rec.details.items() if k != "failure"} == expected_extra


def test_a_programs_own_failure_key_wins() -> None:
    dlq = MemorySink(name="dlq")

    class Sink(FlakySink):
        async def write(self, record: Any) -> None:
            raise DetailedError("rejected", {"failure": "their own words"})

    build(Sink(native=()), units=[{"id": 1}], dlq=dlq).run_sync()
    assert dlq.records[0].details == {"failure": "their own words"}


def test_a_redactor_sees_the_decision_and_may_change_it() -> None:
    dlq = MemorySink(name="dlq")
    seen: list[Any] = []

    def redact(rec: Any) -> Any:
        seen.append(rec.details)
        return rec.with_fields(details={"failure": {"classification": "masked"}})

    build(FlakySink(fail=id_is(0)), units=[{"id": 0}], dlq=dlq, dlq_redactor=redact).run_sync()
    assert seen[0]["failure"]["classification"] == "unknown"
    assert dlq.records[0].details == {"failure": {"classification": "masked"}}


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_the_failure_details_round_trip_through_the_builtin_dlq_files(tmp_path: Path,
                                                                     kind: str) -> None:
    path = tmp_path / ("dlq.jsonl" if kind == "jsonl" else "dlq.db")
    dlq = JsonLinesDLQSink(path) if kind == "jsonl" else SQLiteDLQSink(path)

    class Sink(FlakySink):
        async def write(self, record: Any) -> None:
            raise DetailedError("rejected", {"rows": [1, 2], "note": "é"})

    build(Sink(native=()), units=[{"id": 1}], dlq=dlq).run_sync()
    [rec] = list(read_dlq(path))
    assert rec.details == {
        "failure": {"classification": "unknown", "retryable": False, "dlq_eligible": True,
                    "alert_severity": "error", "reason": "DetailedError", "details": {}},
        "rows": [1, 2], "note": "é"}
    json.dumps(rec.details)  # stays plain JSON


def test_a_cancelled_run_is_unaffected_by_the_taxonomy() -> None:
    class Slow(FlakySink):
        async def write(self, record: Any) -> None:
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(build(Slow(native=()), dlq=MemorySink(name="dlq")).run())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_an_attached_decision_keeps_a_row_sink_writing_the_rest_of_the_unit() -> None:
    dlq = MemorySink(name="dlq")
    sink = MediumDownSink(fail=lambda r: r["id"] < 2, error=SelfAwareOSError, native=())
    summary = build(sink, units=ROWS[:4], dlq=dlq, batch_size=4).run_sync()
    assert [r["id"] for r in sink.attempts] == [0, 1, 2, 3]  # not cut short: record faults
    assert [d.record["id"] for d in dlq.records] == [0, 1]
    assert summary.records_written == 2


def test_the_same_exception_raised_in_two_runs_carries_one_note() -> None:
    shared = ConnectionError("pool exhausted")

    class Sink(FlakySink):
        async def write(self, record: Any) -> None:
            raise shared

    for _ in range(2):
        with pytest.raises(ConnectionError):
            build(Sink(native=()), units=[{"id": 1}], dlq=MemorySink(name="dlq")).run_sync()
    assert len(shared.__notes__) == 1
