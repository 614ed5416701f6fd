"""Import path kept for 0.3.0 plugins: DLQ records and DLQ sinks."""

from __future__ import annotations

from agora.protocols import DLQSink
from agora.records import DLQRecord
from agora.stores import JsonLinesDLQSink, SQLiteDLQSink

__all__ = ["DLQRecord", "DLQSink", "JsonLinesDLQSink", "SQLiteDLQSink"]
