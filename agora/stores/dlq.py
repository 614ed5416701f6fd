"""Dead-letter storage in SQLite: the SQLite DLQ sink, its reader, and what every DLQ sink shares."""

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
from agora.stores._files import immediate_transaction, open_agora_db
from agora.stores.dlq_legacy import adopt_legacy_file, legacy_rows, open_legacy_readonly
from agora.stores.dlq_schema import (
    COLUMNS,
    DLQ_RECOVERY,
    IDENTITY,
    INSERT,
    JSON_COLUMNS,
    REPLAY_FIELDS,
    SCHEMA_VERSION,
    TEXT_COLUMNS,
    init_schema,
    migrate,
    sqlite_text,
    table_columns,
)

__all__ = [
    "JSON_LINES_SUFFIXES",
    "DLQError",
    "SQLiteDLQSink",
    "check_max_value_size",
    "record_from_row",
    "require_record",
]

JSON_LINES_SUFFIXES = (".jsonl", ".json", ".ndjson")


def require_record(sink: BaseSink, record: object) -> DLQRecord:
    """Return ``record`` if it is a ``DLQRecord``; else raise ``TypeError`` naming ``sink``."""
    if not isinstance(record, DLQRecord):
        raise TypeError(
            f"DLQ sink {sink.sink_name!r} stores agora.DLQRecord objects; got "
            f"{type(record).__name__} — build one with DLQRecord(...) or "
            f"DLQRecord.from_exception(exc, ...)"
        )
    return record


