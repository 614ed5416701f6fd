"""Checkpoint gating per outcome (the contract §7 table), end to end on every lane with real
files: a JSON-lines sink, an SQLite checkpoint store, an SQLite or JSON-lines DLQ.

Every save is audited from disk before it happens (``AuditingCheckpointStore``): the
checkpoint may cover only records already in the sink file, durably in the DLQ file,
or legitimately passed (dropped, unrouted, errored under ``log_and_continue``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agora import (
    DeliveryConfig,
    DLQFailurePolicy,
    FailurePolicy,
    JsonLinesDLQSink,
    Pipeline,
    SinkRouter,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from preservation.audit import AuditingCheckpointStore, dlq_id, dlq_records, sink_ids
from preservation.faults import FlakyDLQ, FlakySink, InjectedFault
from preservation.lanes import (
    LANES,
    N,
    ROW_GROUP,
    audited_store,
    covered,
    drop_filter,
    file_sink,
    source_for,
    unit_size,
    unit_start,
)

BAD = 37  # the record the sink rejects
PID = "gating"


def _dlq(tmp_path: Path, kind: str) -> tuple[Any, Path]:
    if kind == "sqlite":
        path = tmp_path / "dlq.db"
        return SQLiteDLQSink(path), path
    path = tmp_path / "dlq.jsonl"
    return JsonLinesDLQSink(path), path


def _run_bound(lane: str, sink: Any, store: AuditingCheckpointStore, *, chain: tuple = (),
               route: SinkRouter | None = None, **delivery: Any) -> Any:
    config = DeliveryConfig(checkpoint=store, checkpoint_every=1, batch_size=ROW_GROUP,
                            **delivery)
    pipeline = Pipeline(source_for(lane), id=PID).pipe(*chain)
    if route is not None:
        return pipeline.route(route, delivery=config)
    return pipeline.build(sink, delivery=config)


def _stored_coverage(tmp_path: Path, lane: str) -> int:
    """Records covered by the checkpoint on disk, read back through a fresh store."""
    with SyncSQLiteCheckpointStore(tmp_path / "ckpt.db") as store:
        checkpoint = store.load(PID)
    return 0 if checkpoint is None else covered(lane)(checkpoint.value)


def _assert_clean_audit(store: AuditingCheckpointStore, min_saves: int) -> None:
    assert not store.violations, store.violations
    assert len(store.saves) >= min_saves, f"vacuous: only {len(store.saves)} checkpoint saves"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lane", LANES)
class TestCheckpointPassesHandledRecords:
    def test_written_and_dropped(self, tmp_path: Path, lane: str) -> None:
        dropped = {i for i in range(N) if i % 5 == 0}
        out = tmp_path / "out.jsonl"
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=None, excused=dropped)
        summary = _run_bound(lane, file_sink(out), store,
                             chain=(drop_filter(lane, lambda i: i not in dropped),)).run_sync()
        assert summary.records_written == N - len(dropped)
        assert summary.records_dropped == len(dropped)
        assert sorted(sink_ids(out)) == sorted(set(range(N)) - dropped)
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N

    def test_unrouted_records_pass_as_drops(self, tmp_path: Path, lane: str) -> None:
        unrouted = {i for i in range(N) if i % 3 == 0}
        out = tmp_path / "out.jsonl"
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=None, excused=unrouted)
        router = SinkRouter().route(lambda r: int(r["id"]) % 3 != 0, file_sink(out))
        summary = _run_bound(lane, None, store, route=router).run_sync()
        assert summary.records_dropped == len(unrouted)
        assert summary.runtime["unrouted_records"] == len(unrouted)
        assert set(sink_ids(out)) == set(range(N)) - unrouted
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N

    @pytest.mark.parametrize("dlq_kind", ["sqlite", "jsonl"])
    def test_failed_and_durably_dead_lettered(self, tmp_path: Path, lane: str,
                                              dlq_kind: str) -> None:
        out = tmp_path / "out.jsonl"
        dlq, dlq_path = _dlq(tmp_path, dlq_kind)
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path)
        sink = FlakySink(file_sink(out), fail_on={BAD}, name="out")
        summary = _run_bound(lane, sink, store, dlq=dlq).run_sync()
        assert summary.records_errored == 1 and summary.records_written == N - 1
        [record] = dlq_records(dlq_path)
        assert dlq_id(record) == BAD and record.stage == "sink_write" and record.sink == "out"
        assert record.error_type == "InjectedFault" and record.run_id == summary.run_id
        assert BAD not in sink_ids(out)
        # The audit read the DLQ file at the save covering BAD: the row was durable first.
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N

    def test_written_by_one_fan_out_sink_passes(self, tmp_path: Path, lane: str) -> None:
        a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
        dlq, dlq_path = _dlq(tmp_path, "sqlite")
        store = audited_store(tmp_path, lane, sink_paths=[a, b], dlq_path=dlq_path)
        sinks = [FlakySink(file_sink(a, "a"), fail_on={BAD}, name="a"), file_sink(b, "b")]
        config = DeliveryConfig(checkpoint=store, checkpoint_every=1, batch_size=ROW_GROUP,
                                dlq=dlq)
        summary = Pipeline(source_for(lane), id=PID).fan_out(sinks, delivery=config).run_sync()
        assert summary.records_written == N  # BAD was written by b
        assert BAD in sink_ids(b) and BAD not in sink_ids(a)
        [record] = dlq_records(dlq_path)  # a's failure is still dead-lettered, per sink
        assert dlq_id(record) == BAD and record.sink == "a"
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lane", LANES)
class TestUncapturedFailures:
    def test_no_dlq_fail_closed_stops_and_holds_checkpoint_then_resume_loses_nothing(
        self, tmp_path: Path, lane: str
    ) -> None:
        out = tmp_path / "out.jsonl"
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=None)
        with pytest.raises(InjectedFault, match=f"rejects record id={BAD}"):
            _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"),
                       store).run_sync()
        _assert_clean_audit(store, min_saves=2)
        assert _stored_coverage(tmp_path, lane) == unit_start(lane, BAD)
        # The sink recovers; the resumed run re-delivers from BAD's unit on.
        store2 = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=None)
        summary = _run_bound(lane, file_sink(out), store2).run_sync()
        assert summary.runtime["resumed_from"] is not None
        ids = sink_ids(out)
        assert set(ids) == set(range(N))
        assert len(ids) - N <= unit_size(lane) - 1  # only the rest of BAD's unit repeats
        _assert_clean_audit(store2, min_saves=2)

    def test_no_dlq_log_and_continue_passes_the_failure(self, tmp_path: Path, lane: str) -> None:
        out = tmp_path / "out.jsonl"
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=None, excused={BAD})
        summary = _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
                             failure_policy=FailurePolicy.LOG_AND_CONTINUE).run_sync()
        assert summary.records_errored == 1
        assert summary.runtime["failures_continued_without_dlq"] == 1
        assert set(sink_ids(out)) == set(range(N)) - {BAD}
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N

    def test_dlq_write_fails_log_only_fail_closed_raises_the_original(
        self, tmp_path: Path, lane: str
    ) -> None:
        out = tmp_path / "out.jsonl"
        dlq, dlq_path = _dlq(tmp_path, "sqlite")
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path)
        with pytest.raises(InjectedFault, match="rejects record") as info:
            _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
                       dlq=FlakyDLQ(dlq, fail_writes=True),
                       dlq_failure_policy=DLQFailurePolicy.LOG_ONLY).run_sync()
        assert "is down" not in str(info.value)  # the sink's error, not the DLQ's
        _assert_clean_audit(store, min_saves=2)
        assert _stored_coverage(tmp_path, lane) == unit_start(lane, BAD)
        assert dlq_records(dlq_path) == []

    def test_dlq_write_fails_log_only_log_and_continue(self, tmp_path: Path, lane: str) -> None:
        out = tmp_path / "out.jsonl"
        dlq, dlq_path = _dlq(tmp_path, "sqlite")
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path, excused={BAD})
        summary = _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
                             dlq=FlakyDLQ(dlq, fail_writes=True),
                             failure_policy="log_and_continue").run_sync()
        assert summary.runtime["dlq_failures"] == 1 and summary.records_errored == 1
        _assert_clean_audit(store, min_saves=N // 6)
        assert _stored_coverage(tmp_path, lane) == N

    def test_dlq_write_fails_raise_stops_with_the_dlq_error(self, tmp_path: Path,
                                                            lane: str) -> None:
        out = tmp_path / "out.jsonl"
        dlq, dlq_path = _dlq(tmp_path, "jsonl")
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path)
        with pytest.raises(InjectedFault, match="is down"):
            _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
                       dlq=FlakyDLQ(dlq, fail_writes=True), dlq_failure_policy="raise",
                       failure_policy="log_and_continue").run_sync()
        _assert_clean_audit(store, min_saves=2)
        assert _stored_coverage(tmp_path, lane) == unit_start(lane, BAD)

    def test_dlq_commit_failure_is_not_a_capture(self, tmp_path: Path, lane: str) -> None:
        """A DLQ that accepts the row into a buffer but cannot commit it has not captured
        it: the checkpoint must not pass the record (whatever the policies say)."""
        out = tmp_path / "out.jsonl"
        dlq, dlq_path = _dlq(tmp_path, "sqlite")
        store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path)
        with pytest.raises(InjectedFault, match="cannot commit"):
            _run_bound(lane, FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
                       dlq=FlakyDLQ(dlq, fail_flush=True)).run_sync()
        _assert_clean_audit(store, min_saves=2)
        assert _stored_coverage(tmp_path, lane) <= unit_start(lane, BAD)


@pytest.mark.timeout(30)
def test_the_audit_notices_a_dlq_that_is_not_durable_at_flush(tmp_path: Path) -> None:
    """Guards the guard: with a DLQ whose flush() commits nothing, the run itself succeeds
    (the row is committed at close), but the audit sees a checkpoint covering a record
    that was on disk nowhere — so a clean audit elsewhere means something."""
    out = tmp_path / "out.jsonl"
    dlq, dlq_path = _dlq(tmp_path, "sqlite")
    store = audited_store(tmp_path, "batches", sink_paths=[out], dlq_path=dlq_path)
    _run_bound("batches", FlakySink(file_sink(out), fail_on={BAD}, name="out"), store,
               dlq=FlakyDLQ(dlq, skip_flush=True)).run_sync()
    assert [dlq_id(r) for r in dlq_records(dlq_path)] == [BAD]  # committed at close
    assert store.violations and f"ids [{BAD}]" in store.violations[0]


@pytest.mark.timeout(30)
def test_drops_by_an_arrow_expression_filter_pass_the_checkpoint(tmp_path: Path) -> None:
    """``ArrowFilterMiddleware`` also takes a predicate returning a compute Expression."""
    import pyarrow.compute as pc

    from agora import ArrowFilterMiddleware

    dropped = {i for i in range(N) if i % 5 == 0}
    out = tmp_path / "out.jsonl"
    store = audited_store(tmp_path, "arrow", sink_paths=[out], dlq_path=None, excused=dropped)
    keep = ArrowFilterMiddleware(lambda b: ~pc.field("id").isin(sorted(dropped)), name="drop")
    summary = _run_bound("arrow", file_sink(out), store, chain=(keep,)).run_sync()
    assert summary.records_dropped == len(dropped)
    assert sink_ids(out) == [i for i in range(N) if i not in dropped]
    _assert_clean_audit(store, min_saves=N // 6)
    assert _stored_coverage(tmp_path, "arrow") == N
