"""The top-level checkpoint stores: coroutine methods over Agora's synchronous stores."""

from __future__ import annotations

import os
from pathlib import Path

from agora.protocols import CHECKPOINT_STORE_METHODS
from agora.records import Checkpoint
from agora.stores.checkpoint import CheckpointStore, SyncInMemoryCheckpointStore
from agora.stores.checkpoint_sqlite import SyncSQLiteCheckpointStore

__all__ = [
    "AsyncCheckpointStore",
    "AsyncInMemoryCheckpointStore",
    "AsyncSQLiteCheckpointStore",
    "InMemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "direct_sync_store",
]


class AsyncCheckpointStore:
    """A synchronous :class:`~agora.CheckpointStore` behind coroutine methods.

    ``load``, ``save``, ``delete`` (the same as ``reset``), ``reset``, ``list_keys``,
    ``open`` and ``close`` are coroutines with the wrapped store's contract: a save is
    durable when it returns, a checkpoint that cannot be trusted raises
    ``CheckpointError``, ``close()`` is idempotent and keeps the data. ``claim`` and
    ``release`` stay synchronous. ``sync_store`` is the wrapped store, for code that wants
    the synchronous calls.

    Subclasses may override any method with their own coroutine and await ``super()``.
    ``DeliveryConfig(checkpoint=…)`` drives a store whose engine-facing methods
    (``open``, ``claim``, ``load``, ``save``, ``release``, ``close``) are not overridden
    through ``sync_store`` directly, exactly like the synchronous store; one with an
    override goes through :class:`~agora.config.AsyncStoreAdapter`, so the override runs.
    """

    def __init__(self, sync_store: CheckpointStore) -> None:
        if not isinstance(sync_store, CheckpointStore):
            raise TypeError(
                f"AsyncCheckpointStore wraps a CheckpointStore; got "
                f"{type(sync_store).__name__} — pass SyncInMemoryCheckpointStore() or "
                f"SyncSQLiteCheckpointStore(path)")
        self.sync_store = sync_store

    @property
    def store_name(self) -> str:
        return self.sync_store.store_name

    async def open(self) -> None:
        self.sync_store.open()

    async def load(self, key: str) -> Checkpoint | None:
        return self.sync_store.load(key)

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.sync_store.save(key, checkpoint)

    async def reset(self, key: str) -> bool:
        return self.sync_store.reset(key)

    async def delete(self, key: str) -> bool:
        """Delete ``key``'s checkpoint; True if there was one (same as :meth:`reset`)."""
        return self.sync_store.reset(key)

    async def list_keys(self) -> list[str]:
        return self.sync_store.list_keys()

    async def close(self) -> None:
        self.sync_store.close()

    def claim(self, key: str) -> None:
        self.sync_store.claim(key)

    def release(self, key: str) -> None:
        self.sync_store.release(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sync_store!r})"


class InMemoryCheckpointStore(AsyncCheckpointStore):
    """Checkpoints in memory, with coroutine methods (``await store.load(key)``): for
    tests and throw-away runs, not durable across processes. The data lives in
    ``sync_store``, a :class:`~agora.SyncInMemoryCheckpointStore`; ``close()`` keeps it,
    so a later run on the same object resumes."""

    sync_store: SyncInMemoryCheckpointStore

    def __init__(self) -> None:
        super().__init__(SyncInMemoryCheckpointStore())

    def __repr__(self) -> str:
        return f"InMemoryCheckpointStore(keys={len(self.sync_store.list_keys())})"


class SQLiteCheckpointStore(AsyncCheckpointStore):
    """Checkpoints in an SQLite file, with coroutine methods (``await store.load(key)``).

    ``sync_store`` is a :class:`~agora.SyncSQLiteCheckpointStore` on the same ``path``
    (same file format, same guarantees: a save survives SIGKILL once it returns, a
    damaged or foreign file raises ``CheckpointError`` naming it, a second run on one key
    is refused). ``create=False`` makes a missing file an error instead of creating it.
    """

    sync_store: SyncSQLiteCheckpointStore

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        super().__init__(SyncSQLiteCheckpointStore(path, create=create))

    @property
    def path(self) -> Path:
        """The database file."""
        return self.sync_store.path

    @property
    def create(self) -> bool:
        """Whether a missing file is created (True) or refused (False)."""
        return self.sync_store.create

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.path)!r})"


#: Earlier names of the two stores, kept importable.
AsyncInMemoryCheckpointStore = InMemoryCheckpointStore
AsyncSQLiteCheckpointStore = SQLiteCheckpointStore


def direct_sync_store(store: object) -> CheckpointStore | None:
    """``store.sync_store`` when the engine may call it instead of ``store``: ``store`` is
    an :class:`AsyncCheckpointStore` whose engine-facing methods are all its own (no
    subclass or instance overrides one), so calling the wrapped store directly does
    exactly what awaiting ``store``'s methods would — minus an event-loop hop per call.
    None otherwise (an override must run)."""
    if not isinstance(store, AsyncCheckpointStore):
        return None
    for name in CHECKPOINT_STORE_METHODS:
        if name in vars(store) or getattr(type(store), name) is not getattr(
                AsyncCheckpointStore, name):
            return None
    return store.sync_store
