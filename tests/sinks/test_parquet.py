"""ParquetSink: schema handling, per-record failures, row groups, atomic close, reopen.
Read-back uses pyarrow.parquet directly."""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.sinks.parquet import ParquetSink as AnyLayoutParquetSink

# These tests pin the single-file layout (``layout="file"``); the dataset layout has its
# own in test_parquet_dataset.py.
ParquetSink = functools.partial(AnyLayoutParquetSink, layout="file")


async def write_all(sink: ParquetSink, *calls: tuple[str, Any]) -> list[Any]:
    await sink.open()
    results = [await getattr(sink, op)(arg) for op, arg in calls]
    await sink.close()
    return results


SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


def test_planes_batches_and_arrow_native_rows_accepted(tmp_path: Path) -> None:
    spec = ParquetSink(tmp_path / "x.parquet").data_plane_spec()
    assert spec.native_planes == (DataPlane.PYTHON_BATCHES, DataPlane.ARROW_BATCHES)
    assert DataPlane.PYTHON_ROWS in spec.accepted_planes
    assert spec.sink_name == "parquet:x.parquet"


def test_round_trip_rows_batches_arrow_slices_unicode_nulls(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    parent = pa.record_batch({"id": [10, 11, 12, 13], "name": ["a", None, "Zoë 🚀", "d"]})
    sink = ParquetSink(path)
    results = asyncio.run(write_all(
        sink,
        ("write_arrow_batch", parent.slice(1, 2)),
        ("write_arrow_batch", parent.slice(0, 0)),
        ("write_batch", [{"id": 1, "name": "x"}, {"id": 2}]),
        ("write", {"name": "y", "id": 3}),
    ))
    assert results == [None, None, None, None]
    table = pq.read_table(path)
    assert table.to_pylist() == [
        {"id": 11, "name": None}, {"id": 12, "name": "Zoë 🚀"},
        {"id": 1, "name": "x"}, {"id": 2, "name": None}, {"id": 3, "name": "y"},
    ]
    assert sink.records_written == 5
    assert not sink.partial_path.exists()


def test_given_schema_is_used_and_enforced_per_record(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    records = [{"id": 1, "name": "ok"}, {"id": "nope"}, {"id": None}, {"id": 2, "zz": 1},
               ["not", "a", "dict"], {"id": 3}]
    original = [r.copy() for r in records]
    sink = ParquetSink(path, schema=SCHEMA, name="pq")
    (results,) = asyncio.run(write_all(sink, ("write_batch", records)))
    assert [r.written for r in results] == [True, False, False, False, False, True]
    errors = [str(r.error) for r in results if r.error is not None]
    assert all("'pq'" in e for e in errors)
    assert "does not fit" in errors[0]
    assert "non-nullable" in errors[1] and "['id']" in errors[1]
    assert "['zz']" in errors[2]
    assert isinstance(results[4].error, TypeError)
    assert records == original
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    assert table.to_pylist() == [{"id": 1, "name": "ok"}, {"id": 3, "name": None}]


def test_write_raises_the_per_record_error(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "w.parquet", schema=SCHEMA, name="pq")

    async def main() -> None:
        await sink.open()
        with pytest.raises(ValueError, match="'pq'.*not fields"):
            await sink.write({"id": 1, "extra": True})
        await sink.close()

    asyncio.run(main())
    assert pq.read_table(tmp_path / "w.parquet").num_rows == 0


def test_safe_widening_cast_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "cast.parquet"
    narrow = pa.record_batch({"name": pa.array(["b"], pa.large_string()),
                              "id": pa.array([7], pa.int32())})
    asyncio.run(write_all(ParquetSink(path, schema=SCHEMA), ("write_arrow_batch", narrow)))
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA) and table.to_pylist() == [{"id": 7, "name": "b"}]


@pytest.mark.parametrize("batch, message", [
    (pa.record_batch({"id": ["1"], "name": ["x"]}), "'id': batch has string, file has int64"),
    (pa.record_batch({"id": [1], "other": ["x"]}),
     "missing \\['name'\\], unexpected \\['other'\\]"),
    (pa.record_batch({"id": pa.array([None, 1], pa.int64()), "name": ["a", "b"]}),
     "'id': 1 null\\(s\\) in a non-nullable field"),
    (pa.record_batch({"id": pa.array([1], pa.uint64()), "name": ["x"]}).slice(0, 1), None),
])
def test_mismatched_arrow_batch_fails_the_call_naming_fields(
    tmp_path: Path, batch: pa.RecordBatch, message: str | None
) -> None:
    path = tmp_path / "strict.parquet"
    sink = ParquetSink(path, schema=SCHEMA, name="pq")
    good = pa.record_batch({"id": [1], "name": ["ok"]})

    async def main() -> None:
        await sink.open()
        await sink.write_arrow_batch(good)
        if message is None:  # uint64 → int64 is castable; values that fit go through
            await sink.write_arrow_batch(batch)
        else:
            with pytest.raises(ValueError, match=f"'pq'.*{message}"):
                await sink.write_arrow_batch(batch)
        await sink.close()

    asyncio.run(main())
    expected = 2 if message is None else 1
    assert pq.read_table(path).num_rows == expected


def test_cast_overflow_is_a_clear_error(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "o.parquet", schema=pa.schema([("v", pa.int8())]), name="pq")

    async def main() -> None:
        await sink.open()
        with pytest.raises(ValueError, match="'pq': batch values do not fit"):
            await sink.write_arrow_batch(pa.record_batch({"v": [1000]}))
        await sink.close()

    asyncio.run(main())


def test_schema_inferred_from_first_python_batch_and_uninferrable_batch(tmp_path: Path) -> None:
    path = tmp_path / "inferred.parquet"
    sink = ParquetSink(path, name="pq")

    async def main() -> None:
        await sink.open()
        with pytest.raises(ValueError, match="'pq' cannot infer a Parquet schema.*schema="):
            await sink.write_batch([{"v": 1}, {"v": "mixed"}])
        await sink.write_batch([{"v": 1}, {"v": None}])
        results = await sink.write_batch([{"v": "text"}, {"v": 2}])
        assert results is not None and [r.written for r in results] == [False, True]
        await sink.close()

    asyncio.run(main())
    assert pq.read_table(path).column("v").to_pylist() == [1, None, 2]


def test_row_groups_are_bounded_and_flush_writes_one(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "groups.parquet"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = ParquetSink(path, row_group_size=4)

    async def main() -> None:
        await sink.open()
        await sink.write_arrow_batch(pa.record_batch({"n": list(range(10))}))  # 4 + 4 + 2
        await sink.write_batch([{"n": 10}])
        await sink.flush()  # one more row group of 1, fsynced
        assert synced
        await sink.write({"n": 11})  # close implies flush: the last row group
        await sink.close()

    asyncio.run(main())
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2, 1, 1]
    assert pq.read_table(path).column("n").to_pylist() == list(range(12))
    assert sink.row_groups_written == 5


def test_empty_files_are_valid_parquet(tmp_path: Path) -> None:
    with_schema = tmp_path / "schema.parquet"
    asyncio.run(write_all(ParquetSink(with_schema, schema=SCHEMA)))
    assert pq.read_table(with_schema).schema.equals(SCHEMA)
    zero_row_batch = tmp_path / "zero.parquet"
    asyncio.run(write_all(ParquetSink(zero_row_batch),
                          ("write_arrow_batch", pa.record_batch({"x": pa.array([], pa.int16())}))))
    table = pq.read_table(zero_row_batch)
    assert table.num_rows == 0 and table.schema.names == ["x"]
    nothing = tmp_path / "nothing.parquet"
    asyncio.run(write_all(ParquetSink(nothing)))
    table = pq.read_table(nothing)
    assert table.num_rows == 0 and table.num_columns == 0


def test_path_keeps_its_old_content_until_close(tmp_path: Path) -> None:
    path = tmp_path / "atomic.parquet"
    pq.write_table(pa.table({"old": [1]}), path)
    sink = ParquetSink(path)

    async def main() -> None:
        await sink.open()
        await sink.write_batch([{"new": 2}])
        await sink.flush()
        assert pq.read_table(path).to_pylist() == [{"old": 1}]
        assert sink.partial_path.exists()
        await sink.close()

    asyncio.run(main())
    assert pq.read_table(path).to_pylist() == [{"new": 2}]
    assert not sink.partial_path.exists()


def test_failed_close_leaves_path_untouched_and_no_partial(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fail.parquet"
    pq.write_table(pa.table({"old": [1]}), path)
    sink = ParquetSink(path)

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    async def main() -> None:
        await sink.open()
        await sink.write_batch([{"new": 2}])
        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="No space"):
            await sink.close()
        monkeypatch.undo()
        with pytest.raises(LifecycleError, match="closed sink"):
            await sink.write({"new": 3})
        await sink.close()  # still idempotent

    asyncio.run(main())
    assert pq.read_table(path).to_pylist() == [{"old": 1}]
    assert not sink.partial_path.exists()


def test_reopened_sink_continues_its_file(tmp_path: Path) -> None:
    path = tmp_path / "again.parquet"
    sink = ParquetSink(path, row_group_size=2)
    asyncio.run(write_all(sink, ("write_batch", [{"n": 1}, {"n": 2}, {"n": 3}])))
    asyncio.run(write_all(sink, ("write_batch", [{"n": 4}])))
    assert pq.read_table(path).column("n").to_pylist() == [1, 2, 3, 4]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    empty = ParquetSink(tmp_path / "empty_then_rows.parquet")
    asyncio.run(write_all(empty))
    asyncio.run(write_all(empty, ("write", {"n": 5})))
    assert pq.read_table(empty.path).to_pylist() == [{"n": 5}]


@pytest.mark.parametrize("op", ["write", "write_batch", "write_arrow_batch", "flush"])
def test_lifecycle_misuse_names_the_sink(tmp_path: Path, op: str) -> None:
    sink = ParquetSink(tmp_path / "x.parquet", name="life")
    args = {"write": ({"x": 1},), "write_batch": ([{"x": 1}],),
            "write_arrow_batch": (pa.record_batch({"x": [1]}),), "flush": ()}[op]

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'life' before open"):
            await getattr(sink, op)(*args)
        await sink.open()
        with pytest.raises(LifecycleError, match="already open"):
            await sink.open()
        await sink.close()
        await sink.close()
        with pytest.raises(LifecycleError, match="closed sink 'life'"):
            await getattr(sink, op)(*args)

    asyncio.run(main())
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 0


def test_construction_and_open_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row_group_size must be"):
        ParquetSink(tmp_path / "x.parquet", row_group_size=0)
    with pytest.raises(TypeError, match="schema must be a pyarrow.Schema"):
        ParquetSink(tmp_path / "x.parquet", schema={"a": "int64"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression 'nope' is not available"):
        ParquetSink(tmp_path / "x.parquet", compression="nope")
    sink = ParquetSink(tmp_path / "missing" / "x.parquet", name="pq")
    with pytest.raises(FileNotFoundError, match="'pq' cannot create .*does not exist"):
        asyncio.run(sink.open())


def test_snappy_compression_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "snappy.parquet"
    asyncio.run(write_all(ParquetSink(path, compression="snappy"),
                          ("write_batch", [{"a": 1.5}])))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert pq.read_table(path).to_pylist() == [{"a": 1.5}]


_CRASHING_WRITER = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
import pyarrow as pa
from agora.sinks.parquet import ParquetSink

async def main():
    sink = ParquetSink({path!r}, layout="file")
    await sink.open()
    await sink.write_arrow_batch(pa.record_batch({{"n": [1, 2]}}))
    await sink.flush()                      # sealed: must survive the crash
    await sink.write_arrow_batch(pa.record_batch({{"n": [3]}}))
    await sink.flush()
    await sink.write_arrow_batch(pa.record_batch({{"n": [4]}}))  # never flushed
    os._exit(0)                             # crash: no close()

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_rows_flushed_before_a_crash_survive_and_a_resumed_sink_merges_them(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "out.parquet"
    root = str(Path(__file__).resolve().parents[2])
    script = _CRASHING_WRITER.format(root=root, path=str(path))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert not path.exists()  # nothing was closed, so no final file yet
    resumed = ParquetSink(path)
    resumed.resume_output()  # what the runtime does when it resumes from a checkpoint
    asyncio.run(write_all(resumed, ("write_arrow_batch", pa.record_batch({"n": [5]}))))
    assert pq.read_table(path).column("n").to_pylist() == [1, 2, 3, 5]
    assert not list(tmp_path.glob(".out.parquet.agora-*"))  # parts merged and removed


@pytest.mark.timeout(60)
def test_a_fresh_sink_discards_parts_of_an_earlier_crashed_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "out.parquet"
    root = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER.format(root=root, path=str(path))],
                   check=True, timeout=60)
    asyncio.run(write_all(ParquetSink(path), ("write_arrow_batch", pa.record_batch({"n": [9]}))))
    assert pq.read_table(path).column("n").to_pylist() == [9]
