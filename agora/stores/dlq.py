"""Dead-letter sinks that persist DLQRecords (SQLite, JSON lines) and read them back."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agora.errors import DLQError
from agora.records import DEFAULT_MAX_VALUE_SIZE, DLQRecord, dumps_json
from agora.sinks.base import BaseSink, SinkState
from agora.stores._files import (
    SQLITE_HEADER,
    create_owner_only,
    immediate_transaction,
    make_private_dirs,
    open_agora_db,
    write_meta,
)

__all__ = ["DLQError", "JsonLinesDLQSink", "SQLiteDLQSink", "read_dlq"]

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")


def _require_record(sink: BaseSink, record: object) -> DLQRecord:
    if not isinstance(record, DLQRecord):
        raise TypeError(
            f"DLQ sink {sink.sink_name!r} stores agora.DLQRecord objects; got "
            f"{type(record).__name__} — build one with DLQRecord(...) or "
            f"DLQRecord.from_exception(exc, ...)"
        )
    return record


def _check_max_value_size(sink: BaseSink, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"{type(sink).__name__}.max_value_size must be an integer >= 1 (characters of "
            f"text, bytes of binary data); got {value!r}"
        )
    return value


def _matches(record: DLQRecord, pipeline_id: str | None, stage: str | None) -> bool:
    return (pipeline_id is None or record.pipeline_id == pipeline_id) and (
        stage is None or record.stage == stage
    )


# -- SQLite ------------------------------------------------------------------------------

# Version 2 added the failure to the dedupe identity (new keys only: rows of version 1
# keep theirs), the ``truncated`` flag and the replay columns; see _migrate().
_SCHEMA_VERSION = 2
_JSON_COLUMNS = ("checkpoint", "record", "processed_record")
_COLUMNS = (
    "pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
    "checkpoint", "record", "processed_record", "middleware", "sink", "created_at",
    "round_trippable", "truncated",
)
# Columns added after version 1, with their definitions (ALTER TABLE ... ADD COLUMN).
_ADDED_COLUMNS = (
    ("truncated", "INTEGER NOT NULL DEFAULT 0"),  # a value was cut to the size cap
    ("replayed_at", "TEXT"),  # when a replay last re-sent the record and it was handled
    ("replay_run_id", "TEXT"),  # the run id of that replay
    ("last_error_type", "TEXT"),  # the latest failure, when a replay failed it again
    ("last_error_message", "TEXT"),
)


def _init_schema(conn: sqlite3.Connection) -> None:
    write_meta(conn, "dlq", _SCHEMA_VERSION)
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
        + ", ".join(f"{name} {ddl}" for name, ddl in _ADDED_COLUMNS)
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

    Only adds columns (existing rows keep every value; the new columns start empty), so a
    crash mid-way leaves the file as it was. Idempotent; a concurrent opener that migrated
    first leaves nothing to do.
    """
    with immediate_transaction(conn):
        present = table_columns(conn)
        for name, ddl in _ADDED_COLUMNS:
            if name not in present:
                conn.execute(f"ALTER TABLE agora_dlq ADD COLUMN {name} {ddl}")
        write_meta(conn, "dlq", _SCHEMA_VERSION)


_INSERT = (
    f"INSERT INTO agora_dlq (record_key, {', '.join(_COLUMNS)})"
    f" VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})"
    " ON CONFLICT(record_key) DO UPDATE SET attempts = attempts + 1,"
    " last_run_id = excluded.run_id, last_seen_at = excluded.created_at"
)

_TEXT_COLUMNS = ("pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
                 "middleware", "sink", "created_at")
# What makes two rows the same failure (see SQLiteDLQSink, "Dedupe").
_IDENTITY = ("pipeline_id", "source", "stage", "middleware", "sink", "checkpoint", "record",
             "processed_record", "error_type", "error_message")


