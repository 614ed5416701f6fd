"""Reference dead-letter sink the DLQ mutants break: a JSON-lines file created owner-only,
content JSON cannot hold stored as a flagged, capped fallback. Passes every DLQ check."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance._agora import BaseSink, DLQRecord
from conformance.dlq_harnesses import JsonLinesDLQSinkHarness
from conformance.harness import Namespace

__all__ = ["FALLBACK_REPR_CAP", "JsonFileDLQSink", "ReferenceDLQHarness", "stored_form"]

#: Characters of a repr kept in a fallback: enough to recognise the value, small enough
#: that one hostile record cannot fill the disk.
FALLBACK_REPR_CAP = 64 * 1024
_FIELDS = (
    "pipeline_id", "run_id", "stage", "error_type", "error_message", "source",
    "checkpoint", "record", "processed_record", "middleware", "sink", "created_at",
)


def _fallback(value: Any) -> dict[str, Any]:
    try:
        text = repr(value)
    except Exception as exc:  # a hostile repr must not stop the capture
        text = f"<repr raised {type(exc).__name__}>"
    out: dict[str, Any] = {
        "__agora_unserialisable__": True,
        "type": type(value).__qualname__,
        "repr": text[:FALLBACK_REPR_CAP],
    }
    if len(text) > FALLBACK_REPR_CAP:
        out["truncated"] = True
    return out


def _safe(value: Any, flags: dict[str, bool]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value  # lone surrogates included: json.dumps escapes them as \ud800
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return value
    if isinstance(value, Mapping):
        return {str(k): _safe(v, flags) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v, flags) for v in value]
    flags["ok"] = False
    return _fallback(value)


def stored_form(record: DLQRecord) -> dict[str, Any]:
    """The JSON object stored for ``record``: every field, content JSON cannot hold as a
    flagged fallback, ``round_trippable`` False when any fallback was needed."""
    flags = {"ok": True}
    data = {name: _safe(getattr(record, name), flags) for name in _FIELDS}
    data["round_trippable"] = bool(record.round_trippable) and flags["ok"]
    return data


class JsonFileDLQSink(BaseSink):
    """Buffers captured records (encoded at once: the caller may reuse what it passed) and
    appends them to an owner-only JSON-lines file on ``flush()``; ``close()`` flushes."""

    __conformance_harness__ = "conformance.mutants.reference_dlq:ReferenceDLQHarness"
    sink_name = "reference_dlq"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._buffer: list[bytes] = []
        self._fd: int | None = None

    def mode(self) -> int:
        return 0o600

    def encode(self, record: Any) -> bytes:
        if not isinstance(record, DLQRecord):
            raise TypeError(f"DLQ sink {self.sink_name!r} stores DLQRecords; got {record!r}")
        # ensure_ascii: a lone surrogate becomes the escape \ud800, which UTF-8 can hold.
        return json.dumps(stored_form(record), ensure_ascii=True).encode("ascii") + b"\n"

    async def open(self) -> None:
        await super().open()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode())

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._buffer.append(self.encode(record))

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write_batch")
        self._buffer.extend([self.encode(r) for r in records])

    async def flush(self) -> None:
        self._check_usable("flush")
        assert self._fd is not None
        if self._buffer:
            os.write(self._fd, b"".join(self._buffer))
            self._buffer.clear()
        os.fsync(self._fd)

    async def close(self) -> None:
        if self.state.value == "open":
            try:
                await self.flush()
            finally:
                assert self._fd is not None
                os.close(self._fd)
                self._fd = None
        await super().close()


class ReferenceDLQHarness(JsonLinesDLQSinkHarness):
    """Builds ``target(ns.path / "dlq.jsonl")`` and reads it back with ``json``."""

    target: Any = JsonFileDLQSink

    def build(self, ns: Namespace) -> Any:
        return self.target(self.path(ns))
