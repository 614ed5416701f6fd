"""Small value objects that cross component boundaries: write results, checkpoints,
dead-letter records, and the marker a source emits for a malformed input record.

A little over 400 lines: ``DLQRecord`` and the JSON-safety helpers it relies on belong
together (the helpers exist to make a record storable), and splitting them would only
add an import cycle."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agora._json_values import (
    DEFAULT_MAX_VALUE_SIZE,
    dumps_json,
    json_restore,
    json_safe,
    safe_repr,
    safe_text,
)

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "Checkpoint",
    "DLQRecord",
    "DLQStage",
    "DLQ_STAGES",
    "MalformedRecord",
    "SourceIdentity",
    "WriteResult",
    "dumps_json",
    "json_restore",
    "json_safe",
    "safe_repr",
    "safe_text",
]


@dataclass(frozen=True)
class WriteResult:
    """Outcome of writing one record: ``written`` or not, and the error if it failed."""

    written: bool
    error: Exception | None = None

    @classmethod
    def ok(cls) -> WriteResult:
        return _OK

    @classmethod
    def failed(cls, error: Exception) -> WriteResult:
        if not isinstance(error, BaseException):
            raise TypeError(f"WriteResult.failed needs an exception; got {type(error).__name__}")
        return cls(written=False, error=error)


_OK = WriteResult(written=True)


@dataclass(frozen=True)
class SourceIdentity:
    """Which file a position refers to: its resolved path, size and modification time.

    Agora's file sources already put a content fingerprint of their input inside every
    checkpoint value they emit (and refuse to resume on a different file); this value
    object describes a file for code that compares inputs itself, and may ride along in
    ``Checkpoint.source_identity``."""

    path: str
    size: int
    modified_ns: int

    @classmethod
    def for_file(cls, path: str | os.PathLike[str]) -> SourceIdentity:
        """The identity of ``path`` now. Raises ``FileNotFoundError`` if it is missing."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        return cls(path=str(resolved), size=stat.st_size, modified_ns=stat.st_mtime_ns)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "modified_ns": self.modified_ns}

    @classmethod
    def from_dict(cls, data: Any) -> SourceIdentity:
        """The identity ``to_dict()`` gave; ``ValueError`` naming the keys otherwise."""
        if (not isinstance(data, dict) or set(data) != {"path", "size", "modified_ns"}
                or not isinstance(data["path"], str)
                or not all(isinstance(data[k], int) for k in ("size", "modified_ns"))):
            raise ValueError(
                f"a source identity must be {{'path': str, 'size': int, 'modified_ns': int}}; "
                f"got {data!r:.200} — was it written by SourceIdentity.to_dict()?")
        return cls(path=data["path"], size=data["size"], modified_ns=data["modified_ns"])


@dataclass(frozen=True)
class Checkpoint:
    """A saved source position. ``value`` is what the source's ``current_checkpoint()``
    returned (any JSON value); ``source`` is the source's ``source_name``;
    ``source_identity`` optionally says which input file the position refers to (None by
    default: the engine leaves it unset, as the built-in file sources keep their input's
    identity inside ``value``)."""

    pipeline_id: str
    run_id: str
    source: str
    value: Any
    recorded_at: str | _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )
    source_identity: SourceIdentity | None = None

    def __post_init__(self) -> None:
        if self.source_identity is not None and not isinstance(self.source_identity,
                                                               SourceIdentity):
            raise TypeError(
                f"Checkpoint.source_identity must be a SourceIdentity or None; got "
                f"{type(self.source_identity).__name__} — build it with "
                f"SourceIdentity.for_file(path) or SourceIdentity.from_dict(data)")
        # A datetime (the type some callers pass) is kept as its ISO string, the form
        # every store persists, so a checkpoint reads back equal to what was saved.
        if isinstance(self.recorded_at, _dt.datetime):
            stamp = self.recorded_at
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=_dt.UTC)
            object.__setattr__(self, "recorded_at", stamp.isoformat())
        elif not isinstance(self.recorded_at, str):
            raise TypeError(
                f"Checkpoint.recorded_at must be an ISO string or a datetime; got "
                f"{type(self.recorded_at).__name__} — pass datetime.now(UTC)")

    @property
    def recorded_at_datetime(self) -> _dt.datetime:
        """``recorded_at`` as an aware ``datetime``."""
        stamp = self.recorded_at
        # __post_init__ stores text; the isinstance keeps the type checker honest.
        return stamp if isinstance(stamp, _dt.datetime) else _dt.datetime.fromisoformat(stamp)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DLQStage(StrEnum):
    """Where a dead-lettered record failed (``DLQRecord.stage``; stored as its string)."""

    SOURCE_STREAM = "source_stream"  # the source raised while reading: no record to send
    SOURCE_RECORD = "source_record"  # a malformed-record marker, or SourceRecordError(record=)
    MIDDLEWARE = "middleware"  # a per-record middleware raised
    BATCH_MIDDLEWARE = "batch_middleware"  # a batch (or process-isolated) middleware failed
    SINK_WRITE = "sink_write"  # a sink rejected the record


