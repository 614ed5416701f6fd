"""File sources as resources: bounded memory while streaming, files closed on every path
(early stop, failed open, double close), and no ResourceWarning."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora.errors import CheckpointError
from agora.sources import (
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    JsonLinesSource,
    ParquetSource,
)
from tests.sources.source_checks import checkpoint_for, stream_of

ROWS = [{"id": i, "name": f"n{i}"} for i in range(50)]


@pytest.fixture
def file_factories(tmp_path: Path) -> dict[str, Callable[[], BaseSource]]:
    csv_path = tmp_path / "f.csv"
    csv_path.write_text("id,name\n" + "".join(f"{r['id']},{r['name']}\n" for r in ROWS))
    jsonl_path = tmp_path / "f.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    parquet_path = tmp_path / "f.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet_path, row_group_size=10)
    return {
        "csv": lambda: CsvSource(csv_path),
        "csv_batches": lambda: CsvSource(csv_path, batch_size=5),
        "arrow_csv": lambda: ArrowCsvSource(csv_path, block_size=64),
        "jsonl": lambda: JsonLinesSource(jsonl_path),
        "arrow_jsonl": lambda: ArrowJsonLinesSource(jsonl_path, block_size=64),
        "parquet": lambda: ParquetSource(parquet_path, batch_size=5),
    }


KINDS = ["csv", "csv_batches", "arrow_csv", "jsonl", "arrow_jsonl", "parquet"]


def collect_resource_warnings(fn: Callable[[], None]) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("kind", KINDS)
def test_stopping_early_and_closing_releases_the_file(file_factories, kind) -> None:
    async def go() -> None:
        src = file_factories[kind]()
        await src.open()
        agen = stream_of(src)
        await agen.__anext__()
        await agen.aclose()
        await src.close()
        await src.close()  # idempotent

    assert collect_resource_warnings(lambda: asyncio.run(go())) == []


@pytest.mark.parametrize("kind", KINDS)
def test_close_without_open_is_a_no_op(file_factories, kind) -> None:
    async def go() -> None:
        src = file_factories[kind]()
        await src.close()
        await src.close()

    asyncio.run(go())


@pytest.mark.parametrize("kind", ["csv", "jsonl", "arrow_jsonl", "parquet"])
def test_a_failed_open_leaves_no_file_open(file_factories, kind) -> None:
    bad = {"csv": {"line": 1, "byte": 3}, "jsonl": {"line": 1, "byte": 3},
           "arrow_jsonl": {"byte": 3, "line": 1, "row": 0, "malformed": 0},
           "parquet": {"row": 10_000}}[kind]

    async def go() -> None:
        src = file_factories[kind]()
        # A fingerprint that cannot match: the file is "not the one the checkpoint saw".
        bad["input"] = (
            {"size": 1, "footer_sha256": "0" * 64} if kind == "parquet"
            else {"consumed": 3, "sha256": "0" * 64}
        )
        await src.prepare_resume(checkpoint_for(src, bad))
        with pytest.raises(CheckpointError):
            await src.open()
        await src.close()

    assert collect_resource_warnings(lambda: asyncio.run(go())) == []


def test_arrow_csv_memory_stays_far_below_the_file_size(tmp_path: Path) -> None:
    rows = 500_000
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,name,score\n")
        fh.writelines(f"{i},name-{i},{i % 997}.5\n" for i in range(rows))
    size = path.stat().st_size
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    src = ArrowCsvSource(path, block_size=128 * 1024, memory_pool=pool)

    async def go() -> int:
        count = 0
        await src.open()
        try:
            async for batch in src.stream_batches():
                count += batch.num_rows  # each batch is dropped before the next one
        finally:
            await src.close()
        return count

    tracemalloc.start()
    try:
        assert asyncio.run(go()) == rows
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 10_000_000
    assert pool.max_memory() < size / 8, f"Arrow peak {pool.max_memory()} for a {size} B file"
    # The file reaches pyarrow through the source's line screen (a Python stream), whose
    # blocks pyarrow's read-ahead keeps as Python bytes: a few dozen blocks, whatever the
    # file size.
    assert python_peak < 48 * src.block_size, f"Python peak {python_peak} for a {size} B file"
