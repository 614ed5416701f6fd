"""The SQLite DLQ keeps a record's replay fields (original_record, attempt, max_attempts)
like the JSON-lines DLQ, upgrades older files in place and refuses newer ones."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agora import (
    DeliveryConfig,
    DLQRecord,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
)
from agora.cli import main
from agora.stores import DLQError, JsonLinesDLQSink, SQLiteDLQSink, read_dlq
from agora.stores import dlq_schema
from agora.stores.dlq_schema import SCHEMA_VERSION
from agora.stores.dlq_state import ReplayFailure, open_ledger


def dead(i: int, **changes: Any) -> DLQRecord:
    fields: dict[str, Any] = dict(
        pipeline_id="orders", run_id="run-1", stage="sink_write", error_type="ValueError",
        error_message=f"bad row {i}", source="orders.csv", checkpoint={"line": i},
        record={"id": i}, sink="warehouse",
    )
    fields.update(changes)
    return DLQRecord(**fields)


async def write_all(sink: Any, records: list[DLQRecord]) -> None:
    await sink.open()
    try:
        for rec in records:
            await sink.write(rec)
    finally:
        await sink.close()


def columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute("PRAGMA table_info(agora_dlq)")}
    finally:
        conn.close()


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(
            "SELECT value FROM agora_meta WHERE key = 'dlq.schema_version'").fetchone()[0])
    finally:
        conn.close()


# A file as the previous schema (version 2) wrote it: no replay-field columns.
_V2_TABLE = (
    "CREATE TABLE agora_dlq (id INTEGER PRIMARY KEY AUTOINCREMENT, record_key TEXT UNIQUE,"
    " pipeline_id TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,"
    " error_type TEXT NOT NULL, error_message TEXT NOT NULL, source TEXT NOT NULL,"
    " checkpoint TEXT NOT NULL, record TEXT NOT NULL, processed_record TEXT NOT NULL,"
    " middleware TEXT, sink TEXT, created_at TEXT NOT NULL, round_trippable INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 1, last_run_id TEXT, last_seen_at TEXT,"
    " truncated INTEGER NOT NULL DEFAULT 0, replayed_at TEXT, replay_run_id TEXT,"
    " last_error_type TEXT, last_error_message TEXT)"
)


def make_v2_file(path: Path, schema_version: int = 2) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE agora_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO agora_meta VALUES ('dlq.schema_version', ?)",
                 (str(schema_version),))
    conn.execute(_V2_TABLE)
    conn.execute(
        "INSERT INTO agora_dlq (record_key, pipeline_id, run_id, stage, error_type,"
        " error_message, source, checkpoint, record, processed_record, middleware, sink,"
        " created_at, round_trippable) VALUES ('old:0', 'orders', 'run-0', 'sink_write',"
        " 'ValueError', 'old failure', 'orders.csv', '{\"line\": 7}', '{\"id\": 7}', 'null',"
        " NULL, 'warehouse', '2026-01-01T00:00:00+00:00', 1)"
    )
    conn.commit()
    conn.close()
    path.chmod(0o600)


# -- the fields are kept -----------------------------------------------------------------------


def test_sqlite_dlq_keeps_original_record_attempt_and_max_attempts(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    rec = dead(1, record={"id": 1, "amount": "12,5"}, original_record="1;12,5",
               attempt=2, max_attempts=5)
    asyncio.run(write_all(SQLiteDLQSink(path), [rec, dead(2)]))
    first, second = read_dlq(path)
    assert (first.original_record, first.attempt, first.max_attempts) == ("1;12,5", 2, 5)
    assert first.replay_payload("pipeline") == "1;12,5"
    assert first.replay_payload("sink") == {"id": 1, "amount": "12,5"}
    assert (second.original_record, second.attempt, second.max_attempts) == (None, 0, None)
    assert second.replay_payload("pipeline") == {"id": 2}


def test_sqlite_and_json_lines_dlq_read_back_the_same_record(tmp_path: Path) -> None:
    rec = dead(3, original_record={"raw": [1, 2]}, attempt=1, max_attempts=3)
    asyncio.run(write_all(SQLiteDLQSink(tmp_path / "dlq.db"), [rec]))
    asyncio.run(write_all(JsonLinesDLQSink(tmp_path / "dlq.jsonl"), [rec]))
    [from_sqlite] = read_dlq(tmp_path / "dlq.db")
    [from_lines] = read_dlq(tmp_path / "dlq.jsonl")
    assert from_sqlite == from_lines == rec


def test_a_pipeline_failure_read_back_from_sqlite_has_the_defaults(tmp_path: Path) -> None:
    def reject_odd(r: dict[str, int]) -> dict[str, int]:
        if r["id"] % 2:
            raise ValueError(f"odd id {r['id']}")
        return r

    dlq = SQLiteDLQSink(tmp_path / "dlq.db")
    (Pipeline(IterableSource([{"id": i} for i in range(4)])).pipe(MapMiddleware(reject_odd))
     .build(MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync())
    records = list(read_dlq(tmp_path / "dlq.db"))
    assert [r.record for r in records] == [{"id": 1}, {"id": 3}]
    assert all((r.original_record, r.attempt, r.max_attempts) == (None, 0, None)
               for r in records)


def test_a_later_attempt_of_the_same_failure_is_a_row_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(SQLiteDLQSink(path), [dead(1), dead(1, attempt=1)]))
    assert [r.attempt for r in read_dlq(path)] == [0, 1]
    # A re-run writing the same two again adds nothing (dedupe), whatever the fields.
    asyncio.run(write_all(SQLiteDLQSink(path), [dead(1), dead(1, attempt=1)]))
    assert [r.attempt for r in read_dlq(path)] == [0, 1]


def test_dlq_list_json_shows_the_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(SQLiteDLQSink(path),
                          [dead(1, original_record="raw line", attempt=1, max_attempts=2)]))
    assert main(["dlq", "list", str(path), "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)["records"]
    assert (shown["original_record"], shown["attempt"], shown["max_attempts"]) == (
        "raw line", 1, 2)


def test_replay_bookkeeping_keeps_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(SQLiteDLQSink(path),
                          [dead(1, original_record="raw", attempt=1, max_attempts=4), dead(2)]))
    ledger = open_ledger(path, writable=True)
    try:
        first, second = ledger.entries()
        ledger.record_failures([ReplayFailure(first.entry_id, "KeyError", "again", "run-2")])
        ledger.mark_replayed([second.entry_id], "run-2")
        again, replayed = ledger.entries()
    finally:
        ledger.close()
    assert again.attempts == 2 and again.last_error_type == "KeyError"
    assert (again.record.original_record, again.record.attempt,
            again.record.max_attempts) == ("raw", 1, 4)
    assert replayed.replayed and replayed.record == second.record


# -- older and newer files ---------------------------------------------------------------------


def test_a_version_2_file_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    make_v2_file(path)
    [old] = read_dlq(path)
    assert old.record == {"id": 7} and old.error_message == "old failure"
    assert (old.original_record, old.attempt, old.max_attempts) == (None, 0, None)
    assert version(path) == 2 and "attempt" not in columns(path)  # reading changes nothing


def test_a_version_2_file_is_upgraded_in_place_when_written(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    make_v2_file(path)
    asyncio.run(write_all(SQLiteDLQSink(path), [dead(1, original_record="r", attempt=3)]))
    assert version(path) == SCHEMA_VERSION
    assert {"original_record", "attempt", "max_attempts"} <= columns(path)
    old, new = read_dlq(path)
    assert old.record == {"id": 7} and (old.original_record, old.attempt) == (None, 0)
    assert (new.original_record, new.attempt, new.max_attempts) == ("r", 3, None)


def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dlq.db"
    make_v2_file(path)
    # The last column cannot be added: the columns added before it must roll back too.
    monkeypatch.setattr(dlq_schema, "ADDED_COLUMNS",
                        (*dlq_schema.ADDED_COLUMNS, ("broken", "INTEGER NOT NULL")))
    with pytest.raises(DLQError, match=rf"cannot upgrade {path} to schema version "
                                       rf"{SCHEMA_VERSION}"):
        asyncio.run(SQLiteDLQSink(path).open())
    assert version(path) == 2
    assert not {"original_record", "attempt", "max_attempts", "broken"} & columns(path)
    [old] = read_dlq(path)
    assert old.record == {"id": 7}


def test_a_file_from_a_newer_schema_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    make_v2_file(path, schema_version=SCHEMA_VERSION + 1)
    newer = f"{path} has schema version {SCHEMA_VERSION + 1}, written by a newer Agora"
    with pytest.raises(DLQError, match=newer):
        asyncio.run(SQLiteDLQSink(path).open())
    with pytest.raises(DLQError, match=newer):
        read_dlq(path)
    assert version(path) == SCHEMA_VERSION + 1  # untouched


def test_a_damaged_original_record_names_the_file_and_row(tmp_path: Path) -> None:
    path = tmp_path / "dlq.db"
    asyncio.run(write_all(SQLiteDLQSink(path), [dead(1, original_record="raw")]))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE agora_dlq SET original_record = '{not json'")
    conn.commit()
    conn.close()
    with pytest.raises(DLQError, match=rf"DLQ file {path}: row id 1 is damaged"):
        list(read_dlq(path))
