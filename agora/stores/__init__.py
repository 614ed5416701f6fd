"""Durable state of a run: checkpoint stores and dead-letter (DLQ) sinks.

``checkpoint`` holds the :class:`CheckpointStore` contract and the synchronous in-memory
store, ``checkpoint_sqlite`` the synchronous SQLite store, ``checkpoint_async`` the
``InMemoryCheckpointStore`` / ``SQLiteCheckpointStore`` with coroutine methods over them;
``dlq`` holds the SQLite DLQ sink (``dlq_schema`` its file's schema and migration),
``dlq_jsonl`` the JSON-lines DLQ sink, ``dlq_read`` :func:`read_dlq`, ``dlq_state`` the
replay ledger. They only import ``agora.records``, ``agora.errors`` and
``agora.sinks.base``; never the runtime.
"""

from __future__ import annotations

from agora.stores.checkpoint import CheckpointStore, SyncInMemoryCheckpointStore
from agora.stores.checkpoint_async import InMemoryCheckpointStore, SQLiteCheckpointStore
from agora.stores.checkpoint_sqlite import SyncSQLiteCheckpointStore
from agora.stores.dlq import DLQError, SQLiteDLQSink
from agora.stores.dlq_jsonl import JsonLinesDLQSink
from agora.stores.dlq_read import read_dlq

__all__ = [
    "CheckpointStore",
    "DLQError",
    "InMemoryCheckpointStore",
    "JsonLinesDLQSink",
    "SQLiteCheckpointStore",
    "SQLiteDLQSink",
    "SyncInMemoryCheckpointStore",
    "SyncSQLiteCheckpointStore",
    "read_dlq",
]
