"""The top-level checkpoint stores in 0.3.0's shape (coroutine methods), Agora's synchronous
``Sync*`` stores, and how the engine drives each: the built-in coroutine stores through
their synchronous store directly, a subclass with an ``async def`` override through the
adapter so the override runs."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path
from typing import Any

import pytest

from agora import (
    Checkpoint,
    CheckpointError,
    CheckpointFailurePolicy,
    CheckpointStore,
    DeliveryConfig,
    InMemoryCheckpointStore,
    IterableSource,
    MemorySink,
    Pipeline,
    SQLiteCheckpointStore,
    SyncInMemoryCheckpointStore,
    SyncSQLiteCheckpointStore,
)
from agora.config import AsyncStoreAdapter
from agora.stores.checkpoint_async import AsyncCheckpointStore
from agora.core import checkpoint as core_checkpoint
from agora.runtime.delivery import CHECKPOINT_THREAD_PREFIX

COROUTINE_METHODS = ("load", "save", "delete", "reset", "list_keys", "open", "close")


def cp(value: Any, pipeline_id: str = "p") -> Checkpoint:
    return Checkpoint(pipeline_id=pipeline_id, run_id="r", source="s", value=value,
                      recorded_at="2026-01-02T03:04:05+00:00")


def run(store: Any, items: list[int], *, max_records: int | None = None,
        **config: Any) -> MemorySink:
    """One run of ``items`` into a fresh sink (key ``"ck"``), checkpointing after every
    record; ``config`` goes to ``DeliveryConfig``."""
    sink = MemorySink()
    delivery = DeliveryConfig(checkpoint=store, checkpoint_every=1, **config)
    bound = Pipeline(IterableSource(items, name="numbers"), id="ck").build(
        sink, delivery=delivery)
    bound.run_sync() if max_records is None else bound.run_sync(max_records=max_records)
    return sink


class RaisingSave(InMemoryCheckpointStore):
    """0.3.0-style subclass: ``save`` is its own coroutine and always fails."""

    def __init__(self) -> None:
        super().__init__()
        self.save_calls = 0

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.save_calls += 1
        raise RuntimeError("save broke")


# ------------------------------------------------------------------ 0.3.0's usage


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_top_level_store_methods_are_coroutines(kind: str, tmp_path: Path) -> None:
    store: InMemoryCheckpointStore | SQLiteCheckpointStore = (
        InMemoryCheckpointStore() if kind == "memory"
        else SQLiteCheckpointStore(path=tmp_path / "c.db"))
    for name in COROUTINE_METHODS:
        assert inspect.iscoroutinefunction(getattr(store, name)), name

    async def go() -> tuple[Any, ...]:
        await store.open()
        missing = await store.load("k")
        await store.save("k", cp({"index": 3}))
        loaded = await store.load("k")
        keys = await store.list_keys()
        deleted = await store.delete("k")
        await store.save("k", cp(4))
        reset = await store.reset("k")
        again = await store.delete("k")
        await store.close()
        await store.close()  # idempotent
        return missing, loaded, keys, deleted, reset, again, await store.list_keys()

    missing, loaded, keys, deleted, reset, again, after = asyncio.run(go())
    assert missing is None and loaded == cp({"index": 3}) and keys == ["k"]
    assert (deleted, reset, again, after) == (True, True, False, [])


def test_sqlite_store_takes_path_by_keyword_and_survives_close_and_reopen(
        tmp_path: Path) -> None:
    db = tmp_path / "nested" / "checkpoint.db"

    async def write() -> None:
        store = SQLiteCheckpointStore(path=str(db))
        await store.save("job", cp({"offset": 7}, "job"))
        await store.close()

    async def read() -> Checkpoint | None:
        store = SQLiteCheckpointStore(path=db, create=False)
        try:
            return await store.load("job")
        finally:
            await store.close()

    asyncio.run(write())
    assert asyncio.run(read()) == cp({"offset": 7}, "job")
    store = SQLiteCheckpointStore(db)
    assert store.path == db and store.create is True
    assert repr(store) == f"SQLiteCheckpointStore({str(db)!r})"


def test_sqlite_store_with_create_false_refuses_a_missing_file_naming_it(
        tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    store = SQLiteCheckpointStore(path=db, create=False)
    with pytest.raises(CheckpointError, match="absent.db"):
        asyncio.run(store.load("job"))
    assert not db.exists()


def test_a_value_json_cannot_hold_is_refused_and_nothing_is_stored() -> None:
    store = InMemoryCheckpointStore()
    with pytest.raises(CheckpointError, match="must be JSON values"):
        asyncio.run(store.save("k", cp({1, 2})))
    assert asyncio.run(store.list_keys()) == []


def test_a_subclass_with_an_async_override_awaiting_super_runs_and_resumes(
        tmp_path: Path) -> None:
    class Recording(SQLiteCheckpointStore):
        def __init__(self, path: Path) -> None:
            super().__init__(path=path)
            self.saved: list[Any] = []

        async def save(self, key: str, checkpoint: Checkpoint) -> None:
            self.saved.append(checkpoint.value)
            await super().save(key, checkpoint)

    db = tmp_path / "c.db"
    first = run(Recording(db), [10, 20, 30], max_records=2)
    store = Recording(db)
    second = run(store, [10, 20, 30])
    assert first.records == [10, 20] and second.records == [30]
    assert store.saved[-1] == 3
    assert asyncio.run(SQLiteCheckpointStore(db).load("ck")) is not None


# ------------------------------------------------------------ Agora's Sync* stores


def test_sync_stores_have_plain_methods_over_the_same_data(tmp_path: Path) -> None:
    memory = SyncInMemoryCheckpointStore()
    assert memory.load("k") is None
    memory.save("k", cp(1))
    assert memory.load("k") == cp(1) and memory.list_keys() == ["k"]
    assert memory.reset("k") is True and memory.load("k") is None

    db = tmp_path / "c.db"
    with SyncSQLiteCheckpointStore(db) as sync:
        sync.save("k", cp({"row": 5}))
    # The coroutine store reads what the synchronous one wrote, and the other way round.
    assert asyncio.run(SQLiteCheckpointStore(db).load("k")) == cp({"row": 5})
    wrapped = SQLiteCheckpointStore(db)
    asyncio.run(wrapped.save("k", cp({"row": 6})))
    asyncio.run(wrapped.close())
    with SyncSQLiteCheckpointStore(db, create=False) as sync:
        assert sync.load("k") == cp({"row": 6})


def test_each_coroutine_store_wraps_its_sync_store() -> None:
    store = InMemoryCheckpointStore()
    assert isinstance(store.sync_store, SyncInMemoryCheckpointStore)
    asyncio.run(store.save("k", cp(2)))
    assert store.sync_store.load("k") == cp(2)
    assert isinstance(SQLiteCheckpointStore("x.db").sync_store, SyncSQLiteCheckpointStore)
    assert issubclass(SyncInMemoryCheckpointStore, CheckpointStore)
    assert issubclass(SyncSQLiteCheckpointStore, CheckpointStore)
    assert core_checkpoint.InMemoryCheckpointStore is InMemoryCheckpointStore
    assert core_checkpoint.SQLiteCheckpointStore is SQLiteCheckpointStore


def test_a_store_of_ones_own_may_write_its_methods_as_coroutines() -> None:
    class Mine(CheckpointStore):
        def __init__(self) -> None:
            self.rows: dict[str, Checkpoint] = {}

        async def load(self, key: str) -> Checkpoint | None:  # type: ignore[override]
            return self.rows.get(key)

        async def save(self, key: str, checkpoint: Checkpoint) -> None:  # type: ignore[override]
            self.rows[key] = checkpoint

        def reset(self, key: str) -> bool:
            return self.rows.pop(key, None) is not None

        def list_keys(self) -> list[str]:
            return sorted(self.rows)

    store = Mine()
    assert isinstance(DeliveryConfig(checkpoint=store).checkpoint_store, AsyncStoreAdapter)
    first = run(store, [1, 2, 3], max_records=1)
    second = run(store, [1, 2, 3])
    assert first.records == [1] and second.records == [2, 3]


# ----------------------------------------------------------- how the engine drives them


def test_an_unoverridden_store_is_driven_through_its_sync_store(tmp_path: Path) -> None:
    for store in (InMemoryCheckpointStore(), SQLiteCheckpointStore(tmp_path / "c.db")):
        config = DeliveryConfig(checkpoint=store)
        assert config.checkpoint is store
        assert config.checkpoint_store is store.sync_store


def test_overriding_a_method_the_engine_never_calls_keeps_the_direct_path() -> None:
    class KeepsDeletes(InMemoryCheckpointStore):
        async def delete(self, key: str) -> bool:
            return False

    store = KeepsDeletes()
    assert DeliveryConfig(checkpoint=store).checkpoint_store is store.sync_store


def test_the_committer_thread_calls_the_sync_sqlite_store_with_no_loop_hop(
        tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "c.db")
    sync = store.sync_store
    threads: list[str] = []
    original = sync.save

    def watched(key: str, checkpoint: Checkpoint) -> None:
        threads.append(threading.current_thread().name)
        original(key, checkpoint)

    sync.save = watched  # type: ignore[method-assign]
    sink = run(store, list(range(20)))
    assert sink.records == list(range(20))
    assert len(threads) >= 20
    assert any(name.startswith(CHECKPOINT_THREAD_PREFIX) for name in threads), threads
    assert not any(name.startswith("agora-async-store") for name in threads), threads
    saved = asyncio.run(store.load("ck"))
    assert saved is not None and saved.value == 20


def test_an_async_override_goes_through_the_adapter_and_its_error_stops_the_run() -> None:
    store = RaisingSave()
    config = DeliveryConfig(checkpoint=store, checkpoint_every=1)
    assert isinstance(config.checkpoint_store, AsyncStoreAdapter)
    assert config.checkpoint_store.inner is store
    sink = MemorySink()
    with pytest.raises(RuntimeError, match="save broke"):
        Pipeline(IterableSource([1, 2, 3]), id="ck").build(sink, delivery=config).run_sync()
    assert store.save_calls >= 1
    assert asyncio.run(store.load("ck")) is None  # nothing advanced the checkpoint


def test_an_async_load_override_that_raises_stops_the_run_before_anything_is_written() -> None:
    class BrokenLoad(InMemoryCheckpointStore):
        async def load(self, key: str) -> Checkpoint | None:
            raise CheckpointError(f"checkpoint {key!r} is unreadable")

    sink = MemorySink()
    with pytest.raises(CheckpointError, match="'ck' is unreadable"):
        Pipeline(IterableSource([1, 2]), id="ck").build(
            sink, delivery=DeliveryConfig(checkpoint=BrokenLoad())).run_sync()
    assert sink.records == []


def test_an_override_set_on_the_instance_goes_through_the_adapter_too() -> None:
    store = InMemoryCheckpointStore()
    seen: list[Any] = []

    async def save(key: str, checkpoint: Checkpoint) -> None:
        seen.append(checkpoint.value)

    store.save = save  # type: ignore[method-assign]
    config = DeliveryConfig(checkpoint=store, checkpoint_every=1)
    assert isinstance(config.checkpoint_store, AsyncStoreAdapter)
    Pipeline(IterableSource([1, 2]), id="ck").build(MemorySink(), delivery=config).run_sync()
    assert seen[-1] == 2


def test_a_save_override_under_log_and_continue_finishes_the_run_without_a_checkpoint() -> None:
    store = RaisingSave()
    sink = run(store, [1, 2, 3],
               checkpoint_failure_policy=CheckpointFailurePolicy.LOG_AND_CONTINUE)
    assert sink.records == [1, 2, 3]
    assert asyncio.run(store.load("ck")) is None


@pytest.mark.parametrize("make", [InMemoryCheckpointStore, RaisingSave])
def test_a_second_run_on_a_claimed_key_is_refused(make: Any) -> None:
    store = make()
    engine_store = DeliveryConfig(checkpoint=store).checkpoint_store
    assert engine_store is not None
    engine_store.claim("ck")  # a run in progress holds the key
    try:
        sink = MemorySink()
        with pytest.raises(CheckpointError, match="'ck'.*in use by another run"):
            Pipeline(IterableSource([1]), id="ck").build(
                sink, delivery=DeliveryConfig(checkpoint=store)).run_sync()
        assert sink.records == []
    finally:
        engine_store.release("ck")
    assert run(InMemoryCheckpointStore(), [1]).records == [1]


def test_two_sqlite_stores_on_one_file_refuse_a_second_run_on_one_key(
        tmp_path: Path) -> None:
    class Overriding(SQLiteCheckpointStore):
        async def save(self, key: str, checkpoint: Checkpoint) -> None:
            await super().save(key, checkpoint)

    db = tmp_path / "c.db"
    holder = DeliveryConfig(checkpoint=SQLiteCheckpointStore(db)).checkpoint_store
    assert holder is not None
    holder.claim("ck")
    try:
        with pytest.raises(CheckpointError, match="in use by another run"):
            run(Overriding(db), [1])
    finally:
        holder.release("ck")
        holder.close()
    assert run(Overriding(db), [1]).records == [1]


def test_a_wrapped_store_of_ones_own_with_coroutine_methods_is_still_awaited() -> None:
    class AsyncRows(SyncInMemoryCheckpointStore):
        async def save(self, key: str, checkpoint: Checkpoint) -> None:  # type: ignore[override]
            super().save(key, checkpoint)

    inner = AsyncRows()
    store = AsyncCheckpointStore(inner)
    config = DeliveryConfig(checkpoint=store, checkpoint_every=1)
    assert isinstance(config.checkpoint_store, AsyncStoreAdapter)
    assert config.checkpoint_store.inner is inner
    Pipeline(IterableSource([1, 2]), id="ck").build(MemorySink(), delivery=config).run_sync()
    saved = inner.load("ck")
    assert saved is not None and saved.value == 2
