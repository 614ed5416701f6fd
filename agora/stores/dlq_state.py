"""Replay state of a DLQ file: stable entry ids, what a replay re-sent, and re-failures."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agora.records import DLQRecord, dumps_json
from agora.stores._files import (
    SQLITE_HEADER,
    create_owner_only,
    immediate_transaction,
    open_agora_db,
)
from agora.stores.dlq import JSON_LINES_SUFFIXES, DLQError, record_from_row
from agora.stores.dlq_jsonl import iter_dlq_lines
from agora.stores.dlq_legacy import adopt_legacy_file, open_legacy_readonly
from agora.stores.dlq_schema import (
    COLUMNS,
    DLQ_RECOVERY,
    SCHEMA_VERSION,
    init_schema,
    migrate,
    sqlite_text,
    table_columns,
)

__all__ = ["DLQEntry", "DLQLedger", "ReplayFailure", "open_ledger", "sidecar_path"]


@dataclass(frozen=True)
class DLQEntry:
    """One stored DLQ record with its identity in the file and its replay state.

    ``entry_id`` is the SQLite row id, or the line number in a JSON-lines DLQ. ``record``
    holds the failure as first captured; ``last_error_type``/``last_error_message`` the
    latest one when a replay failed it again (``attempts`` counts every capture).
    ``replayed_at`` is set once a replay re-sent the record and it was handled.
    """

    entry_id: int
    record: DLQRecord
    attempts: int = 1
    replayed_at: str | None = None
    replay_run_id: str | None = None
    last_error_type: str | None = None
    last_error_message: str | None = None

    @property
    def replayed(self) -> bool:
        return self.replayed_at is not None


@dataclass(frozen=True)
class ReplayFailure:
    """A replayed entry that failed again: its latest error (already redacted)."""

    entry_id: int
    error_type: str
    error_message: str
    run_id: str


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


class DLQLedger:
    """Reads a DLQ file's entries and durably records replay outcomes in it.

    Opened read-only (``writable=False``) it changes nothing on disk, not even the
    schema version. ``mark_replayed`` and ``record_failures`` are durable when they return.
    """

    path: Path

    def entries(self) -> list[DLQEntry]:
        raise NotImplementedError

    def mark_replayed(self, entry_ids: Sequence[int], run_id: str) -> None:
        raise NotImplementedError

    def record_failures(self, failures: Sequence[ReplayFailure]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file. Idempotent."""


def open_ledger(path: str | os.PathLike[str], *, writable: bool) -> DLQLedger:
    """Open the DLQ at ``path`` (format as :func:`~agora.stores.read_dlq` detects it).

    Raises :class:`~agora.stores.DLQError` for a missing or unrecognisable file.
    """
    path = Path(path)
    if path.suffix.lower() in JSON_LINES_SUFFIXES:
        return _JsonLinesLedger(path, writable)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise DLQError(f"DLQ file {path} does not exist") from None
    except OSError as exc:
        raise DLQError(f"cannot read DLQ file {path}: {exc}") from exc
    if head == SQLITE_HEADER:
        return _SQLiteLedger(path, writable)
    if head.lstrip()[:1] in (b"{", b""):
        return _JsonLinesLedger(path, writable)
    raise DLQError(
        f"cannot tell the format of DLQ file {path}: it is neither SQLite nor JSON lines"
    )


# -- SQLite: replay state lives in the row itself -------------------------------------------

_STATE_COLUMNS = ("attempts", "replayed_at", "replay_run_id", "last_error_type",
                  "last_error_message")


