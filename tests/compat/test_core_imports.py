"""0.3.0 programs import and subclass what they used to: the ``agora.core`` paths, generic
middleware and sources, the lane probes, and its private runtime names (which refuse use)."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    AgoraError,
    ArrowBatchSource,
    DeliveryConfig,
    IterableSource,
    MemorySink,
    Pipeline,
    PipelineError,
)
from agora.core.batch import is_arrow_native_sink
from agora.core.checkpoint import is_checkpoint_capable
from agora.core.context import PipelineContext
from agora.core.middleware import BatchMiddleware, Middleware
from agora.core.runtime._buffered import _RUST_AVAILABLE as BUFFERED_NATIVE
from agora.core.runtime._delivery import (
    DeliveryEngine,
    RecordDeliveryError,
    RunState,
    make_checkpoint_state,
)
from agora.core.runtime._source_adapter import SourceRuntimeAdapter
from agora.core.runtime._writer_transport import WriterTransport
from agora.core.source import BaseSource
from agora.middleware import MiddlewareContext


class ArrowOnlySink:
    """A duck-typed sink with no write(): it takes Arrow record batches only."""

    sink_name = "arrow_only"

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []

    async def open(self) -> None:
        return None

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    async def close(self) -> None:
        return None


class RowDuckSink:
    sink_name = "rows"

    async def open(self) -> None:
        return None

    async def write(self, record: Any) -> None:
        return None

    async def close(self) -> None:
        return None


def test_middleware_and_batch_middleware_take_type_parameters():
    class Double(Middleware[int, int]):
        def process(self, record: int, ctx: MiddlewareContext) -> int:
            return record * 2

    class Halve(BatchMiddleware[int, int]):
        def process_batch(self, records: Any, ctx: MiddlewareContext) -> list[int]:
            return [r // 2 for r in records]

    sink = MemorySink()
    Pipeline(IterableSource([1, 2, 3])).pipe(Double(), Halve()).build(sink).run_sync()
    assert sink.records == [1, 2, 3]


def test_iterable_source_is_subscriptable_and_subclassable():
    class Named(IterableSource[int]):
        pass

    sink = MemorySink()
    Pipeline(Named([4, 5])).build(sink).run_sync()
    assert sink.records == [4, 5]


def test_pipeline_context_is_the_middleware_context():
    assert PipelineContext is MiddlewareContext


def test_is_checkpoint_capable_follows_the_flag_not_the_shape():
    class Shaped(BaseSource[int]):
        def current_checkpoint(self) -> int:
            return 0

    class Declared(Shaped):
        supports_checkpoint = True

    assert is_checkpoint_capable(Shaped()) is False
    assert is_checkpoint_capable(Declared()) is True
    assert is_checkpoint_capable(object()) is False


def test_is_arrow_native_sink_for_base_and_duck_typed_sinks():
    assert is_arrow_native_sink(ArrowOnlySink()) is True
    assert is_arrow_native_sink(RowDuckSink()) is False
    assert is_arrow_native_sink(MemorySink()) is True
    assert is_arrow_native_sink(object()) is False  # not a sink at all: no, not an error


def test_arrow_only_duck_sink_receives_record_batches_as_they_are():
    table = pa.table({"id": [1, 2, 3]})
    sink = ArrowOnlySink()
    summary = Pipeline(ArrowBatchSource(table.to_batches(max_chunksize=2))).build(sink).run_sync()
    assert [b.num_rows for b in sink.batches] == [2, 1]
    assert summary.records_written == 3
    assert summary.runtime.arrow_fast_path_active is True


def test_arrow_only_duck_sink_given_rows_dead_letters_them_naming_the_sink():
    dlq = MemorySink(name="dlq")
    summary = (Pipeline(IterableSource([{"id": 1}]))
               .build(ArrowOnlySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert summary.records_errored == 1 and summary.records_written == 0
    (dead,) = dlq.records
    assert dead.error_type == "TypeError"
    assert "'arrow_only'" in dead.error_message and "Arrow record batches only" in dead.error_message
    assert dead.record == {"id": 1}


def test_an_object_with_neither_write_nor_write_arrow_batch_is_refused():
    class NoWrite:
        async def open(self) -> None:
            return None

        async def close(self) -> None:
            return None

    with pytest.raises(TypeError, match="has no async write"):
        Pipeline(IterableSource([1])).build(NoWrite())  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [DeliveryEngine, RunState, SourceRuntimeAdapter, WriterTransport])
def test_private_runtime_classes_import_but_refuse_construction(cls: type):
    with pytest.raises(AgoraError, match="private part of the 0.3.0 runtime") as info:
        cls(anything=1)
    assert cls.__name__ in str(info.value)
    assert " — " in str(info.value)  # says what to use instead


def test_make_checkpoint_state_refuses_and_says_what_to_use():
    with pytest.raises(AgoraError, match="DeliveryConfig\\(checkpoint=store\\)"):
        make_checkpoint_state()


def test_private_flags_say_agora_has_no_native_buffers():
    assert BUFFERED_NATIVE is False


def test_record_delivery_error_catches_agora_errors():
    assert RecordDeliveryError is AgoraError
    assert issubclass(PipelineError, RecordDeliveryError)


def test_pipeline_error_raised_during_a_run_gets_pipeline_run_and_source():
    class Failing(BaseSource[int]):
        source_name = "failing"

        async def stream(self) -> Any:
            yield 1
            raise PipelineError("bad state", stage=None)

    bound = Pipeline(Failing(), id="located").build(MemorySink())
    with pytest.raises(PipelineError) as info:
        asyncio.run(bound.run())
    err = info.value
    assert (err.pipeline_id, err.source_name, err.stage) == ("located", "failing", "run")
    assert err.run_id is not None and err.run_id == bound.last_summary.run_id  # type: ignore[union-attr]
    assert err.message == "bad state"


def test_context_set_by_the_raiser_is_kept():
    class Failing(BaseSource[int]):
        async def stream(self) -> Any:
            raise PipelineError("x", stage="source_read", pipeline_id="theirs")
            yield 1  # pragma: no cover - makes this an async generator

    with pytest.raises(PipelineError) as info:
        Pipeline(Failing(), id="ours").build(MemorySink()).run_sync()
    assert (info.value.stage, info.value.pipeline_id) == ("source_read", "theirs")


def test_upstream_private_builder_names_read_the_same_facts():
    from agora import MapMiddleware

    mw = MapMiddleware(lambda r: r)
    p = Pipeline(IterableSource([]), id="p1").pipe(mw)
    assert p._pipeline_id == "p1" and p._middlewares == [mw]
    p._middlewares.append(mw)  # a copy: the pipeline stays immutable
    assert len(p.middleware) == 1
    config = DeliveryConfig(batch_size=3)
    assert p.build(MemorySink(), delivery=config)._config is config


def test_mixed_arrow_and_python_chain_names_the_incompatible_planes():
    from agora import ArrowMapMiddleware, MapMiddleware

    source = ArrowBatchSource([pa.record_batch({"id": [1]})])
    bound = (Pipeline(source).pipe(ArrowMapMiddleware(lambda b: b), MapMiddleware(lambda r: r))
             .build(MemorySink()))
    with pytest.raises(PipelineError, match="mixes incompatible data planes"):
        bound.explain()
