"""Every built-in source can be run again by a bound pipeline: a second run reads
everything again (no checkpoint store) or resumes at the end and reads nothing (with one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora import DeliveryConfig, SyncInMemoryCheckpointStore, MemorySink, Pipeline
from agora.errors import LifecycleError
from agora.sources import (
    ArrowBatchSource,
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    IterableBatchSource,
    IterableSource,
    JsonLinesSource,
    ParquetSource,
)
from tests.sources.source_checks import checkpoint_for, drain

ROWS = [{"id": i, "name": f"n{i}"} for i in range(12)]


@pytest.fixture
def factories(tmp_path: Path) -> dict[str, Callable[[], BaseSource]]:
    csv_path = tmp_path / "f.csv"
    csv_path.write_text("id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in ROWS))
    jsonl_path = tmp_path / "f.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    parquet_path = tmp_path / "f.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet_path, row_group_size=5)
    table = pa.Table.from_pylist(ROWS)
    return {
        "iterable": lambda: IterableSource(ROWS),
        "iterable_batches": lambda: IterableBatchSource([ROWS[:5], ROWS[5:]]),
        "arrow_table": lambda: ArrowBatchSource(table, batch_size=5),
        "arrow_batches": lambda: ArrowBatchSource(table.to_batches(max_chunksize=4)),
        "csv": lambda: CsvSource(csv_path),
        "csv_batches": lambda: CsvSource(csv_path, batch_size=5),
        "arrow_csv": lambda: ArrowCsvSource(csv_path, block_size=32),
        "jsonl": lambda: JsonLinesSource(jsonl_path),
        "arrow_jsonl": lambda: ArrowJsonLinesSource(jsonl_path, block_size=64),
        "parquet": lambda: ParquetSource(parquet_path, batch_size=4),
    }


KINDS = ["iterable", "iterable_batches", "arrow_table", "arrow_batches", "csv",
         "csv_batches", "arrow_csv", "jsonl", "arrow_jsonl", "parquet"]


def ids(sink: MemorySink) -> list[Any]:
    return [int(r["id"]) for r in sink.records]


@pytest.mark.parametrize("kind", KINDS)
def test_a_bound_pipeline_runs_twice_without_a_store_and_reads_everything_again(
    factories, kind
) -> None:
    sink = MemorySink()
    bound = Pipeline(factories[kind](), id=f"rerun-{kind}").build(sink)
    first = bound.run_sync()
    second = bound.run_sync()
    assert first.records_consumed == second.records_consumed == len(ROWS)
    assert ids(sink) == [r["id"] for r in ROWS] * 2


@pytest.mark.parametrize("kind", KINDS)
def test_a_bound_pipeline_runs_twice_with_a_store_and_the_second_run_reads_nothing(
    factories, kind
) -> None:
    sink = MemorySink()
    store = SyncInMemoryCheckpointStore()
    bound = Pipeline(factories[kind](), id=f"rerun-{kind}").build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=5)
    )
    first = bound.run_sync()
    second = bound.run_sync()
    assert first.records_consumed == len(ROWS)
    assert second.records_consumed == 0
    assert ids(sink) == [r["id"] for r in ROWS]


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_stopped_by_max_records_is_continued_by_the_next_run(factories, kind) -> None:
    sink = MemorySink()
    bound = Pipeline(factories[kind](), id=f"rerun-{kind}").build(
        sink, delivery=DeliveryConfig(checkpoint=SyncInMemoryCheckpointStore())
    )
    assert bound.run_sync(max_records=7).records_consumed == 7
    assert bound.run_sync().records_consumed == len(ROWS) - 7
    assert ids(sink) == [r["id"] for r in ROWS]


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_resume_after_close_resets_the_source(factories, kind) -> None:
    src = factories[kind]()

    async def read(checkpoint: Any) -> tuple[list[Any], Any]:
        await src.prepare_resume(checkpoint)
        await src.open()
        rows: list[Any] = []
        try:
            stream = src.stream() if kind in ("iterable", "csv", "jsonl") else src.stream_batches()
            async for unit in stream:
                rows.extend(unit.to_pylist() if isinstance(unit, pa.RecordBatch) else
                            unit if isinstance(unit, list) else [unit])
        finally:
            await src.close()
        return rows, src.current_checkpoint()

    rows1, end = asyncio.run(read(None))
    rows2, _ = asyncio.run(read(None))
    rows3, _ = asyncio.run(read(checkpoint_for(src, end)))
    assert [int(r["id"]) for r in rows1] == [r["id"] for r in ROWS]
    assert rows2 == rows1
    assert rows3 == []


@pytest.mark.parametrize("kind", KINDS)
def test_open_after_close_without_prepare_resume_is_a_lifecycle_error(factories, kind) -> None:
    src = factories[kind]()

    async def go() -> None:
        await src.open()
        await src.close()
        await src.open()

    with pytest.raises(LifecycleError, match="call prepare_resume"):
        asyncio.run(go())


def _generator() -> Iterator[dict[str, int]]:
    yield from ({"id": i} for i in range(3))


@pytest.mark.parametrize(
    "make",
    [
        lambda: IterableSource(_generator()),
        lambda: IterableBatchSource(iter([[{"id": 0}], [{"id": 1}, {"id": 2}]])),
        lambda: ArrowBatchSource(iter(pa.Table.from_pylist([{"id": 0}, {"id": 1}, {"id": 2}])
                                      .to_batches(max_chunksize=2))),
    ],
    ids=["iterable", "iterable_batches", "arrow_batches"],
)
def test_a_one_shot_iterator_is_refused_on_a_second_run(make) -> None:
    sink = MemorySink()
    bound = Pipeline(make(), id="one-shot").build(sink)
    assert bound.run_sync().records_consumed == 3
    with pytest.raises(LifecycleError, match="one-shot iterator .* already consumed; pass a list"):
        bound.run_sync()
    assert [r["id"] for r in sink.records] == [0, 1, 2]  # nothing read, nothing lost


@pytest.mark.parametrize(
    "make",
    [
        lambda: IterableSource(_generator),
        lambda: IterableBatchSource(lambda: iter([[{"id": 0}], [{"id": 1}, {"id": 2}]])),
        lambda: ArrowBatchSource(lambda: pa.Table.from_pylist([{"id": i} for i in range(3)])),
    ],
    ids=["iterable", "iterable_batches", "arrow_batches"],
)
def test_a_factory_input_gives_every_run_fresh_data(make) -> None:
    sink = MemorySink()
    bound = Pipeline(make(), id="factory").build(sink)
    assert bound.run_sync().records_consumed == 3
    assert bound.run_sync().records_consumed == 3
    assert [r["id"] for r in sink.records] == [0, 1, 2, 0, 1, 2]


def test_a_factory_that_returns_no_iterable_is_a_clear_error() -> None:
    src = IterableSource(lambda: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="'iterable': the input factory returned a int"):
        drain(src)
