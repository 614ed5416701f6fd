"""CsvSink takes upstream 0.3.0's options (row_mapper, fieldnames, append, flush_every,
delimiter, encoding, in that positional order) beside its own, with one dialect for both
write paths. Read-back uses the csv module, never the sink's own code."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from agora import CsvSink, DeliveryConfig, IterableSource, MemorySink, Pipeline
from agora.planes import DataPlane
from agora.sinks.file.csv import CsvSink as UpstreamPathCsvSink


@dataclass
class Reading:
    sensor: str
    value: float


READINGS = [Reading("a", 1.5), Reading("b", -2.0), Reading("c", 0.25)]


def as_row(r: Reading) -> dict[str, Any]:
    return {"sensor": r.sensor, "value": r.value}


def read_dicts(path: Path, **fmt: Any) -> list[dict[str, str]]:
    encoding = fmt.pop("encoding", "utf-8")
    with open(path, encoding=encoding, newline="") as f:
        return list(csv.DictReader(f, **fmt))


async def write_all(sink: CsvSink, *calls: tuple[str, Any]) -> list[Any]:
    await sink.open()
    try:
        return [await getattr(sink, op)(arg) for op, arg in calls]
    finally:
        await sink.close()


MIXED = pa.record_batch({
    "i": [1, None, -3],
    "s": ["a", "", None],
    "q": ['x;"y" z', "line\nbreak", "Zoë"],
    "ts": [dt.datetime(2020, 1, 2, 3, 4, 5), None, dt.datetime(2020, 1, 2)],
    "f": [0.1, -1e20, None],
})


# -- upstream's signature ----------------------------------------------------------------------


def test_upstream_positional_signature_writes_opaque_records(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    sink = CsvSink(path, as_row, ["sensor", "value"], False, 100, ",", "utf-8")
    summary = Pipeline(IterableSource(READINGS)).build(sink).run_sync()
    assert summary.records_written == 3
    assert read_dicts(path) == [{"sensor": "a", "value": "1.5"},
                                {"sensor": "b", "value": "-2"},
                                {"sensor": "c", "value": "0.25"}]


def test_upstream_keywords_and_import_path(tmp_path: Path) -> None:
    sink = UpstreamPathCsvSink(path=str(tmp_path / "out.csv"), row_mapper=lambda row: row,
                               fieldnames=["id"], append=True, flush_every=10,
                               delimiter=";", encoding="latin-1")
    assert (sink.mode, sink.flush_every, sink.delimiter, sink.encoding) == (
        "a", 10, ";", "iso8859-1")
    # A mapper does not take the Arrow plane away: the sink still accepts RecordBatches.
    assert DataPlane.ARROW_BATCHES in sink.data_plane_spec().native_planes


def test_a_row_mapper_that_raises_dead_letters_that_record_only(tmp_path: Path) -> None:
    def picky(r: Reading) -> dict[str, Any]:
        if r.sensor == "b":
            raise ValueError("sensor b is unmapped")
        return as_row(r)

    path = tmp_path / "out.csv"
    dlq = MemorySink(name="dlq")
    summary = (Pipeline(IterableSource(READINGS)).build(CsvSink(path, row_mapper=picky),
               delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert [r["sensor"] for r in read_dicts(path)] == ["a", "c"]
    [rec] = dlq.records
    assert rec.stage == "sink_write" and rec.error_message == "sensor b is unmapped"
    assert summary.records_written == 2 and summary.records_errored == 1


def test_a_row_mapper_returning_a_non_mapping_fails_that_record(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "out.csv", row_mapper=lambda r: [r.sensor], name="readings")
    [results] = asyncio.run(write_all(sink, ("write_batch", READINGS[:2])))
    assert all(not r.written for r in results)
    assert isinstance(results[0].error, TypeError)
    assert "sink 'readings': row_mapper must return a mapping" in str(results[0].error)
    assert "list for a Reading" in str(results[0].error)


def test_a_row_mapper_is_applied_to_arrow_rows_too(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "out.csv", row_mapper=lambda r: {"n": r["i"], "text": r["s"]})
    asyncio.run(write_all(sink, ("write_arrow_batch", MIXED)))
    assert read_dicts(tmp_path / "out.csv") == [
        {"n": "1", "text": "a"}, {"n": "", "text": ""}, {"n": "-3", "text": ""}]
    assert sink.runtime_metrics["csv_arrow_downgrade_row_count"] == 3


def test_without_row_mapper_an_opaque_record_says_how_to_fix_it(tmp_path: Path) -> None:
    sink = CsvSink(tmp_path / "out.csv")
    [results] = asyncio.run(write_all(sink, ("write_batch", READINGS[:1])))
    assert "got Reading — pass row_mapper=" in str(results[0].error)


def test_a_row_mapper_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"'csv:out.csv': row_mapper must be a callable .*"
                                        r"got dict"):
        CsvSink("out.csv", {"sensor": 1})  # type: ignore[arg-type]


# -- append= and mode= -------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [{"append": True}, {"mode": "a"},
                                      {"append": True, "mode": "a"}])
def test_append_spellings_continue_a_file_with_one_header(tmp_path: Path,
                                                          spelling: dict[str, Any]) -> None:
    path = tmp_path / "out.csv"
    asyncio.run(write_all(CsvSink(path), ("write", {"id": 1})))
    asyncio.run(write_all(CsvSink(path, **spelling), ("write", {"id": 2})))
    assert path.read_text() == '"id"\n1\n2\n'


@pytest.mark.parametrize("spelling", [{}, {"append": False}, {"mode": "w"}])
def test_truncate_spellings_start_the_file_over(tmp_path: Path,
                                                spelling: dict[str, Any]) -> None:
    path = tmp_path / "out.csv"
    path.write_text('"id"\n1\n')
    asyncio.run(write_all(CsvSink(path, **spelling), ("write", {"id": 2})))
    assert path.read_text() == '"id"\n2\n'


@pytest.mark.parametrize("append, mode", [(True, "w"), (False, "a")])
def test_conflicting_append_and_mode_is_a_type_error(append: bool, mode: str) -> None:
    with pytest.raises(TypeError, match=rf"append={append} and mode='{mode}' disagree"):
        CsvSink("out.csv", append=append, mode=mode)


def test_append_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"append must be True or False; got 'yes'"):
        CsvSink("out.csv", append="yes")  # type: ignore[arg-type]


# -- flush_every -------------------------------------------------------------------------------


def test_flush_every_hands_rows_to_the_os_once_that_many_were_written(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"

    async def scenario() -> list[int]:
        sink = CsvSink(path, flush_every=3)
        await sink.open()
        seen = []
        for i in range(4):
            await sink.write({"id": i})
            seen.append(len(path.read_bytes().splitlines()))  # what another reader sees
        await sink.close()
        return seen

    assert asyncio.run(scenario()) == [0, 0, 4, 4]  # header + 3 rows after the third
    assert path.read_text() == '"id"\n0\n1\n2\n3\n'


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "100"])
def test_flush_every_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"flush_every must be an int >= 1 \(rows\)"):
        CsvSink("out.csv", flush_every=bad)


# -- delimiter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|", " ", ":"])
def test_both_paths_write_the_same_bytes_with_any_delimiter(tmp_path: Path,
                                                            delimiter: str) -> None:
    arrow = CsvSink(tmp_path / "arrow.csv", delimiter=delimiter)
    asyncio.run(write_all(arrow, ("write_arrow_batch", MIXED)))
    asyncio.run(write_all(CsvSink(tmp_path / "rows.csv", delimiter=delimiter),
                          ("write_batch", MIXED.to_pylist())))
    assert (tmp_path / "arrow.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()
    back = read_dicts(tmp_path / "arrow.csv", delimiter=delimiter)
    assert [r["ts"] for r in back] == ["2020-01-02 03:04:05.000000", "",
                                       "2020-01-02 00:00:00.000000"]
    assert [r["q"] for r in back] == ['x;"y" z', "line\nbreak", "Zoë"]
    # pyarrow writes only where no unquoted cell can hold the delimiter.
    native = arrow.runtime_metrics["csv_arrow_native_batch_count"]
    assert native == (1 if delimiter in ";\t|" else 0)


@pytest.mark.parametrize("bad", ["", ";;", '"', "\n", "\r", "é", 9])
def test_a_bad_delimiter_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"delimiter must be one ASCII character"):
        CsvSink("out.csv", delimiter=bad)


def test_append_reads_the_existing_header_with_the_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text('"id";"name"\n1;"x"\n')
    asyncio.run(write_all(CsvSink(path, append=True, delimiter=";"),
                          ("write", {"name": "y", "id": 2})))
    assert path.read_text() == '"id";"name"\n1;"x"\n2;"y"\n'


# -- encoding ----------------------------------------------------------------------------------


def test_a_latin_1_file_is_the_same_on_both_paths(tmp_path: Path) -> None:
    asyncio.run(write_all(CsvSink(tmp_path / "arrow.csv", encoding="latin-1"),
                          ("write_arrow_batch", MIXED)))
    asyncio.run(write_all(CsvSink(tmp_path / "rows.csv", encoding="latin-1"),
                          ("write_batch", MIXED.to_pylist())))
    assert (tmp_path / "arrow.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()
    assert "Zoë".encode("latin-1") in (tmp_path / "arrow.csv").read_bytes()
    back = read_dicts(tmp_path / "arrow.csv", encoding="latin-1")
    assert [r["q"] for r in back] == ['x;"y" z', "line\nbreak", "Zoë"]


def test_a_value_the_encoding_cannot_hold_fails_its_record_alone(tmp_path: Path) -> None:
    batch = pa.record_batch({"id": [1, 2, 3], "s": ["ok", "rocket 🚀", "fine"]})
    sink = CsvSink(tmp_path / "out.csv", encoding="latin-1", name="legacy")
    [results] = asyncio.run(write_all(sink, ("write_arrow_batch", batch)))
    assert [r.written for r in results] == [True, False, True]
    message = str(results[1].error)
    assert "sink 'legacy'" in message and "'iso8859-1'" in message and "🚀" in message
    back = read_dicts(tmp_path / "out.csv", encoding="latin-1")
    assert [r["s"] for r in back] == ["ok", "fine"]
    assert sink.runtime_metrics["csv_arrow_downgrade_batch_count"] == 1


@pytest.mark.parametrize("bad", ["utf-16", "utf-8-sig", "utf-32", "no-such-codec", None])
def test_an_encoding_that_cannot_be_appended_to_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"encoding must be a text encoding that writes "
                                         r"ASCII unchanged"):
        CsvSink("out.csv", encoding=bad)


# -- quoting and files written elsewhere ------------------------------------------------------


def test_null_and_empty_string_stay_distinguishable(tmp_path: Path) -> None:
    # Strings are always quoted (unlike the csv module's minimal quoting), so a null and
    # an empty string are different text on both paths.
    rows = [{"i": 1, "s": None}, {"i": 2, "s": ""}]
    asyncio.run(write_all(CsvSink(tmp_path / "rows.csv"), ("write_batch", rows)))
    asyncio.run(write_all(CsvSink(tmp_path / "arrow.csv"),
                          ("write_arrow_batch", pa.RecordBatch.from_pylist(rows))))
    for name in ("rows.csv", "arrow.csv"):
        assert (tmp_path / name).read_text() == '"i","s"\n1,\n2,""\n'


def test_appending_to_a_minimally_quoted_file_reads_back_whole(tmp_path: Path) -> None:
    # As upstream writes: csv module defaults (minimal quoting, CRLF line ends).
    path = tmp_path / "out.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "note"])
        writer.writeheader()
        writer.writerow({"id": 1, "note": "plain"})
        writer.writerow({"id": 2, "note": "a, b"})
    asyncio.run(write_all(CsvSink(path, append=True),
                          ("write_batch", [{"id": 3, "note": "c"}]),
                          ("write_arrow_batch", pa.record_batch({"id": [4], "note": ["d"]}))))
    assert read_dicts(path) == [{"id": "1", "note": "plain"}, {"id": "2", "note": "a, b"},
                                {"id": "3", "note": "c"}, {"id": "4", "note": "d"}]


def test_a_file_written_by_an_earlier_version_is_continued_byte_for_byte(
        tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    earlier = b'"id","name","score"\n1,"x",0.5\n2,,\n'
    path.write_bytes(earlier)
    sink = CsvSink(path, mode="w")
    sink.resume_output()  # a resumed run continues the output whatever its mode
    asyncio.run(write_all(sink, ("write_arrow_batch",
                                 pa.record_batch({"id": [3], "name": ["y"], "score": [1.0]}))))
    assert path.read_bytes() == earlier + b'3,"y",1\n'
