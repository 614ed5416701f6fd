"""CsvSink: one header per file, Arrow path vs row downgrade, per-record failures,
lifecycle and durability. Read-back uses the csv module, never the sink's own code."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import decimal
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.sinks.csv import CsvSink, format_float


def read_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


async def write_all(sink: CsvSink, *calls: tuple[str, Any]) -> list[Any]:
    await sink.open()
    results = [await getattr(sink, op)(arg) for op, arg in calls]
    await sink.close()
    return results


def csv_text(tmp_path: Path, name: str, *calls: tuple[str, Any]) -> str:
    path = tmp_path / name
    asyncio.run(write_all(CsvSink(path), *calls))
    return path.read_text(encoding="utf-8")


MIXED = pa.record_batch({
    "i": [1, None, -3],
    "f": [1.0, 0.1, float("nan")],
    "big": [1e20, 1e-7, -0.0],
    "s": ["a", "", None],
    "q": ['x,"y"', "line\nbreak", "Zoë 🚀"],
    "b": [True, False, None],
    "ts": [dt.datetime(2020, 1, 2, 3, 4, 5, 6000), None, dt.datetime(2020, 1, 2)],
    "tz": pa.array([dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None, None],
                   pa.timestamp("us", tz="Europe/Paris")),
    "d": [dt.date(2020, 1, 2), None, None],
    "dec": [decimal.Decimal("1.50"), None, decimal.Decimal("-0.25")],
    "bin": [b"ab", None, b""],
    "dur": pa.array([dt.timedelta(seconds=1), None, dt.timedelta(microseconds=-5)]),
})


def test_declares_every_plane_native(tmp_path: Path) -> None:
    spec = CsvSink(tmp_path / "x.csv").data_plane_spec()
    assert spec.native_planes == tuple(DataPlane)
    assert not spec.is_downgraded(DataPlane.ARROW_BATCHES)


def test_arrow_path_and_row_path_write_identical_text(tmp_path: Path) -> None:
    arrow = csv_text(tmp_path, "arrow.csv", ("write_arrow_batch", MIXED))
    rows = csv_text(tmp_path, "rows.csv", ("write_batch", MIXED.to_pylist()))
    assert arrow == rows
    assert arrow.splitlines()[:2] == [
        '"i","f","big","s","q","b","ts","tz","d","dec","bin","dur"',
        '1,1,1e+20,"a","x,""y""",true,2020-01-02 03:04:05.006000,'
        '2020-01-02 04:04:05.000000+0100,2020-01-02,1.50,"ab",1000000',
    ]
    # null and empty string stay distinguishable: ,, vs ,"",
    assert read_rows(tmp_path / "arrow.csv")[2][3] == ""
    assert ',"",' in arrow.splitlines()[2]


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "-05:30", "Asia/Kolkata"])
def test_timezone_aware_timestamps_match_across_paths(tmp_path: Path, tz: str) -> None:
    moments = [dt.datetime(2020, 7, 1, 12, 0, 0, 1, tzinfo=dt.UTC), None]
    batch = pa.record_batch({"t": pa.array(moments, pa.timestamp("us", tz=tz))})
    arrow = csv_text(tmp_path, "a.csv", ("write_arrow_batch", batch))
    rows = csv_text(tmp_path, "r.csv", ("write_batch", batch.to_pylist()))
    assert arrow == rows


def test_one_column_nulls_are_not_written_as_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    sink = CsvSink(path)
    asyncio.run(write_all(sink, ("write_arrow_batch", pa.record_batch({"v": [1, None, 3]}))))
    with open(path, encoding="utf-8", newline="") as f:
        assert [r["v"] for r in csv.DictReader(f)] == ["1", "", "3"]  # no row skipped
    assert sink.runtime_metrics["csv_arrow_downgrade_row_count"] == 3


def test_nested_batch_downgrades_whole_and_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    flat = pa.record_batch({"id": [1, 2], "tags": ["a", "b"]})
    nested = pa.record_batch({"id": [3, 4, 5], "tags": pa.array([["x", "y"], None, []])})
    sink = CsvSink(path)
    results = asyncio.run(write_all(
        sink, ("write_arrow_batch", flat), ("write_arrow_batch", nested),
        ("write_arrow_batch", flat.slice(1)),
    ))
    assert results == [None, None, None]
    assert read_rows(path) == [
        ["id", "tags"], ["1", "a"], ["2", "b"],
        ["3", '["x","y"]'], ["4", ""], ["5", "[]"],  # earlier content not truncated
        ["2", "b"],
    ]
    assert sink.runtime_metrics == {
        "csv_arrow_native_batch_count": 2,
        "csv_arrow_native_row_count": 3,
        "csv_arrow_downgrade_batch_count": 1,
        "csv_arrow_downgrade_row_count": 3,
    }


