"""``max_records`` (``LimitedSource``) over every built-in source: exactly N records, never
record N+1 pulled, trimmed batches, a checkpoint that resumes at record N+1, and the same
through the real runtime with a checkpoint store and a DLQ."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora import DeliveryConfig, SyncInMemoryCheckpointStore, MemorySink, Pipeline
from agora.records import MalformedRecord
from agora.sources import (
    ArrowBatchSource,
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    IterableBatchSource,
    IterableSource,
    JsonLinesSource,
    LimitedSource,
    ParquetSource,
)
from tests.sources.source_checks import drain, drain_limited, rows_of, split_kinds

N_ROWS = 7
ROWS = [{"id": i, "v": f"ü{i}"} for i in range(N_ROWS)]
# Malformed lines sit between good ones (after the 1st and the 4th good row).
CSV = "id,v\n0,ü0\nbad\n1,ü1\n2,ü2\n3,ü3\n3,x,extra\n4,ü4\n5,ü5\n6,ü6\n"
JSONL = "".join(
    json.dumps(r, ensure_ascii=False) + "\n" + (f"{{oops{r['id']}\n" if r["id"] in (0, 3) else "")
    for r in ROWS
)


def counting(items: list, pulled: list[int]) -> Iterator:
    for item in items:
        pulled[0] += 1
        yield item


@pytest.fixture
def factories(tmp_path: Path) -> dict[str, Callable[[], BaseSource]]:
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(CSV, encoding="utf-8")
    jsonl_path = tmp_path / "rows.jsonl"
    jsonl_path.write_text(JSONL, encoding="utf-8")
    parquet_path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), parquet_path, row_group_size=3)
    table = pa.Table.from_pylist(ROWS)
    return {
        "iterable": lambda: IterableSource(ROWS),
        "iterable_batches": lambda: IterableBatchSource([ROWS[:3], ROWS[3:5], ROWS[5:]]),
        "arrow_table": lambda: ArrowBatchSource(table, batch_size=3),
        "arrow_batches": lambda: ArrowBatchSource(table.to_batches(max_chunksize=2)),
        "csv_rows": lambda: CsvSource(csv_path, on_malformed="dlq"),
        "csv_batches": lambda: CsvSource(csv_path, batch_size=2, on_malformed="dlq"),
        "arrow_csv": lambda: ArrowCsvSource(csv_path, block_size=24, on_malformed="dlq"),
        "jsonl": lambda: JsonLinesSource(jsonl_path, on_malformed="dlq"),
        "arrow_jsonl": lambda: ArrowJsonLinesSource(jsonl_path, block_size=40, on_malformed="dlq"),
        "parquet": lambda: ParquetSource(parquet_path, batch_size=2),
    }


SOURCES = [
    "iterable", "iterable_batches", "arrow_table", "arrow_batches", "csv_rows",
    "csv_batches", "arrow_csv", "jsonl", "arrow_jsonl", "parquet",
]


def normalise(row: dict) -> dict:
    """CSV values are strings; compare every source on the same footing."""
    return {"id": int(row["id"]), "v": row["v"]}


@pytest.mark.parametrize("kind", SOURCES)
def test_limit_emits_exactly_n_and_resumes_at_record_n_plus_1(factories, kind) -> None:
    make = factories[kind]
    all_good, all_bad = split_kinds(drain(make()))
    assert [normalise(r) for r in all_good] == ROWS
    for n in range(N_ROWS + 2):
        units, checkpoint = drain_limited(make(), n)
        good, bad = split_kinds(units)
        assert good == all_good[:n], f"{kind}: limit {n} emitted {len(good)} rows"
        if n == 0:
            assert units == []
        resumed = make()
        rest = drain(resumed, checkpoint, resume=True) if checkpoint is not None else drain(
            resumed
        )
        rest_good, rest_bad = split_kinds(rest)
        assert rest_good == all_good[n:], f"{kind}: resume after limit {n} lost or repeated rows"
        assert bad + rest_bad == all_bad, f"{kind}: malformed lost or repeated at limit {n}"


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("iterable_batches", 4), ("arrow_table", 4), ("csv_batches", 5), ("parquet", 4)],
)
def test_limit_trims_the_last_batch_with_a_slice(factories, kind, limit) -> None:
    def sizes(units: list) -> list[int]:
        return [
            u.num_rows if isinstance(u, pa.RecordBatch) else len(u)
            for u in units
            if not isinstance(u, MalformedRecord)
        ]

    full = sizes(drain(factories[kind]()))
    limited = sizes(drain_limited(factories[kind](), limit)[0])
    assert sum(limited) == limit
    *whole, last = limited
    assert whole == full[: len(whole)]
    assert last < full[len(whole)], f"{kind}: no batch was trimmed ({limited} vs {full})"


def test_limit_never_pulls_record_n_plus_1() -> None:
    for n in (0, 1, 4):
        pulled = [0]
        units, checkpoint = drain_limited(IterableSource(counting(ROWS, pulled)), n)
        assert units == ROWS[:n]
        assert pulled == [n]
        assert checkpoint == n


def test_limit_on_batches_never_pulls_the_next_batch() -> None:
    batches = [ROWS[:3], ROWS[3:5], ROWS[5:]]
    pulled = [0]
    units, checkpoint = drain_limited(IterableBatchSource(counting(batches, pulled)), 4)
    assert units == [ROWS[:3], ROWS[3:4]]
    assert pulled == [2]
    assert checkpoint == {"batch": 1, "row": 1}
    pulled = [0]
    assert drain_limited(IterableBatchSource(counting(batches, pulled)), 0)[0] == []
    assert pulled == [0]


def test_negative_limit_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_records must be >= 0; got -1"):
        LimitedSource(IterableSource(ROWS), -1)


# -- through the runtime ------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
def test_runtime_limit_then_resume_loses_and_repeats_nothing(factories, kind) -> None:
    store = SyncInMemoryCheckpointStore()
    written: list[dict] = []
    dead: list = []
    for limit in (3, None):
        sink, dlq = MemorySink(), MemorySink("dlq")
        bound = Pipeline(factories[kind](), id=f"limit-{kind}").build(
            sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1, dlq=dlq)
        )
        summary = bound.run_sync(max_records=limit)
        written.extend(sink.records)
        dead.extend(dlq.records)
        if limit is not None:
            assert len(sink.records) == limit
            assert summary.records_written == limit
    assert [normalise(r) for r in written] == ROWS
    with_bad_lines = ("csv_rows", "csv_batches", "arrow_csv", "jsonl", "arrow_jsonl")
    expected_dead = 2 if kind in with_bad_lines else 0
    assert len(dead) == expected_dead
    assert all(r.stage == "source_record" for r in dead)
    assert len({json.dumps(r.record) for r in dead}) == expected_dead


def test_rows_of_helper_flattens_all_planes() -> None:
    batch = pa.RecordBatch.from_pylist(ROWS[:2])
    assert rows_of([ROWS[0], [ROWS[1]], batch]) == [ROWS[0], ROWS[1], ROWS[0], ROWS[1]]
