"""The SQLite DLQ file's schema: its columns, creation, migration and text encoding."""

from __future__ import annotations

import sqlite3

from agora.stores._files import immediate_transaction, write_meta

__all__ = [
    "ADDED_COLUMNS",
    "COLUMNS",
    "DLQ_RECOVERY",
    "IDENTITY",
    "INSERT",
    "JSON_COLUMNS",
    "REPLAY_FIELDS",
    "SCHEMA_VERSION",
    "TEXT_COLUMNS",
    "init_schema",
    "migrate",
    "sqlite_text",
    "table_columns",
]

# Version 2 added the failure to the dedupe identity (new keys only: rows of version 1
# keep theirs), the ``truncated`` flag and the replay columns; version 3 the record's own
# replay fields (``original_record``, ``attempt``, ``max_attempts``); version 4 the
# record's ``details``. See migrate().
SCHEMA_VERSION = 4
JSON_COLUMNS = ("checkpoint", "record", "processed_record")
# The record's replay fields: stored only when set, like DLQRecord.to_dict() gives them
# (NULL / 0 otherwise), so rows of older versions read back with the record's defaults.
REPLAY_FIELDS = ("original_record", "attempt", "max_attempts")
COLUMNS = (
    "pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
    "checkpoint", "record", "processed_record", "middleware", "sink", "created_at",
    "round_trippable", "truncated", *REPLAY_FIELDS, "details",
)
# Columns added after version 1, with their definitions (ALTER TABLE ... ADD COLUMN).
ADDED_COLUMNS = (
    ("truncated", "INTEGER NOT NULL DEFAULT 0"),  # a value was cut to the size cap
    ("replayed_at", "TEXT"),  # when a replay last re-sent the record and it was handled
    ("replay_run_id", "TEXT"),  # the run id of that replay
    ("last_error_type", "TEXT"),  # the latest failure, when a replay failed it again
    ("last_error_message", "TEXT"),
    ("original_record", "TEXT"),  # JSON; NULL: ``record`` is the source's record
    ("attempt", "INTEGER NOT NULL DEFAULT 0"),  # the record's replay count (0: first capture)
    ("max_attempts", "INTEGER"),  # NULL: no bound
    ("details", "TEXT"),  # JSON object; NULL: none
)


def init_schema(conn: sqlite3.Connection) -> None:
    write_meta(conn, "dlq", SCHEMA_VERSION)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agora_dlq ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " record_key TEXT UNIQUE,"  # dedupe key; NULL when dedupe is off (NULLs never clash)
        " pipeline_id TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,"
        " error_type TEXT NOT NULL, error_message TEXT NOT NULL, source TEXT NOT NULL,"
        " checkpoint TEXT NOT NULL, record TEXT NOT NULL, processed_record TEXT NOT NULL,"
        " middleware TEXT, sink TEXT, created_at TEXT NOT NULL,"
        " round_trippable INTEGER NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 1,"  # times this record was dead-lettered
        " last_run_id TEXT, last_seen_at TEXT, "
        + ", ".join(f"{name} {ddl}" for name, ddl in ADDED_COLUMNS)
        + ")"
    )
    conn.execute(
        "CREATE INDEX IF NOT EXISTS agora_dlq_pipeline_stage ON agora_dlq (pipeline_id, stage)"
    )


def table_columns(conn: sqlite3.Connection) -> set[str]:
    """The columns ``agora_dlq`` has in this file (a version-1 file lacks the newer ones)."""
    return {row[1] for row in conn.execute("PRAGMA table_info(agora_dlq)")}


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an open DLQ file to the current schema, in one transaction.

    Only adds columns (existing rows keep every value; the new columns start empty, or 0
    for ``attempt``), so a crash mid-way leaves the file as it was: the columns and the
    version number are committed together or not at all. Idempotent; a concurrent opener that migrated
    first leaves nothing to do.
    """
    with immediate_transaction(conn):
        present = table_columns(conn)
        for name, ddl in ADDED_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE agora_dlq ADD COLUMN {name} {ddl}")
        write_meta(conn, "dlq", SCHEMA_VERSION)


INSERT = (
    f"INSERT INTO agora_dlq (record_key, {', '.join(COLUMNS)})"
    f" VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
    " ON CONFLICT(record_key) DO UPDATE SET attempts = attempts + 1,"
    " last_run_id = excluded.run_id, last_seen_at = excluded.created_at"
)

TEXT_COLUMNS = ("pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
                 "middleware", "sink", "created_at")
# What makes two rows the same failure (see SQLiteDLQSink, "Dedupe").
IDENTITY = ("pipeline_id", "source", "stage", "middleware", "sink", "checkpoint", "record",
             "processed_record", "error_type", "error_message")


def sqlite_text(text: str) -> str:
    """``text`` as an SQLite TEXT value can hold it: a lone surrogate (not UTF-8) becomes
    the six characters ``\\udXXX``; any other text is returned unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


DLQ_RECOVERY = (
    "Move it aside and point the DLQ at a new file; rows in the old file may still be "
    "readable with the sqlite3 tool"
)
