"""Small value objects that cross component boundaries: write results, checkpoints,
dead-letter records, and the marker a source emits for a malformed input record."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "Checkpoint",
    "DLQRecord",
    "DLQ_STAGES",
    "MalformedRecord",
    "WriteResult",
    "json_safe",
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
    recorded_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DLQ_STAGES = ("source_record", "middleware", "batch_middleware", "sink_write")


@dataclass(frozen=True)
class DLQRecord:
    """One failed record, with enough context to understand and replay it.

    ``record`` is the record as the source emitted it (for Arrow lanes: the row, as a dict,
    that entered the failing stage); ``processed_record`` is what reached the sink, for
    ``stage="sink_write"``. ``to_dict()`` is always JSON-serialisable: values JSON cannot
    hold are stored as a flagged fallback (``{"__agora_unserialisable__": true, "type": …,
    "repr": …}``) and ``round_trippable`` is set to False — never dropped.
    """

    pipeline_id: str
    run_id: str
    stage: str
    error_type: str
    error_message: str
    source: str
    checkpoint: Any
    record: Any
    processed_record: Any = None
    middleware: str | None = None
    sink: str | None = None
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat()
    )
    round_trippable: bool = True

    def __post_init__(self) -> None:
        if self.stage not in DLQ_STAGES:
            raise ValueError(f"DLQRecord.stage must be one of {DLQ_STAGES}; got {self.stage!r}")

    @classmethod
    def from_exception(cls, exc: BaseException, **fields: Any) -> DLQRecord:
        return cls(error_type=type(exc).__name__, error_message=str(exc), **fields)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and a record holding a lock or a socket
        # cannot be copied — it must still be stored (flagged), never dropped.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        flags = {"ok": True}
        for key in ("checkpoint", "record", "processed_record"):
            data[key] = json_safe(data[key], flags)
        data["round_trippable"] = self.round_trippable and flags["ok"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DLQRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_fields(self, **changes: Any) -> DLQRecord:
        return replace(self, **changes)


def json_safe(value: Any, flags: dict[str, bool] | None = None) -> Any:
    """Return a JSON-encodable version of ``value``.

    Lossless for JSON types; dates/decimals/bytes become tagged strings; anything else
    becomes a flagged ``repr`` fallback and ``flags["ok"]`` is set to False.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if flags is not None:
            flags["ok"] = False
        return {"__agora_float__": repr(value)}
    if isinstance(value, dict):
        return {str(k): json_safe(v, flags) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, flags) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__agora_bytes_b64__": base64.b64encode(bytes(value)).decode("ascii")}
    if flags is not None:
        flags["ok"] = False
    return {"__agora_unserialisable__": True, "type": type(value).__qualname__, "repr": repr(value)}


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
