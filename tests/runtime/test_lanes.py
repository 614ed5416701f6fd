"""Lanes and writers: linear and batch lanes, Arrow fan-out per sink plane, routers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from agora import (
    ArrowFilterMiddleware,
    ArrowMapMiddleware,
    BatchFilterMiddleware,
    DataPlane,
    DeliveryConfig,
    FilterMiddleware,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SinkFanOut,
    SinkRouter,
    WriteResult,
)
from agora.errors import ContractError
from tests.runtime.doubles import FlakySink, RecordingSource

ROWS = [{"id": i, "v": i * 10} for i in range(12)]


def arrow_batches():
    table = pa.Table.from_pylist(ROWS)
    return table.to_batches(max_chunksize=5)


class TestLinearLane:
    def test_rows_flow_and_batch_size_uses_write_batch(self):
        sink = FlakySink()
        s = Pipeline(RecordingSource(ROWS)).pipe(MapMiddleware(lambda r: {**r, "w": 1})).build(
            sink, delivery=DeliveryConfig(batch_size=5)).run_sync()
        assert s.records_written == 12 and sink.batch_calls == 3 and sink.row_calls == 0
        assert sink.rows[0] == {"id": 0, "v": 0, "w": 1}
        assert s.runtime["execution_lane"] == "linear"

    def test_batch_size_one_writes_rows(self):
        sink = FlakySink()
        Pipeline(RecordingSource(ROWS)).build(sink).run_sync()
        assert sink.row_calls == 12 and sink.batch_calls == 0

    def test_batch_middleware_on_row_lane_gets_one_record_batches(self):
        seen = []

        def spy(records):
            seen.append(len(records))
            return records

        from agora import BatchApplyMiddleware
        Pipeline(RecordingSource(ROWS)).pipe(BatchApplyMiddleware(spy)).build(MemorySink()).run_sync()
        assert seen == [1] * 12

    def test_async_middleware_is_awaited(self):
        class AsyncMap(MapMiddleware):
            async def process(self, record, ctx):
                return {**record, "async": True}

        sink = MemorySink()
        Pipeline(RecordingSource(ROWS[:2])).pipe(AsyncMap(lambda r: r)).build(sink).run_sync()
        assert all(r["async"] for r in sink.records)


class TestBatchLane:
    def test_filters_count_drops(self):
        sink = MemorySink()
        s = (Pipeline(RecordingSource([ROWS[:6], ROWS[6:]], plane=DataPlane.PYTHON_BATCHES))
             .pipe(FilterMiddleware(lambda r: r["id"] % 3), BatchFilterMiddleware(lambda r: r["id"] != 4))
             .build(sink).run_sync())
        assert [r["id"] for r in sink.records] == [1, 2, 5, 7, 8, 10, 11]
        assert s.records_dropped == 5 and s.records_written == 7

    def test_wrong_result_count_from_batch_middleware_is_a_contract_error(self):
        from agora import BatchApplyMiddleware
        bound = Pipeline(RecordingSource([ROWS[:3]], plane=DataPlane.PYTHON_BATCHES)).pipe(
            BatchApplyMiddleware(lambda rs: rs[:-1], name="short")).build(MemorySink())
        with pytest.raises(ContractError, match="'short' returned 2 results for 3"):
            bound.run_sync()


class TestArrowLane:
    def test_arrow_chain_passes_record_batches_and_counts_drops(self):
        import pyarrow.compute as pc
        sink = MemorySink()
        s = (Pipeline(RecordingSource(arrow_batches(), plane=DataPlane.ARROW_BATCHES))
             .pipe(ArrowFilterMiddleware(lambda b: pc.greater(b["id"], 2)),
                   ArrowMapMiddleware(lambda b: b.append_column("x", pc.multiply(b["v"], 2))))
             .build(sink).run_sync())
        assert s.records_dropped == 3 and s.records_written == 9
        assert len(sink.arrow_batches) == 3
        assert sink.records[0] == {"id": 3, "v": 30, "x": 60}

    def test_arrow_source_with_python_chain_materialises_once(self):
        sink = FlakySink()
        s = (Pipeline(RecordingSource(arrow_batches(), plane=DataPlane.ARROW_BATCHES))
             .pipe(MapMiddleware(lambda r: {**r, "m": True})).build(sink).run_sync())
        assert s.records_written == 12 and sink.arrow_calls == 0 and sink.batch_calls == 3
        assert s.runtime["writer_input_plane"] == "python_batches"

    def test_arrow_fan_out_each_sink_gets_its_plane(self):
        arrow = FlakySink(name="arrow", native=(DataPlane.ARROW_BATCHES,))
        batches = FlakySink(name="batches", native=(DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES))
        rows = FlakySink(name="rows", native=(DataPlane.PYTHON_ROWS,))
        s = Pipeline(RecordingSource(arrow_batches(), plane=DataPlane.ARROW_BATCHES)).fan_out(
            [arrow, batches, rows]).run_sync()
        assert (arrow.arrow_calls, arrow.batch_calls) == (3, 3)  # write_arrow_batch delegates
        assert (batches.arrow_calls, batches.batch_calls, batches.row_calls) == (0, 3, 0)
        assert (rows.arrow_calls, rows.batch_calls, rows.row_calls) == (0, 0, 12)
        assert arrow.rows == batches.rows == rows.rows == ROWS
        assert sorted(s.runtime["downgraded_sinks"]) == ["batches", "rows"]

    def test_arrow_sink_per_row_results(self):
        dlq = MemorySink(name="dlq")
        arrow = FlakySink(name="arrow", native=(DataPlane.ARROW_BATCHES,), fail=lambda r: r["id"] == 7)
        s = Pipeline(RecordingSource(arrow_batches(), plane=DataPlane.ARROW_BATCHES)).build(
            arrow, delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert [r.processed_record for r in dlq.records] == [{"id": 7, "v": 70}]
        assert s.records_errored == 1 and s.records_written == 11


class TestFanOut:
    @pytest.mark.parametrize("plane", [DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES])
    def test_written_if_any_sink_wrote_and_each_failure_dead_lettered(self, plane):
        units = {DataPlane.PYTHON_ROWS: ROWS, DataPlane.PYTHON_BATCHES: [ROWS[:6], ROWS[6:]],
                 DataPlane.ARROW_BATCHES: arrow_batches()}[plane]
        good = MemorySink(name="good")
        bad = FlakySink(name="bad", fail=lambda r: r["id"] in (2, 9))
        dlq = MemorySink(name="dlq")
        s = Pipeline(RecordingSource(units, plane=plane)).fan_out(
            SinkFanOut([good, bad]), delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert s.records_written == 12 and s.records_errored == 0
        assert sorted(r.record["id"] for r in dlq.records) == [2, 9]
        assert {r.sink for r in dlq.records} == {"bad"}

    def test_all_sinks_fail_counts_errored_once(self):
        a = FlakySink(name="a", fail=lambda r: r["id"] == 1)
        b = FlakySink(name="b", fail=lambda r: r["id"] == 1)
        dlq = MemorySink(name="dlq")
        s = Pipeline(RecordingSource(ROWS)).fan_out([a, b], delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert s.records_errored == 1 and len(dlq.records) == 2

    def test_same_named_sinks_are_told_apart_in_dead_letters_and_counts(self):
        # Sinks sharing a name are accepted (as 0.3.0 does); the fan-out shows the second
        # as "x#2", so dead letters and per-sink counts still say which sink it was.
        a = FlakySink(name="x")
        b = FlakySink(name="x", fail=lambda r: r["id"] == 1)
        dlq = MemorySink(name="dlq")
        s = Pipeline(RecordingSource(ROWS)).fan_out(
            SinkFanOut([a, b]), delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert [r.sink for r in dlq.records] == ["x#2"]
        assert s.by_sink["x"].written == len(ROWS) and s.by_sink["x"].failed == 0
        assert s.by_sink["x#2"].written == len(ROWS) - 1 and s.by_sink["x#2"].failed == 1
        assert a.sink_name == b.sink_name == "x"  # the sinks themselves are unchanged

    def test_wrong_number_of_results_is_a_clear_failure(self):
        class Short(FlakySink):
            async def write_batch(self, records):
                return [WriteResult.ok()] * (len(records) - 1)

        dlq = MemorySink(name="dlq")
        s = Pipeline(RecordingSource([ROWS[:3]], plane=DataPlane.PYTHON_BATCHES)).build(
            Short(name="short"), delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert s.records_errored == 3
        assert "returned 2 items" in dlq.records[0].error_message
        assert dlq.records[0].error_type == "ContractError"


class TestRouter:
    @pytest.mark.parametrize("plane", [DataPlane.PYTHON_ROWS, DataPlane.ARROW_BATCHES])
    def test_first_match_wins_default_and_unrouted(self, plane):
        units = ROWS if plane is DataPlane.PYTHON_ROWS else arrow_batches()
        small, even, other = MemorySink(name="small"), MemorySink(name="even"), MemorySink(name="other")
        router = SinkRouter().route(lambda r: r["id"] < 4, small).route(lambda r: r["id"] % 2 == 0, even)
        s = Pipeline(RecordingSource(units, plane=plane)).route(router).run_sync()
        assert [r["id"] for r in small.records] == [0, 1, 2, 3]
        assert [r["id"] for r in even.records] == [4, 6, 8, 10]
        assert s.records_dropped == 4 and s.records_written == 8
        router.default(other)
        for sink in (small, even):
            sink.records.clear()
        s = Pipeline(RecordingSource(units, plane=plane)).route(router).run_sync()
        assert [r["id"] for r in other.records] == [5, 7, 9, 11] and s.records_dropped == 0

    def test_predicate_error_is_a_sink_stage_failure(self):
        dlq = MemorySink(name="dlq")

        def pred(r):
            if r["id"] == 3:
                raise KeyError("route")
            return True

        s = Pipeline(RecordingSource(ROWS)).route(SinkRouter().route(pred, MemorySink()),
                                                  delivery=DeliveryConfig(dlq=dlq)).run_sync()
        assert s.records_errored == 1 and dlq.records[0].stage == "sink_write"


def test_source_counters_reach_the_summary(tmp_path):
    from agora import ArrowCsvSource

    path = tmp_path / "in.csv"
    path.write_text("a,b\n1,2\n3,4\n5\n6,7\n")
    dlq = MemorySink(name="dlq")
    s = Pipeline(ArrowCsvSource(path, on_malformed="dlq")).build(
        MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync(max_records=10)
    metrics = s.runtime["source_metrics"]
    assert metrics["arrow_csv_rows"] == 3 and metrics["arrow_csv_malformed"] == 1
