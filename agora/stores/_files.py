"""File helpers for the stores: owner-only creation, and opening Agora SQLite files safely
in folders other users may write to."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from agora._safe_files import (
    OWNER_ONLY,
    check_trusted,
    fsync_dir,
    make_private_dirs,
    open_trusted,
    same_file,
)
from agora.errors import AgoraError

__all__ = [
    "OWNER_ONLY",
    "SQLITE_HEADER",
    "adopt_once",
    "check_sidecars",
    "create_owner_only",
    "fsync_dir",
    "immediate_transaction",
    "is_sqlite_file",
    "make_private_dirs",
    "open_agora_db",
    "write_meta",
]

SQLITE_HEADER = b"SQLite format 3\x00"

# How long a connection waits for another connection's write lock before failing with
# "database is locked". Long enough to ride out a concurrent commit (an fsync or two),
# short enough that a genuinely stuck second writer surfaces as an error.
BUSY_TIMEOUT_S = 10.0

ErrorFactory = Callable[[str], AgoraError]

SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")


def create_owner_only(
    path: Path, flags: int, *, what: str, error: ErrorFactory
) -> tuple[int, bool]:
    """Open ``path`` for ``flags``, creating it exclusively with mode 0600 if it does not
    exist. An existing file that is a link, not a regular file, another user's, or
    writable by group/others raises ``error`` naming ``what``, the file and the fix.
    Returns ``(fd, created)``; a created file's directory entry is fsynced."""
    fd, created = open_trusted(path, flags, what=what, error=error, durable=False)
    if created:
        try:
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
    return fd, created