def test_invalid_utf8_and_struct_columns_downgrade(tmp_path: Path) -> None:
    path = tmp_path / "bytes.csv"
    bad = pa.record_batch({"raw": pa.array([b"ok", b"\xff\xfe"]),
                           "st": pa.array([{"a": 1}, {"a": None}])})
    sink = CsvSink(path)
    asyncio.run(write_all(sink, ("write_arrow_batch", bad)))
    assert read_rows(path) == [["raw", "st"], ["ok", '{"a":1}'], ["\\xff\\xfe", '{"a":null}']]
    assert sink.runtime_metrics["csv_arrow_downgrade_batch_count"] == 1


def test_zero_row_and_sliced_batches(tmp_path: Path) -> None:
    path = tmp_path / "slices.csv"
    parent = pa.record_batch({"n": list(range(10)), "s": [str(i) for i in range(10)]})
    sink = CsvSink(path)
    asyncio.run(write_all(sink, ("write_arrow_batch", parent.slice(0, 0)),
                          ("write_arrow_batch", parent.slice(7, 2))))
    assert read_rows(path) == [["n", "s"], ["7", "7"], ["8", "8"]]
    assert sink.runtime_metrics["csv_arrow_native_batch_count"] == 2
    assert sink.runtime_metrics["csv_arrow_native_row_count"] == 2


def test_arrow_columns_are_aligned_to_the_header(tmp_path: Path) -> None:
    path = tmp_path / "align.csv"
    asyncio.run(write_all(
        CsvSink(path, fieldnames=["a", "b", "c"]),
        ("write_arrow_batch", pa.record_batch({"c": [3], "a": [1]})),
        ("write_batch", [{"b": "x"}]),
    ))
    assert read_rows(path) == [["a", "b", "c"], ["1", "", "3"], ["", "x", ""]]


def test_extra_keys_fail_per_record_never_truncated(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    records = [{"a": 1, "b": 2}, {"a": 3, "b": 4, "zz": 5}, "not a dict", {"b": 6}]
    original = [r.copy() if isinstance(r, dict) else r for r in records]
    sink = CsvSink(path, name="out")
    (results,) = asyncio.run(write_all(sink, ("write_batch", records)))
    assert [r.written for r in results] == [True, False, False, True]
    assert isinstance(results[1].error, ValueError)
    assert "'out'" in str(results[1].error) and "['zz']" in str(results[1].error)
    assert isinstance(results[2].error, TypeError) and "'out'" in str(results[2].error)
    assert read_rows(path) == [["a", "b"], ["1", "2"], ["", "6"]]
    assert records == original


def test_arrow_batch_with_extra_columns_fails_every_row(tmp_path: Path) -> None:
    path = tmp_path / "extra_arrow.csv"
    sink = CsvSink(path, fieldnames=["a"], name="out")
    (results,) = asyncio.run(write_all(
        sink, ("write_arrow_batch", pa.record_batch({"a": [1, 2], "zz": [3, 4]}))))
    assert len(results) == 2 and not any(r.written for r in results)
    assert "['zz']" in str(results[0].error)
    assert read_rows(path) == [["a"]]


def test_write_raises_the_per_record_error(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "w.csv", fieldnames=["a"], name="out")

    async def main() -> None:
        await sink.open()
        with pytest.raises(ValueError, match="'out'.*\\['b'\\]"):
            await sink.write({"a": 1, "b": 2})
        await sink.write({"a": 1})
        await sink.close()

    asyncio.run(main())
    assert read_rows(tmp_path / "w.csv") == [["a"], ["1"]]


def test_duplicate_column_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="duplicate CSV column names \\['a'\\]"):
        CsvSink(tmp_path / "d.csv", fieldnames=["a", "b", "a"])
    batch = pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])
    sink = CsvSink(tmp_path / "d.csv")

    async def main() -> None:
        await sink.open()
        with pytest.raises(ValueError, match="duplicate"):
            await sink.write_arrow_batch(batch)
        await sink.close()

    asyncio.run(main())
    assert (tmp_path / "d.csv").read_bytes() == b""


def test_one_header_across_two_sinks_in_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "app.csv"
    asyncio.run(write_all(CsvSink(path, mode="a"), ("write", {"a": 1, "b": "x"})))
    # The second instance takes its columns from the file, whatever order records use.
    asyncio.run(write_all(CsvSink(path, mode="a"),
                          ("write_arrow_batch", pa.record_batch({"b": ["y"], "a": [2]})),
                          ("write", {"b": "z", "a": 3})))
    assert read_rows(path) == [["a", "b"], ["1", "x"], ["2", "y"], ["3", "z"]]


