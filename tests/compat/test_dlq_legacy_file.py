"""A DLQ file written by Agora 0.3.0 (table ``dlq_records``, no Agora tables) is read as
it is, and adopted in place — every row kept — when a sink opens it for writing."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agora import DLQRecord
from agora.stores import DLQError, SQLiteDLQSink, read_dlq

# 0.3.0's first layout; its later releases added the columns in NEWER_COLUMNS.
LEGACY_TABLE = """
CREATE TABLE dlq_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,
    error_type TEXT NOT NULL, error_message TEXT NOT NULL, record TEXT, source TEXT,
    checkpoint TEXT, middleware TEXT, sink TEXT, created_at TEXT NOT NULL{extra}
)"""
NEWER_COLUMNS = {"original_record", "processed_record", "details", "attempt", "max_attempts"}
LEGACY_ROWS = [
    # (pipeline_id, run_id, stage, error_type, error_message, record, source, checkpoint,
    #  middleware, sink, created_at)
    ("orders", "run-1", "sink", "ValueError", "bad", '{"id": 1}', "orders_src", '{"line": 1}',
     None, "warehouse", "2026-05-22T12:00:00+00:00"),
    ("orders", "run-1", "middleware", "KeyError", "'x'", '{"id": 2}', None, None,
     "enrich", None, "2026-05-22T12:00:01+00:00"),
    # 0.3.0 wrote str(value) where JSON could not hold it: not JSON text.
    ("billing", "run-7", "sink", "TypeError", "odd", "<object at 0x7f>", "bills", "7",
     None, "ledger", "2026-05-22T12:00:02+00:00"),
]


def build_legacy(path: Path, *, extra: str = "", rows: list[tuple[Any, ...]] | None = None,
                 columns: str = "pipeline_id, run_id, stage, error_type, error_message, record,"
                                " source, checkpoint, middleware, sink, created_at") -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(LEGACY_TABLE.format(extra=extra))
        values = LEGACY_ROWS if rows is None else rows
        marks = ", ".join("?" * len(values[0]))
        conn.executemany(f"INSERT INTO dlq_records ({columns}) VALUES ({marks})", values)
        conn.commit()
    finally:
        conn.close()
    path.chmod(0o600)


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def legacy_table(path: Path) -> tuple[set[str], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(dlq_records)")}
        rows = conn.execute("SELECT id, record FROM dlq_records ORDER BY id").fetchall()
        return columns, rows
    finally:
        conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_and_write(path: Path, *records: DLQRecord) -> None:
    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            for rec in records:
                await sink.write(rec)
        finally:
            await sink.close()

    asyncio.run(scenario())


def new_record() -> DLQRecord:
    return DLQRecord(pipeline_id="orders", run_id="run-2", stage="sink_write",
                     error_type="RuntimeError", error_message="boom", record={"id": 9})


def test_a_legacy_file_is_read_as_it_is_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    before = digest(path)
    records = list(read_dlq(path))
    assert [(r.pipeline_id, r.stage, r.record, r.checkpoint, r.source) for r in records] == [
        ("orders", "sink", {"id": 1}, {"line": 1}, "orders_src"),
        ("orders", "middleware", {"id": 2}, None, ""),
        ("billing", "sink", "<object at 0x7f>", 7, "bills"),
    ]
    assert [r.round_trippable for r in records] == [True, True, False]  # kept, flagged
    assert [r.record for r in read_dlq(path, pipeline_id="orders", stage="sink")] == [{"id": 1}]
    assert digest(path) == before and tables(path) == {"dlq_records", "sqlite_sequence"}


def test_opening_a_legacy_file_for_writing_adopts_it_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    read_before = list(read_dlq(path))
    open_and_write(path, new_record())
    assert {"agora_dlq", "agora_meta", "dlq_records"} <= tables(path)
    after = list(read_dlq(path))
    assert [r.to_dict() for r in after[:3]] == [r.to_dict() for r in read_before]
    assert after[3].record == {"id": 9} and len(after) == 4
    columns, legacy_rows = legacy_table(path)
    assert NEWER_COLUMNS <= columns  # 0.3.0's own code still reads its table
    assert [r[1] for r in legacy_rows] == ['{"id": 1}', '{"id": 2}', "<object at 0x7f>"]
    open_and_write(path)  # opened again: nothing is copied twice
    assert len(list(read_dlq(path))) == 4


def test_a_legacy_file_with_the_newer_columns_keeps_its_replay_fields(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    extra = (", original_record TEXT, processed_record TEXT, details TEXT,"
             " attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER")
    build_legacy(
        path, extra=extra,
        rows=[("orders", "run-1", "sink_write", "ValueError", "bad", '{"id": 1}', '{"ID": 1}',
               '{"id": 1, "x": 2}', '{"failure": {"classification": "unknown"}}', 2, 5,
               "2026-05-22T12:00:00+00:00")],
        columns="pipeline_id, run_id, stage, error_type, error_message, record,"
                " original_record, processed_record, details, attempt, max_attempts, created_at")
    open_and_write(path)
    [rec] = read_dlq(path)
    assert (rec.record, rec.original_record, rec.processed_record) == (
        {"id": 1}, {"ID": 1}, {"id": 1, "x": 2})
    assert (rec.attempt, rec.max_attempts) == (2, 5)
    assert rec.details == {"failure": {"classification": "unknown"}}
    assert rec.round_trippable


def test_legacy_details_that_are_not_an_object_are_kept_flagged(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(
        path, extra=", details TEXT",
        rows=[("orders", "run-1", "sink", "E", "m", '{"id": 1}', '["a", "b"]',
               "2026-05-22T12:00:00+00:00"),
              ("orders", "run-1", "sink", "E", "m", '{"id": 2}', "not json",
               "2026-05-22T12:00:01+00:00")],
        columns="pipeline_id, run_id, stage, error_type, error_message, record, details,"
                " created_at")
    for records in (list(read_dlq(path)), (open_and_write(path), list(read_dlq(path)))[1]):
        assert [r.details for r in records] == [{"details": ["a", "b"]}, {"details": "not json"}]
        assert [r.round_trippable for r in records] == [False, False]


def test_adopted_rows_can_be_replayed_and_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)

    async def scenario() -> None:
        sink = SQLiteDLQSink(path)
        await sink.open()
        try:
            first = list(read_dlq(path))[0]
            assert (await sink.replay(first)).attempt == 1
            await sink.acknowledge(first)
            assert [r.record for r in read_dlq(path)] == [{"id": 2}, "<object at 0x7f>"]
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert len(legacy_table(path)[1]) == 3  # 0.3.0's table is never trimmed


def test_a_legacy_table_that_cannot_be_copied_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)
    try:  # a damaged 0.3.0 table: no created_at, which every stored record needs
        conn.execute("CREATE TABLE dlq_records (id INTEGER PRIMARY KEY, pipeline_id TEXT,"
                     " run_id TEXT, stage TEXT, error_type TEXT, error_message TEXT,"
                     " record TEXT)")
        conn.execute("INSERT INTO dlq_records VALUES (1, 'p', 'r', 's', 'E', 'm', '1')")
        conn.commit()
    finally:
        conn.close()
    path.chmod(0o600)
    before = digest(path)
    with pytest.raises(DLQError, match=r"cannot upgrade .*legacy\.db, a DLQ file of Agora "
                                       r"0\.3\.0.*Nothing was changed"):
        open_and_write(path)
    assert digest(path) == before and tables(path) == {"dlq_records"}
    with pytest.raises(DLQError, match=r"legacy\.db: row id 1 is damaged"):
        list(read_dlq(path))  # read as it is: the row that cannot be a record is named


def test_a_legacy_file_others_can_write_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    path.chmod(0o666)
    before = digest(path)
    with pytest.raises(DLQError, match="legacy.db"):
        open_and_write(path)
    assert digest(path) == before and "agora_dlq" not in tables(path)


def test_an_sqlite_file_of_something_else_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    path.chmod(0o600)
    with pytest.raises(DLQError, match="without Agora's dlq tables"):
        open_and_write(path)
    with pytest.raises(DLQError, match="without Agora's dlq tables"):
        list(read_dlq(path))
    assert tables(path) == {"invoices"}


def test_a_replay_adopts_a_legacy_file_and_a_dry_run_says_how(tmp_path: Path) -> None:
    from agora.stores.dlq_state import open_ledger

    path = tmp_path / "legacy.db"
    build_legacy(path)
    before = digest(path)
    with pytest.raises(DLQError, match=r"written by Agora 0\.3\.0 .* a replay without "
                                       r"--dry-run .* upgrades it in place"):
        open_ledger(path, writable=False)
    assert digest(path) == before
    ledger = open_ledger(path, writable=True)
    try:
        assert [e.record.record for e in ledger.entries()] == [
            {"id": 1}, {"id": 2}, "<object at 0x7f>"]
    finally:
        ledger.close()
    read_only = open_ledger(path, writable=False)  # adopted: a dry run reads it now
    try:
        assert len(read_only.entries()) == 3
    finally:
        read_only.close()


def test_a_legacy_file_others_can_write_is_refused_by_readers_too(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    build_legacy(path)
    path.chmod(0o666)
    with pytest.raises(DLQError, match="legacy.db"):
        list(read_dlq(path))
