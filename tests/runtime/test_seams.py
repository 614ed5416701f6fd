"""The typed seams: DeliveryConfig refuses what the engine could not drive (naming the
field and the fix), stores are driven through their protocol, and the Arrow filter hook
lets any middleware keep the source rows of its dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from agora import (
    ArrowBatchMiddleware,
    ArrowMapMiddleware,
    BatchMiddleware,
    Checkpoint,
    CheckpointStoreProtocol,
    DataPlane,
    DeliveryConfig,
    DLQSink,
    DLQStage,
    SyncInMemoryCheckpointStore,
    MemorySink,
    MiddlewareContext,
    Pipeline,
    PipelineError,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from agora.config import LoadSaveStoreAdapter
from tests.runtime.doubles import FlakySink, RecordingSource

# -- DeliveryConfig: the dlq field ------------------------------------------------------


def test_a_dlq_path_is_refused_with_the_sink_to_use():
    with pytest.raises(TypeError) as info:
        DeliveryConfig(dlq="dlq.db")
    assert str(info.value) == (
        "DeliveryConfig.dlq must be a DLQ sink such as SQLiteDLQSink(path); got str "
        "'dlq.db' — did you mean SQLiteDLQSink('dlq.db')?")


def test_a_json_lines_dlq_path_suggests_the_json_lines_sink():
    with pytest.raises(TypeError, match=r"did you mean JsonLinesDLQSink\('out/dlq.jsonl'\)"):
        DeliveryConfig(dlq=Path("out/dlq.jsonl"))


def test_an_object_that_is_no_dlq_sink_is_refused_with_the_ways_to_get_one():
    with pytest.raises(TypeError, match=r"dlq must be a DLQ sink .*got dict \{\} — pass "
                                        r"SQLiteDLQSink\(path\)"):
        DeliveryConfig(dlq={})


class _HalfDLQ:
    sink_name = "half"

    async def open(self) -> None: ...

    async def close(self) -> None: ...


def test_a_dlq_missing_methods_is_refused_naming_them():
    with pytest.raises(TypeError, match=r"got _HalfDLQ .* \(it has no write_batch, flush\)"):
        DeliveryConfig(dlq=_HalfDLQ())


class _SyncDLQ(_HalfDLQ):
    def write_batch(self, records: Any) -> None: ...

    def flush(self) -> None: ...


def test_a_dlq_with_synchronous_methods_is_refused():
    with pytest.raises(TypeError, match=r"_SyncDLQ\.write_batch is not — subclass agora\.BaseSink"):
        DeliveryConfig(dlq=_SyncDLQ())


class _DuckDLQ(_HalfDLQ):
    """A DLQ sink of a third party: no agora base class, just the four coroutines."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.flushed = 0

    async def write_batch(self, records: Any) -> None:
        self.records.extend(records)

    async def flush(self) -> None:
        self.flushed = len(self.records)


