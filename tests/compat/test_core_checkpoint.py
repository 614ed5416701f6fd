"""Checkpoints the way 0.3.0 code reads them: ``summary.last_checkpoint`` is a
``Checkpoint``, stores with coroutine methods, a store over a key/value backend, and a DLQ
read back as a source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agora import (
    Checkpoint,
    CheckpointError,
    DeliveryConfig,
    DLQError,
    InMemoryCheckpointStore,
    IterableSource,
    JsonLinesDLQSink,
    MapMiddleware,
    MemorySink,
    Pipeline,
)
from agora.core.checkpoint import (
    BackendCheckpointStore,
    SourceIdentity,
)
from agora.core.checkpoint import InMemoryCheckpointStore as CoreInMemoryStore
from agora.core.checkpoint import SQLiteCheckpointStore as CoreSQLiteStore
from agora.core.dlq import SQLiteDLQSource
from agora.runtime.summary import PipelineRunSummary
from agora.state.backend import MemoryBackend
from agora.stores.checkpoint_async import AsyncCheckpointStore
from agora.stores.checkpoint_backend import CheckpointPayloadError, KeyValueCheckpointStore


def _run(store: object, rows: list[int], **kwargs: Any) -> tuple[MemorySink, Any]:
    sink = MemorySink()
    summary = (Pipeline(IterableSource(rows, name="numbers"), id="ck")
               .build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
               .run_sync(**kwargs))
    return sink, summary


def test_last_checkpoint_is_a_checkpoint_and_json_output_keeps_the_value():
    _, summary = _run(InMemoryCheckpointStore(), [1, 2, 3])
    assert isinstance(summary.last_checkpoint, Checkpoint)
    assert summary.last_checkpoint.value == 3 == summary.last_checkpoint_value
    assert summary.to_dict()["last_checkpoint"] == 3  # what `agora run --json` prints
    assert json.loads(json.dumps(summary.to_dict()))["last_checkpoint"] == 3


def test_a_hand_built_summary_wraps_a_bare_position_value():
    _, real = _run(InMemoryCheckpointStore(), [1])
    fields = {name: getattr(real, name) for name in real.__dataclass_fields__}
    fields["last_checkpoint"] = 7
    built = PipelineRunSummary(**fields)
    assert isinstance(built.last_checkpoint, Checkpoint)
    assert (built.last_checkpoint.pipeline_id, built.last_checkpoint.value) == ("ck", 7)


def test_summary_by_source_counts_records_consumed():
    _, summary = _run(InMemoryCheckpointStore(), [1, 2])
    assert summary.by_source == {"numbers": 2}


def test_core_store_has_coroutine_methods_over_the_same_data():
    store = CoreInMemoryStore()
    cp = Checkpoint(pipeline_id="p", run_id="r", source="s", value={"index": 3})

    async def go() -> tuple[Any, bool, Any, bool]:
        await store.save("p", cp)
        loaded = await store.load("p")
        deleted = await store.delete("p")
        return loaded, deleted, await store.load("p"), await store.delete("p")

    loaded, deleted, after, again = asyncio.run(go())
    assert loaded.value == {"index": 3} and deleted is True
    assert after is None and again is False
    assert store.sync_store.list_keys() == []


def test_a_subclass_overriding_save_with_a_coroutine_drives_a_run_and_resumes():
    class Counting(CoreInMemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.saved: list[object] = []

        async def save(self, key: str, checkpoint: Checkpoint) -> None:
            self.saved.append(checkpoint.value)
            await super().save(key, checkpoint)

    store = Counting()
    first, _ = _run(store, [10, 20, 30, 40], max_records=2)
    second, summary = _run(store, [10, 20, 30, 40])
    assert first.records == [10, 20] and second.records == [30, 40]
    assert store.saved[-1] == 4 and summary.last_checkpoint.value == 4


def test_core_sqlite_store_survives_close_and_reopen(tmp_path: Path):
    path = tmp_path / "cp.db"
    _run(CoreSQLiteStore(path), [1, 2, 3], max_records=2)
    sink, summary = _run(CoreSQLiteStore(path), [1, 2, 3])
    assert sink.records == [3] and summary.last_checkpoint.value == 3


def test_async_store_refuses_something_that_is_not_a_store():
    with pytest.raises(TypeError, match="wraps a CheckpointStore; got dict"):
        AsyncCheckpointStore({})  # type: ignore[arg-type]


def test_backend_store_round_trips_and_resumes_a_run():
    backend = MemoryBackend()
    store = BackendCheckpointStore(backend, namespace="cp")
    first, _ = _run(store, [1, 2, 3], max_records=1)
    second, _ = _run(store, [1, 2, 3])
    assert first.records == [1] and second.records == [2, 3]
    assert backend.keys() == ["cp:ck"] and backend.get("cp:ck")["value"] == 3


def test_backend_payload_missing_fields_is_refused_naming_the_key():
    backend = MemoryBackend()
    backend.set("checkpoint:broken", {"value": {"index": 1}})
    store = BackendCheckpointStore(backend)
    with pytest.raises(CheckpointPayloadError, match="'checkpoint:broken'.*missing required "
                       "fields \\['pipeline_id', 'run_id', 'source'\\]") as info:
        asyncio.run(store.load("broken"))
    assert isinstance(info.value, CheckpointError) and isinstance(info.value, TypeError)


def test_backend_payload_that_is_not_a_dict_is_refused():
    backend = MemoryBackend()
    backend.set("checkpoint:bad", "not-a-dict")
    with pytest.raises(CheckpointPayloadError, match="expected dict.*got str"):
        KeyValueCheckpointStore(backend).load("bad")


def test_a_corrupt_backend_checkpoint_stops_the_run_instead_of_starting_over():
    backend = MemoryBackend()
    backend.set("checkpoint:ck", ["not", "a", "checkpoint"])
    with pytest.raises(CheckpointError, match="'checkpoint:ck'"):
        _run(BackendCheckpointStore(backend), [1, 2])


def test_backend_store_refuses_a_value_json_cannot_hold_and_stores_nothing():
    backend = MemoryBackend()
    store = KeyValueCheckpointStore(backend)
    with pytest.raises(CheckpointError):
        store.save("k", Checkpoint(pipeline_id="p", run_id="r", source="s", value={1, 2}))
    assert backend.keys() == []


def test_backend_store_checks_its_arguments():
    with pytest.raises(TypeError, match="get, set, delete and keys"):
        KeyValueCheckpointStore(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace must be a non-empty string"):
        KeyValueCheckpointStore(MemoryBackend(), namespace="")


def test_dlq_source_reads_dead_letters_back(tmp_path: Path):
    path = tmp_path / "dlq.jsonl"

    def boom(record: int) -> int:
        raise ValueError(f"bad {record}")

    (Pipeline(IterableSource([1, 2]), id="orders").pipe(MapMiddleware(boom))
     .build(MemorySink(), delivery=DeliveryConfig(dlq=JsonLinesDLQSink(path),
                                                  failure_policy="log_and_continue"))
     .run_sync())
    sink = MemorySink()
    Pipeline(SQLiteDLQSource(path, pipeline_id="orders")).build(sink).run_sync()
    assert [r.record for r in sink.records] == [1, 2]
    assert {r.stage for r in sink.records} == {"middleware"}


def test_dlq_source_on_a_missing_file_names_it(tmp_path: Path):
    missing = tmp_path / "nope.db"
    with pytest.raises(DLQError, match="nope.db"):
        Pipeline(SQLiteDLQSource(missing)).build(MemorySink()).run_sync()


def test_source_identity_describes_a_file(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("id\n1\n", encoding="utf-8")
    identity = SourceIdentity.for_file(path)
    assert identity == SourceIdentity.for_file(path)
    assert identity.size == 5 and identity.path == str(path.resolve())
    with pytest.raises(FileNotFoundError):
        SourceIdentity.for_file(tmp_path / "gone.csv")
