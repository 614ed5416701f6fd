"""Import path kept for 0.3.0 plugins: checkpoints and checkpoint stores.

``InMemoryCheckpointStore`` and ``SQLiteCheckpointStore`` are Agora's synchronous stores
(``store.save(key, checkpoint)``). For 0.3.0's coroutine shape (``await store.load(key)``,
``await store.delete(key)``) use ``AsyncInMemoryCheckpointStore`` /
``AsyncSQLiteCheckpointStore``, and ``BackendCheckpointStore(backend)`` over a key/value
backend; ``DeliveryConfig(checkpoint=…)`` takes either kind. ``is_checkpoint_capable``
and ``SourceIdentity`` are importable from here too."""

from __future__ import annotations

from agora.records import Checkpoint
from agora.sources.base import is_checkpoint_capable
from agora.sources.dlq import SourceIdentity
from agora.stores import CheckpointStore, InMemoryCheckpointStore, SQLiteCheckpointStore
from agora.stores.checkpoint_async import (
    AsyncCheckpointStore,
    AsyncInMemoryCheckpointStore,
    AsyncSQLiteCheckpointStore,
)
from agora.stores.checkpoint_backend import BackendCheckpointStore

# ``__all__`` names only what ``agora`` itself exports (the same objects); the 0.3.0
# extras above are importable by name.
__all__ = ["Checkpoint", "CheckpointStore", "InMemoryCheckpointStore", "SQLiteCheckpointStore"]

_EXTRAS = (AsyncCheckpointStore, AsyncInMemoryCheckpointStore, AsyncSQLiteCheckpointStore,
           BackendCheckpointStore, SourceIdentity, is_checkpoint_capable)