def sqlite_text(text: str) -> str:
    """``text`` as an SQLite TEXT value can hold it: a lone surrogate (not UTF-8) becomes
    the six characters ``\\udXXX``; any other text is returned unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


_DLQ_RECOVERY = (
    "Move it aside and point the DLQ at a new file; rows in the old file may still be "
    "readable with the sqlite3 tool"
)


class SQLiteDLQSink(BaseSink):
    """Dead-letters ``DLQRecord``s into an SQLite file (table ``agora_dlq``).

    Durability: ``write``/``write_batch`` buffer rows in memory (already JSON-encoded, so
    later mutation of a record changes nothing); ``flush()`` writes the buffer in one
    ``BEGIN IMMEDIATE … COMMIT`` (WAL, ``synchronous=FULL``) — after it returns the rows
    survive SIGKILL and power loss. Buffering in memory rather than in an open transaction
    means the DLQ never holds SQLite's write lock between flushes, so it can share a file
    with :class:`~agora.stores.SQLiteCheckpointStore`. A failed commit keeps the rows
    buffered (a later flush or ``close()`` retries); so a DLQ write failure can surface at
    ``flush()`` — it then concerns every record written since the last successful flush.

    Content never fails a write: every record is stored as ``DLQRecord.to_dict()`` makes it
    (flagged fallbacks; string and bytes values, and the error message, cut to
    ``max_value_size`` with ``truncated`` set). Text columns cannot hold a lone surrogate:
    there it is kept as the six characters ``\\udXXX`` (JSON columns keep it exactly).

    Dedupe (on by default): each row gets a ``record_key`` — a hash of pipeline id, source,
    stage, middleware/sink name, the record's checkpoint, the record, the processed record
    and the failure (error type and message, as stored: after the redactor), plus its
    occurrence number since ``open()`` — and an existing key is not inserted again: its
    ``attempts`` is incremented instead. A run re-run after a crash from the same
    checkpoint therefore re-creates the same keys and adds no duplicate rows, while the
    same record failing for a different reason gets a row of its own. Records holding
    values JSON cannot encode (their ``repr`` often contains an address), or whose
    checkpoint or message differs in the re-run, are not recognised: duplicates are then
    bounded by the records re-run. ``dedupe=False`` inserts every write.

    A file of schema version 1 is migrated when opened for writing (columns are added,
    nothing is rewritten); readers accept both versions.

    The file is created owner-only (0600); the same fail-closed checks as the checkpoint
    store apply (raising :class:`DLQError`). Methods block for a local commit at most.
    """

    sink_name = "sqlite_dlq"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dedupe: bool = True,
        max_buffered: int = 1000,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        sink_name: str | None = None,
    ) -> None:
        if not isinstance(max_buffered, int) or max_buffered < 1:
            raise ValueError(
                f"SQLiteDLQSink.max_buffered must be an integer >= 1; got {max_buffered!r}"
            )
        self.path = Path(path)
        self.dedupe = dedupe
        self.max_value_size = _check_max_value_size(self, max_value_size)
        # Buffered rows are committed early once this many wait: bounds memory; an early
        # commit is only ever more durable, never less.
        self.max_buffered = max_buffered
        if sink_name is not None:
            self.sink_name = sink_name
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Any, ...]] = []
        self._occurrences: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"SQLiteDLQSink({str(self.path)!r})"

    async def open(self) -> None:
        """Open (or reopen after ``close()``: a bound pipeline runs repeatedly) and continue
        the existing DLQ. A second ``open()`` while open is a no-op."""
        if self.state is SinkState.OPEN:
            return
        self._occurrences.clear()  # occurrence numbers count within one run (see dedupe)
        self._conn = open_agora_db(
            self.path,
            kind="dlq",
            schema_version=_SCHEMA_VERSION,
            init=_init_schema,
            error=DLQError,
            recovery=_DLQ_RECOVERY,
            adopt_existing=True,
        )
        try:
            migrate(self._conn)
        except sqlite3.Error as exc:
            conn, self._conn = self._conn, None
            conn.close()
            raise DLQError(
                f"DLQ sink {self.sink_name!r} cannot upgrade {self.path} to schema version "
                f"{_SCHEMA_VERSION}: {exc} — check disk space and file locks, then retry"
            ) from exc
        await super().open()

    def _row(self, record: DLQRecord) -> tuple[Any, ...]:
        data = _require_record(self, record).to_dict(max_value_size=self.max_value_size)
        for name in _JSON_COLUMNS:
            data[name] = dumps_json(data[name])
        for name in _TEXT_COLUMNS:
            if data[name] is not None:
                data[name] = sqlite_text(data[name])
        data["round_trippable"] = 1 if data["round_trippable"] else 0
        data["truncated"] = 1 if data["truncated"] else 0
        return (self._record_key(data), *(data[c] for c in _COLUMNS))

    def _record_key(self, data: dict[str, Any]) -> str | None:
        if not self.dedupe:
            return None
        identity = dumps_json([data[c] for c in _IDENTITY])
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        seen = self._occurrences.get(digest, 0)
        self._occurrences[digest] = seen + 1
        return f"{digest}:{seen}"

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._pending.append(self._row(record))
        if len(self._pending) >= self.max_buffered:
            self._commit()

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write")
        rows = [self._row(record) for record in records]  # all-or-nothing encoding
        self._pending.extend(rows)
        if len(self._pending) >= self.max_buffered:
            self._commit()
        return None

    async def flush(self) -> None:
        """Commit every buffered row; durable when this returns."""
        self._check_usable("flush")
        self._commit()

    def _commit(self) -> None:
        if not self._pending:
            return
        assert self._conn is not None  # guaranteed by _check_usable: open() set it
        conn = self._conn
        try:
            with immediate_transaction(conn):
                conn.executemany(_INSERT, self._pending)
        except sqlite3.Error as exc:
            raise DLQError(
                f"DLQ sink {self.sink_name!r} could not commit {len(self._pending)} record(s) "
                f"to {self.path}: {exc} — they stay buffered and are retried on the next "
                f"flush; check disk space and file locks"
            ) from exc
        self._pending.clear()

    async def close(self) -> None:
        """Commit buffered rows, then release the file. Idempotent."""
        if self.state is SinkState.CLOSED:
            return
        try:
            if self.state is SinkState.OPEN:
                self._commit()
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            await super().close()

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        *,
        pipeline_id: str | None = None,
        stage: str | None = None,
    ) -> Iterator[DLQRecord]:
        """Yield the committed records of an SQLite DLQ file, oldest first.

        Raises :class:`DLQError` at once if the file is missing or not an Agora DLQ, and
        while iterating for a row whose JSON is damaged.
        """
        path = Path(path)
        open_agora_db(  # validate eagerly so errors surface before iteration
            path, kind="dlq", schema_version=_SCHEMA_VERSION, init=_init_schema,
            error=DLQError, recovery=_DLQ_RECOVERY, create=False,
        ).close()
        return _iter_sqlite(path, pipeline_id, stage)


def _iter_sqlite(path: Path, pipeline_id: str | None, stage: str | None) -> Iterator[DLQRecord]:
    where, params = [], []
    if pipeline_id is not None:
        where.append("pipeline_id = ?")
        params.append(pipeline_id)
    if stage is not None:
        where.append("stage = ?")
        params.append(stage)
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        columns = [c for c in _COLUMNS if c in table_columns(conn)]  # version 1 or 2
        sql = f"SELECT id, {', '.join(columns)} FROM agora_dlq"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        for row in conn.execute(sql, params):
            yield record_from_row(path, row[0], dict(zip(columns, row[1:], strict=True)))
    finally:
        conn.close()


def record_from_row(path: Path, row_id: int, data: dict[str, Any]) -> DLQRecord:
    """Decode one ``agora_dlq`` row (column name → value) into a ``DLQRecord``."""
    try:
        for name in _JSON_COLUMNS:
            data[name] = json.loads(data[name])
        data["round_trippable"] = bool(data["round_trippable"])
        data["truncated"] = bool(data.get("truncated", 0))
        return DLQRecord.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise DLQError(f"DLQ file {path}: row id {row_id} is damaged ({exc})") from exc


# -- JSON lines --------------------------------------------------------------------------

# Every line this sink writes starts with this (DLQRecord.to_dict's first field).
_LINE_PREFIX = b'{"pipeline_id":'


class JsonLinesDLQSink(BaseSink):
    """Dead-letters ``DLQRecord``s as one ``DLQRecord.to_json()`` line each.

    Content never fails a write: ``to_json`` stores flagged fallbacks, cuts string and bytes
    values (and the error message) to ``max_value_size`` with ``truncated`` set, and writes
    a lone surrogate as a ``\\udXXX`` JSON escape (lossless).

    The file is opened in append mode (an existing DLQ is never truncated) and created
    owner-only (0600). ``flush()`` flushes Python's buffer and ``fsync``s: after it returns
    the lines survive SIGKILL and power loss. A crash mid-write can leave a torn last line;
    it was never flushed, so the run that wrote it did not count it captured, and
    ``open()`` removes it before appending (a last line that is complete JSON only gets
    its missing newline). A torn tail that does not look like an Agora record makes
    ``open()`` fail with :class:`DLQError` instead. Methods block for a local write/fsync.
    """

    sink_name = "jsonl_dlq"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        sink_name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_value_size = _check_max_value_size(self, max_value_size)
        if sink_name is not None:
            self.sink_name = sink_name
        self._file: Any = None

    def __repr__(self) -> str:
        return f"JsonLinesDLQSink({str(self.path)!r})"

    async def open(self) -> None:
        """Open (or reopen after ``close()``: a bound pipeline runs repeatedly) in append
        mode. A second ``open()`` while open is a no-op."""
        if self.state is SinkState.OPEN:
            return
        what = f"DLQ file of sink {self.sink_name!r}"
        try:
            make_private_dirs(self.path.parent, what=f"{what} {self.path}", error=DLQError)
            fd, _ = create_owner_only(
                self.path, os.O_RDWR | os.O_APPEND, what=what, error=DLQError
            )
        except OSError as exc:
            raise DLQError(f"DLQ sink {self.sink_name!r} cannot open {self.path}: {exc}") from exc
        try:
            self._repair_tail(fd)
        except BaseException:
            os.close(fd)
            raise
        self._file = os.fdopen(fd, "ab")
        await super().open()

    def _repair_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start = size
        while start > 0:  # find the start of the unterminated last line
            chunk_start = max(0, start - 65536)
            newline = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
            if newline >= 0:
                start = chunk_start + newline + 1
                break
            start = chunk_start
        tail = os.pread(fd, size - start, start)
        try:
            json.loads(tail)
        except ValueError:
            if not (tail.startswith(_LINE_PREFIX) or _LINE_PREFIX.startswith(tail)):
                raise DLQError(
                    f"DLQ file {self.path} ends with an incomplete line that is not an Agora "
                    f"DLQ record (byte {start}); is it really a DLQ file? Fix or move it aside"
                ) from None
            os.ftruncate(fd, start)  # a torn, never-flushed write from a crash
        else:
            os.write(fd, b"\n")
        os.fsync(fd)

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._file.write(self._line(record))

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write")
        lines = [self._line(r) for r in records]  # all-or-nothing encoding
        self._file.write(b"".join(lines))
        return None

    def _line(self, record: Any) -> bytes:
        text = _require_record(self, record).to_json(max_value_size=self.max_value_size)
        return text.encode("utf-8") + b"\n"

    async def flush(self) -> None:
        """Write buffered lines and fsync; durable when this returns."""
        self._check_usable("flush")
        self._file.flush()
        os.fsync(self._file.fileno())

    async def close(self) -> None:
        """Flush (with fsync), then close the file. Idempotent."""
        if self.state is SinkState.CLOSED:
            return
        file, self._file = self._file, None
        try:
            if file is not None:
                file.flush()
                os.fsync(file.fileno())
        finally:
            if file is not None:
                file.close()
            await super().close()

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        *,
        pipeline_id: str | None = None,
        stage: str | None = None,
    ) -> Iterator[DLQRecord]:
        """Yield the records of a JSON-lines DLQ file in file order.

        A torn (unterminated, unparsable) last line is skipped: it was never flushed.
        Raises :class:`DLQError` at once if the file is missing, and while iterating for
        any other line that is not a DLQ record (naming file and line).
        """
        path = Path(path)
        if not path.is_file():
            raise DLQError(f"DLQ file {path} does not exist")
        return _iter_json_lines(path, pipeline_id, stage)


def _iter_json_lines(
    path: Path, pipeline_id: str | None, stage: str | None
) -> Iterator[DLQRecord]:
    with open(path, "rb") as fh:  # binary: split on b"\n" only, never on U+2028 & co
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, got {type(data).__name__}")
                record = DLQRecord.from_dict(data)
            except (TypeError, ValueError) as exc:
                if not raw.endswith(b"\n"):
                    return  # torn final write from a crash: never flushed, never counted
                raise DLQError(
                    f"DLQ file {path}, line {lineno}: not a DLQ record ({exc})"
                ) from exc
            if _matches(record, pipeline_id, stage):
                yield record


def read_dlq(
    path: str | os.PathLike[str],
    *,
    pipeline_id: str | None = None,
    stage: str | None = None,
) -> Iterator[DLQRecord]:
    """Read back a DLQ written by :class:`SQLiteDLQSink` or :class:`JsonLinesDLQSink`.

    The format comes from the extension (``.jsonl``, ``.json``, ``.ndjson`` → JSON lines)
    or else from the file's first bytes. Optional filters keep only one pipeline's or one
    stage's records. Raises :class:`DLQError` for a missing or unrecognisable file.
    """
    path = Path(path)
    if path.suffix.lower() in JSON_LINES_SUFFIXES:
        return JsonLinesDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise DLQError(f"DLQ file {path} does not exist") from None
    except OSError as exc:
        raise DLQError(f"cannot read DLQ file {path}: {exc}") from exc
    if head == SQLITE_HEADER:
        return SQLiteDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    if head.lstrip()[:1] in (b"{", b""):
        return JsonLinesDLQSink.read(path, pipeline_id=pipeline_id, stage=stage)
    raise DLQError(
        f"cannot tell the format of DLQ file {path}: it is neither SQLite nor JSON lines"
    )