def check_max_value_size(sink: BaseSink, value: object) -> int:
    """Return ``value`` if it is a valid ``max_value_size``; else raise ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"{type(sink).__name__}.max_value_size must be an integer >= 1 (characters of "
            f"text, bytes of binary data); got {value!r}"
        )
    return value


class SQLiteDLQSink(BaseSink):
    """Dead-letters ``DLQRecord``s into an SQLite file (table ``agora_dlq``).

    Durability: ``write_batch`` (the engine's call) buffers rows in memory (already
    JSON-encoded, so later mutation of a record changes nothing); ``write(record)`` (a
    program's call) commits at once, with the buffer; ``flush()`` writes the buffer in one
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

    ``original_record``, ``attempt`` and ``max_attempts`` are kept (columns of their own;
    rows written before they existed read back with the defaults: None, 0, None). A file of
    an older schema version is upgraded in place when opened for writing, in one
    transaction (columns are added, nothing is rewritten); readers accept every older
    version as it is. A file of a newer version is refused with :class:`DLQError` naming
    it. A DLQ file of Agora 0.3.0 (table ``dlq_records``) is read as it is, and adopted
    when opened for writing: its rows are copied into Agora's table in one transaction
    and its own table is kept, with 0.3.0's newer columns added.

    ``replay(record)`` stores ``attempt + 1`` on the record's row and ``acknowledge(record)``
    removes the row: the 0.3.0 calls, for records read back with ``read_dlq`` or
    :class:`~agora.sources.DLQSource`. (``agora dlq replay`` keeps rows and marks them
    replayed instead.)

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
        self.max_value_size = check_max_value_size(self, max_value_size)
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
        adopt_legacy_file(self.path, self.sink_name)
        self._conn = open_agora_db(
            self.path,
            kind="dlq",
            schema_version=SCHEMA_VERSION,
            init=init_schema,
            error=DLQError,
            recovery=DLQ_RECOVERY,
            adopt_existing=True,
        )
        try:
            migrate(self._conn)
        except sqlite3.Error as exc:
            conn, self._conn = self._conn, None
            conn.close()
            raise DLQError(
                f"DLQ sink {self.sink_name!r} cannot upgrade {self.path} to schema version "
                f"{SCHEMA_VERSION}: {exc} — check disk space and file locks, then retry"
            ) from exc
        await super().open()

    def _row(self, record: DLQRecord) -> tuple[Any, ...]:
        data = require_record(self, record).to_dict(max_value_size=self.max_value_size)
        for name in JSON_COLUMNS:
            data[name] = dumps_json(data[name])
        for name in TEXT_COLUMNS:
            if data[name] is not None:
                data[name] = sqlite_text(data[name])
        data["round_trippable"] = 1 if data["round_trippable"] else 0
        data["truncated"] = 1 if data["truncated"] else 0
        # to_dict() leaves the replay fields out when they hold their defaults.
        replay = {name: data[name] for name in REPLAY_FIELDS if name in data}
        data["original_record"] = (
            dumps_json(replay["original_record"]) if "original_record" in replay else None
        )
        data["attempt"] = replay.get("attempt", 0)
        data["max_attempts"] = replay.get("max_attempts")
        # Stored only when set, like the replay fields; not part of the dedupe identity
        # (it describes the failure the identity already holds).
        data["details"] = dumps_json(data["details"]) if "details" in data else None
        return (self._record_key(data, replay), *(data[c] for c in COLUMNS))

    def _record_key(self, data: dict[str, Any], replay: dict[str, Any]) -> str | None:
        if not self.dedupe:
            return None
        # Replay fields join the identity only when set: a record without them keeps the
        # key earlier versions gave it, and a later attempt is a failure of its own.
        parts: list[Any] = [data[c] for c in IDENTITY]
        if replay:
            parts.append(replay)
        identity = dumps_json(parts)
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()
        seen = self._occurrences.get(digest, 0)
        self._occurrences[digest] = seen + 1
        return f"{digest}:{seen}"

    async def write(self, record: Any) -> None:
        """Store one record, committed (with anything buffered) before it returns: the
        call a program makes by hand. The engine uses ``write_batch`` + ``flush``."""
        self._check_usable("write")
        self._pending.append(self._row(record))
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
                conn.executemany(INSERT, self._pending)
        except sqlite3.Error as exc:
            raise DLQError(
                f"DLQ sink {self.sink_name!r} could not commit {len(self._pending)} record(s) "
                f"to {self.path}: {exc} — they stay buffered and are retried on the next "
                f"flush; check disk space and file locks"
            ) from exc
        self._pending.clear()

    async def replay(self, record: DLQRecord) -> DLQRecord:
        """Count one more replay of ``record``: its row's ``attempt`` becomes
        ``record.attempt + 1`` (durable when this returns) and the record is returned with
        it, every other field kept. The row is the one ``record`` was read from (records
        read back carry it), else the oldest with the same pipeline, run, stage and
        ``created_at``. Raises :class:`DLQError` when no row of this file matches."""
        self._check_usable("replay")
        updated = require_record(self, record).with_fields(attempt=record.attempt + 1)
        self._change_row(record, "UPDATE agora_dlq SET attempt = ?", (updated.attempt,),
                         "replay")
        return updated

    async def acknowledge(self, record: DLQRecord) -> None:
        """Remove ``record``'s row: it was replayed and handled, so the DLQ no longer holds
        it (durable when this returns). The row is found as :meth:`replay` finds it; raises
        :class:`DLQError` when no row of this file matches (already acknowledged, or read
        from another file)."""
        self._check_usable("acknowledge")
        self._change_row(require_record(self, record), "DELETE FROM agora_dlq", (),
                         "acknowledge")

    def _change_row(self, record: DLQRecord, change: str, values: tuple[Any, ...],
                    what: str) -> None:
        self._commit()  # a record written but not yet committed must be found too
        assert self._conn is not None  # guaranteed by _check_usable: open() set it
        # The row id alone could name another file's row: the record's identity must
        # match as well, so a record from another DLQ never changes a row of this one.
        same = "pipeline_id = ? AND run_id = ? AND stage = ? AND created_at = ?"
        identity = (record.pipeline_id, record.run_id, str(record.stage), record.created_at_text)
        params: tuple[Any, ...]
        if record._storage_id is not None:
            target, params = f"id = ? AND {same}", (record._storage_id, *identity)
        else:
            target = f"id = (SELECT id FROM agora_dlq WHERE {same} ORDER BY id LIMIT 1)"
            params = identity
        try:
            with immediate_transaction(self._conn) as conn:
                changed = conn.execute(f"{change} WHERE {target}", (*values, *params)).rowcount
        except sqlite3.Error as exc:
            raise DLQError(
                f"DLQ sink {self.sink_name!r} could not {what} a record in {self.path}: "
                f"{exc} — check disk space and file locks, then retry"
            ) from exc
        if changed == 0:
            raise DLQError(
                f"DLQ sink {self.sink_name!r} cannot {what} the record of pipeline "
                f"{record.pipeline_id!r}, run {record.run_id!r}, stage {str(record.stage)!r} "
                f"created at {record.created_at_text}: no row of {self.path} matches — it "
                f"was acknowledged already, or it was read from another DLQ file"
            )

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
        legacy = open_legacy_readonly(path)
        if legacy is not None:  # a file of 0.3.0, read as it is (changing nothing)
            return _iter_legacy(path, legacy, pipeline_id, stage)
        open_agora_db(  # validate eagerly so errors surface before iteration
            path, kind="dlq", schema_version=SCHEMA_VERSION, init=init_schema,
            error=DLQError, recovery=DLQ_RECOVERY, create=False,
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
        columns = [c for c in COLUMNS if c in table_columns(conn)]  # any version so far
        sql = f"SELECT id, {', '.join(columns)} FROM agora_dlq"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        for row in conn.execute(sql, params):
            yield record_from_row(path, row[0], dict(zip(columns, row[1:], strict=True)))
    finally:
        conn.close()


def _iter_legacy(path: Path, conn: sqlite3.Connection, pipeline_id: str | None,
                 stage: str | None) -> Iterator[DLQRecord]:
    try:
        for row_id, data in legacy_rows(conn, pipeline_id=pipeline_id, stage=stage):
            # Row ids of 0.3.0's table are not Agora's: the record carries none.
            yield record_from_row(path, row_id, data, storage_id=False)
    finally:
        conn.close()


def record_from_row(path: Path, row_id: int, data: dict[str, Any], *,
                    storage_id: bool = True) -> DLQRecord:
    """Decode one ``agora_dlq`` row (column name → value) into a ``DLQRecord`` that
    remembers its row id (for ``replay()`` / ``acknowledge()``)."""
    try:
        for name in JSON_COLUMNS:
            data[name] = json.loads(data[name])
        for name in ("original_record", "details"):
            if data.get(name) is not None:
                data[name] = json.loads(data[name])
        if data.get("attempt") is None:
            data.pop("attempt", None)  # a file from before the column: the default
        data["round_trippable"] = bool(data["round_trippable"])
        data["truncated"] = bool(data.get("truncated", 0))
        if storage_id:
            data["_storage_id"] = row_id
        return DLQRecord.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise DLQError(f"DLQ file {path}: row id {row_id} is damaged ({exc})") from exc
