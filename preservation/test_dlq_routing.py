"""DLQ routing per stage and per lane (contract §3, §5, §7), end to end with real DLQ files:
``source_record`` (malformed CSV lines), ``middleware`` (a per-record transform that
raises), ``batch_middleware`` (a batch transform that raises), ``sink_write`` (a sink that
rejects records, one by one or the whole call). Exactly one DLQ record per failed input
record or row, carrying the record as the source emitted it (Arrow rows as dicts), and
the checkpoint audited from disk at every save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agora import (
    ArrowCsvSource,
    ArrowMapMiddleware,
    BatchApplyMiddleware,
    CsvSource,
    DeliveryConfig,
    IterableSource,
    JsonLinesDLQSink,
    MapMiddleware,
    Pipeline,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from preservation.audit import AuditingCheckpointStore, dlq_id, dlq_records, sink_ids
from preservation.driver import write_input
from preservation.faults import FlakyDLQ, FlakySink, InjectedFault, RaiseOn
from preservation.lanes import (
    BATCH,
    LANES,
    N,
    ROW_GROUP,
    audited_store,
    file_sink,
    source_for,
    unit_size,
    unit_start,
)

PID = "routing"
DLQ_KINDS = ("sqlite", "jsonl")


def _dlq(tmp_path: Path, kind: str) -> tuple[Any, Path]:
    path = tmp_path / ("dlq.db" if kind == "sqlite" else "dlq.jsonl")
    return (SQLiteDLQSink(path) if kind == "sqlite" else JsonLinesDLQSink(path)), path


def _run(tmp_path: Path, lane: str, dlq_kind: str, *, chain: tuple = (),
         sink_fail: set[int] = frozenset(), whole_call: bool = False) -> tuple[Any, Any, Path]:
    out = tmp_path / "out.jsonl"
    dlq, dlq_path = _dlq(tmp_path, dlq_kind)
    store = audited_store(tmp_path, lane, sink_paths=[out], dlq_path=dlq_path)
    sink = FlakySink(file_sink(out), fail_on=sink_fail, whole_call=whole_call, name="out")
    summary = Pipeline(source_for(lane), id=PID).pipe(*chain).build(
        sink, delivery=DeliveryConfig(dlq=dlq, checkpoint=store, checkpoint_every=1,
                                      batch_size=ROW_GROUP)).run_sync()
    assert not store.violations, store.violations
    assert len(store.saves) >= 5
    return summary, dlq_records(dlq_path), out


def _assert_common(records: list[Any], summary: Any, *, stage: str, source: str) -> None:
    for rec in records:
        assert rec.pipeline_id == PID and rec.run_id == summary.run_id
        assert rec.stage == stage and rec.source == source
        assert rec.checkpoint is not None and rec.created_at
        assert rec.error_type and rec.error_message


def _mark_seen(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "seen": True}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dlq_kind", DLQ_KINDS)
@pytest.mark.parametrize("lane", LANES)
class TestStages:
    def test_middleware_stage_one_record_per_failed_record(self, tmp_path: Path, lane: str,
                                                           dlq_kind: str) -> None:
        bad = {3, 17, 41}
        chain = (MapMiddleware(RaiseOn("bad field", ids=bad), name="check"),)
        summary, dead, out = _run(tmp_path, lane, dlq_kind, chain=chain)
        assert sorted(dlq_id(r) for r in dead) == sorted(bad)
        _assert_common(dead, summary, stage="middleware", source=lane)
        assert {r.middleware for r in dead} == {"check"} and {r.sink for r in dead} == {None}
        assert {r.error_type for r in dead} == {"InjectedFault"}
        assert all(isinstance(r.record, dict) and set(r.record) == {"id", "value"} for r in dead)
        assert sink_ids(out) == [i for i in range(N) if i not in bad]
        assert summary.records_errored == len(bad)

    def test_batch_middleware_stage_one_record_per_input(self, tmp_path: Path, lane: str,
                                                         dlq_kind: str) -> None:
        bad = 20  # the batch (or, on the row lane, the one-record batch) holding it fails
        fn = RaiseOn("batch rejected", ids={bad})
        mw = (ArrowMapMiddleware(fn, name="batchy") if lane == "arrow"
              else BatchApplyMiddleware(fn, name="batchy"))
        summary, dead, out = _run(tmp_path, lane, dlq_kind, chain=(mw,))
        failed = [bad] if lane == "rows" else list(range(unit_start(lane, bad),
                                                         unit_start(lane, bad) + BATCH))
        assert [dlq_id(r) for r in dead] == failed
        _assert_common(dead, summary, stage="batch_middleware", source=lane)
        assert {r.middleware for r in dead} == {"batchy"}
        assert all(isinstance(r.record, dict) for r in dead)  # Arrow rows as dicts
        assert sink_ids(out) == [i for i in range(N) if i not in failed]

    def test_sink_write_stage_keeps_source_and_processed_record(
        self, tmp_path: Path, lane: str, dlq_kind: str
    ) -> None:
        bad = {0, 29, N - 1}
        chain = (MapMiddleware(_mark_seen, name="mark"),)
        summary, dead, out = _run(tmp_path, lane, dlq_kind, chain=chain, sink_fail=bad)
        assert [dlq_id(r) for r in dead] == sorted(bad)
        _assert_common(dead, summary, stage="sink_write", source=lane)
        assert {r.sink for r in dead} == {"out"} and {r.middleware for r in dead} == {None}
        for rec in dead:
            assert "seen" not in rec.record  # as the source emitted it
            assert rec.processed_record == {**rec.record, "seen": True}
        assert sink_ids(out) == [i for i in range(N) if i not in bad]

    def test_sink_whole_call_failure_dead_letters_every_record_of_the_call(
        self, tmp_path: Path, lane: str, dlq_kind: str
    ) -> None:
        bad = 33
        summary, dead, out = _run(tmp_path, lane, dlq_kind, sink_fail={bad}, whole_call=True)
        # One call per unit: the writer group on the row lane, the batch elsewhere.
        failed = list(range(unit_start(lane, bad), unit_start(lane, bad) + unit_size(lane)))
        assert [dlq_id(r) for r in dead] == failed
        _assert_common(dead, summary, stage="sink_write", source=lane)
        assert {r.error_type for r in dead} == {"InjectedFault"}
        assert sink_ids(out) == [i for i in range(N) if i not in failed]
        assert summary.records_errored == len(failed)


# -- source_record: malformed input lines ----------------------------------------------------

MALFORMED = {0, 7, 8, 30, N - 1}


def _csv_source(lane: str, path: Path) -> Any:
    if lane == "rows":
        return CsvSource(path, on_malformed="dlq", name="csv")
    if lane == "batches":
        return CsvSource(path, on_malformed="dlq", batch_size=BATCH, name="csv")
    return ArrowCsvSource(path, on_malformed="dlq", batch_size=BATCH, block_size=256,
                          name="csv")


def _csv_covered(lane: str) -> Any:
    good = [i for i in range(N) if i not in MALFORMED]
    bad = sorted(MALFORMED)
    if lane == "arrow":  # {"row": good rows emitted, "malformed": malformed rows emitted}
        return lambda v: set(good[: v["row"]]) | set(bad[: v["malformed"]])
    return lambda v: v["line"] - 1  # lines consumed, minus the header


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("lane", "group"),
                         [("rows", 1), ("rows", ROW_GROUP), ("batches", 1), ("arrow", 1)])
def test_source_record_stage_dead_letters_the_raw_line(tmp_path: Path, lane: str,
                                                       group: int) -> None:
    """Malformed lines are dead-lettered raw, naming file and line; the checkpoint never
    passes one before its DLQ row is durable — also when the row lane groups records for
    the writer (``DeliveryConfig.batch_size``; ``group`` is 1 on the batch lanes, where it
    does not apply)."""
    src = tmp_path / "in.csv"
    write_input(src, N, MALFORMED)
    out, dlq_path = tmp_path / "out.jsonl", tmp_path / "dlq.db"
    store = AuditingCheckpointStore(SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"),
                                    covered=_csv_covered(lane), sink_paths=[out],
                                    dlq_path=dlq_path)
    summary = Pipeline(_csv_source(lane, src), id=PID).build(
        file_sink(out), delivery=DeliveryConfig(dlq=SQLiteDLQSink(dlq_path), checkpoint=store,
                                                checkpoint_every=1, batch_size=group)).run_sync()
    dead = dlq_records(dlq_path)
    assert sorted(dlq_id(r) for r in dead) == sorted(MALFORMED)
    _assert_common(dead, summary, stage="source_record", source="csv")
    for rec in dead:
        assert rec.record == f"{dlq_id(rec)},broken"  # the raw line, not a parsed dict
        assert rec.error_type == "SourceRecordError"
        assert f"in.csv:{dlq_id(rec) + 2}" in rec.error_message  # file and line number
    assert sorted(sink_ids(out)) == [i for i in range(N) if i not in MALFORMED]
    assert summary.records_errored == len(MALFORMED)
    assert len(store.saves) >= 5
    assert not store.violations, store.violations


@pytest.mark.timeout(30)
def test_a_failed_dlq_write_for_a_malformed_line_never_lets_the_checkpoint_skip_it(
    tmp_path: Path,
) -> None:
    """Row lane with writer grouping: the group before a malformed line is committed, then
    the DLQ refuses the malformed line and the run stops (``dlq_failure_policy="raise"``).
    The stored checkpoint must still be before that line, or a resume skips it for good."""
    src = tmp_path / "in.csv"
    write_input(src, N, {30})
    store = SyncSQLiteCheckpointStore(tmp_path / "ckpt.db")
    dlq = FlakyDLQ(SQLiteDLQSink(tmp_path / "dlq.db"), fail_writes=True)
    bound = Pipeline(CsvSource(src, on_malformed="dlq"), id=PID).build(
        file_sink(tmp_path / "out.jsonl"),
        delivery=DeliveryConfig(dlq=dlq, dlq_failure_policy="raise", checkpoint=store,
                                checkpoint_every=1, batch_size=ROW_GROUP))
    with pytest.raises(InjectedFault, match="is down"):
        bound.run_sync()
    with SyncSQLiteCheckpointStore(tmp_path / "ckpt.db") as fresh:
        stored = fresh.load(PID)
    assert stored is not None
    lines_covered = stored.value["line"] - 1
    assert lines_covered <= 30, (
        f"checkpoint {stored.value} covers the malformed line of id 30, which never reached "
        f"the DLQ: a resumed run would skip it silently")


def _add_flag(batch: Any) -> Any:
    import pyarrow as pa

    return batch.append_column("flag", pa.array([True] * batch.num_rows))


def _odd_or_bad(batch: Any) -> Any:
    import pyarrow as pa

    return pa.array([i % 2 == 1 or i == 20 for i in batch.column("id").to_pylist()])


@pytest.mark.timeout(30)
@pytest.mark.parametrize("filtered", [False, True], ids=["all-rows", "after-a-filter"])
@pytest.mark.parametrize("stage", ["batch_middleware", "sink_write"])
def test_arrow_dead_letters_carry_the_row_as_the_source_emitted_it(tmp_path: Path,
                                                                  stage: str,
                                                                  filtered: bool) -> None:
    """contract §7: ``DLQRecord.record`` is the record as the source emitted it — on the Arrow
    lane too, after an Arrow middleware changed the rows (a replay feeds it back to the
    start of the chain), and after an ``ArrowFilterMiddleware`` moved them. For sink
    failures ``processed_record`` carries the changed row."""
    from agora import ArrowFilterMiddleware

    bad = 20
    chain: list[Any] = [ArrowMapMiddleware(_add_flag, name="flag")]
    if filtered:
        chain.append(ArrowFilterMiddleware(_odd_or_bad, name="odd"))
    if stage == "batch_middleware":
        chain.append(ArrowMapMiddleware(RaiseOn("stage 2 broke", ids={bad}), name="broken"))
    out, dlq_path = tmp_path / "out.jsonl", tmp_path / "dlq.db"
    sink = FlakySink(file_sink(out), fail_on={bad} if stage == "sink_write" else (),
                     name="out")
    Pipeline(source_for("arrow"), id=PID).pipe(*chain).build(
        sink, delivery=DeliveryConfig(dlq=SQLiteDLQSink(dlq_path))).run_sync()
    dead = [r for r in dlq_records(dlq_path) if dlq_id(r) == bad]
    assert len(dead) == 1 and dead[0].stage == stage
    assert dead[0].record == {"id": bad, "value": bad * 10}, (
        f"DLQ record is {dead[0].record}, not the row the source emitted")
    if stage == "sink_write":
        assert dead[0].processed_record == {"id": bad, "value": bad * 10, "flag": True}


class _Opaque:
    """A value JSON cannot encode and ``copy.deepcopy`` cannot copy (like a lock or socket)."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("cannot copy or pickle an _Opaque")

    def __repr__(self) -> str:
        return "<opaque handle>"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dlq_kind", DLQ_KINDS)
def test_a_record_json_cannot_hold_is_dead_lettered_with_a_flagged_fallback(
    tmp_path: Path, dlq_kind: str
) -> None:
    """contract §8: never dropped — stored with its repr and type name, not round-trippable."""
    dlq, dlq_path = _dlq(tmp_path, dlq_kind)
    data = [{"id": 0, "value": 1}, {"id": 1, "value": _Opaque()}, {"id": 2, "value": 3}]
    summary = Pipeline(IterableSource(data, name="rows"), id=PID).pipe(
        MapMiddleware(RaiseOn("rejected", ids={1}), name="check")).build(
        file_sink(tmp_path / "out.jsonl"), delivery=DeliveryConfig(dlq=dlq)).run_sync()
    [rec] = dlq_records(dlq_path)
    assert dlq_id(rec) == 1 and not rec.round_trippable
    assert "<opaque handle>" in str(rec.record["value"]) and "_Opaque" in str(rec.record["value"])
    assert summary.records_errored == 1 and summary.records_written == 2
