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
from agora.stores import checkpoint_legacy as legacy
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

# 1: the first layout. 2: adds ``source_identity`` (NULL, or the JSON text of
# SourceIdentity.to_dict()). An Agora that reads only schema 1 refuses a schema-2 file
# rather than saving over it without the identity and leaving a stale one behind.
_SCHEMA_VERSION = 2


def _init_schema(conn: sqlite3.Connection) -> None:
    write_meta(conn, "checkpoints", _SCHEMA_VERSION)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agora_checkpoints ("
        " key TEXT PRIMARY KEY,"
        " pipeline_id TEXT NOT NULL,"
        " run_id TEXT NOT NULL,"
        " source TEXT NOT NULL,"
        " value TEXT NOT NULL,"  # JSON text of Checkpoint.value
        " recorded_at TEXT NOT NULL,"
        " source_identity TEXT)"
    )


def _has_identity_column(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "source_identity"
               for row in conn.execute("PRAGMA table_info(agora_checkpoints)"))


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a schema-1 file to schema 2 in one transaction (no row is touched)."""
    if _has_identity_column(conn):
        return  # already schema 2: nothing to write
    with immediate_transaction(conn):
        if not _has_identity_column(conn):
            conn.execute("ALTER TABLE agora_checkpoints ADD COLUMN source_identity TEXT")
        write_meta(conn, "checkpoints", _SCHEMA_VERSION)


def _mirror_table(conn: sqlite3.Connection) -> str | None:
    """``state_store`` when this file was adopted from 0.3.0 (saves are mirrored there)."""
    row = conn.execute("SELECT value FROM agora_meta WHERE key = ?",
                       (legacy.MIRROR_META_KEY,)).fetchone()
    return None if row is None or row[0] != legacy.LEGACY_TABLE else legacy.LEGACY_TABLE



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

    ``Checkpoint.source_identity`` is saved and loaded with the checkpoint. A file from
    an earlier Agora (schema 1, without it) is read as it is and upgraded in place, in one
    transaction and without touching a row, by the first save or reset; an Agora that
    knows only schema 1 then refuses the file as written by a newer version.

    Agora 0.3.0's checkpoint file (one table ``state_store`` with ``checkpoint:<key>``
    rows) is read as it is. The first save or reset adopts it in one transaction: its
    checkpoints are copied into Agora's table, the old table is kept, and from then on
    every save and reset is applied to both in the same transaction, so 0.3.0 pointed at
    the file again resumes where Agora stopped. A 0.3.0 row that cannot be read raises
    ``CheckpointError`` naming the file and the key, and the file is left as it was.
    """

    store_name = "sqlite_checkpoints"
    #: ``save`` may run on a worker thread while the run goes on: the connection is shared
    #: across threads under ``self._lock``, and the runtime never overlaps two calls.
    saves_in_thread = True

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.create = create
        self._conn: sqlite3.Connection | None = None
        # A read-only connection while a 0.3.0 file is only being read (never adopted by a
        # reader: showing or loading a checkpoint leaves the file as it is).
        self._legacy: sqlite3.Connection | None = None
        self._current = False  # whether self._conn's file is known to be at _SCHEMA_VERSION
        self._mirror: str | None = None
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
        self._reader()

    def _open_agora(self) -> sqlite3.Connection:
        conn = open_agora_db(
            self.path,
            kind="checkpoints",
            schema_version=_SCHEMA_VERSION,
            init=_init_schema,
            error=CheckpointError,
            recovery=self._recovery(),
            create=self.create,
            verify=True,  # the file is tiny; a full quick_check costs little
        )
        try:
            self._mirror = _mirror_table(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CheckpointError(
                f"checkpoints file {self.path} is unreadable ({exc}). {self._recovery()}"
            ) from exc
        return conn

    def _reader(self) -> sqlite3.Connection | None:
        """The Agora connection, or None while the file is 0.3.0's, read as it is through
        ``self._legacy``."""
        with self._lock:
            if self._conn is None and self._legacy is None:
                self._legacy = legacy.open_legacy_readonly(self.path)
                if self._legacy is None:
                    self._conn = self._open_agora()
            return self._conn

    def _writer(self) -> sqlite3.Connection:
        """The Agora connection, after adopting a 0.3.0 file or upgrading an older schema."""
        with self._lock:
            if self._conn is None:
                if self._legacy is not None:
                    self._legacy.close()
                    self._legacy = None
                legacy.adopt_legacy_file(self.path, _init_schema)
                self._conn = self._open_agora()
            if not self._current:
                try:
                    _upgrade(self._conn)
                except sqlite3.Error as exc:
                    raise CheckpointError(
                        f"cannot upgrade checkpoints file {self.path} to schema "
                        f"{_SCHEMA_VERSION}: {exc}. Nothing was changed — check disk space "
                        f"and file locks, then retry"
                    ) from exc
                self._current = True
            return self._conn

    def load(self, key: str) -> Checkpoint | None:
        check_key(key)
        with self._lock:
            conn = self._reader()
            try:
                if conn is None:
                    assert self._legacy is not None
                    return legacy.legacy_checkpoint(self._legacy, self.path, key)
                identity = ("source_identity" if _has_identity_column(conn)
                            else "NULL")  # a schema-1 file, read before its first save
                row = conn.execute(
                    f"SELECT pipeline_id, run_id, source, value, recorded_at, {identity} "
                    f"FROM agora_checkpoints WHERE key = ?",
                    (key,),
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                raise CheckpointError(
                    f"cannot read checkpoint {key!r} from {self.path}: {exc}. "
                    f"{self._recovery(key)}"
                ) from exc
        if row is None:
            return None
        pipeline_id, run_id, source, text, recorded_at, identity_text = row
        if not all(isinstance(f, str) for f in row[:5]) or not isinstance(
                identity_text, (str, type(None))):
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
        try:
            source_identity = legacy.identity_from_stored(
                None if identity_text is None else json.loads(identity_text))
        except ValueError as exc:
            raise CheckpointError(
                f"checkpoint {key!r} in {self.path} is corrupt (its source identity cannot "
                f"be read: {exc}). {self._recovery(key)}"
            ) from exc
        return Checkpoint(pipeline_id, run_id, source, value, recorded_at,
                          source_identity=source_identity)

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
            legacy.encode_identity(checkpoint.source_identity),
        )
        with self._lock:
            conn = self._writer()
            try:
                with immediate_transaction(conn):
                    conn.execute(
                        "INSERT INTO agora_checkpoints"
                        " (key, pipeline_id, run_id, source, value, recorded_at,"
                        " source_identity) VALUES (?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT(key) DO UPDATE SET"
                        " pipeline_id = excluded.pipeline_id, run_id = excluded.run_id,"
                        " source = excluded.source, value = excluded.value,"
                        " recorded_at = excluded.recorded_at,"
                        " source_identity = excluded.source_identity",
                        params,
                    )
                    if self._mirror is not None:  # same transaction: both or neither
                        conn.execute(
                            f"INSERT INTO {self._mirror} (key, value, expires_at)"
                            f" VALUES (?, ?, NULL) ON CONFLICT(key) DO UPDATE SET"
                            f" value = excluded.value, expires_at = NULL",
                            (legacy.LEGACY_PREFIX + key, legacy.legacy_payload(checkpoint)),
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
            conn = self._writer()
            try:
                with immediate_transaction(conn):
                    cursor = conn.execute("DELETE FROM agora_checkpoints WHERE key = ?", (key,))
                    if self._mirror is not None:
                        conn.execute(f"DELETE FROM {self._mirror} WHERE key = ?",
                                     (legacy.LEGACY_PREFIX + key,))
            except sqlite3.Error as exc:
                raise CheckpointError(
                    f"cannot reset checkpoint {key!r} in {self.path}: {exc}"
                ) from exc
            return cursor.rowcount > 0

    def list_keys(self) -> list[str]:
        with self._lock:
            conn = self._reader()
            try:
                if conn is None:
                    assert self._legacy is not None
                    return legacy.legacy_keys(self._legacy)
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
            old, self._legacy = self._legacy, None
            self._current = False
        for each in (conn, old):
            if each is not None:
                each.close()

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
