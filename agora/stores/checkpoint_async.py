"""Checkpoint stores with coroutine methods (``await store.load(key)``), the shape 0.3.0
programs use, over Agora's synchronous stores."""

from __future__ import annotations

import os

from agora.records import Checkpoint
from agora.stores.checkpoint import CheckpointStore, InMemoryCheckpointStore
from agora.stores.checkpoint_sqlite import SQLiteCheckpointStore

__all__ = ["AsyncCheckpointStore", "AsyncInMemoryCheckpointStore", "AsyncSQLiteCheckpointStore"]


class AsyncCheckpointStore:
    """A synchronous :class:`~agora.CheckpointStore` behind coroutine methods.

    ``load``, ``save``, ``delete`` (0.3.0's name for ``reset``), ``reset``, ``list_keys``,
    ``open`` and ``close`` are coroutines with the wrapped store's contract: a save is
    durable when it returns, an untrustworthy checkpoint raises ``CheckpointError``.
    ``claim``/``release`` stay synchronous. ``DeliveryConfig(checkpoint=…)`` accepts it
    (and subclasses that override a method with their own coroutine) like any store whose
    methods are coroutines. ``sync_store`` is the wrapped store, for code that wants the
    synchronous calls.
    """

    def __init__(self, sync_store: CheckpointStore) -> None:
        if not isinstance(sync_store, CheckpointStore):
            raise TypeError(
                f"AsyncCheckpointStore wraps a CheckpointStore; got "
                f"{type(sync_store).__name__} — pass InMemoryCheckpointStore() or "
                f"SQLiteCheckpointStore(path)")
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


class AsyncInMemoryCheckpointStore(AsyncCheckpointStore):
    """:class:`~agora.InMemoryCheckpointStore` with coroutine methods."""

    def __init__(self) -> None:
        super().__init__(InMemoryCheckpointStore())


class AsyncSQLiteCheckpointStore(AsyncCheckpointStore):
    """:class:`~agora.SQLiteCheckpointStore` with coroutine methods (same file format)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        super().__init__(SQLiteCheckpointStore(path, create=create))
