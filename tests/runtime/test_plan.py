"""Planning and explain (contract §2): the validation matrix, plane selection, legacy flags."""

from __future__ import annotations

import json
import warnings

import pyarrow as pa
import pytest

from agora import (
    ArrowMapMiddleware,
    BaseSink,
    BatchMapMiddleware,
    DataPlane,
    MapMiddleware,
    MemorySink,
    Pipeline,
    PipelineError,
    SinkCapabilities,
    SinkDataPlaneSpec,
    SinkRouter,
)
from agora.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from tests.runtime.doubles import FlakySink, RecordingSource


def ident(x):
    return x


def rows_source(log=None):
    return RecordingSource([{"a": 1}], log=log)


def arrow_source(log=None):
    batch = pa.record_batch({"a": [1, 2]})
    return RecordingSource([batch], plane=DataPlane.ARROW_BATCHES, log=log)


def batch_source(log=None):
    return RecordingSource([[{"a": 1}]], plane=DataPlane.PYTHON_BATCHES, log=log)


class TestSelectionRule:
    def spec(self, *native):
        return SinkDataPlaneSpec.build("s", accepted=native, native=native)

    def test_upstream_selected_when_native(self):
        assert self.spec(DataPlane.ARROW_BATCHES).selected_plane_for("arrow_batches") is DataPlane.ARROW_BATCHES

    def test_arrow_downgrades_to_batches_when_batches_native(self):
        spec = self.spec(DataPlane.PYTHON_BATCHES)
        assert spec.selected_plane_for(DataPlane.ARROW_BATCHES) is DataPlane.PYTHON_BATCHES
        assert spec.is_downgraded(DataPlane.ARROW_BATCHES)

    def test_everything_else_downgrades_to_rows(self):
        spec = self.spec(DataPlane.PYTHON_ROWS)
        assert spec.selected_plane_for(DataPlane.ARROW_BATCHES) is DataPlane.PYTHON_ROWS
        assert spec.selected_plane_for(DataPlane.PYTHON_BATCHES) is DataPlane.PYTHON_ROWS
        assert not spec.is_downgraded(DataPlane.PYTHON_ROWS)

    def test_rows_always_accepted(self):
        spec = SinkDataPlaneSpec.build("s", accepted=[DataPlane.ARROW_BATCHES], native=[DataPlane.ARROW_BATCHES])
        assert DataPlane.PYTHON_ROWS in spec.accepted_planes

    def test_native_not_accepted_is_rejected_naming_the_sink(self):
        class Liar(BaseSink):
            sink_name = "liar"
            accepted_data_planes = (DataPlane.PYTHON_ROWS,)
            native_data_planes = (DataPlane.ARROW_BATCHES,)

        with pytest.raises(ValueError, match="liar"):
            Liar().data_plane_spec()

    def test_unknown_plane_rejected(self):
        with pytest.raises(ValueError, match="unknown data plane"):
            SinkDataPlaneSpec.build("s", accepted=["arrows"], native=None)

    def test_capabilities_override_class_attributes(self):
        class S(BaseSink):
            native_data_planes = (DataPlane.PYTHON_BATCHES,)

            def sink_capabilities(self):
                return SinkCapabilities(native_data_planes=(DataPlane.ARROW_BATCHES,))

        spec = S().data_plane_spec()
        assert spec.native_planes == (DataPlane.ARROW_BATCHES,)


