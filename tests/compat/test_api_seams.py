"""Plugins written against upstream's shapes plug in unchanged: duck-typed sinks and DLQs
(objects with the methods, no base class) and checkpoint stores with ``async`` methods."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agora import (
    Checkpoint,
    CsvSink,
    DeliveryConfig,
    DLQRecord,
    IterableSource,
    MemorySink,
    Pipeline,
)
from agora.config import AsyncStoreAdapter
from agora.sinks.base import DuckTypedSink


class ListSink:
    """A sink by shape only: async open/write/close, no BaseSink."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")

    async def write(self, record: Any) -> None:
        self.records.append(record)

    async def close(self) -> None:
        self.calls.append("close")


class RefusingSink(ListSink):
    """Fails every odd record, so the DLQ has work to do."""

    async def write(self, record: Any) -> None:
        if record % 2:
            raise ValueError(f"odd record {record}")
        await super().write(record)


class AsyncDictStore:
    """A checkpoint store in upstream's shape: async load/save/close, nothing else."""

    def __init__(self) -> None:
        self.saved: dict[str, Checkpoint] = {}
        self.closed = False
        self.loops: set[int] = set()

    async def load(self, key: str) -> Checkpoint | None:
        self.loops.add(id(asyncio.get_running_loop()))
        return self.saved.get(key)

    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.loops.add(id(asyncio.get_running_loop()))
        self.saved[key] = checkpoint

    async def close(self) -> None:
        self.closed = True


class BrokenAsyncStore(AsyncDictStore):
    async def save(self, key: str, checkpoint: Checkpoint) -> None:
        raise OSError("disk full")


@dataclass(frozen=True)
class Reading:
    sensor: str
    value: float


def test_a_duck_typed_sink_receives_every_record_between_open_and_close() -> None:
    sink = ListSink()
    Pipeline(IterableSource([1, 2, 3])).build(sink).run_sync()  # type: ignore[arg-type]
    assert sink.records == [1, 2, 3]
    assert sink.calls == ["open", "close"]


def test_a_duck_typed_sink_is_named_after_its_class_in_the_bound_pipeline() -> None:
    bound = Pipeline(IterableSource([1])).build(ListSink())  # type: ignore[arg-type]
    assert isinstance(bound.writer, DuckTypedSink)
    assert bound.sinks[0].sink_name == "ListSink"


def test_duck_typed_sinks_work_in_a_fan_out() -> None:
    a, b = ListSink(), RefusingSink()
    b_dlq = MemorySink(name="dlq")
    Pipeline(IterableSource([2, 4])).fan_out(
        [a, b], delivery=DeliveryConfig(dlq=b_dlq)).run_sync()  # type: ignore[list-item]
    assert a.records == b.records == [2, 4]


def test_an_object_without_sink_methods_is_refused_naming_what_is_missing() -> None:
    class NotASink:
        async def open(self) -> None: ...

        def write(self, record: Any) -> None: ...

    with pytest.raises(TypeError, match=r"build\(\) needs a sink.*NotASink has no async write, "
                                        r"close — subclass agora.BaseSink"):
        Pipeline(IterableSource([1])).build(NotASink())  # type: ignore[arg-type]


def test_a_duck_typed_dlq_receives_the_records_a_sink_refused() -> None:
    dlq = ListSink()
    sink = RefusingSink()
    summary = Pipeline(IterableSource([1, 2, 3, 4])).build(
        sink, delivery=DeliveryConfig(dlq=dlq)).run_sync()  # type: ignore[arg-type]
    assert sink.records == [2, 4]
    assert [r.record for r in dlq.records] == [1, 3]
    assert all(isinstance(r, DLQRecord) and r.stage == "sink_write" for r in dlq.records)
    assert summary.dlq.writes == 2


def test_a_duck_typed_dlq_is_adapted_and_keeps_the_object_given() -> None:
    dlq = ListSink()
    config = DeliveryConfig(dlq=dlq)  # type: ignore[arg-type]
    assert config.dlq is dlq  # what code reads back is the object it gave
    assert isinstance(config.dlq_sink, DuckTypedSink) and config.dlq_sink.inner is dlq
    assert DeliveryConfig(dlq=MemorySink(name="d")).dlq_sink is not None


def test_a_csv_sink_dead_letters_opaque_records_naming_sink_and_type(tmp_path: Path) -> None:
    dlq = MemorySink(name="dlq")
    sink = CsvSink(tmp_path / "out.csv", name="readings")
    assert CsvSink.requires_mappings and not MemorySink.requires_mappings
    Pipeline(IterableSource([{"sensor": "a", "value": 1.5}, Reading("b", 2.0)])).build(
        sink, delivery=DeliveryConfig(dlq=dlq)).run_sync()
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == ['"a",1.5']
    [failed] = dlq.records
    assert failed.record == Reading("b", 2.0)
    assert "sink 'readings' writes mappings" in failed.error_message
    assert "Reading" in failed.error_message


def test_an_async_checkpoint_store_saves_and_resumes() -> None:
    store = AsyncDictStore()
    config = DeliveryConfig(checkpoint=store)  # type: ignore[arg-type]
    first = MemorySink()
    Pipeline(IterableSource([1, 2, 3, 4]), id="p").build(first, delivery=config).run_sync(
        max_records=2)
    assert store.saved["p"].value == 2
    second = MemorySink()
    Pipeline(IterableSource([1, 2, 3, 4]), id="p").build(second, delivery=config).run_sync()
    assert second.records == [3, 4]
    assert store.saved["p"].value == 4


def test_an_async_store_runs_every_call_on_one_loop_and_stops_its_thread() -> None:
    store = AsyncDictStore()
    before = {t.ident for t in threading.enumerate()}
    Pipeline(IterableSource([1, 2]), id="p").build(
        MemorySink(), delivery=DeliveryConfig(checkpoint=store)).run_sync()  # type: ignore[arg-type]
    assert len(store.loops) == 1 and store.closed
    assert {t.ident for t in threading.enumerate()} <= before


def test_an_async_store_failure_reaches_the_caller_unchanged() -> None:
    store = BrokenAsyncStore()
    with pytest.raises(OSError, match="disk full"):
        Pipeline(IterableSource([1, 2]), id="p").build(
            MemorySink(), delivery=DeliveryConfig(checkpoint=store)).run_sync()  # type: ignore[arg-type]
    assert store.closed


def test_an_async_store_adapter_forwards_sync_methods_directly() -> None:
    class Mixed(AsyncDictStore):
        def load(self, key: str) -> Checkpoint | None:  # type: ignore[override]
            return Checkpoint("p", "r", "s", 9)

    adapter = DeliveryConfig(checkpoint=Mixed()).checkpoint_store  # type: ignore[arg-type]
    assert isinstance(adapter, AsyncStoreAdapter)
    adapter.open()
    try:
        loaded = adapter.load("p")
        assert loaded is not None and loaded.value == 9
    finally:
        adapter.close()
