"""Checkpoint stores: the contract, an in-memory store, and a durable SQLite store."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Any

from agora.errors import CheckpointError
from agora.protocols import CheckpointStoreProtocol
from agora.records import Checkpoint
from agora.stores._files import (
    create_owner_only,
    immediate_transaction,
    make_private_dirs,
    open_agora_db,
    write_meta,
)

__all__ = [
    "CheckpointStore",
    "InMemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "encode_checkpoint_value",
]


class CheckpointStore(CheckpointStoreProtocol, ABC):
    """Where a run saves its source position, one checkpoint per key (the pipeline id).

    Contract (every method is synchronous: the runtime calls them from its event loop,
    and each is a short local operation — a lookup, or one small durable commit):

    * ``load(key)`` returns the last saved :class:`Checkpoint` or None if the key was never
      saved (or was reset). A checkpoint that exists but cannot be trusted raises
      :class:`~agora.errors.CheckpointError` — never None.
    * ``save(key, checkpoint)`` is durable when it returns: a crash (even SIGKILL) after
      it returns cannot lose it. It replaces the key's previous checkpoint atomically.
      ``checkpoint.value`` must be a JSON value; anything else raises ``CheckpointError``.
    * ``reset(key)`` deletes the key's checkpoint; True if there was one.
    * ``list_keys()`` returns the saved keys, sorted.
    * ``open()`` is optional (stores open on first use); ``close()`` is idempotent and only
      releases resources — the store reopens on next use, so one store object can serve
      several runs. Usable as a context manager.
    * ``claim(key)`` / ``release(key)`` fence runs: the runtime claims the key for the
      whole run, and a second run on the same key (in this or another process) is refused
      with ``CheckpointError`` instead of interleaving saves with the first. ``close()``
      releases every claim; a claim never outlives its process.

    Values come back as ``json.loads`` gives them: tuples become lists.
    """

    store_name: str = "checkpoint_store"

    def open(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Acquire resources now instead of on first use (surfaces errors early)."""

    @abstractmethod
    def load(self, key: str) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, key: str, checkpoint: Checkpoint) -> None: ...

    @abstractmethod
    def reset(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self) -> list[str]: ...

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release resources (and claims). Idempotent."""

    def claim(self, key: str) -> None:
        """Reserve ``key`` for one run; CheckpointError if another run holds it."""
        _check_key(key)
        with _CLAIMS_LOCK:
            token = (self._claim_scope(), key)
            if token in _CLAIMS:
                raise CheckpointError(_in_use(key, self, "another run in this process"))
            _CLAIMS.add(token)
        self._claims().add(key)

    def release(self, key: str) -> None:
        """Give up a claim taken by :meth:`claim`; releasing an unclaimed key does nothing."""
        if key in self._claims():
            self._claims().discard(key)
            with _CLAIMS_LOCK:
                _CLAIMS.discard((self._claim_scope(), key))

    def _claim_scope(self) -> object:
        """What two stores must share for their claims to collide (the store itself)."""
        return id(self)

    def _claims(self) -> set[str]:
        claims = self.__dict__.get("_held_claims")
        if claims is None:
            claims = self.__dict__["_held_claims"] = set()
        return claims

    def _release_all(self) -> None:
        for key in list(self._claims()):
            self.release(key)

    def __enter__(self) -> CheckpointStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"checkpoint key must be a str; got {type(key).__name__}")
    if not key:
        raise ValueError("checkpoint key must be a non-empty string (default: the pipeline id)")
    return key


def _non_json(value: Any, where: str = "") -> tuple[str, str] | None:
    """``(what, where)`` for the first part of ``value`` that is not a JSON value, or None."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (f"the float {value!r}", where)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_json(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return (f"a dict key of type {type(k).__name__} ({k!r})", where)
            found = _non_json(item, f"{where}[{k!r}]")
            if found:
                return found
        return None
    return (_a(type(value).__qualname__), where)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def encode_checkpoint_value(checkpoint: Checkpoint) -> str:
    """The JSON text of ``checkpoint.value``; CheckpointError naming the source if it is
    not a JSON value (NaN/infinity and non-string dict keys included: they would not come
    back as they went in)."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"save() needs an agora.Checkpoint; got {type(checkpoint).__name__}")
    for name in ("pipeline_id", "run_id", "source", "recorded_at"):
        if not isinstance(getattr(checkpoint, name), str):
            raise TypeError(
                f"Checkpoint.{name} must be a str; got {type(getattr(checkpoint, name)).__name__}"
            )
    problem = _non_json(checkpoint.value)
    if problem is not None:
        what, where = problem
        if where or what.startswith("a dict key"):
            what = f"{_a(type(checkpoint.value).__qualname__)} containing {what}"
            what += f" at value{where}" if where else ""
        raise CheckpointError(
            f"current_checkpoint() of source {checkpoint.source!r} returned {what}; "
            f"checkpoints must be JSON values (dict with str keys, list, str, int, "
            f"finite float, bool or None)"
        )
    return json.dumps(checkpoint.value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class InMemoryCheckpointStore(CheckpointStore):
    """Checkpoints in a dict, for tests and throw-away runs (not durable across processes).

    Stores the JSON text, so a caller mutating a value after ``save`` (or the one returned
    by ``load``) never changes what is stored, and values behave exactly as with
    :class:`SQLiteCheckpointStore`. ``close()`` keeps the data: a later run on the same
    object resumes.
    """

    store_name = "memory_checkpoints"

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, str, str, str, str]] = {}
        self._lock = threading.Lock()

    def load(self, key: str) -> Checkpoint | None:
        with self._lock:
            row = self._rows.get(_check_key(key))
        if row is None:
            return None
        pipeline_id, run_id, source, value, recorded_at = row
        return Checkpoint(pipeline_id, run_id, source, json.loads(value), recorded_at)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        _check_key(key)
        value = encode_checkpoint_value(checkpoint)
        with self._lock:
            self._rows[key] = (
                checkpoint.pipeline_id,
                checkpoint.run_id,
                checkpoint.source,
                value,
                checkpoint.recorded_at,
            )

    def reset(self, key: str) -> bool:
        with self._lock:
            return self._rows.pop(_check_key(key), None) is not None

    def list_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._rows)

    def __repr__(self) -> str:
        return f"InMemoryCheckpointStore(keys={len(self._rows)})"


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


#: Keys claimed by runs in this process, per store scope (cross-process fencing of the
#: SQLite store uses file locks on top of this).
_CLAIMS: set[tuple[object, str]] = set()
_CLAIMS_LOCK = threading.Lock()


def _in_use(key: str, store: CheckpointStore, holder: str) -> str:
    return (
        f"checkpoint {key!r} in {store!r} is in use by {holder}; runs of one pipeline must "
        f"not overlap (their checkpoints would interleave) — wait for it to finish, or give "
        f"this run another checkpoint_key"
    )


class SQLiteCheckpointStore(CheckpointStore):
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

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.create = create
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._lock_fds: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.path)!r})"

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
        _check_key(key)
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
        _check_key(key)
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
        _check_key(key)
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
            raise CheckpointError(_in_use(key, self, f"another process (pid {holder})")) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fds[key] = fd

    def release(self, key: str) -> None:
        fd = self._lock_fds.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock
        super().release(key)