class TestLegacyFlags:
    def test_sink_legacy_flag_warns_once_per_class(self):
        class OldSink(BaseSink):
            arrow_passthrough_native = True

        with pytest.warns(DeprecationWarning, match="arrow_passthrough_native.*0.4.0"):
            spec = OldSink().data_plane_spec()
        assert DataPlane.ARROW_BATCHES in spec.native_planes
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            OldSink().data_plane_spec()  # second read: no warning

    def test_capabilities_legacy_field_is_honoured(self):
        class OldCaps(BaseSink):
            def sink_capabilities(self):
                return SinkCapabilities(batch_writable_native=True)

        with pytest.warns(DeprecationWarning, match="batch_writable_native"):
            spec = OldCaps().data_plane_spec()
        assert DataPlane.PYTHON_BATCHES in spec.native_planes

    def test_source_legacy_flag_warns_and_infers_arrow(self):
        class OldSource(RecordingSource):
            emits_arrow_batches = True

            def data_plane_spec(self):  # fall back to the base-class bridge
                from agora import BaseSource
                return BaseSource.data_plane_spec(self)

        with pytest.warns(DeprecationWarning, match="emits_arrow_batches"):
            assert OldSource([]).emitted_data_plane is DataPlane.ARROW_BATCHES

    def test_explicit_planes_never_warn(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            MemorySink().data_plane_spec()
            rows_source().data_plane_spec()


class TestValidationMatrix:
    @pytest.mark.parametrize("make_source", [rows_source, batch_source])
    def test_arrow_middleware_after_python_source(self, make_source):
        log: list[str] = []
        bound = Pipeline(make_source(log)).pipe(ArrowMapMiddleware(ident, name="amw")).build(FlakySink(log=log))
        with pytest.raises(PipelineError, match="amw") as info:
            bound.run_sync()
        assert info.value.stage == "pipeline_build"
        assert "python_" in str(info.value)
        assert log == []  # nothing opened, loaded or read

    def test_mixed_arrow_and_python_chain(self):
        log: list[str] = []
        bound = (Pipeline(arrow_source(log)).pipe(ArrowMapMiddleware(ident, name="a"))
                 .pipe(MapMiddleware(ident, name="p")).build(FlakySink(log=log)))
        with pytest.raises(PipelineError, match="mixes incompatible data planes: Arrow middleware"):
            bound.explain()
        with pytest.raises(PipelineError):
            bound.run_sync()
        assert log == []

    def test_process_middleware_on_row_source(self):
        log: list[str] = []
        bound = Pipeline(rows_source(log)).pipe(ProcessBatchMiddleware(ident, name="proc")).build(FlakySink(log=log))
        with pytest.raises(PipelineError, match="proc.*batch-only"):
            bound.run_sync()
        assert log == []

    def test_arrow_process_middleware_on_row_source(self):
        bound = Pipeline(rows_source()).pipe(ArrowProcessBatchMiddleware(ident)).build(MemorySink())
        with pytest.raises(PipelineError):
            bound.explain()

    @pytest.mark.parametrize("chain", [[], [ArrowMapMiddleware(ident)], [MapMiddleware(ident)],
                                       [BatchMapMiddleware(ident)]])
    def test_accepted_arrow_chains(self, chain):
        Pipeline(arrow_source()).pipe(*chain).build(MemorySink()).explain()

    def test_pipe_rejects_non_middleware(self):
        with pytest.raises(PipelineError, match="MapMiddleware"):
            Pipeline(rows_source()).pipe(ident)

    def test_pipeline_needs_a_source(self):
        with pytest.raises(PipelineError, match="IterableSource"):
            Pipeline([{"a": 1}])


class TestExplain:
    def test_explain_touches_nothing(self):
        log: list[str] = []

        class Hooked(MapMiddleware):
            def on_start(self, ctx):
                log.append("mw.on_start")

        from tests.runtime.doubles import RecordingStore
        from agora import DeliveryConfig

        store = RecordingStore(log=log)
        bound = Pipeline(arrow_source(log)).pipe(Hooked(ident)).build(
            FlakySink(log=log), delivery=DeliveryConfig(checkpoint=store))
        ex = bound.explain(max_records=5)
        assert log == []
        assert ex.max_records == 5
        assert ex.lane == "batch"
        assert ex.materializes_arrow_to_rows is True
        assert ex.middleware[0].input_plane == "python_batches"

    def test_arrow_fan_out_selected_planes(self):
        arrow_sink = MemorySink(name="arrow_mem")
        rows_only = FlakySink(name="rows_only", native=(DataPlane.PYTHON_ROWS,))
        batches = FlakySink(name="batches", native=(DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES))
        ex = Pipeline(arrow_source(), id="p1").fan_out([arrow_sink, rows_only, batches]).explain()
        by_name = {s.name: s for s in ex.sinks}
        assert by_name["arrow_mem"].selected_plane == "arrow_batches" and not by_name["arrow_mem"].downgraded
        assert by_name["rows_only"].selected_plane == "python_rows" and by_name["rows_only"].downgraded
        assert by_name["batches"].selected_plane == "python_batches" and by_name["batches"].downgraded
        assert ex.writer_kind == "fan_out"
        text = str(ex)
        assert "p1" in text and "selected python_rows (downgraded)" in text and "rows_only" in text
        data = ex.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["sinks"][0]["selected_plane"] == "arrow_batches"

    def test_router_receives_rows(self):
        router = SinkRouter().route(lambda r: True, MemorySink(name="m1")).default(MemorySink(name="m2"))
        ex = Pipeline(arrow_source()).route(router).explain()
        assert ex.writer_input_plane == "python_rows"
        assert all(s.selected_plane == "python_rows" and s.downgraded for s in ex.sinks)

    def test_middleware_matrix_marks_process_isolation(self):
        ex = (Pipeline(batch_source()).pipe(MapMiddleware(ident, name="m"), ProcessBatchMiddleware(ident, name="pb"))
              .build(MemorySink()).explain())
        assert [(m.index, m.name, m.process_isolated) for m in ex.middleware] == [(0, "m", False), (1, "pb", True)]
        assert "process-isolated" in str(ex)

    def test_row_lane_batch_size_groups_writer_input(self):
        from agora import DeliveryConfig
        ex = Pipeline(rows_source()).build(MemorySink(), delivery=DeliveryConfig(batch_size=100)).explain()
        assert ex.lane == "linear"
        assert ex.writer_input_plane == "python_batches"
        assert ex.sinks[0].selected_plane == "python_batches"