#: The stage strings, in pipeline order (kept for code written against 0.3).
DLQ_STAGES: tuple[str, ...] = tuple(stage.value for stage in DLQStage)



class _Required:
    """Marks a field with no default that follows fields with one (kept positional)."""

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()


@dataclass(frozen=True)
class DLQRecord:
    """One failed record, with enough context to understand and replay it.

    ``record`` is the record as the source emitted it (for Arrow lanes: the row, as a dict,
    that entered the failing stage); ``processed_record`` is what reached the sink, for
    ``stage="sink_write"``. ``original_record`` is the source's record: the records the
    engine builds carry it (``record`` itself when they are the same object, stored once,
    as ``record``; read back it is None); None means ``record`` is the source's record.
    ``attempt`` counts replays of this failure (0: first capture) and
    ``max_attempts`` bounds them (None: no bound). :meth:`replay_payload` picks what to
    send again. ``details`` holds facts about the failure as a JSON-ready dict (None: none;
    the engine puts the failure's classification under ``"failure"``). ``attempt``, ``max_attempts`` and ``details`` are stored only
    when set.

    Capture never fails because of content: ``to_dict()`` is always JSON-serialisable and
    ``to_json()`` is always encodable as UTF-8. Values JSON cannot hold are stored in a
    flagged form (see :func:`json_safe`) and ``round_trippable`` becomes False; a string or
    bytes value longer than ``max_value_size`` (and an ``error_message`` longer than it) is
    cut, flagged, and ``truncated`` becomes True — never dropped whole.
    """

    pipeline_id: str
    run_id: str
    stage: DLQStage | str
    error_type: str
    error_message: str
    source: str | None = None
    checkpoint: Any = None
    record: Any = _REQUIRED
    processed_record: Any = None
    middleware: str | None = None
    sink: str | None = None
    # ISO 8601 text (UTC) by default, the form every DLQ file stores and third-party DLQ
    # sinks store as they find it; a datetime given by the caller is kept as given.
    created_at: str | _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )
    round_trippable: bool = True
    truncated: bool = False
    original_record: Any = None
    attempt: int = 0
    max_attempts: int | None = None
    details: dict[str, Any] | None = None
    # Where a DLQ file holds this record (its SQLite row id), set by the readers so that
    # replay() and acknowledge() reach exactly that row even when two records share every
    # other field. Not part of the record's value: not compared, not stored, not shown.
    _storage_id: int | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.record is _REQUIRED:
            raise TypeError(
                "DLQRecord needs record= (the failed record as the source emitted it); got "
                "none — pass record=…"
            )
        # The engine writes only DLQStage members; code that builds records itself may name
        # its own stage (a non-empty string, stored as given). A known stage string read
        # back from a file becomes the enum member; str() and JSON give the same string.
        if not isinstance(self.stage, str) or not self.stage.strip():
            raise ValueError(
                f"DLQRecord.stage must be a non-empty string (the engine writes one of "
                f"{DLQ_STAGES}); got {self.stage!r} — name the stage where the record failed"
            )
        if self.stage in DLQ_STAGES:
            object.__setattr__(self, "stage", DLQStage(self.stage))
        if not isinstance(self.created_at, (str, _dt.datetime)):
            raise TypeError(
                f"DLQRecord.created_at must be an ISO 8601 string or a datetime; got "
                f"{type(self.created_at).__name__} — pass datetime.now(UTC)"
            )
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError(
                f"DLQRecord.attempt must be an int >= 0; got {self.attempt!r} — count replays "
                f"from 0 (the first capture)"
            )
        if self.details is not None and not isinstance(self.details, dict):
            raise TypeError(
                f"DLQRecord.details must be a dict (JSON-ready facts about the failure) or "
                f"None; got {type(self.details).__name__} — pass details={{...}}"
            )
        if self.max_attempts is not None and (
                isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int)
                or self.max_attempts < 1):
            raise ValueError(
                f"DLQRecord.max_attempts must be None (no limit) or an int >= 1; got "
                f"{self.max_attempts!r}"
            )

    @property
    def created_at_text(self) -> str:
        """``created_at`` as DLQ files store it: the text itself, or a datetime in ISO 8601
        (a naive one taken as UTC)."""
        stamp = self.created_at
        if isinstance(stamp, str):
            return stamp
        return (stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=_dt.UTC)).isoformat()

    @property
    def created_at_datetime(self) -> _dt.datetime:
        """``created_at`` as an aware ``datetime`` (naive: UTC). Raises ``ValueError`` for
        text that is not ISO 8601."""
        return _aware_time(self.created_at)

    def replay_payload(self, mode: str = "pipeline") -> Any:
        """What to send again: ``mode="pipeline"`` gives the record as the source emitted
        it (``original_record`` if set, else ``record``), to run through the whole
        pipeline; ``mode="sink"`` gives what reached the sink (``processed_record`` if set,
        else ``record``), to write straight to a sink. Any other mode is a ValueError."""
        if mode == "pipeline":
            return self.record if self.original_record is None else self.original_record
        if mode == "sink":
            return self.record if self.processed_record is None else self.processed_record
        raise ValueError(
            f"DLQRecord.replay_payload() mode must be 'pipeline' or 'sink'; got {mode!r}"
        )

    @classmethod
    def from_exception(cls, exc: BaseException, **fields: Any) -> DLQRecord:
        """Build a record from a failure; an exception whose ``str()`` raises still yields
        one (its message then says so)."""
        return cls(error_type=type(exc).__name__, error_message=safe_text(exc), **fields)

    def to_dict(self, *, max_value_size: int = DEFAULT_MAX_VALUE_SIZE) -> dict[str, Any]:
        """Every field, JSON-ready: data fields through :func:`json_safe`, text fields as
        ``str`` (``error_message`` cut to ``max_value_size`` characters)."""
        # Not dataclasses.asdict: it deep-copies, and a record holding a lock or a socket
        # cannot be copied — it must still be stored (flagged), never dropped.
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_storage_id"}
        data["created_at"] = self.created_at_text
        flags = {"ok": True, "truncated": False}
        # Replay bookkeeping is stored only when set, so records captured before these
        # fields existed and records captured now read (and de-duplicate) the same.
        # (Compared by identity: a record's own __eq__ may raise, and capture must not.)
        if data["original_record"] is None or data["original_record"] is self.record:
            del data["original_record"]  # none apart from ``record``: stored once, as it
        if data["max_attempts"] is None:
            del data["max_attempts"]
        if data["details"] is None:
            del data["details"]
        if self.attempt == 0:  # an int, checked at construction
            del data["attempt"]
        for key in ("checkpoint", "record", "processed_record", "original_record", "details"):
            if key in data:
                data[key] = json_safe(data[key], flags, max_value_size=max_value_size)
        if data["source"] is None:
            data["source"] = ""  # not known to whoever built the record; stores need text
        for key in _TEXT_FIELDS:
            if data[key] is not None or key not in ("middleware", "sink"):
                data[key] = safe_text(data[key])
        message = data["error_message"]
        if len(message) > max_value_size:
            data["error_message"] = (
                f"{message[:max_value_size]}… [cut: {len(message):,} characters in all]"
            )
            flags["truncated"] = True
        data["round_trippable"] = bool(self.round_trippable) and flags["ok"]
        data["truncated"] = bool(self.truncated) or flags["truncated"]
        return data

    def to_json(self, *, max_value_size: int = DEFAULT_MAX_VALUE_SIZE) -> str:
        """One JSON document, always encodable as UTF-8 (see :func:`dumps_json`)."""
        return dumps_json(self.to_dict(max_value_size=max_value_size))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DLQRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_fields(self, **changes: Any) -> DLQRecord:
        """A copy with ``changes``. When ``record`` changes (a redactor masking it) and
        ``original_record`` was not given apart from it, ``original_record`` follows the
        new ``record`` — a masked value never leaves the unmasked one behind."""
        if ("record" in changes and "original_record" not in changes
                and self.original_record is self.record):
            changes["original_record"] = changes["record"]
        return replace(self, **changes)


def _aware_time(value: str | _dt.datetime) -> _dt.datetime:
    """``created_at`` as a timezone-aware ``datetime``: a naive one is taken as UTC, an
    ISO 8601 string (the form every DLQ file stores) is parsed."""
    if isinstance(value, str):
        text = value
        try:
            value = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"DLQRecord.created_at is not an ISO 8601 time: {text[:60]!r} — it cannot "
                f"be read as a datetime; read created_at_text instead"
            ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)


_TEXT_FIELDS = ("pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
                "middleware", "sink", "created_at")

@dataclass(frozen=True)
class MalformedRecord:
    """Emitted *in place of* a record by a source whose malformed-input policy is ``"dlq"``.

    The runtime dead-letters it with ``stage="source_record"`` (``raw`` is the record field)
    and counts it errored; it never reaches middleware or sinks. The source's
    ``current_checkpoint()`` after emitting it must resume *after* it.
    """

    raw: Any
    reason: str
    location: str
    error_type: str = "SourceRecordError"