def check_sidecars(path: Path, kind: str, error: ErrorFactory) -> None:
    """Refuse SQLite's ``-wal``/``-shm``/``-journal`` files of ``path`` if another user could
    control them (a link, another user's file, group/other-writable: a forged write-ahead
    log would replay forged pages into the database), and make this user's own ones
    owner-only if others can read them.

    SQLite's unix VFS creates them with the database file's mode and never opens them
    through a link, so for files Agora created this only confirms what is there; it
    guards against files planted in a shared folder or left by another tool.
    """
    for suffix in SIDECAR_SUFFIXES:
        side = Path(f"{path}{suffix}")
        st = check_trusted(side, f"{kind} file's SQLite {suffix[1:]} file", error)
        if st is None or not st.st_mode & 0o077:
            continue
        try:  # chmod through a descriptor, so it is the file just checked that changes
            fd = os.open(side, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue  # SQLite removed it meanwhile (a WAL is deleted on the last close)
        try:
            if same_file(os.fstat(fd), st):
                os.fchmod(fd, OWNER_ONLY)
        finally:
            os.close(fd)


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


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is an existing SQLite file (never following a link)."""
    if not os.path.lexists(path) or os.path.islink(path) or not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def adopt_once(conn: sqlite3.Connection, is_legacy: Callable[[sqlite3.Connection], bool],
               adopt: Callable[[sqlite3.Connection], int]) -> int:
    """Run ``adopt(conn)`` in one ``BEGIN IMMEDIATE`` transaction if the file on ``conn``
    is still in its older layout (``is_legacy``) once the write lock is held — another
    process may have adopted it first — and return what it returns; else 0."""
    if not is_legacy(conn):
        return 0
    with immediate_transaction(conn):
        if not is_legacy(conn):  # another process adopted it first
            return 0
        return adopt(conn)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write names its own
    # BEGIN IMMEDIATE ... COMMIT. check_same_thread=False: the owner serialises access with
    # a lock, so the runtime may call from its loop thread or a worker thread.
    return sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )


def _check_same_file(path: Path, expected: os.stat_result, kind: str, error: ErrorFactory) -> None:
    """Raise unless ``path`` (not following links) still names the file ``expected``
    describes. SQLite opens by name; called once it has, this catches a name swapped for
    another file or a link between Agora's check and SQLite's open."""
    try:
        now = os.lstat(path)
    except OSError as exc:
        raise error(f"{kind} file {path} vanished while it was being opened ({exc})") from exc
    if not same_file(now, expected):
        raise error(
            f"{kind} file {path} was replaced by another file while it was being opened: "
            f"another user or process is changing the folder {path.parent} — keep Agora's "
            f"files in a folder only you can write to"
        )


def _initialise_new(
    path: Path, init: Callable[[sqlite3.Connection], None], kind: str, error: ErrorFactory
) -> None:
    """Create ``path`` atomically as a fully initialised Agora database.

    The schema is written into a private temporary file (created exclusively, 0600) that
    is then hard-linked into place, so ``path`` either does not exist or is complete: a
    0-byte or table-less file at ``path`` is therefore never "a store we were still
    creating" — it is damage. A crash mid-creation leaves only a ``.NAME.agora-init-*``
    file, which is harmless. SQLite opens the temporary file by name, so before anything
    is written the name is checked to still lead to the file just created.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.agora-init-", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        created = os.fstat(fd)
        conn = _connect(tmp)
        try:
            _check_same_file(tmp, created, kind, error)
            conn.execute("PRAGMA synchronous=FULL")
            with immediate_transaction(conn):
                init(conn)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # a concurrent opener created it first; it is checked like any other file
        except OSError:
            # Filesystems without hard links: rename is atomic too, but may replace a
            # file created in the same instant by another process.
            if not os.path.lexists(path):
                os.rename(tmp, path)
        fsync_dir(path.parent)
    finally:
        os.close(fd)
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
    ``"<kind>.schema_version"``; it runs inside a transaction. With ``create``, missing
    parent folders are created (0700; existing ones are left as they are) and a missing
    file is created owner-only.

    The folder may be shared, so the file and its ``-wal``/``-shm``/``-journal`` files
    must be regular files (never links), owned by this user and not writable by group or
    others, and the name must still lead to the checked file once SQLite has opened it.
    Fail-closed: those refusals, a 0-byte file, a file that is not SQLite, a damaged
    database, a file without Agora's tables, or a schema newer than ``schema_version``
    raise ``error(message)`` naming the file and the fix or ``recovery``. With
    ``adopt_existing`` an Agora file that lacks this kind's tables (e.g. a checkpoint file
    also used as the DLQ) gets them added instead.
    Returns a connection in WAL mode with ``synchronous=FULL``.
    """
    if create:
        make_private_dirs(path.parent, what=f"{kind} file {path}", error=error)
    check_sidecars(path, kind, error)
    if not os.path.lexists(path):
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise error(
                f"{kind} file {path} is missing but its write-ahead log {wal} exists: the "
                f"database was deleted or moved. Restore it, or delete {wal} and {path}-shm "
                f"to start from scratch"
            )
        if not create:
            raise error(f"{kind} file {path} does not exist")
        _initialise_new(path, init, kind, error)

    fd, _ = open_trusted(path, os.O_RDONLY, what=f"{kind} file", error=error, create=False)
    try:
        checked = os.fstat(fd)
        try:
            header = os.pread(fd, len(SQLITE_HEADER), 0)
        except OSError as exc:
            raise error(f"cannot read {kind} file {path}: {exc}") from exc
        if checked.st_size == 0:
            raise error(
                f"{kind} file {path} is empty (0 bytes): it was truncated, or it was not "
                f"created by Agora. Agora never starts from scratch silently. {recovery}"
            )
        if header != SQLITE_HEADER:
            raise error(f"{kind} file {path} is not an SQLite database (bad header). {recovery}")
        conn = _connect(path)  # SQLite opens the file here, by name
        try:
            _check_same_file(path, checked, kind, error)
            _prepare(conn, path, kind=kind, schema_version=schema_version, init=init,
                     error=error, recovery=recovery, adopt_existing=adopt_existing,
                     verify=verify)
            check_sidecars(path, kind, error)  # the ones SQLite has just created or opened
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise error(f"{kind} file {path} is unreadable ({exc}). {recovery}") from exc
        except BaseException:
            conn.close()
            raise
    finally:
        os.close(fd)
    return conn


def _prepare(
    conn: sqlite3.Connection,
    path: Path,
    *,
    kind: str,
    schema_version: int,
    init: Callable[[sqlite3.Connection], None],
    error: ErrorFactory,
    recovery: str,
    adopt_existing: bool,
    verify: bool,
) -> None:
    """WAL mode, an optional integrity check, and the schema of a freshly opened file."""
    conn.execute("PRAGMA synchronous=FULL")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise error(f"{kind} file {path}: cannot switch to WAL journal mode (got {mode!r})")
    if verify:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            first = "; ".join(str(result).splitlines()[:3])  # the report can be pages long
            raise error(f"{kind} file {path} is damaged ({first}). {recovery}")
    version = _read_version(conn, kind)
    if version is None:
        if not (adopt_existing and _has_table(conn, "agora_meta")):
            raise error(
                f"{kind} file {path} is an SQLite database without Agora's {kind} tables: "
                f"it belongs to something else, or its tables were lost. {recovery}"
            )
        with immediate_transaction(conn):
            init(conn)
    elif version > schema_version:
        raise error(
            f"{kind} file {path} has schema version {version}, written by a newer Agora; "
            f"this version reads schema {schema_version} — upgrade Agora"
        )


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
