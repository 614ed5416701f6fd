"""Import path kept for 0.3.0 plugins: checkpoints and checkpoint stores.

``InMemoryCheckpointStore`` and ``SQLiteCheckpointStore`` are ``agora``'s own: coroutine
methods (``await store.load(key)``, ``await store.save(key, cp)``,
``await store.delete(key)``, ``await store.close()``), so a 0.3.0 subclass that overrides
one with ``async def`` and awaits ``super()`` works. ``agora.SyncInMemoryCheckpointStore``
and ``agora.SyncSQLiteCheckpointStore`` are the same stores with plain methods.
``DeliveryConfig(checkpoint=…)`` takes either kind. ``BackendCheckpointStore(backend)``
stores over a key/value backend; ``is_checkpoint_capable`` and ``SourceIdentity`` are
importable from here too."""

from __future__ import annotations

from agora.records import Checkpoint
from agora.sources.base import is_checkpoint_capable
from agora.sources.dlq import SourceIdentity
from agora.stores import CheckpointStore
from agora.stores.checkpoint_async import (
    AsyncCheckpointStore,
    AsyncInMemoryCheckpointStore,
    AsyncSQLiteCheckpointStore,
    InMemoryCheckpointStore,
    SQLiteCheckpointStore,
)
from agora.stores.checkpoint_backend import BackendCheckpointStore

# ``__all__`` names only objects ``agora`` itself exports; the extras below are
# importable by name.
__all__ = ["Checkpoint", "CheckpointStore", "InMemoryCheckpointStore", "SQLiteCheckpointStore"]

_EXTRAS = (AsyncCheckpointStore, AsyncInMemoryCheckpointStore, AsyncSQLiteCheckpointStore,
           BackendCheckpointStore, SourceIdentity, is_checkpoint_capable)
