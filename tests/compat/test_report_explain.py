"""``explain().to_dict()`` carries 0.3.0's keys beside ours, with 0.3.0's meaning: an
Arrow source feeding Python middleware enters the chain as Arrow and is materialised."""

from __future__ import annotations

import json

import pyarrow as pa

from agora import (
    ArrowBatchSource,
    DeliveryConfig,
    IterableBatchSource,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SinkFanOut,
    SinkRouter,
)
from agora.middleware.builtins import ArrowMapMiddleware
from agora.planes import DataPlane
from tests.runtime.doubles import FlakySink

TABLE = pa.table({"id": [1, 2, 3]})
ROW_ONLY = (DataPlane.PYTHON_ROWS,)


def _explain(source, *middleware, writer=None, delivery=None):
    bound = Pipeline(source, id="x").pipe(*middleware).build(writer or MemorySink(),
                                                              delivery=delivery)
    return bound.explain()


def test_arrow_source_into_python_middleware_enters_as_arrow_with_the_materialise_flag():
    data = _explain(ArrowBatchSource(TABLE), MapMiddleware(lambda r: r, name="m")).to_dict()
    assert data["middleware_input_data_plane"] == "arrow_batches"
    assert data["middleware_materializes_arrow_to_rows"] is True
    assert data["middleware_output_data_plane"] == "python_batches"
    # Our own field keeps its meaning: the plane the middleware work on.
    assert data["middleware_input_plane"] == "python_batches"
    assert data["materializes_arrow_to_rows"] is True


def test_the_upstream_keys_name_lane_source_and_writer_planes():
    data = _explain(IterableBatchSource([[{"id": 1}]])).to_dict()
    assert data["planned_lane"] == "batch" and data["batch_source"] is True
    assert data["source_data_plane"] == "python_batches"
    assert data["writer_input_data_plane"] == "python_batches"
    assert data["source_limit"] is None


def test_with_no_middleware_the_chain_planes_are_the_source_plane():
    data = _explain(IterableSource([{"id": 1}])).to_dict()
    assert data["middleware_input_data_plane"] == data["middleware_output_data_plane"]
    assert data["middleware_input_data_plane"] == "python_rows"
    assert data["middleware_input_plane"] is None  # ours: no chain
    assert data["middleware_matrix"] == []


def test_the_middleware_matrix_gives_index_name_and_plane():
    data = _explain(ArrowBatchSource(TABLE), ArrowMapMiddleware(lambda b: b, name="a1"),
                    ArrowMapMiddleware(lambda b: b, name="a2")).to_dict()
    assert data["middleware_matrix"] == [
        {"index": 0, "name": "a1", "data_plane": "arrow_batches"},
        {"index": 1, "name": "a2", "data_plane": "arrow_batches"},
    ]
    assert data["arrow_chain_eligible"] is True and data["arrow_fast_path_eligible"] is True


def test_each_sink_has_its_selected_plane_and_downgrade_marker_under_both_names():
    fan = SinkFanOut([MemorySink(name="arrow"), FlakySink(name="rows", native=ROW_ONLY)])
    data = _explain(ArrowBatchSource(TABLE), writer=fan).to_dict()
    arrow, rows = data["sinks"]
    assert arrow["sink_name"] == arrow["name"] == "arrow"
    assert arrow["selected_data_plane"] == "arrow_batches"
    assert arrow["downgraded_from_input"] is False
    assert rows["selected_data_plane"] == rows["selected_plane"] == "python_rows"
    assert rows["downgraded_from_input"] is rows["downgraded"] is True
    assert rows["accepted_data_planes"] == ["python_rows"]
    assert data["sink_downgrade_count"] == 1


def test_an_arrow_chain_into_a_batch_only_sink_is_chain_eligible_but_not_fast_path():
    sink = FlakySink(name="batches")  # rows and Python batches, no Arrow
    explain = _explain(ArrowBatchSource(TABLE), writer=sink)
    assert explain.arrow_chain_eligible is True
    assert explain.arrow_fast_path_eligible is False
    assert explain.sinks[0].selected_plane == "python_batches"


def test_a_router_never_takes_the_arrow_fast_path():
    router = SinkRouter().default(MemorySink(name="all"))
    explain = _explain(ArrowBatchSource(TABLE), writer=router)
    assert explain.arrow_fast_path_eligible is False
    assert explain.to_dict()["sinks"][0]["selected_data_plane"] == "python_rows"


def test_direct_flush_is_eligible_for_grouped_row_writes_only():
    grouped = _explain(IterableSource([{"id": 1}]), delivery=DeliveryConfig(batch_size=10))
    single = _explain(IterableSource([{"id": 1}]))
    assert grouped.direct_flush_eligible is True
    assert single.direct_flush_eligible is False


def test_the_upstream_names_are_attributes_too_and_the_dict_is_json_ready():
    explain = _explain(IterableSource([{"id": 1}]), MapMiddleware(lambda r: r, name="m"))
    assert explain.planned_lane == "linear"
    assert explain.source_data_plane == explain.writer_input_data_plane == "python_rows"
    assert explain.sink_downgrade_count == 0
    assert json.loads(json.dumps(explain.to_dict())) == explain.to_dict()
