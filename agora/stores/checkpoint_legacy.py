"""0.3.0's SQLite checkpoint file (table ``state_store``): read as it is, or adopted in place."""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from agora._safe_files import open_trusted
from agora.errors import CheckpointError
from agora.records import Checkpoint, SourceIdentity
from agora.stores._files import adopt_once, check_sidecars, is_sqlite_file
from agora.stores.checkpoint import encode_checkpoint_value

__all__ = [
    "LEGACY_PREFIX",
    "LEGACY_TABLE",
    "MIRROR_META_KEY",
    "adopt_legacy_file",
    "encode_identity",
    "identity_from_stored",
    "is_legacy",
    "legacy_checkpoint",
    "legacy_keys",
    "legacy_payload",
    "open_legacy_readonly",
]

LEGACY_TABLE = "state_store"
#: 0.3.0 kept each checkpoint under ``checkpoint:<key>`` (its default namespace).
LEGACY_PREFIX = "checkpoint:"
#: The ``agora_meta`` row that marks an adopted file: its saves are mirrored into
#: ``state_store`` so that 0.3.0, pointed at the file again, resumes where Agora stopped.
MIRROR_META_KEY = "checkpoints.mirror_table"
_LEGACY_COLUMNS = {"key", "value", "expires_at"}
# How long adoption waits for another writer's lock: as long as the store's own writes
# wait, enough to ride out a commit, short enough that a stuck writer surfaces as an error.
_BUSY_TIMEOUT_S = 10.0


