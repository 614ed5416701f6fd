"""``ParquetSource(path, row_mapper=…, use_arrow_batches=…)``: 0.3.0's rows mode beside
Agora's Arrow batches, resumed exactly either way, and a read without ``open()``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora import (
    DeliveryConfig,
    SyncInMemoryCheckpointStore,
    JsonLinesDLQSink,
    MemorySink,
    Pipeline,
)
from agora.planes import DataPlane
from agora.records import DLQStage
from agora.sources import ParquetSource
from agora.stores.dlq_read import read_dlq


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "rows.parquet"
    rows = [{"id": i, "value": i * 10} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=4)
    return path


async def read_all(reader: Any) -> list[Any]:
    return [item async for item in reader]


def test_a_row_mapper_makes_a_row_source_and_none_skips_a_row(parquet: Path) -> None:
    src = ParquetSource(parquet, lambda r: None if r["id"] % 3 else {"n": r["id"]})
    assert src.data_plane_spec().emitted_plane is DataPlane.PYTHON_ROWS
    sink = MemorySink()
    summary = Pipeline(src).build(sink).run_sync()
    assert sink.records == [{"n": 0}, {"n": 3}, {"n": 6}, {"n": 9}]
    assert summary.records_written == 4


def test_rows_mode_resumes_exactly_after_a_bounded_run(parquet: Path) -> None:
    store = SyncInMemoryCheckpointStore()
    sink = MemorySink()

    def bound() -> Any:
        src = ParquetSource(parquet, row_mapper=lambda r: r["id"], batch_size=3)
        return Pipeline(src, id="p").build(
            sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=2))

    bound().run_sync(max_records=5)
    bound().run_sync()
    assert sink.records == list(range(10))


def test_a_raising_mapper_dead_letters_the_row_and_raises_its_error(
        parquet: Path, tmp_path: Path) -> None:
    def mapper(row: dict[str, int]) -> int:
        if row["id"] == 6:
            raise KeyError("no such field")
        return row["id"]

    store = SyncInMemoryCheckpointStore()
    sink = MemorySink()
    dlq = tmp_path / "dlq.jsonl"
    bound = Pipeline(ParquetSource(parquet, mapper), id="p").build(
        sink, delivery=DeliveryConfig(dlq=JsonLinesDLQSink(dlq), checkpoint=store,
                                      checkpoint_every=1))
    with pytest.raises(KeyError, match="no such field"):
        bound.run_sync()
    [rec] = read_dlq(dlq)
    assert rec.stage is DLQStage.SOURCE_RECORD and rec.record == {"id": 6, "value": 60}
    assert rec.checkpoint["row"] == 7  # past the bad row: a resume reads what follows
    saved = store.load("p")
    assert sink.records == list(range(6)) and saved is not None and saved.value["row"] == 6


def test_use_arrow_batches_bypasses_the_mapper(parquet: Path) -> None:
    src = ParquetSource(parquet, row_mapper=lambda r: 1 / 0, batch_size=2,
                        use_arrow_batches=True)
    assert src.data_plane_spec().emitted_plane is DataPlane.ARROW_BATCHES
    batches = asyncio.run(read_all(src.stream_batches()))
    assert [r["id"] for b in batches for r in b.to_pylist()] == list(range(10))


def test_rows_without_a_mapper_are_the_row_dicts(parquet: Path) -> None:
    src = ParquetSource(parquet, use_arrow_batches=False, columns=["id"])
    assert asyncio.run(read_all(src.stream())) == [{"id": i} for i in range(10)]


def test_each_mode_refuses_the_other_modes_read(parquet: Path) -> None:
    with pytest.raises(NotImplementedError, match="emits python_rows.*use stream\\(\\)"):
        asyncio.run(read_all(ParquetSource(parquet, row_mapper=dict).stream_batches()))
    with pytest.raises(NotImplementedError,
                       match="emits arrow_batches.*use stream_batches\\(\\)"):
        asyncio.run(read_all(ParquetSource(parquet).stream()))


def test_bad_options_name_the_source_and_the_fix(parquet: Path) -> None:
    with pytest.raises(TypeError, match=r"'parquet:rows.parquet': row_mapper must be a "
                                        r"callable.*got str"):
        ParquetSource(parquet, "id")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use_arrow_batches must be True, False or None; got 1"):
        ParquetSource(parquet, use_arrow_batches=1)  # type: ignore[arg-type]


def test_a_read_without_open_opens_the_file_for_that_read(parquet: Path) -> None:
    src = ParquetSource(parquet, batch_size=3)
    first = asyncio.run(read_all(src.stream_batches()))
    again = asyncio.run(read_all(src.stream_batches()))
    ids = [[r["id"] for b in bs for r in b.to_pylist()] for bs in (first, again)]
    assert ids == [list(range(10))] * 2
    assert src._file is None and src._fh is None  # closed after each read
