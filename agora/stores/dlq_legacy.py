"""0.3.0's SQLite DLQ file (table ``dlq_records``): read as it is, or adopted in place."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agora._safe_files import open_trusted
from agora.errors import DLQError
from agora.records import dumps_json
from agora.stores._files import adopt_once, check_sidecars, is_sqlite_file
from agora.stores.dlq_schema import COLUMNS, JSON_COLUMNS, init_schema, sqlite_text

__all__ = ["LEGACY_TABLE", "adopt_legacy", "adopt_legacy_file", "is_legacy", "legacy_rows",
           "open_legacy_readonly"]

LEGACY_TABLE = "dlq_records"
# The columns 0.3.0's own upgrades give its table. An adopted file gets them too, so a
# 0.3.0 program that opens it again still reads the rows it wrote.
LEGACY_ADDED_COLUMNS = (
    ("original_record", "TEXT"),
    ("processed_record", "TEXT"),
    ("details", "TEXT"),
    ("attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("max_attempts", "INTEGER"),
)
_LEGACY_TEXT = ("pipeline_id", "run_id", "stage", "error_type", "error_message", "middleware",
                "sink", "created_at")


def is_legacy(conn: sqlite3.Connection) -> bool:
    """Whether the open file is 0.3.0's DLQ: its table, and none of Agora's."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return LEGACY_TABLE in names and "agora_dlq" not in names


def legacy_rows(conn: sqlite3.Connection, *, pipeline_id: str | None = None,
                stage: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each row of 0.3.0's table as ``(id, {column: value})`` in Agora's stored form (the
    columns of :data:`COLUMNS`), oldest first.

    0.3.0 stored JSON text, or a value's ``str()`` where JSON could not hold it; text that
    is not JSON is kept as a JSON string with ``round_trippable`` false — never dropped.
    """
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({LEGACY_TABLE})")}
    wanted = [c for c in (*_LEGACY_TEXT, "source", "checkpoint", "record", "processed_record",
                          "original_record", "details", "attempt", "max_attempts")
              if c in present]
    where, params = [], []
    for name, value in (("pipeline_id", pipeline_id), ("stage", stage)):
        if value is not None:
            where.append(f"{name} = ?")
            params.append(value)
    sql = f"SELECT id, {', '.join(wanted)} FROM {LEGACY_TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    for row in conn.execute(sql + " ORDER BY id", params):
        old = dict(zip(wanted, row[1:], strict=True))
        intact = [True]
        data: dict[str, Any] = {name: _text(old.get(name)) for name in _LEGACY_TEXT}
        data["source"] = _text(old.get("source")) or ""
        for name in JSON_COLUMNS:
            data[name] = _json_text(old.get(name), intact)
        raw_original = old.get("original_record")
        data["original_record"] = (None if raw_original is None
                                   else _json_text(raw_original, intact))
        data["details"] = _details_text(old.get("details"), intact)
        data["attempt"] = old.get("attempt") or 0
        data["max_attempts"] = old.get("max_attempts")
        data["round_trippable"] = 1 if intact[0] else 0
        data["truncated"] = 0
        yield row[0], data


def adopt_legacy(conn: sqlite3.Connection) -> int:
    """Make 0.3.0's DLQ file an Agora DLQ file; returns the rows copied. Call it inside a
    transaction: Agora's tables are created, every row of ``dlq_records`` is copied into
    ``agora_dlq`` (keyed ``legacy:<id>``, so copying twice adds nothing), and
    ``dlq_records`` gets 0.3.0's newer columns. The old table and its rows stay as they
    were."""
    init_schema(conn)
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({LEGACY_TABLE})")}
    for name, ddl in LEGACY_ADDED_COLUMNS:
        if name not in present:
            conn.execute(f"ALTER TABLE {LEGACY_TABLE} ADD COLUMN {name} {ddl}")
    rows = [(f"legacy:{row_id}", *(data[c] for c in COLUMNS))
            for row_id, data in legacy_rows(conn)]
    # Not INSERT OR IGNORE: that would also skip a row breaking a NOT NULL constraint —
    # silently, losing it. Only an already-copied key is skipped; anything else fails the
    # whole transaction, leaving the file as it was.
    conn.executemany(
        f"INSERT INTO agora_dlq (record_key, {', '.join(COLUMNS)})"
        f" VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
        " ON CONFLICT(record_key) DO NOTHING", rows)
    return len(rows)


def _text(value: object) -> str | None:
    return None if value is None else sqlite_text(str(value))


def _json_text(raw: object, intact: list[bool]) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, str):
        try:
            json.loads(raw)
        except ValueError:
            pass
        else:
            return raw
    intact[0] = False
    return dumps_json(str(raw))


def _details_text(raw: object, intact: list[bool]) -> str | None:
    """0.3.0's ``details`` column as Agora stores it: a JSON object, or NULL. Anything
    else it holds is kept inside an object, flagged, rather than making the row unreadable."""
    if raw is None:
        return None
    text = _json_text(raw, intact)
    value = json.loads(text)
    if value is None or isinstance(value, dict):
        return None if value is None else text
    intact[0] = False
    return dumps_json({"details": value})


def adopt_legacy_file(path: Path, sink_name: str) -> int:
    """If ``path`` is 0.3.0's DLQ file, adopt it (see :func:`adopt_legacy`) in one
    transaction and return the rows copied; any other file is left alone (0).

    The file passes the same trust checks as every Agora file first (a regular file owned
    by this user, not writable by others: :class:`DLQError` otherwise). A failure rolls
    back: the file is then exactly as it was.
    """
    if not is_sqlite_file(path):
        return 0
    fd, _ = open_trusted(path, os.O_RDONLY, what="dlq file", error=DLQError, create=False)
    os.close(fd)
    check_sidecars(path, "dlq", DLQError)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        return adopt_once(conn, is_legacy, adopt_legacy)
    except sqlite3.Error as exc:
        raise DLQError(
            f"DLQ sink {sink_name!r} cannot upgrade {path}, a DLQ file of Agora 0.3.0, to "
            f"this version's layout: {exc}. Nothing was changed — check disk space and file "
            f"locks, then retry"
        ) from exc
    finally:
        conn.close()


def open_legacy_readonly(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to ``path`` if it is 0.3.0's DLQ file, else None. An SQLite
    file that fails Agora's trust checks raises :class:`DLQError`, as it would when read
    as an Agora file."""
    if not is_sqlite_file(path):
        return None
    fd, _ = open_trusted(path, os.O_RDONLY, what="dlq file", error=DLQError, create=False)
    os.close(fd)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if is_legacy(conn):
            return conn
    except sqlite3.Error:
        pass  # not readable as a legacy file: the caller's own checks say why
    conn.close()
    return None
