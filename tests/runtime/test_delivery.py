"""Delivery semantics (contract §7): the checkpoint table row by row, DLQ routing per stage,
handled-prefix gating, durability before checkpoints, policies as strings."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agora import (
    ArrowMapMiddleware,
    BatchApplyMiddleware,
    CheckpointError,
    DataPlane,
    DeliveryConfig,
    DLQFailurePolicy,
    DLQRecord,
    FailurePolicy,
    SyncInMemoryCheckpointStore,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SinkFailurePolicy,
)
from agora.records import MalformedRecord
from tests.runtime.doubles import FailingDLQ, FlakySink, RecordingSource, RecordingStore

ROWS = [{"id": i} for i in range(10)]


def bad5(r):
    return r["id"] == 5


def run(units=ROWS, *, sink=None, plane=DataPlane.PYTHON_ROWS, chain=(), **delivery):
    store = delivery.pop("checkpoint", RecordingStore())
    source = RecordingSource(units, plane=plane)
    sink = sink or FlakySink()
    bound = Pipeline(source, id="t").pipe(*chain).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1, **delivery))
    return bound, sink, store


class TestCheckpointTable:
    def test_written_dropped_advance(self):
        bound, sink, store = run(chain=[MapMiddleware(lambda r: None if r["id"] % 2 else r)])
        s = bound.run_sync()
        assert s.records_written == 5 and s.records_dropped == 5 and s.records_errored == 0
        assert store.saves[-1] == 10 and s.last_checkpoint_value == 10

    def test_failed_captured_by_dlq_continues_and_advances(self):
        dlq = MemorySink(name="dlq")
        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=dlq)
        s = bound.run_sync()
        assert s.records_errored == 1 and s.records_written == 9
        assert store.saves[-1] == 10
        [rec] = dlq.records
        assert isinstance(rec, DLQRecord)
        assert rec.stage == "sink_write" and rec.sink == "flaky" and rec.record == {"id": 5}
        assert rec.error_type == "ValueError" and rec.pipeline_id == "t"

    def test_failed_no_dlq_fail_closed_stops_with_original_and_holds_checkpoint(self):
        bound, sink, store = run(sink=FlakySink(fail=bad5))
        with pytest.raises(ValueError, match="rejects"):
            bound.run_sync()
        assert store.saves and max(store.saves) == 5  # records 0..4 handled, 5 not
        assert sink.rows == ROWS[:5]

    def test_failed_no_dlq_log_and_continue(self):
        bound, sink, store = run(sink=FlakySink(fail=bad5), failure_policy="log_and_continue")
        s = bound.run_sync()
        assert s.records_errored == 1 and store.saves[-1] == 10
        assert s.runtime["failures_continued_without_dlq"] == 1

    def test_dlq_write_failed_log_only_falls_back_to_fail_closed(self):
        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=FailingDLQ())
        with pytest.raises(ValueError, match="rejects"):  # the original, not the DLQ's error
            bound.run_sync()
        assert max(store.saves) == 5

    def test_dlq_write_failed_log_only_then_log_and_continue(self):
        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=FailingDLQ(),
                                 failure_policy=FailurePolicy.LOG_AND_CONTINUE)
        s = bound.run_sync()
        assert s.runtime["dlq_failures"] == 1 and store.saves[-1] == 10

    def test_dlq_write_failed_raise_stops_with_dlq_exception(self):
        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=FailingDLQ(),
                                 dlq_failure_policy=DLQFailurePolicy.RAISE,
                                 failure_policy="log_and_continue")
        with pytest.raises(OSError, match="dlq is down"):
            bound.run_sync()
        assert max(store.saves) == 5

    def test_unrouted_counts_as_drop_and_advances(self):
        from agora import SinkRouter
        a = MemorySink(name="a")
        router = SinkRouter().route(lambda r: r["id"] < 3, a)
        store = RecordingStore()
        bound = Pipeline(RecordingSource(ROWS), id="t").route(
            router, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
        s = bound.run_sync()
        assert s.records_written == 3 and s.records_dropped == 7
        assert s.runtime["unrouted_records"] == 7 and store.saves[-1] == 10


class TestDlqStages:
    def test_middleware_stage(self):
        dlq = MemorySink(name="dlq")

        def boom(r):
            if r["id"] == 3:
                raise KeyError("no field")
            return r

        bound, sink, store = run(chain=[MapMiddleware(boom, name="boom")], dlq=dlq)
        s = bound.run_sync()
        [rec] = dlq.records
        assert rec.stage == "middleware" and rec.middleware == "boom" and rec.record == {"id": 3}
        assert s.by_middleware["boom"]["errored"] == 1

    def test_batch_middleware_stage_one_record_per_input(self):
        dlq = MemorySink(name="dlq")

        def explode(records):
            if any(r["id"] == 4 for r in records):
                raise RuntimeError("bad batch")
            return records

        batches = [ROWS[0:3], ROWS[3:6], ROWS[6:10]]
        bound, sink, store = run(batches, plane=DataPlane.PYTHON_BATCHES,
                                 chain=[BatchApplyMiddleware(explode, name="bm")], dlq=dlq)
        s = bound.run_sync()
        assert [r.record for r in dlq.records] == ROWS[3:6]
        assert {r.stage for r in dlq.records} == {"batch_middleware"}
        assert s.records_errored == 3 and s.records_written == 7
        assert store.saves == [1, 2, 3]

    def test_per_record_middleware_in_batch_lane_is_an_error_not_a_drop(self):
        dlq = MemorySink(name="dlq")

        def picky(r):
            if r["id"] == 1:
                raise ValueError("picky")
            return r

        bound, sink, store = run([ROWS[:4]], plane=DataPlane.PYTHON_BATCHES,
                                 chain=[MapMiddleware(picky)], dlq=dlq)
        s = bound.run_sync()
        assert s.records_errored == 1 and s.records_dropped == 0 and s.records_written == 3
        assert dlq.records[0].stage == "middleware"

    def test_arrow_lane_failure_dead_letters_each_row_as_dict(self):
        dlq = MemorySink(name="dlq")
        batches = [pa.record_batch({"id": [0, 1]}), pa.record_batch({"id": [2, 3, 4]})]

        def fail_second(b):
            if b.column(0)[0].as_py() == 2:
                raise ValueError("arrow stage broke")
            return b

        bound, sink, store = run(batches, plane=DataPlane.ARROW_BATCHES,
                                 chain=[ArrowMapMiddleware(fail_second, name="am")], dlq=dlq)
        s = bound.run_sync()
        assert [r.record for r in dlq.records] == [{"id": 2}, {"id": 3}, {"id": 4}]
        assert s.records_errored == 3 and s.records_written == 2 and store.saves == [1, 2]

    def test_source_record_stage(self):
        dlq = MemorySink(name="dlq")
        units = [{"id": 0}, MalformedRecord(raw="x,,", reason="3 fields", location="f.csv:2"), {"id": 1}]
        bound, sink, store = run(units, dlq=dlq)
        s = bound.run_sync()
        [rec] = dlq.records
        assert rec.stage == "source_record" and rec.record == "x,," and "f.csv:2" in rec.error_message
        assert rec.error_type == "SourceRecordError"
        assert s.records_errored == 1 and s.records_written == 2 and store.saves[-1] == 3

    def test_redactor_masks_and_a_raising_redactor_is_a_dlq_failure(self):
        dlq = MemorySink(name="dlq")
        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=dlq,
                                 dlq_redactor=lambda rec: rec.with_fields(record={"id": "***"}))
        bound.run_sync()
        assert dlq.records[0].record == {"id": "***"}

        def broken(rec):
            raise RuntimeError("redactor bug")

        bound, sink, store = run(sink=FlakySink(fail=bad5), dlq=MemorySink(name="dlq2"),
                                 dlq_redactor=broken, dlq_failure_policy="raise")
        with pytest.raises(RuntimeError, match="redactor bug"):
            bound.run_sync()


class TestGatingAndDurability:
    def test_checkpoint_every_and_final_save(self):
        store = RecordingStore()
        bound = Pipeline(RecordingSource(ROWS), id="t").build(
            FlakySink(), delivery=DeliveryConfig(checkpoint=store, checkpoint_every=4))
        bound.run_sync()
        assert store.saves == [4, 8, 10]

    def test_sinks_and_dlq_flushed_before_every_save(self):
        log: list[str] = []
        store = RecordingStore(log=log)
        sink = FlakySink(log=log, fail=bad5)
        dlq = FlakySink(name="dlq", log=log)
        bound = Pipeline(RecordingSource(ROWS), id="t").build(
            sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=5, dlq=dlq))
        bound.run_sync()
        saves = [i for i, e in enumerate(log) if e == "store.save"]
        assert len(saves) == 2
        for i in saves:
            assert log[i - 2:i] == ["flaky.flush", "dlq.flush"]

    def test_flush_failure_stops_without_checkpoint(self):
        store = RecordingStore()
        bound = Pipeline(RecordingSource(ROWS), id="t").build(
            FlakySink(fail_flush=True), delivery=DeliveryConfig(checkpoint=store, checkpoint_every=3))
        with pytest.raises(OSError, match="flush failed"):
            bound.run_sync()
        assert store.saves == []

    def test_checkpoint_failure_policies(self):
        store = RecordingStore(fail_save=True)
        bound = Pipeline(RecordingSource(ROWS), id="t").build(
            FlakySink(), delivery=DeliveryConfig(checkpoint=store))
        with pytest.raises(OSError, match="disk full"):
            bound.run_sync()
        store = RecordingStore(fail_save=True)
        bound = Pipeline(RecordingSource(ROWS), id="t").build(
            FlakySink(), delivery=DeliveryConfig(checkpoint=store, checkpoint_every=3,
                                                 checkpoint_failure_policy="log_and_continue"))
        s = bound.run_sync()
        assert s.records_written == 10 and s.runtime["checkpoint_failures"] == 4

    def test_resume_after_fail_closed_loses_nothing(self):
        store = SyncInMemoryCheckpointStore()
        flaky = {"on": True}
        sink = FlakySink(fail=lambda r: flaky["on"] and r["id"] == 5)
        source = RecordingSource(ROWS)
        bound = Pipeline(source, id="t").build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=2))
        with pytest.raises(ValueError):
            bound.run_sync()
        flaky["on"] = False
        s = bound.run_sync()
        ids = [r["id"] for r in sink.rows]
        assert sorted(set(ids)) == list(range(10))  # zero loss
        assert len(ids) - 10 <= 2  # duplicates bounded by checkpoint_every
        assert s.runtime["resumed_from"] == 4

    def test_foreign_checkpoint_refused(self):
        store = SyncInMemoryCheckpointStore()
        Pipeline(RecordingSource(ROWS, name="a"), id="t").build(
            FlakySink(), delivery=DeliveryConfig(checkpoint=store)).run_sync()
        log: list[str] = []
        sink = FlakySink(log=log)
        bound = Pipeline(RecordingSource(ROWS, name="b", log=log), id="t").build(
            sink, delivery=DeliveryConfig(checkpoint=store))
        with pytest.raises(CheckpointError, match="foreign"):
            bound.run_sync()
        assert "source.open" not in log and "flaky.open" not in log

    def test_non_json_checkpoint_is_a_checkpoint_error(self):
        class OddSource(RecordingSource):
            def current_checkpoint(self):
                return object()

        bound = Pipeline(OddSource(ROWS), id="t").build(
            FlakySink(), delivery=DeliveryConfig(checkpoint=SyncInMemoryCheckpointStore()))
        with pytest.raises(CheckpointError, match="JSON"):
            bound.run_sync()

    def test_policy_aliases_and_strings(self):
        cfg = DeliveryConfig(sink_failure_policy="log_and_continue")
        assert cfg.failure_policy is FailurePolicy.LOG_AND_CONTINUE
        assert SinkFailurePolicy is FailurePolicy
        with pytest.raises(ValueError, match="failure_policy"):
            DeliveryConfig(failure_policy="sometimes")
        with pytest.raises(ValueError, match="checkpoint_every"):
            DeliveryConfig(checkpoint_every=0)
        with pytest.raises(TypeError, match="CheckpointStore"):
            DeliveryConfig(checkpoint="ckpt.db")


def test_resume_from_a_checkpoint_continues_file_output_in_a_new_process(tmp_path):
    """A fresh CsvSink(mode="w") on resume must append, not truncate what earlier runs wrote."""
    from agora import CsvSink, IterableSource, SyncSQLiteCheckpointStore

    def bound():
        return Pipeline(IterableSource(ROWS, name="ids"), id="t").build(
            CsvSink(tmp_path / "out.csv"),
            delivery=DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore(tmp_path / "c.db")))

    bound().run_sync(max_records=4)
    bound().run_sync()  # new instances, as after a restart
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == '"id"' and lines[1:] == [str(i) for i in range(10)]


def test_an_uncopyable_record_is_dead_lettered_with_a_flagged_fallback():
    import threading

    from agora import IterableSource

    def boom(r):
        raise ValueError("bad record")

    dlq = MemorySink(name="dlq")
    Pipeline(IterableSource([{"id": 1, "lock": threading.Lock()}]), id="p").pipe(
        MapMiddleware(boom)).build(MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync()
    data = dlq.records[0].to_dict()
    assert data["round_trippable"] is False
    assert data["record"]["lock"]["__agora_unserialisable__"] is True


def test_expression_filter_rows_are_still_traced_to_the_source():
    import pyarrow.compute as pc

    from agora import ArrowBatchSource, ArrowFilterMiddleware

    def fail_on_7(b):
        if 7 in b.column("id").to_pylist():
            raise ValueError("seven")
        return b

    dlq = MemorySink(name="dlq")
    table = pa.table({"id": list(range(10)), "v": [i * 10 for i in range(10)]})
    s = (Pipeline(ArrowBatchSource(table, batch_size=5), id="p")
         .pipe(ArrowFilterMiddleware(lambda b: pc.field("id") >= 3),
               ArrowMapMiddleware(lambda b: b.drop_columns(["v"])),
               ArrowMapMiddleware(fail_on_7))
         .build(MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert [r.record for r in dlq.records] == [{"id": i, "v": i * 10} for i in range(5, 10)]
    assert s.records_dropped == 3 and s.records_written == 2
