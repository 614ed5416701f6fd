"""Import path kept for 0.3.0 plugins: checkpoints and checkpoint stores.

The stores here keep 0.3.0's shape — coroutine methods (``await store.load(key)``,
``await store.save(key, cp)``, ``await store.delete(key)``, ``await store.close()``), so a
0.3.0 subclass that overrides one with ``async def`` and awaits ``super()`` works:
``InMemoryCheckpointStore`` / ``SQLiteCheckpointStore`` here are
:class:`~agora.stores.checkpoint_async.AsyncInMemoryCheckpointStore` /
``AsyncSQLiteCheckpointStore`` (same data, same file format), while
``agora.InMemoryCheckpointStore`` and ``agora.SQLiteCheckpointStore`` are Agora's
synchronous ones. ``DeliveryConfig(checkpoint=…)`` takes either kind.
``BackendCheckpointStore(backend)`` stores over a key/value backend;
``is_checkpoint_capable`` and ``SourceIdentity`` are importable from here too."""

from __future__ import annotations

from agora.records import Checkpoint
from agora.sources.base import is_checkpoint_capable
from agora.sources.dlq import SourceIdentity
from agora.stores import CheckpointStore
from agora.stores.checkpoint_async import (
    AsyncCheckpointStore,
    AsyncInMemoryCheckpointStore,
    AsyncSQLiteCheckpointStore,
)
from agora.stores.checkpoint_backend import BackendCheckpointStore

InMemoryCheckpointStore = AsyncInMemoryCheckpointStore
SQLiteCheckpointStore = AsyncSQLiteCheckpointStore

# ``__all__`` names only objects ``agora`` itself exports; the 0.3.0 store shapes and
# extras above are importable by name.
__all__ = ["Checkpoint", "CheckpointStore"]

_EXTRAS = (AsyncCheckpointStore, AsyncInMemoryCheckpointStore, AsyncSQLiteCheckpointStore,
           BackendCheckpointStore, SourceIdentity, is_checkpoint_capable)
