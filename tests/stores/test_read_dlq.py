"""read_dlq and the sinks' read(): format detection, filters, damaged and torn files."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from agora.records import DLQRecord
from agora.stores import DLQError, JsonLinesDLQSink, SQLiteDLQSink, read_dlq


async def _write(sink: SQLiteDLQSink | JsonLinesDLQSink, records: list[DLQRecord]) -> None:
    await sink.open()
    try:
        await sink.write_batch(records)
    finally:
        await sink.close()


@pytest.fixture
def mixed_records(make_dlq_record) -> list[DLQRecord]:
    return [
        make_dlq_record(0),
        make_dlq_record(1, pipeline_id="other"),
        make_dlq_record(2, stage="sink_write", sink="db", middleware=None),
        make_dlq_record(3),
    ]


@pytest.mark.parametrize("name", ["dlq.db", "dlq.jsonl"])
def test_filters_by_pipeline_and_stage(tmp_path: Path, name: str, mixed_records) -> None:
    path = tmp_path / name
    sink_cls = SQLiteDLQSink if name.endswith(".db") else JsonLinesDLQSink
    asyncio.run(_write(sink_cls(path), mixed_records))

    def ids(**filters: str) -> list[int]:
        return [r.record["id"] for r in read_dlq(path, **filters)]

    assert ids() == [0, 1, 2, 3]
    assert ids(pipeline_id="pipe") == [0, 2, 3]
    assert ids(stage="middleware") == [0, 1, 3]
    assert ids(pipeline_id="pipe", stage="sink_write") == [2]
    assert ids(pipeline_id="nobody") == []
    assert [r.record["id"] for r in sink_cls.read(path, stage="sink_write")] == [2]


def test_format_is_detected_from_content_when_the_extension_says_nothing(
    tmp_path: Path, mixed_records
) -> None:
    asyncio.run(_write(SQLiteDLQSink(tmp_path / "a.db"), mixed_records))
    asyncio.run(_write(JsonLinesDLQSink(tmp_path / "b.jsonl"), mixed_records))
    shutil.copy(tmp_path / "a.db", tmp_path / "errors.dat")
    shutil.copy(tmp_path / "b.jsonl", tmp_path / "errors.log")
    shutil.copy(tmp_path / "b.jsonl", tmp_path / "errors.ndjson")
    for name in ("errors.dat", "errors.log", "errors.ndjson"):
        assert list(read_dlq(tmp_path / name)) == mixed_records, name


def test_empty_file_reads_as_an_empty_dlq(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_bytes(b"")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert list(read_dlq(tmp_path / "empty.log")) == []
    assert list(read_dlq(tmp_path / "empty.jsonl")) == []


@pytest.mark.parametrize("name", ["gone.db", "gone.jsonl", "gone"])
def test_missing_file_is_reported_at_once(tmp_path: Path, name: str) -> None:
    with pytest.raises(DLQError, match="does not exist"):
        read_dlq(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_unknown_format_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("id,name\n1,x\n")
    with pytest.raises(DLQError, match="neither SQLite nor JSON lines"):
        read_dlq(path)


def test_unreadable_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DLQError, match="cannot read DLQ file"):
        read_dlq(tmp_path)  # a directory


def test_sqlite_file_without_dlq_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.close()
    with pytest.raises(DLQError, match="without Agora's dlq tables"):
        read_dlq(path)


def test_sqlite_row_with_damaged_json_names_the_row(tmp_path: Path, mixed_records) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(_write(SQLiteDLQSink(path), mixed_records))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE agora_dlq SET record = '{broken' WHERE id = 2")
    conn.close()
    records = read_dlq(path)
    assert next(records) == mixed_records[0]
    with pytest.raises(DLQError, match=r"row id 2 is damaged"):
        next(records)


def test_sqlite_row_with_empty_stage_is_reported(tmp_path: Path, mixed_records) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(_write(SQLiteDLQSink(path), mixed_records))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE agora_dlq SET stage = '' WHERE id = 1")
    conn.close()
    with pytest.raises(DLQError, match=r"row id 1 is damaged \(DLQRecord.stage must be a non-empty string"):
        list(read_dlq(path))


def test_abandoned_iterator_releases_the_file(tmp_path: Path, mixed_records) -> None:
    """Warnings are errors here: a leaked file handle would fail this test."""
    path = tmp_path / "dlq.jsonl"
    asyncio.run(_write(JsonLinesDLQSink(path), mixed_records))
    records = read_dlq(path)
    next(records)
    records.close()
    unstarted = read_dlq(path)
    del unstarted


# -- JSON lines: torn and damaged lines --------------------------------------------------------


def _jsonl_with(tmp_path: Path, records: list[DLQRecord], tail: bytes) -> Path:
    path = tmp_path / "dlq.jsonl"
    asyncio.run(_write(JsonLinesDLQSink(path), records))
    with open(path, "ab") as fh:
        fh.write(tail)
    return path


def test_torn_last_line_is_skipped_by_readers(tmp_path: Path, mixed_records) -> None:
    torn = mixed_records[3].to_json().encode()[:40]
    path = _jsonl_with(tmp_path, mixed_records[:3], torn)
    assert list(read_dlq(path)) == mixed_records[:3]


@pytest.mark.parametrize("cut", [3, 40, -1])
def test_open_removes_a_torn_tail_before_appending(
    tmp_path: Path, mixed_records, cut: int
) -> None:
    torn = mixed_records[3].to_json().encode()[:cut]
    path = _jsonl_with(tmp_path, mixed_records[:2], torn)
    asyncio.run(_write(JsonLinesDLQSink(path), [mixed_records[2]]))
    assert list(read_dlq(path)) == mixed_records[:3]


def test_open_terminates_a_complete_last_line(tmp_path: Path, mixed_records) -> None:
    path = _jsonl_with(tmp_path, mixed_records[:1], mixed_records[1].to_json().encode())
    asyncio.run(_write(JsonLinesDLQSink(path), mixed_records[2:]))
    assert list(read_dlq(path)) == mixed_records


def test_open_handles_a_long_torn_line_and_a_file_without_newlines(
    tmp_path: Path, make_dlq_record
) -> None:
    big = make_dlq_record(0, record={"blob": "x" * 200_000})
    path = tmp_path / "dlq.jsonl"
    path.write_bytes(big.to_json().encode()[:150_000])  # torn, no newline anywhere
    asyncio.run(_write(JsonLinesDLQSink(path), [make_dlq_record(1)]))
    assert [r.record["id"] for r in read_dlq(path)] == [1]


def test_open_refuses_a_tail_that_is_not_an_agora_record(tmp_path: Path, mixed_records) -> None:
    path = _jsonl_with(tmp_path, mixed_records[:1], b"someone else's text")
    before = path.read_bytes()
    with pytest.raises(DLQError, match="incomplete line that is not an Agora DLQ record"):
        asyncio.run(JsonLinesDLQSink(path).open())
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json\n", "not a DLQ record"),
        (b"[1, 2]\n", "expected a JSON object, got list"),
        (b'{"pipeline_id": "p"}\n', "missing"),
        (b'{"pipeline_id": "p", "run_id": "r", "stage": "", "error_type": "E", '
         b'"error_message": "m", "source": "s", "checkpoint": null, "record": 1}\n',
         "stage must be a non-empty string"),
    ],
)
def test_damaged_middle_line_names_file_and_line(
    tmp_path: Path, mixed_records, line: bytes, reason: str
) -> None:
    last = mixed_records[2].to_json().encode() + b"\n"
    path = _jsonl_with(tmp_path, mixed_records[:2], line + last)
    with pytest.raises(DLQError, match=rf"{path}, line 3: .*{reason}"):
        list(read_dlq(path))


def test_blank_lines_are_ignored(tmp_path: Path, mixed_records) -> None:
    second = mixed_records[1].to_json().encode() + b"\n"
    path = _jsonl_with(tmp_path, mixed_records[:1], b"\n  \n" + second)
    assert list(read_dlq(path)) == mixed_records[:2]
