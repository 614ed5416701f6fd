"""Small value objects that cross component boundaries: write results, checkpoints,
dead-letter records, and the marker a source emits for a malformed input record.

A little over 400 lines: ``DLQRecord`` and the JSON-safety helpers it relies on belong
together (the helpers exist to make a record storable), and splitting them would only
add an import cycle."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "Checkpoint",
    "DLQRecord",
    "DLQStage",
    "DLQ_STAGES",
    "MalformedRecord",
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
class Checkpoint:
    """A saved source position. ``value`` is what the source's ``current_checkpoint()``
    returned (any JSON value); ``source`` is the source's ``source_name``."""

    pipeline_id: str
    run_id: str
    source: str
    value: Any
    recorded_at: str | _dt.datetime = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )

    def __post_init__(self) -> None:
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

    SOURCE_RECORD = "source_record"  # the source emitted a malformed-record marker
    MIDDLEWARE = "middleware"  # a per-record middleware raised
    BATCH_MIDDLEWARE = "batch_middleware"  # a batch (or process-isolated) middleware failed
    SINK_WRITE = "sink_write"  # a sink rejected the record


#: The stage strings, in pipeline order (kept for code written against 0.3).
DLQ_STAGES: tuple[str, ...] = tuple(stage.value for stage in DLQStage)

