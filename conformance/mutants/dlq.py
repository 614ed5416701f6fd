"""Deliberately broken dead-letter sinks: each breaks one DLQ rule and is otherwise the
reference ``JsonFileDLQSink``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conformance._agora import DLQRecord
from conformance.mutants.reference_dlq import JsonFileDLQSink

__all__ = [
    "DLQAcceptsBeforeOpen",
    "DLQFlushKeepsBuffer",
    "DLQRefusesUnserialisable",
    "DLQWorldReadable",
]


class DLQFlushKeepsBuffer(JsonFileDLQSink):
    """Breaks "durable after flush()": flush() keeps the records buffered; only close()
    writes them — a checkpoint saved after the flush covers records a crash would lose."""

    async def flush(self) -> None:
        self._check_usable("flush")

    async def close(self) -> None:
        if self.state.value == "open":
            await super().flush()
        await super().close()


class DLQRefusesUnserialisable(JsonFileDLQSink):
    """Breaks "capture never fails on content": a record holding content JSON cannot hold
    is refused with an error."""

    def encode(self, record: Any) -> bytes:
        if isinstance(record, DLQRecord):
            import json

            json.dumps(record.record, allow_nan=False)  # raises TypeError for bytes & co
        return super().encode(record)


class DLQWorldReadable(JsonFileDLQSink):
    """Breaks "DLQ files are owner-only": creates its file readable by everyone (0644)."""

    def mode(self) -> int:
        return 0o644


class DLQAcceptsBeforeOpen(JsonFileDLQSink):
    """Breaks "an acknowledged capture persists": captures before open() return without
    error and are dropped."""

    async def write(self, record: Any) -> None:
        if self.state.value == "new":
            return None
        await super().write(record)

    async def write_batch(self, records: Sequence[Any]) -> None:
        if self.state.value == "new":
            return None
        await super().write_batch(records)