def _fields(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def is_legacy(conn: sqlite3.Connection) -> bool:
    """Whether the open file is 0.3.0's checkpoint file and nothing else: its one table
    ``state_store(key, value[, expires_at])`` holding at least one ``checkpoint:`` row.
    A file with other tables, another shape, or no checkpoint rows is not (Agora's own
    checks then judge it, as for any other file)."""
    tables = {row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\'")}
    if tables != {LEGACY_TABLE}:
        return False
    columns = _fields(conn, LEGACY_TABLE)
    if not {"key", "value"} <= columns <= _LEGACY_COLUMNS:
        return False
    row = conn.execute(
        f"SELECT 1 FROM {LEGACY_TABLE} WHERE substr(key, 1, ?) = ? LIMIT 1",
        (len(LEGACY_PREFIX), LEGACY_PREFIX)).fetchone()
    return row is not None


def identity_from_stored(data: Any) -> SourceIdentity | None:
    """A stored source identity back as a :class:`SourceIdentity`: None, Agora's form
    (``path``/``size``/``modified_ns``), or 0.3.0's (``uri``/``size_bytes``/
    ``modified_time_ns``, with optional ``device``/``inode`` that Agora does not keep).
    ``ValueError`` naming the expected shapes otherwise."""
    if data is None:
        return None
    if isinstance(data, dict) and "uri" in data:
        uri, size, modified = (data.get(k) for k in ("uri", "size_bytes", "modified_time_ns"))
        if (isinstance(uri, str) and uri.startswith("file:") and isinstance(size, int)
                and isinstance(modified, int)):
            path = urllib.request.url2pathname(urllib.parse.urlparse(uri).path)
            return SourceIdentity(path=path, size=size, modified_ns=modified)
        raise ValueError(
            f"a 0.3.0 source identity must be {{'uri': 'file:…', 'size_bytes': int, "
            f"'modified_time_ns': int}}; got {data!r:.200}")
    return SourceIdentity.from_dict(data)


def legacy_payload(checkpoint: Checkpoint) -> str:
    """The JSON text 0.3.0 stores for ``checkpoint`` in ``state_store`` (its identity in
    0.3.0's form, so 0.3.0 can read it back)."""
    identity = checkpoint.source_identity
    return json.dumps({
        "pipeline_id": checkpoint.pipeline_id,
        "run_id": checkpoint.run_id,
        "source": checkpoint.source,
        "value": checkpoint.value,
        "recorded_at": str(checkpoint.recorded_at),
        "source_identity": None if identity is None else {
            "uri": Path(identity.path).as_uri(), "size_bytes": identity.size,
            "modified_time_ns": identity.modified_ns, "device": None, "inode": None},
    }, ensure_ascii=False, allow_nan=False)


def _parse(path: Path, key: str, raw: object) -> Checkpoint:
    """One ``state_store`` value as a checkpoint; ``CheckpointError`` naming the file and
    the key when it is not one 0.3.0 could have written."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {key!r} in {path}, a checkpoint file of Agora 0.3.0 (row "
            f"'{LEGACY_PREFIX}{key}' of table {LEGACY_TABLE}), cannot be read: {why}. Nothing "
            f"was changed — fix or delete that row, or restore the file from a backup (without "
            f"the row the next run reprocesses that pipeline's source from the beginning)")

    if not isinstance(raw, str):
        raise bad(f"its value is {type(raw).__name__}, not JSON text")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise bad(f"its value is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise bad(f"its value is a JSON {type(data).__name__}, not an object")
    missing = [name for name in ("pipeline_id", "run_id", "source", "value", "recorded_at")
               if name not in data]
    if missing:
        raise bad(f"it lacks the fields {missing}")
    wrong = [name for name in ("pipeline_id", "run_id", "source", "recorded_at")
             if not isinstance(data[name], str)]
    if wrong:
        raise bad(f"the fields {wrong} must be strings")
    try:
        identity = identity_from_stored(data.get("source_identity"))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    checkpoint = Checkpoint(data["pipeline_id"], data["run_id"], data["source"],
                            data["value"], data["recorded_at"], source_identity=identity)
    try:
        encode_checkpoint_value(checkpoint)
    except CheckpointError as exc:  # e.g. NaN, which Python's JSON reader accepts
        raise bad(f"its value is not a JSON value Agora can store ({exc})") from exc
    return checkpoint


def legacy_keys(conn: sqlite3.Connection) -> list[str]:
    """The checkpoint keys of 0.3.0's table, sorted (its other rows are not checkpoints)."""
    rows = conn.execute(
        f"SELECT substr(key, ?) FROM {LEGACY_TABLE} WHERE substr(key, 1, ?) = ?",
        (len(LEGACY_PREFIX) + 1, len(LEGACY_PREFIX), LEGACY_PREFIX)).fetchall()
    return sorted(row[0] for row in rows if row[0])


def legacy_checkpoint(conn: sqlite3.Connection, path: Path, key: str) -> Checkpoint | None:
    """``key``'s checkpoint in 0.3.0's table, or None. 0.3.0's ``expires_at`` is not
    consulted: 0.3.0 never set one on a checkpoint."""
    row = conn.execute(f"SELECT value FROM {LEGACY_TABLE} WHERE key = ?",
                       (LEGACY_PREFIX + key,)).fetchone()
    return None if row is None else _parse(path, key, row[0])


def _trust(path: Path) -> None:
    fd, _ = open_trusted(path, os.O_RDONLY, what="checkpoints file", error=CheckpointError,
                         create=False)
    os.close(fd)
    check_sidecars(path, "checkpoints", CheckpointError)


def open_legacy_readonly(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to ``path`` if it is 0.3.0's checkpoint file, else None. The
    file passes Agora's trust checks first (``CheckpointError`` otherwise)."""
    if not is_sqlite_file(path):
        return None
    _trust(path)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                           check_same_thread=False)
    try:
        if is_legacy(conn):
            return conn
    except sqlite3.Error:
        pass  # not readable as a 0.3.0 file: Agora's own checks then say why
    conn.close()
    return None


def adopt_legacy_file(path: Path, init: Any) -> int:
    """If ``path`` is 0.3.0's checkpoint file, make it an Agora checkpoint file in one
    transaction and return the checkpoints copied; any other file is left alone (0).

    ``init(conn)`` creates Agora's tables; every ``checkpoint:`` row is then copied into
    them, ``state_store`` gets 0.3.0's ``expires_at`` column if it lacks it, and the file
    is marked so that later saves are mirrored into ``state_store``. The old rows stay, so
    0.3.0 still reads the file. A row that cannot be read raises ``CheckpointError``
    naming the file and the key, and the file is left exactly as it was.
    """
    if not is_sqlite_file(path):
        return 0
    _trust(path)

    def copy_in(conn: sqlite3.Connection) -> int:
        checkpoints = [(key, legacy_checkpoint(conn, path, key)) for key in legacy_keys(conn)]
        init(conn)
        if "expires_at" not in _fields(conn, LEGACY_TABLE):
            conn.execute(f"ALTER TABLE {LEGACY_TABLE} ADD COLUMN expires_at REAL")
        conn.execute("INSERT OR REPLACE INTO agora_meta (key, value) VALUES (?, ?)",
                     (MIRROR_META_KEY, LEGACY_TABLE))
        conn.executemany(
            "INSERT INTO agora_checkpoints (key, pipeline_id, run_id, source, value,"
            " recorded_at, source_identity) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(key, cp.pipeline_id, cp.run_id, cp.source, encode_checkpoint_value(cp),
              cp.recorded_at, encode_identity(cp.source_identity))
             for key, cp in checkpoints if cp is not None])
        return len(checkpoints)

    conn = sqlite3.connect(str(path), isolation_level=None, timeout=_BUSY_TIMEOUT_S)

    try:
        return adopt_once(conn, is_legacy, copy_in)
    except sqlite3.Error as exc:
        raise CheckpointError(
            f"cannot upgrade {path}, a checkpoint file of Agora 0.3.0, to this version's "
            f"layout: {exc}. Nothing was changed — check disk space and file locks, then "
            f"retry") from exc
    finally:
        conn.close()


def encode_identity(identity: SourceIdentity | None) -> str | None:
    """The text Agora stores for a source identity (NULL for none)."""
    return None if identity is None else json.dumps(identity.to_dict(), ensure_ascii=False)