# Cap on one string (characters) or bytes value (bytes) inside a DLQ record, and on its
# error message. Large enough for any real field; small enough that a pathological value
# (a 200 MB blob) is not copied whole into every DLQ write. DLQ sinks take it as a setting.
DEFAULT_MAX_VALUE_SIZE = 1_000_000


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
    ``stage="sink_write"``. ``original_record`` is set only when the source's record
    differs from ``record`` (None: ``record`` is the source's record); ``attempt`` counts
    replays of this failure (0: first capture) and ``max_attempts`` bounds them (None: no
    bound). :meth:`replay_payload` picks what to send again. These three are stored only
    when set.

    Capture never fails because of content: ``to_dict()`` is always JSON-serialisable and
    ``to_json()`` is always encodable as UTF-8. Values JSON cannot hold are stored in a
    flagged form (see :func:`json_safe`) and ``round_trippable`` becomes False; a string or
    bytes value longer than ``max_value_size`` (and an ``error_message`` longer than it) is
    cut, flagged, and ``truncated`` becomes True — never dropped whole.
    """

    pipeline_id: str
    run_id: str
    stage: DLQStage
    error_type: str
    error_message: str
    source: str | None = None
    checkpoint: Any = None
    record: Any = _REQUIRED
    processed_record: Any = None
    middleware: str | None = None
    sink: str | None = None
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )
    round_trippable: bool = True
    truncated: bool = False
    original_record: Any = None
    attempt: int = 0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.record is _REQUIRED:
            raise TypeError(
                "DLQRecord needs record= (the failed record as the source emitted it); got "
                "none — pass record=…"
            )
        # A plain string is accepted (records read back from a file carry one) and stored
        # as the enum member; str() and JSON give the same string either way.
        try:
            stage = DLQStage(self.stage)
        except ValueError:
            raise ValueError(
                f"DLQRecord.stage must be one of {DLQ_STAGES}; got {self.stage!r}"
            ) from None
        object.__setattr__(self, "stage", stage)
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 0:
            raise ValueError(
                f"DLQRecord.attempt must be an int >= 0; got {self.attempt!r} — count replays "
                f"from 0 (the first capture)"
            )
        if self.max_attempts is not None and (
                isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int)
                or self.max_attempts < 1):
            raise ValueError(
                f"DLQRecord.max_attempts must be None (no limit) or an int >= 1; got "
                f"{self.max_attempts!r}"
            )

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
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        flags = {"ok": True, "truncated": False}
        # Replay bookkeeping is stored only when set, so records captured before these
        # fields existed and records captured now read (and de-duplicate) the same.
        # (Compared by identity: a record's own __eq__ may raise, and capture must not.)
        for key in ("original_record", "max_attempts"):
            if data[key] is None:
                del data[key]
        if self.attempt == 0:  # an int, checked at construction
            del data["attempt"]
        for key in ("checkpoint", "record", "processed_record", "original_record"):
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
        return replace(self, **changes)


_TEXT_FIELDS = ("pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
                "middleware", "sink", "created_at")

#: Flag keys of the stored forms, also recognised by :func:`json_restore`.
UNSERIALISABLE = "__agora_unserialisable__"
TRUNCATED = "__agora_truncated__"
BYTES_B64 = "__agora_bytes_b64__"
FLOAT = "__agora_float__"

# Containers nested deeper than this are stored as a flagged repr: bounds the recursion
# (a self-referencing list would otherwise never end) at a depth no real row reaches.
MAX_DEPTH = 100

# Python refuses to convert ints beyond ~4300 decimal digits to text; stay below that.
_MAX_INT_BITS = 14_000


def dumps_json(value: Any) -> str:
    """``json.dumps`` whose result always encodes as UTF-8.

    Readable non-ASCII text is kept as is; only when the text holds a lone surrogate
    (``"\\ud800"``, which ``json.loads`` happily produces) is everything written as ASCII
    escapes — lossless: reading it back yields the same string.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text


def safe_text(value: Any) -> str:
    """``str(value)`` that never raises (a failing ``__str__`` is described instead).
    Always a plain ``str`` (a ``StrEnum`` member becomes its value)."""
    if type(value) is str:
        return value
    try:
        text = str(value)
    except Exception as exc:  # noqa: BLE001 - describing the value must not fail
        return f"<{_type_name(value)}: str() raised {_type_name(exc)}>"
    return text if isinstance(text, str) else _type_name(value)


def safe_repr(value: Any, limit: int = 1000) -> str:
    """``repr(value)``, cut to ``limit`` characters, that never raises."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - describing the value must not fail
        return f"<{_type_name(value)} object: repr() raised {_type_name(exc)}>"
    if not isinstance(text, str):
        return f"<{_type_name(value)} object>"
    return text if len(text) <= limit else f"{text[:limit]}…"


def _type_name(value: Any) -> str:
    try:
        return str(type(value).__qualname__)
    except Exception:  # noqa: BLE001 - a metaclass may do anything
        return "object"


def json_safe(
    value: Any,
    flags: dict[str, bool] | None = None,
    *,
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
) -> Any:
    """Return a JSON-encodable version of ``value``; never raises.

    Lossless for JSON types (strings with lone surrogates included). Dates, times and
    decimals become strings; bytes become ``{"__agora_bytes_b64__": …}`` (restored by
    :func:`json_restore`). Everything else is stored in a flagged form and sets
    ``flags["ok"] = False``: non-finite floats ``{"__agora_float__": "nan"}``; other values
    (sets, objects, ints too long for text, containers nested deeper than ``MAX_DEPTH``)
    ``{"__agora_unserialisable__": true, "type": …, "repr": …}``. A string longer than
    ``max_value_size`` characters (bytes: bytes) becomes ``{"__agora_truncated__": true,
    "type": …, "size": …, "head": …}`` and also sets ``flags["truncated"] = True``.
    """
    return _safe(value, flags if flags is not None else {}, max_value_size, 0)


#: Characters of a flagged value's ``repr`` kept in the DLQ: enough to recognise the value,
#: bounded so one odd object cannot bloat the DLQ (a longer repr is cut and flagged).
MAX_REPR = 1000


def _flag(flags: dict[str, bool], value: Any, note: str | None = None) -> dict[str, Any]:
    flags["ok"] = False
    text = note or safe_repr(value, MAX_REPR + 1)
    fallback: dict[str, Any] = {UNSERIALISABLE: True, "type": _type_name(value), "repr": text}
    if len(text) > MAX_REPR:
        fallback["repr"] = text[:MAX_REPR]
        fallback["truncated"] = True
        flags["truncated"] = True
    return fallback


def _safe(value: Any, flags: dict[str, bool], cap: int, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return _flag(flags, value, f"<int of {value.bit_length():,} bits>")
        return int(value)
    if isinstance(value, str):
        if len(value) > cap:
            flags["ok"] = False
            flags["truncated"] = True
            return {TRUNCATED: True, "type": "str", "size": len(value), "head": str(value[:cap])}
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        flags["ok"] = False
        return {FLOAT: repr(float(value))}
    if depth >= MAX_DEPTH:
        return _flag(flags, value, f"<{_type_name(value)} nested deeper than {MAX_DEPTH}>")
    try:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    flags["ok"] = False  # JSON keys are text: the key's type is lost
                out[safe_text(k)] = _safe(v, flags, cap, depth + 1)
            return out
        if isinstance(value, (list, tuple)):
            return [_safe(v, flags, cap, depth + 1) for v in value]
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, decimal.Decimal):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) > cap:
                flags["ok"] = False
                flags["truncated"] = True
                head = base64.b64encode(raw[:cap]).decode("ascii")
                return {TRUNCATED: True, "type": "bytes", "size": len(raw), "head_b64": head}
            return {BYTES_B64: base64.b64encode(raw).decode("ascii")}
    except Exception as exc:  # noqa: BLE001 - e.g. a mapping whose items() raises
        return _flag(flags, value, f"<{_type_name(value)}: reading it raised {_type_name(exc)}>")
    return _flag(flags, value)


def json_restore(value: Any) -> Any:
    """Undo the lossless encodings of :func:`json_safe` (bytes) in a value read back from
    a DLQ; flagged forms are left as they are (such records are not round-trippable)."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(BYTES_B64), str):
            return base64.b64decode(value[BYTES_B64])
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


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
