"""The durable checkpoint store: an SQLite file, fail-closed, fenced by per-key file locks."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

from agora.errors import CheckpointError
from agora.records import Checkpoint
from agora.stores._files import (
    create_owner_only,
    immediate_transaction,
    make_private_dirs,
    open_agora_db,
    write_meta,
)
from agora.stores.checkpoint import (
    CheckpointStore,
    check_key,
    encode_checkpoint_value,
    in_use_message,
)

__all__ = ["SyncSQLiteCheckpointStore"]

_SCHEMA_VERSION = 1


def _init_schema(conn: sqlite3.Connection) -> None:
    write_meta(conn, "checkpoints", _SCHEMA_VERSION)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agora_checkpoints ("
        " key TEXT PRIMARY KEY,"
        " pipeline_id TEXT NOT NULL,"
        " run_id TEXT NOT NULL,"
        " source TEXT NOT NULL,"
        " value TEXT NOT NULL,"  # JSON text of Checkpoint.value
        " recorded_at TEXT NOT NULL)"
    )



class SyncSQLiteCheckpointStore(CheckpointStore):
    """Checkpoints in an SQLite file: WAL journal, ``synchronous=FULL``, one
    ``BEGIN IMMEDIATE … COMMIT`` per save, so a saved checkpoint survives SIGKILL and
    power loss, and a reader never sees a half-written one.

    File safety: missing parent folders are created (0700; existing folders are never
    changed). A new file is created owner-only (0600) and fully initialised in a private
    temporary file that is then linked into place, so the store's path never holds a
    half-created database. SQLite gives its ``-wal``/``-shm`` files the database file's mode,
    so they are owner-only too (this user's own wider ones are tightened on open).

    Shared folders: the database, its ``-wal``/``-shm``/``-journal`` files and the lock
    files are never opened through a symbolic link, and an existing one that another
    user owns or that group/others can write is refused with ``CheckpointError`` naming
    the file, its owner or mode and the fix — a checkpoint someone else can forge could
    make a run silently skip input.

    Fail-closed (``CheckpointError`` naming the file and how to recover, never a silent
    fresh start): a 0-byte file, a file that is not SQLite, a damaged database, a database
    without Agora's checkpoint tables, a schema from a newer Agora, a missing database
    whose ``-wal`` is still there, and a saved value that is not valid JSON. Stale
    ``-wal``/``-shm`` files from a crash are normal: SQLite recovers from them.

    Concurrency: saves are atomic and SQLite serialises writers (a writer waits up to 10 s
    for another's commit). A run claims its key with an exclusive ``flock`` on an
    owner-only lock file next to the database (``<db>.<hash of key>.lock``), so a second
    run on the same key — in any process — is refused; the kernel drops the lock when the
    holder dies, so a killed run never leaves a stale claim. ``create=False`` makes a
    missing file an error instead of creating it (for inspection tools).
    """

    store_name = "sqlite_checkpoints"
    #: ``save`` may run on a worker thread while the run goes on: the connection is shared
    #: across threads under ``self._lock``, and the runtime never overlaps two calls.
    saves_in_thread = True

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.create = create
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._lock_fds: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SyncSQLiteCheckpointStore({str(self.path)!r})"

    def _recovery(self, key: str | None = None) -> str:
        if key is not None:
            return (
                f"Reset it with `agora checkpoint reset --store {self.path} --key {key}` "
                f"(the next run reprocesses the source from the beginning), or restore "
                f"{self.path} from a backup"
            )
        return (
            "Restore it from a backup, or move it aside (with its -wal/-shm files) to start "
            "from scratch — the next run then reprocesses the source from the beginning"
        )

    def open(self) -> None:
        self._connection()

    def _connection(self) -> sqlite3.Connection:
        with self._lock:
            if self._conn is None:
                self._conn = open_agora_db(
                    self.path,
                    kind="checkpoints",
                    schema_version=_SCHEMA_VERSION,
                    init=_init_schema,
                    error=CheckpointError,
                    recovery=self._recovery(),
                    create=self.create,
                    verify=True,  # the file is tiny; a full quick_check costs little
                )
            return self._conn

    def load(self, key: str) -> Checkpoint | None:
        check_key(key)
        with self._lock:
            conn = self._connection()
            try:
                row = conn.execute(
                    "SELECT pipeline_id, run_id, source, value, recorded_at "
                    "FROM agora_checkpoints WHERE key = ?",
                    (key,),
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                raise CheckpointError(
                    f"cannot read checkpoint {key!r} from {self.path}: {exc}. "
                    f"{self._recovery(key)}"
                ) from exc
        if row is None:
            return None
        pipeline_id, run_id, source, text, recorded_at = row
        if not all(isinstance(f, str) for f in row):
            raise CheckpointError(
                f"checkpoint {key!r} in {self.path} is corrupt (a field has the wrong type). "
                f"{self._recovery(key)}"
            )
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(
                f"checkpoint {key!r} in {self.path} is corrupt (its value is not valid JSON: "
                f"{exc}). {self._recovery(key)}"
            ) from exc
        return Checkpoint(pipeline_id, run_id, source, value, recorded_at)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        check_key(key)
        value = encode_checkpoint_value(checkpoint)
        params = (
            key,
            checkpoint.pipeline_id,
            checkpoint.run_id,
            checkpoint.source,
            value,
            checkpoint.recorded_at,
        )
        with self._lock:
            conn = self._connection()
            try:
                with immediate_transaction(conn):
                    conn.execute(
                        "INSERT INTO agora_checkpoints"
                        " (key, pipeline_id, run_id, source, value, recorded_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT(key) DO UPDATE SET"
                        " pipeline_id = excluded.pipeline_id, run_id = excluded.run_id,"
                        " source = excluded.source, value = excluded.value,"
                        " recorded_at = excluded.recorded_at",
                        params,
                    )
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"cannot save checkpoint {key!r} to {self.path}: {exc} — the previous "
                    f"checkpoint is intact; check disk space and that no other process holds "
                    f"the file locked"
                ) from exc

    def reset(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            conn = self._connection()
            try:
                with immediate_transaction(conn):
                    cursor = conn.execute("DELETE FROM agora_checkpoints WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"cannot reset checkpoint {key!r} in {self.path}: {exc}"
                ) from exc
            return cursor.rowcount > 0

    def list_keys(self) -> list[str]:
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute("SELECT key FROM agora_checkpoints ORDER BY key").fetchall()
            except sqlite3.DatabaseError as exc:
                raise CheckpointError(
                    f"cannot list checkpoints in {self.path}: {exc}. {self._recovery()}"
                ) from exc
        return [row[0] for row in rows]

    def close(self) -> None:
        self._release_all()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _claim_scope(self) -> object:
        return str(self.path.resolve())

    def claim(self, key: str) -> None:
        super().claim(key)  # fences runs in this process
        lock_path = self.path.with_name(
            f"{self.path.name}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock")
        try:
            if self.create:
                make_private_dirs(lock_path.parent, what=f"lock file {lock_path}",
                                  error=CheckpointError)
            fd, _ = create_owner_only(lock_path, os.O_RDWR, what=f"lock file of {self!r}",
                                      error=CheckpointError)
        except BaseException:
            super().release(key)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            super().release(key)
            raise CheckpointError(in_use_message(key, self, f"another process (pid {holder})")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fds[key] = fd

    def release(self, key: str) -> None:
        fd = self._lock_fds.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        super().release(key)
