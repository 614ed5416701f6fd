"""Durable state of a run: checkpoint stores and dead-letter (DLQ) sinks.

``checkpoint`` holds the :class:`CheckpointStore` contract with an in-memory and an SQLite
store; ``dlq`` holds the SQLite and JSON-lines DLQ sinks and :func:`read_dlq`. Both only
import ``agora.records``, ``agora.errors`` and ``agora.sinks.base``; never the runtime.
"""

from __future__ import annotations

from agora.stores.checkpoint import CheckpointStore, InMemoryCheckpointStore, SQLiteCheckpointStore
from agora.stores.dlq import DLQError, JsonLinesDLQSink, SQLiteDLQSink, read_dlq

__all__ = [
    "CheckpointStore",
    "DLQError",
    "InMemoryCheckpointStore",
    "JsonLinesDLQSink",
    "SQLiteCheckpointStore",
    "SQLiteDLQSink",
    "read_dlq",
]
