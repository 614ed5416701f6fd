"""File helpers for the stores: owner-only creation, fsync, and opening Agora SQLite files."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from agora.errors import AgoraError

__all__ = [
    "OWNER_ONLY",
    "SQLITE_HEADER",
    "create_owner_only",
    "fsync_dir",
    "open_agora_db",
    "tighten_sidecars",
    "write_meta",
]

OWNER_ONLY = 0o600
SQLITE_HEADER = b"SQLite format 3\x00"

# How long a connection waits for another connection's write lock before failing with
# "database is locked". Long enough to ride out a concurrent commit (an fsync or two),
# short enough that a genuinely stuck second writer surfaces as an error.
BUSY_TIMEOUT_S = 10.0

ErrorFactory = Callable[[str], AgoraError]


def fsync_dir(directory: Path) -> None:
    """Make a directory entry (a created, linked or renamed file) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_owner_only(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> tuple[int, bool]:
    """Open ``path`` for writing, creating it with mode 0600 if it does not exist.

    Returns ``(fd, created)``. A file that already exists keeps its mode: the user chose it.
    A newly created file's directory entry is fsynced, so the file survives a crash.
    """
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        return os.open(path, flags), False
    try:
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd, True


def tighten_sidecars(path: Path) -> None:
    """Make SQLite's ``-wal``/``-shm``/``-journal`` files owner-only if they are wider.

    SQLite's unix VFS already creates them with the database file's mode, so for a file we
    created this is a no-op; it guards against files left by another tool or an old umask.
    """
    for suffix in ("-wal", "-shm", "-journal"):
        side = Path(f"{path}{suffix}")
        try:
            st = side.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(side, OWNER_ONLY)


@contextlib.contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error (re-raised as is: the
    caller turns ``sqlite3.Error`` into its own message)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write names its own
    # BEGIN IMMEDIATE ... COMMIT. check_same_thread=False: the owner serialises access with
    # a lock, so the runtime may call from its loop thread or a worker thread.
    return sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def _initialise_new(path: Path, init: Callable[[sqlite3.Connection], None]) -> None:
    """Create ``path`` atomically as a fully initialised Agora database.

    The schema is written into a private temporary file that is then hard-linked into
    place, so ``path`` either does not exist or is complete: a 0-byte or table-less file at
    ``path`` is therefore never "a store we were still creating" — it is damage. A crash
    mid-creation leaves only a ``.NAME.agora-init-*`` file, which is harmless.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.agora-init-", dir=path.parent)
    os.close(fd)  # mkstemp created it 0600; SQLite reuses that mode for its side files
    tmp = Path(tmp_name)
    try:
        conn = _connect(tmp)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            with immediate_transaction(conn):
                init(conn)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # a concurrent opener created it first; theirs is as good as ours
        except OSError:
            # Filesystems without hard links: rename is atomic too, but may replace a
            # file created in the same instant by another process.
            if not path.exists():
                os.rename(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def open_agora_db(
    path: Path,
    *,
    kind: str,
    schema_version: int,
    init: Callable[[sqlite3.Connection], None],
    error: ErrorFactory,
    recovery: str,
    create: bool = True,
    adopt_existing: bool = False,
    verify: bool = False,
) -> sqlite3.Connection:
    """Open (or atomically create) an Agora SQLite file holding a ``kind`` schema.

    ``init`` creates the kind's tables and writes ``agora_meta`` row
    ``"<kind>.schema_version"``; it runs inside a transaction. Fail-closed: a 0-byte file,
    a file that is not SQLite, a damaged database, a file without Agora's tables, or a
    schema newer than ``schema_version`` raise ``error(message)`` naming the file and
    ``recovery``. With ``adopt_existing`` an Agora file that lacks this kind's tables
    (e.g. a checkpoint file also used as the DLQ) gets them added instead.
    Returns a connection in WAL mode with ``synchronous=FULL``.
    """
    where = f"{path}"
    if not path.exists():
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise error(
                f"{kind} file {where} is missing but its write-ahead log {wal} exists: the "
                f"database was deleted or moved. Restore it, or delete {wal} and {path}-shm "
                f"to start from scratch"
            )
        if not create:
            raise error(f"{kind} file {where} does not exist")
        if not path.parent.is_dir():
            raise error(
                f"cannot create {kind} file {where}: directory {path.parent} does not exist"
            )
        _initialise_new(path, init)

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise error(f"cannot read {kind} file {where}: {exc}") from exc
    if size == 0:
        raise error(
            f"{kind} file {where} is empty (0 bytes): it was truncated, or it was not created "
            f"by Agora. Agora never starts from scratch silently. {recovery}"
        )
    if header != SQLITE_HEADER:
        raise error(f"{kind} file {where} is not an SQLite database (bad header). {recovery}")

    conn = _connect(path)
    try:
        tighten_sidecars(path)
        conn.execute("PRAGMA synchronous=FULL")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise error(f"{kind} file {where}: cannot switch to WAL journal mode (got {mode!r})")
        if verify:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                first = "; ".join(str(result).splitlines()[:3])  # the report can be pages long
                raise error(f"{kind} file {where} is damaged ({first}). {recovery}")
        version = _read_version(conn, kind)
        if version is None:
            if not (adopt_existing and _has_table(conn, "agora_meta")):
                raise error(
                    f"{kind} file {where} is an SQLite database without Agora's {kind} tables: "
                    f"it belongs to something else, or its tables were lost. {recovery}"
                )
            with immediate_transaction(conn):
                init(conn)
        elif version > schema_version:
            raise error(
                f"{kind} file {where} has schema version {version}, written by a newer Agora; "
                f"this version reads schema {schema_version} — upgrade Agora"
            )
        tighten_sidecars(path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise error(f"{kind} file {where} is unreadable ({exc}). {recovery}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _read_version(conn: sqlite3.Connection, kind: str) -> int | None:
    if not _has_table(conn, "agora_meta"):
        return None
    row = conn.execute(
        "SELECT value FROM agora_meta WHERE key = ?", (f"{kind}.schema_version",)
    ).fetchone()
    if row is None:
        return None
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise sqlite3.DatabaseError(f"agora_meta has a non-integer {kind}.schema_version") from None


def write_meta(conn: sqlite3.Connection, kind: str, schema_version: int) -> None:
    """Create ``agora_meta`` if needed and record this kind's schema version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS agora_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    conn.execute(
        "INSERT OR REPLACE INTO agora_meta (key, value) VALUES (?, ?)",
        (f"{kind}.schema_version", str(schema_version)),
    )