class _SQLiteLedger(DLQLedger):
    def __init__(self, path: Path, writable: bool) -> None:
        self.path = path
        self.writable = writable
        if writable:
            adopt_legacy_file(path, "replay")  # a DLQ file of 0.3.0 becomes an Agora one
        else:
            legacy = open_legacy_readonly(path)
            if legacy is not None:
                legacy.close()
                raise DLQError(
                    f"DLQ file {path} was written by Agora 0.3.0 and has no replay state "
                    f"yet; a replay without --dry-run (or any SQLiteDLQSink opening it) "
                    f"upgrades it in place, keeping every row — `agora dlq list {path}` "
                    f"shows its records now"
                )
        conn = open_agora_db(
            path, kind="dlq", schema_version=SCHEMA_VERSION, init=init_schema,
            error=DLQError, recovery=DLQ_RECOVERY, create=False,
        )
        if writable:
            try:
                migrate(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise DLQError(
                    f"cannot upgrade DLQ file {path} to schema version {SCHEMA_VERSION}: "
                    f"{exc} — check disk space and file locks, then retry"
                ) from exc
        self._conn: sqlite3.Connection | None = conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DLQError(f"DLQ file {self.path} was closed; open it again to replay")
        return self._conn

    def entries(self) -> list[DLQEntry]:
        conn = self._connection()
        present = table_columns(conn)
        columns = [c for c in COLUMNS if c in present]
        state = [c for c in _STATE_COLUMNS if c in present]
        sql = f"SELECT id, {', '.join(columns + state)} FROM agora_dlq ORDER BY id"
        out = []
        for row in conn.execute(sql):
            data = dict(zip(columns, row[1 : 1 + len(columns)], strict=True))
            extra: dict[str, Any] = dict(zip(state, row[1 + len(columns) :], strict=True))
            out.append(DLQEntry(entry_id=row[0], record=record_from_row(self.path, row[0], data),
                                **extra))
        return out

    def _write(self, sql: str, params: list[tuple[Any, ...]], what: str) -> None:
        if not self.writable:
            raise DLQError(f"DLQ file {self.path} was opened read-only; cannot {what}")
        conn = self._connection()
        try:
            with immediate_transaction(conn):
                conn.executemany(sql, params)
        except sqlite3.Error as exc:
            raise DLQError(
                f"DLQ file {self.path}: could not {what} ({exc}) — check disk space and file "
                f"locks; a later replay re-sends what was not marked"
            ) from exc

    def mark_replayed(self, entry_ids: Sequence[int], run_id: str) -> None:
        if entry_ids:
            at = _now()
            self._write("UPDATE agora_dlq SET replayed_at = ?, replay_run_id = ? WHERE id = ?",
                        [(at, run_id, i) for i in entry_ids], "mark replayed records")

    def record_failures(self, failures: Sequence[ReplayFailure]) -> None:
        if failures:
            at = _now()
            self._write(
                "UPDATE agora_dlq SET attempts = attempts + 1, last_error_type = ?,"
                " last_error_message = ?, last_run_id = ?, last_seen_at = ?,"
                " replayed_at = NULL, replay_run_id = NULL WHERE id = ?",
                [(sqlite_text(f.error_type), sqlite_text(f.error_message),
                  sqlite_text(f.run_id), at, f.entry_id) for f in failures],
                "record records that failed again",
            )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


# -- JSON lines: the DLQ stays append-only; replay state goes to a sidecar ------------------


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where a JSON-lines DLQ's replay state lives: ``<dlq>.replay`` (owner-only)."""
    return Path(f"{os.fspath(path)}.replay")


def _line_digest(raw: bytes) -> str:
    return hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest()[:32]


class _JsonLinesLedger(DLQLedger):
    """Replay state of a JSON-lines DLQ in an append-only sidecar of JSON events.

    Each event names a DLQ line by number *and* by a digest of its bytes: an event whose
    line no longer matches (the DLQ was replaced or edited) is ignored, so a changed file
    is re-sent rather than wrongly skipped.
    """

    def __init__(self, path: Path, writable: bool) -> None:
        self.path = path
        self.sidecar = sidecar_path(path)
        self.writable = writable
        if not path.is_file():
            raise DLQError(f"DLQ file {path} does not exist")
        self._digests: dict[int, str] = {}  # line number → digest, from the last entries()

    def entries(self) -> list[DLQEntry]:
        lines: list[tuple[int, str, DLQRecord]] = []
        for lineno, raw, record in iter_dlq_lines(self.path):
            lines.append((lineno, _line_digest(raw), record))
        state = self._read_sidecar()
        out = []
        for lineno, digest, record in lines:
            self._digests[lineno] = digest
            events = state.get((lineno, digest), {})
            out.append(DLQEntry(
                entry_id=lineno, record=record, attempts=1 + int(events.get("failures", 0)),
                replayed_at=events.get("replayed_at"), replay_run_id=events.get("replay_run_id"),
                last_error_type=events.get("last_error_type"),
                last_error_message=events.get("last_error_message"),
            ))
        return out

    def _read_sidecar(self) -> dict[tuple[int, str], dict[str, Any]]:
        state: dict[tuple[int, str], dict[str, Any]] = {}
        try:
            fh = open(self.sidecar, "rb")
        except FileNotFoundError:
            return state
        with fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw)
                    key = (int(event["line"]), str(event["digest"]))
                    kind = event["event"]
                except (TypeError, ValueError, KeyError) as exc:
                    if not raw.endswith(b"\n"):
                        break  # torn, never-synced last event: as if it was never written
                    raise DLQError(
                        f"DLQ replay state {self.sidecar}, line {lineno} is damaged ({exc}); "
                        f"move it aside to re-send every record on the next replay"
                    ) from exc
                entry = state.setdefault(key, {})
                if kind == "replayed":
                    entry["replayed_at"] = event.get("at")
                    entry["replay_run_id"] = event.get("run_id")
                elif kind == "failed":
                    entry["failures"] = entry.get("failures", 0) + 1
                    entry["last_error_type"] = event.get("error_type")
                    entry["last_error_message"] = event.get("error_message")
                    entry["replayed_at"] = entry["replay_run_id"] = None
        return state

    def _append(self, events: list[dict[str, Any]], what: str) -> None:
        if not self.writable:
            raise DLQError(f"DLQ file {self.path} was opened read-only; cannot {what}")
        data = b"".join(dumps_json(e).encode("utf-8") + b"\n" for e in events)
        try:
            fd, _ = create_owner_only(self.sidecar, os.O_RDWR | os.O_APPEND,
                                      what="DLQ replay state file", error=DLQError)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A torn event from a crash: cut it (readers ignore it already).
                    whole = os.pread(fd, size, 0)
                    os.ftruncate(fd, whole.rfind(b"\n") + 1)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DLQError(
                f"DLQ replay state {self.sidecar}: could not {what} ({exc}) — check disk "
                f"space and permissions; a later replay re-sends what was not marked"
            ) from exc

    def _event(self, entry_id: int, kind: str, **fields: Any) -> dict[str, Any]:
        digest = self._digests.get(entry_id)
        if digest is None:
            raise DLQError(f"DLQ file {self.path} has no record at line {entry_id}")
        return {"line": entry_id, "digest": digest, "event": kind, "at": _now(), **fields}

    def mark_replayed(self, entry_ids: Sequence[int], run_id: str) -> None:
        if entry_ids:
            self._append([self._event(i, "replayed", run_id=run_id) for i in entry_ids],
                         "mark replayed records")

    def record_failures(self, failures: Sequence[ReplayFailure]) -> None:
        if failures:
            self._append(
                [self._event(f.entry_id, "failed", run_id=f.run_id, error_type=f.error_type,
                             error_message=f.error_message) for f in failures],
                "record records that failed again",
            )