def test_reopened_sink_appends_without_a_second_header(tmp_path: Path) -> None:
    path = tmp_path / "re.csv"
    sink = CsvSink(path)
    asyncio.run(write_all(sink, ("write", {"a": 1})))
    asyncio.run(write_all(sink, ("write", {"a": 2})))
    assert read_rows(path) == [["a"], ["1"], ["2"]]


def test_header_only_file_with_fieldnames_and_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    asyncio.run(write_all(CsvSink(path, fieldnames=["a", "b"])))
    assert read_rows(path) == [["a", "b"]]
    asyncio.run(write_all(CsvSink(path, mode="a", fieldnames=["a", "b"]), ("write", {"a": 1})))
    assert read_rows(path) == [["a", "b"], ["1", ""]]


def test_append_with_conflicting_fieldnames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conflict.csv"
    path.write_text('"a","b"\n1,2\n', encoding="utf-8")
    with pytest.raises(ValueError, match="fieldnames \\['b', 'a'\\] differ from the header"):
        asyncio.run(CsvSink(path, mode="a", fieldnames=["b", "a"]).open())
    assert path.read_text(encoding="utf-8") == '"a","b"\n1,2\n'


def test_append_repairs_a_torn_tail_and_refuses_unreadable_files(tmp_path: Path) -> None:
    cut = tmp_path / "cut.csv"
    cut.write_bytes(b'"a"\n1\n2')
    asyncio.run(write_all(CsvSink(cut, mode="a"), ("write", {"a": 3})))
    assert cut.read_bytes() == b'"a"\n1\n3\n'
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\n")
    with pytest.raises(ValueError, match="header row is not readable"):
        asyncio.run(CsvSink(binary, mode="a").open())
    assert binary.read_bytes() == b"\xff\xfe\n"


def test_first_row_defines_columns_then_missing_keys_are_null(tmp_path: Path) -> None:
    path = tmp_path / "first.csv"
    asyncio.run(write_all(CsvSink(path), ("write_batch", [{"x": 1, "y": None}, {"x": 2}])))
    assert read_rows(path) == [["x", "y"], ["1", ""], ["2", ""]]


@pytest.mark.parametrize("op", ["write", "write_batch", "write_arrow_batch", "flush"])
def test_lifecycle_misuse_names_the_sink(tmp_path: Path, op: str) -> None:
    sink = CsvSink(tmp_path / "x.csv", name="life")
    args = {"write": ({"x": 1},), "write_batch": ([{"x": 1}],),
            "write_arrow_batch": (pa.record_batch({"x": [1]}),), "flush": ()}[op]

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'life' before open"):
            await getattr(sink, op)(*args)
        await sink.open()
        await sink.close()
        await sink.close()
        with pytest.raises(LifecycleError, match="closed sink 'life'"):
            await getattr(sink, op)(*args)

    asyncio.run(main())
    assert (tmp_path / "x.csv").read_bytes() == b""


def test_file_created_at_open_and_flush_fsyncs(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "durable.csv"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = CsvSink(path)

    async def main() -> None:
        await sink.open()
        assert path.exists()
        await sink.write_batch([{"a": 1}])
        await sink.flush()
        assert synced and read_rows(path) == [["a"], ["1"]]
        await sink.write({"a": 2})  # close implies flush
        await sink.close()

    asyncio.run(main())
    assert len(synced) == 2
    assert read_rows(path) == [["a"], ["1"], ["2"]]


def test_missing_directory_is_a_clear_error_at_open(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "missing" / "x.csv", name="c")
    with pytest.raises(FileNotFoundError, match="'c' cannot create .*missing.*does not exist"):
        asyncio.run(sink.open())


def test_input_batch_is_not_mutated(tmp_path: Path) -> None:
    batch = pa.record_batch({"b": [1], "a": ["x"]})
    before = batch.to_pylist()
    asyncio.run(write_all(CsvSink(tmp_path / "m.csv", fieldnames=["a", "b"]),
                          ("write_arrow_batch", batch)))
    assert batch.to_pylist() == before and batch.schema.names == ["b", "a"]


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False))
def test_float_format_matches_pyarrow(value: float) -> None:
    out = pa.BufferOutputStream()
    pa_csv.write_csv(pa.record_batch({"f": [value]}), out,
                     pa_csv.WriteOptions(include_header=False))
    assert out.getvalue().to_pybytes().decode().strip() == format_float(value)


def test_float_format_special_values() -> None:
    assert [format_float(v) for v in (math.nan, math.inf, -math.inf, -0.0, 0.0)] == [
        "nan", "inf", "-inf", "-0", "0"]
    assert [format_float(v) for v in (1e9, 1e10, 1e-6, 1e-7, 123.25)] == [
        "1000000000", "1e+10", "0.000001", "1e-7", "123.25"]
