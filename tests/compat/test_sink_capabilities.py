"""0.3.0 plane look-ups under ``agora.core.sink``: ``sink_capabilities`` / ``sink_data_plane_spec``."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora.core.sink import BaseSink, SinkCapabilities, sink_capabilities, sink_data_plane_spec
from agora.planes import DataPlane
from agora.sinks.file.csv import CsvSink

ALL = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES)


class _RowsOnly(BaseSink[int]):
    sink_name = "rows_only"

    async def write(self, record: int) -> None:
        del record


class _DuckArrow:
    sink_name = "duck_arrow"

    async def open(self) -> None:
        return None

    async def write(self, record: object) -> None:
        del record

    async def write_arrow_batch(self, batch: object) -> None:
        del batch

    async def close(self) -> None:
        return None


def test_csv_sink_capabilities_are_ordered_tuples(tmp_path: Path) -> None:
    caps = sink_capabilities(CsvSink(path=str(tmp_path / "out.csv")))
    assert caps == SinkCapabilities(
        accepted_data_planes=ALL,
        native_data_planes=ALL,
        batch_writable_native=True,
        arrow_passthrough_native=True,
    )


def test_rows_only_sink_declares_rows() -> None:
    caps = sink_capabilities(_RowsOnly())
    assert caps.native_data_planes == (DataPlane.PYTHON_ROWS,)
    assert caps.batch_writable_native is False
    assert sink_data_plane_spec(_RowsOnly()).native_planes == (DataPlane.PYTHON_ROWS,)


def test_duck_typed_sink_read_as_the_pipeline_reads_it() -> None:
    spec = sink_data_plane_spec(_DuckArrow())
    assert spec.sink_name == "duck_arrow"
    assert spec.native_planes == (DataPlane.PYTHON_ROWS, DataPlane.ARROW_BATCHES)


def test_non_sink_object_is_refused_with_a_named_error() -> None:
    with pytest.raises(TypeError, match=r"sink must be a BaseSink.*got object"):
        sink_data_plane_spec(object())


def test_legacy_sink_flags_warn_with_the_0_3_wording_and_give_ordered_planes() -> None:
    class _LegacyArrow(BaseSink[int]):
        sink_name = "legacy_arrow"
        batch_writable_native = True
        arrow_passthrough_native = True

        async def write(self, record: int) -> None:
            del record

    with pytest.warns(DeprecationWarning, match="legacy sink data-plane bool flags"):
        caps = sink_capabilities(_LegacyArrow())
    assert caps.native_data_planes == ALL