def test_a_dlq_sink_of_any_class_with_the_four_coroutines_is_driven():
    dlq = _DuckDLQ()
    assert isinstance(dlq, DLQSink)
    rows = [{"id": i} for i in range(4)]

    def boom(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 2:
            raise ValueError("bad id")
        return r

    from agora import MapMiddleware
    s = Pipeline(RecordingSource(rows), id="duck").pipe(MapMiddleware(boom, name="m")).build(
        MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync()
    assert s.dlq.writes == 1 and dlq.flushed == 1
    [rec] = dlq.records
    assert rec.stage is DLQStage.MIDDLEWARE and rec.record == {"id": 2}


# -- DeliveryConfig: the checkpoint field -----------------------------------------------


def test_a_checkpoint_path_is_refused_with_the_store_to_use():
    with pytest.raises(TypeError) as info:
        DeliveryConfig(checkpoint="ckpt.db")
    message = str(info.value)
    assert message.startswith("DeliveryConfig.checkpoint must be a checkpoint store such as "
                              "SQLiteCheckpointStore(path)")
    assert message.endswith("got str 'ckpt.db' — did you mean SQLiteCheckpointStore('ckpt.db')?")


def test_an_object_without_load_and_save_is_refused():
    class OnlyLoad:
        def load(self, key: str) -> None:
            return None

    with pytest.raises(TypeError, match=r"got OnlyLoad .* — subclass agora\.CheckpointStore"):
        DeliveryConfig(checkpoint=OnlyLoad())


@pytest.mark.parametrize("method", ["load", "save", "claim", "open"])
def test_a_store_with_an_async_method_is_adapted_at_construction(method: str):
    from agora.config import AsyncStoreAdapter

    class AsyncStore(SyncInMemoryCheckpointStore):
        pass

    async def coroutine(self: Any, *args: Any) -> None: ...

    setattr(AsyncStore, method, coroutine)
    store = AsyncStore()
    adapted = DeliveryConfig(checkpoint=store).checkpoint_store
    assert isinstance(adapted, AsyncStoreAdapter) and adapted.inner is store


@pytest.mark.parametrize("key", [3, "", b"k"])
def test_a_checkpoint_key_must_be_a_non_empty_string(key: object):
    with pytest.raises(TypeError, match=r"checkpoint_key must be a non-empty string or None"):
        DeliveryConfig(checkpoint_key=key)  # type: ignore[arg-type]


def test_a_redactor_must_be_callable():
    with pytest.raises(TypeError, match=r"dlq_redactor must be callable.*got str 'mask'"):
        DeliveryConfig(dlq_redactor="mask")  # type: ignore[arg-type]


def test_a_checkpoint_store_is_driven_as_given(tmp_path: Path):
    store = SyncSQLiteCheckpointStore(tmp_path / "c.db")
    config = DeliveryConfig(checkpoint=store, dlq=SQLiteDLQSink(tmp_path / "d.db"))
    assert config.checkpoint is store and config.checkpoint_store is store


class _FencedDuckStore:
    """A full-protocol store of a third party (no agora base class)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.data: dict[str, Checkpoint] = {}

    def open(self) -> None:
        self.calls.append("open")

    def claim(self, key: str) -> None:
        self.calls.append(f"claim {key}")

    def load(self, key: str) -> Checkpoint | None:
        self.calls.append("load")
        return self.data.get(key)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.data[key] = checkpoint

    def release(self, key: str) -> None:
        self.calls.append(f"release {key}")

    def close(self) -> None:
        self.calls.append("close")


def test_a_store_with_the_whole_protocol_is_driven_in_order_without_an_adapter():
    store = _FencedDuckStore()
    assert isinstance(store, CheckpointStoreProtocol)
    config = DeliveryConfig(checkpoint=store, checkpoint_key="k")
    assert config.checkpoint_store is store
    Pipeline(RecordingSource([{"id": 1}, {"id": 2}]), id="p").build(
        MemorySink(), delivery=config).run_sync()
    assert store.calls == ["open", "claim k", "load", "release k", "close"]
    assert store.data["k"].value == 2


class _LoadSaveStore:
    def __init__(self) -> None:
        self.saved: list[Any] = []
        self.closed = 0

    def load(self, key: str) -> Checkpoint | None:
        return None

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.saved.append(checkpoint.value)

    def close(self) -> None:
        self.closed += 1


def test_a_load_save_store_is_adapted_and_its_close_still_runs():
    store = _LoadSaveStore()
    config = DeliveryConfig(checkpoint=store)
    assert config.checkpoint is store
    assert isinstance(config.checkpoint_store, LoadSaveStoreAdapter)
    assert isinstance(config.checkpoint_store, CheckpointStoreProtocol)
    Pipeline(RecordingSource([{"id": 1}, {"id": 2}]), id="p").build(
        MemorySink(), delivery=config).run_sync()
    assert store.saved == [2] and store.closed == 1


# -- the process-stage seam --------------------------------------------------------------


class _FakeIsolated(BatchMiddleware):
    """Claims process isolation but has no submit()/metrics()."""

    name = "fake_isolated"
    process_isolated = True


def test_a_middleware_claiming_isolation_without_the_seam_is_refused_at_plan_time():
    bound = Pipeline(RecordingSource([[{"id": 1}]], plane=DataPlane.PYTHON_BATCHES),
                     id="p").pipe(_FakeIsolated()).build(MemorySink())
    with pytest.raises(PipelineError, match=r"'fake_isolated' sets process_isolated = True but "
                                            r"lacks the process-stage seam"):
        bound.explain()


# -- the Arrow filter hook ---------------------------------------------------------------

ROWS = [{"id": i, "v": i} for i in range(6)]


def _arrow_source() -> RecordingSource:
    return RecordingSource([pa.Table.from_pylist(ROWS).to_batches()[0]],
                           plane=DataPlane.ARROW_BATCHES)


def _scale(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Changes every row, so a dead letter shows whether it carries the source row."""
    return batch.set_column(1, "v", pc.multiply(batch["v"], 10))


class EvenIds(ArrowBatchMiddleware):
    """A user's own Arrow filter, through the hook."""

    name = "even"

    def arrow_filter_mask(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        return pc.equal(pc.bit_wise_and(batch["id"], 1), 0)


class EvenIdsWithoutHook(ArrowBatchMiddleware):
    """The same filter written as a plain Arrow transform: rows cannot be traced."""

    name = "even"

    def process_arrow_batch(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        return batch.filter(pc.equal(pc.bit_wise_and(batch["id"], 1), 0))


class Explode(ArrowBatchMiddleware):
    name = "explode"

    def process_arrow_batch(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        raise RuntimeError("explode")


def _dead_letters(*chain: Any, sink: Any = None) -> list[Any]:
    dlq = MemorySink(name="dlq")
    Pipeline(_arrow_source(), id="hook").pipe(ArrowMapMiddleware(_scale, name="scale"),
                                              *chain).build(
        sink or MemorySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync()
    return dlq.records


def test_a_users_arrow_filter_keeps_the_source_rows_of_later_dead_letters():
    letters = _dead_letters(EvenIds(), Explode())
    assert [d.record for d in letters] == [{"id": 0, "v": 0}, {"id": 2, "v": 2},
                                           {"id": 4, "v": 4}]
    assert {d.middleware for d in letters} == {"explode"}


def test_without_the_hook_dead_letters_carry_the_rows_as_they_failed():
    # The contrast that shows the hook is what keeps the source rows.
    letters = _dead_letters(EvenIdsWithoutHook(), Explode())
    assert [d.record for d in letters] == [{"id": 0, "v": 0}, {"id": 2, "v": 20},
                                           {"id": 4, "v": 40}]


def test_a_users_arrow_filter_keeps_the_source_rows_of_sink_dead_letters():
    sink = FlakySink(name="s", fail=lambda r: r["id"] == 4,
                     native=(DataPlane.PYTHON_ROWS, DataPlane.ARROW_BATCHES))
    [letter] = _dead_letters(EvenIds(), sink=sink)
    assert letter.stage is DLQStage.SINK_WRITE
    assert letter.record == {"id": 4, "v": 4} and letter.processed_record == {"id": 4, "v": 40}


class EvenIdsExpression(ArrowBatchMiddleware):
    name = "even_expr"

    def arrow_filter_mask(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        return pc.equal(pc.bit_wise_and(pc.field("id"), 1), 0)


def test_the_hook_may_return_an_expression():
    letters = _dead_letters(EvenIdsExpression(), Explode())
    assert [d.record["id"] for d in letters] == [0, 2, 4]
    assert letters[0].record == {"id": 0, "v": 0}


class AsyncEvenIds(ArrowBatchMiddleware):
    name = "async_even"

    async def arrow_filter_mask(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        return pc.equal(pc.bit_wise_and(batch["id"], 1), 0)


def test_the_hook_may_be_a_coroutine():
    out = MemorySink()
    s = Pipeline(_arrow_source(), id="a").pipe(AsyncEvenIds()).build(out).run_sync()
    assert [r["id"] for r in out.records] == [0, 2, 4] and s.records_dropped == 3


class FailingFilter(ArrowBatchMiddleware):
    name = "failing_filter"

    def arrow_filter_mask(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        raise KeyError("no such column")


class ShortMask(ArrowBatchMiddleware):
    name = "short_mask"

    def arrow_filter_mask(self, batch: pa.RecordBatch, ctx: MiddlewareContext) -> Any:
        return [True]  # one entry for a six-row batch: pyarrow refuses to filter with it


@pytest.mark.parametrize("bad", [FailingFilter, ShortMask])
def test_a_failing_hook_dead_letters_every_row_of_the_batch_as_the_source_emitted_it(bad: Any):
    letters = _dead_letters(bad())
    assert [d.record for d in letters] == ROWS
    assert {d.stage for d in letters} == {DLQStage.BATCH_MIDDLEWARE}
    assert {d.middleware for d in letters} == {bad.name}
