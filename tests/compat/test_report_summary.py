"""Run summaries read the way 0.3.0 code reads them: ``summary.runtime.<name>`` under its
names, ``by_middleware[name].records_in``, and the last checkpoint as a ``Checkpoint``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from agora import (
    ArrowBatchSource,
    Checkpoint,
    CsvSink,
    DataPlane,
    DeliveryConfig,
    FilterMiddleware,
    InMemoryCheckpointStore,
    IterableBatchSource,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SinkFanOut,
)
from agora.middleware.builtins import ArrowMapMiddleware
from agora.runtime.summary import MiddlewareCounts, RuntimeFigures
from tests.runtime.doubles import FlakySink

ROWS = [{"id": i} for i in range(6)]
TABLE = pa.table({"id": list(range(6))})
ROW_ONLY = (DataPlane.PYTHON_ROWS,)


def test_runtime_reads_by_attribute_and_by_key_alike():
    summary = Pipeline(IterableSource(ROWS), id="p").build(MemorySink()).run_sync()
    runtime = summary.runtime
    assert isinstance(runtime, RuntimeFigures)
    assert runtime.execution_lane == runtime["execution_lane"] == "linear"
    assert runtime.source_data_plane == runtime.source_plane == "python_rows"
    assert runtime.writer_input_data_plane == "python_rows"


def test_an_unknown_runtime_name_is_an_attribute_error_listing_the_names_there_are():
    runtime = Pipeline(IterableSource(ROWS), id="p").build(MemorySink()).run_sync().runtime
    with pytest.raises(AttributeError, match="no 'no_such_figure'.*execution_lane"):
        runtime.no_such_figure  # noqa: B018
    assert not hasattr(runtime, "no_such_figure")


def test_an_all_arrow_chain_into_an_arrow_sink_reports_chain_and_fast_path_active():
    sink = MemorySink()
    summary = (Pipeline(ArrowBatchSource(TABLE), id="a")
               .pipe(ArrowMapMiddleware(lambda b: b)).build(sink).run_sync())
    assert summary.runtime.execution_lane == "batch"
    assert summary.runtime.arrow_chain_active is True
    assert summary.runtime.arrow_fast_path_active is True
    assert summary.runtime.writer_downgraded_sink_count == 0
    assert len(sink.records) == 6


def test_python_middleware_after_an_arrow_source_turns_the_arrow_flags_off():
    summary = (Pipeline(ArrowBatchSource(TABLE), id="a")
               .pipe(MapMiddleware(lambda r: r)).build(MemorySink()).run_sync())
    assert summary.runtime.arrow_chain_active is False
    assert summary.runtime.arrow_fast_path_active is False
    assert summary.runtime.writer_input_data_plane == "python_batches"


def test_a_row_only_sink_beside_an_arrow_sink_counts_as_one_downgrade():
    fan = SinkFanOut([MemorySink(name="arrow"), FlakySink(name="rows", native=ROW_ONLY)])
    summary = Pipeline(ArrowBatchSource(TABLE), id="a").build(fan).run_sync()
    assert summary.runtime.writer_downgraded_sink_count == 1
    assert summary.runtime.downgraded_sinks == ["rows"]
    assert summary.runtime.arrow_fast_path_active is True


def test_direct_flush_is_active_only_on_the_row_lane_with_grouped_writes():
    grouped = (Pipeline(IterableSource(ROWS), id="g")
               .build(MemorySink(), delivery=DeliveryConfig(batch_size=3)).run_sync())
    single = Pipeline(IterableSource(ROWS), id="s").build(MemorySink()).run_sync()
    batches = Pipeline(IterableBatchSource([ROWS]), id="b").build(MemorySink()).run_sync()
    assert grouped.runtime.direct_flush_active is True
    assert single.runtime.direct_flush_active is False
    assert batches.runtime.direct_flush_active is False


def test_checkpoint_figures_under_their_old_names_follow_the_store():
    store = InMemoryCheckpointStore()
    with_store = (Pipeline(IterableSource(ROWS), id="c")
                  .build(MemorySink(), delivery=DeliveryConfig(checkpoint=store,
                                                               checkpoint_every=2)).run_sync())
    without = Pipeline(IterableSource(ROWS), id="n").build(MemorySink()).run_sync()
    assert with_store.runtime.checkpoint_enabled is True
    assert with_store.runtime.checkpoint_save_count == with_store.checkpoint.saves >= 3
    assert with_store.runtime.checkpoint_failure_count == 0
    assert without.runtime.checkpoint_enabled is False
    assert without.runtime.checkpoint_save_count == 0


def test_csv_arrow_counters_appear_under_their_names_and_count_the_rows(tmp_path: Path):
    summary = (Pipeline(ArrowBatchSource(TABLE), id="csv")
               .build(CsvSink(tmp_path / "out.csv")).run_sync())
    runtime = summary.runtime
    assert runtime.csv_arrow_native_row_count + runtime.csv_arrow_downgrade_row_count == 6
    no_csv = Pipeline(IterableSource(ROWS), id="m").build(MemorySink()).run_sync().runtime
    assert no_csv.csv_arrow_native_row_count == 0 and no_csv.csv_arrow_downgrade_batch_count == 0


def test_mechanisms_agora_does_not_have_read_as_off():
    runtime = Pipeline(IterableSource(ROWS), id="p").build(MemorySink()).run_sync().runtime
    assert runtime.rust_prefetch_active is False
    assert runtime.adaptive_backpressure_enabled is False
    assert runtime.rust_prefetch_wait_count == 0


def test_runtime_is_a_fresh_json_ready_copy_on_every_access():
    summary = Pipeline(IterableSource(ROWS), id="p").build(MemorySink()).run_sync()
    first = summary.runtime
    first["execution_lane"] = "changed"
    assert summary.runtime.execution_lane == "linear"
    assert json.loads(json.dumps(summary.to_dict()))["runtime"]["arrow_chain_active"] is False


def test_by_middleware_answers_to_records_in_out_dropped_and_to_keys():
    summary = (Pipeline(IterableSource(ROWS), id="f")
               .pipe(FilterMiddleware(lambda r: r["id"] % 2 == 0, name="even"))
               .build(MemorySink()).run_sync())
    counts = summary.by_middleware["even"]
    assert isinstance(counts, MiddlewareCounts)
    assert (counts.records_in, counts.records_out, counts.records_dropped) == (6, 3, 3)
    assert counts["in"] == 6 and counts.get("errored") == 0 and counts.records_errored == 0
    assert summary.to_dict()["by_middleware"]["even"]["dropped"] == 3


def test_middleware_counts_are_read_only():
    summary = (Pipeline(IterableSource(ROWS), id="f")
               .pipe(MapMiddleware(lambda r: r, name="same")).build(MemorySink()).run_sync())
    counts = summary.by_middleware["same"]
    with pytest.raises(TypeError):
        counts["in"] = 0  # type: ignore[index]
    assert counts.records_in == 6


def test_last_checkpoint_is_a_checkpoint_naming_pipeline_run_and_source():
    summary = (Pipeline(IterableSource(ROWS, name="numbers"), id="ck")
               .build(MemorySink(), delivery=DeliveryConfig(checkpoint=InMemoryCheckpointStore()))
               .run_sync())
    record = summary.last_checkpoint
    assert isinstance(record, Checkpoint)
    assert (record.pipeline_id, record.run_id, record.source, record.value) == (
        "ck", summary.run_id, "numbers", 6)
    assert summary.last_checkpoint_value == 6
    assert summary.last_checkpoint_record is record


def test_a_run_that_committed_nothing_has_no_checkpoint_record():
    summary = (Pipeline(IterableSource([]), id="empty")
               .build(MemorySink(), delivery=DeliveryConfig(checkpoint=InMemoryCheckpointStore()))
               .run_sync())
    assert summary.last_checkpoint is None
    assert summary.last_checkpoint_record is None
