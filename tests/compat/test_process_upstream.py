"""Programs written for 0.3.0's process-batch middleware run unchanged: its constructor,
its direct-drive methods (``process_batch``, ``submit_batch``, ``process``), the errors
they raise, pool recycling after a timeout, and its private import paths."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    ArrowBatchSource,
    DeliveryConfig,
    FailurePolicy,
    InMemoryCheckpointStore,
    IterableBatchSource,
    MemorySink,
    Pipeline,
)
from agora.errors import LifecycleError, ProcessBatchError, ProcessPoolBrokenError
from agora.middlewares.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from tests.process import faults
from tests.process.helpers import context, rows, run, started

BOTH = [ProcessBatchMiddleware, ArrowProcessBatchMiddleware]


def arrow_rows(n: int = 2, **columns: list[Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"x": [float(i) for i in range(n)], **columns})


class ListDLQ:
    """A dead-letter queue by shape only, as 0.3.0 programs write one."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def open(self) -> None:
        pass

    async def write(self, record: Any) -> None:
        self.records.append(record)

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


class ArrowListSink:
    """A sink by shape only that writes Arrow itself and refuses rows."""

    sink_name = "arrow_list"

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []

    async def open(self) -> None:
        pass

    async def write(self, record: Any) -> None:
        raise AssertionError(f"{self.sink_name} was given a row: {record!r}")

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    async def close(self) -> None:
        pass


class RowListSink:
    """A sink by shape only without an Arrow write method."""

    sink_name = "row_list"

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def open(self) -> None:
        pass

    async def write(self, record: Any) -> None:
        self.records.append(record)

    async def close(self) -> None:
        pass


# ----------------------------------------------------------------- construction


@pytest.mark.parametrize(("cls", "default_name"),
                         [(ProcessBatchMiddleware, "process_batch"),
                          (ArrowProcessBatchMiddleware, "arrow_process_batch")])
def test_the_constructor_keeps_0_3_0_names_defaults_and_order(cls, default_name):
    params = inspect.signature(cls.__init__).parameters
    names = list(params)
    assert names[:2] == ["self", "fn"]
    assert params["fn"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    expected = {"max_workers": None, "ordered": True, "timeout_s": None,
                "max_in_flight_batches": 4, "name": default_name}
    assert names[2:7] == list(expected)
    for name, default in expected.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default == default
    mw = cls(fn=faults.double_values, max_workers=2, ordered=True, timeout_s=30.0,
             max_in_flight_batches=4, name="test_mw")
    assert (mw.name, mw.max_workers, mw.timeout_s) == ("test_mw", 2, 30.0)


@pytest.mark.parametrize("cls", BOTH)
def test_unordered_pipelining_is_built_but_refused_by_on_start(cls, no_orphans):
    mw = cls(faults.double_values, ordered=False, max_in_flight_batches=2, name="loose")

    async def main() -> None:
        with pytest.raises(NotImplementedError, match=r"'loose'.*use ordered=True"):
            await mw.on_start(context(mw.name))
        # Nothing started, so stopping is harmless and nothing is left.
        await mw.on_stop(context(mw.name))
        assert mw.worker_pids() == []

    run(main)


# ----------------------------------------------------------------- direct drive


def test_batches_are_numbered_from_zero_in_every_run_and_errors_name_them(no_orphans):
    mw = ProcessBatchMiddleware(faults.raise_value_error, max_workers=1, name="named_mw")

    async def main() -> None:
        for _ in range(2):  # a second run numbers from 0 again
            async with started(mw) as ctx:
                for index in (0, 1):
                    with pytest.raises(RuntimeError) as info:
                        await mw.process_batch([{"id": index}], ctx)
                    err = info.value
                    assert isinstance(err, ProcessBatchError)
                    assert err.batch_index == index and err.timed_out is False
                    assert "named_mw" in str(err) and "bad record" in str(err)

    run(main)


@pytest.mark.timeout(60)
def test_submit_batch_returns_tasks_that_run_side_by_side(no_orphans):
    mw = ProcessBatchMiddleware(faults.sleep_as_told, max_workers=2, max_in_flight_batches=2,
                                name="side_by_side")

    async def main() -> None:
        async with started(mw) as ctx:
            slow = await mw.submit_batch(rows(0, 1, sleep=30), ctx)
            fast = await mw.submit_batch(rows(1, 1), ctx)
            assert isinstance(slow, asyncio.Task) and isinstance(fast, asyncio.Task)
            done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
            # The second batch finished while the first still ran: they were not serialised.
            assert done == {fast} and not slow.done()
            assert fast.result()[0]["id"] == 100
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow

    run(main)


@pytest.mark.parametrize("cls", BOTH)
def test_submit_batch_and_process_batch_before_on_start_are_runtime_errors(cls):
    mw = cls(faults.double_values, name="early")
    batch: Any = rows(0) if cls is ProcessBatchMiddleware else arrow_rows()
    entry = mw.process_batch if cls is ProcessBatchMiddleware else mw.process_arrow_batch

    async def main() -> None:
        for call in (mw.submit_batch, entry):
            with pytest.raises(LifecycleError, match=r"'early'.*before on_start"):
                await call(batch, context(mw.name))

    run(main)


@pytest.mark.parametrize("cls", BOTH)
def test_per_record_use_is_refused_naming_the_middleware_and_what_to_use(cls):
    mw = cls(faults.double_values, name="batch_only")
    with pytest.raises(RuntimeError, match=r"'batch_only' requires a batch-capable source") as info:
        mw.process({"id": 1}, context(mw.name))
    assert isinstance(info.value, LifecycleError)
    assert "IterableBatchSource" in str(info.value)


@pytest.mark.timeout(60)
def test_the_runner_handle_is_stable_per_generation_and_replaced_after_a_timeout(no_orphans):
    mw = ProcessBatchMiddleware(faults.sleep_as_told, max_workers=1, timeout_s=1.0,
                                name="recycle")

    async def main() -> None:
        assert mw._runner is None
        async with started(mw) as ctx:
            first = mw._runner
            assert first is not None and first.generation == 1
            await mw.process_batch(rows(0, 1), ctx)
            assert mw._runner is first  # same generation, same handle
            with pytest.raises(ProcessBatchError) as info:
                await mw.process_batch(rows(1, 1, sleep=30), ctx)
            assert info.value.timed_out is True and info.value.invalidated is False
            assert mw._runner is not first and mw._runner is not None
            assert mw._runner.generation == 2
            out = await mw.process_batch(rows(2, 2), ctx)
            assert [r["id"] for r in out] == [200, 201]
        assert mw._runner is None
        await mw.on_stop(context(mw.name))  # a second stop is harmless

    run(main)


def test_a_wrong_length_result_says_the_lengths_must_match(no_orphans):
    mw = ProcessBatchMiddleware(faults.return_one_too_few, max_workers=1, name="bad_length")

    async def main() -> None:
        async with started(mw) as ctx:
            with pytest.raises(RuntimeError, match="lengths must match") as info:
                await mw.process_batch(rows(0, 3), ctx)
            assert "'bad_length'" in str(info.value)

    run(main)


def test_an_arrow_result_with_fewer_rows_says_the_row_count_must_match(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_drop_first_row, max_workers=1,
                                     name="arrow_bad_rows")

    async def main() -> None:
        async with started(mw) as ctx:
            with pytest.raises(RuntimeError, match="row count must match") as info:
                await mw.process_arrow_batch(arrow_rows(2), ctx)
            assert isinstance(info.value, ProcessBatchError)

    run(main)


# ----------------------------------------------------------------- in a pipeline


@pytest.mark.timeout(60)
def test_an_unpicklable_fn_stops_the_run_with_nothing_committed_or_dead_lettered(no_orphans):
    store = InMemoryCheckpointStore()
    sink = MemorySink()
    dlq = ListDLQ()
    bound = (
        Pipeline(IterableBatchSource([rows(0), rows(1)]), id="lambda_run")
        .pipe(ProcessBatchMiddleware(lambda batch: batch, name="inline"))
        .build(sink, config=DeliveryConfig(batch_size=10, checkpoint=store, dlq=dlq,
                                           failure_policy=FailurePolicy.LOG_AND_CONTINUE))
    )
    with pytest.raises(ProcessPoolBrokenError, match="'inline'.*define fn at module top level"):
        bound.run_sync()
    # The pool is broken for the run, not the batch: nothing moved, so a fixed rerun
    # starts from the beginning with every record.
    assert sink.records == [] and dlq.records == []
    assert asyncio.run(store.load("lambda_run")) is None


@pytest.mark.timeout(60)
def test_a_timeout_dead_letters_its_batch_and_the_invalidated_sibling_then_continues(
    no_orphans,
):
    batches = [rows(0, 1, sleep=30), rows(1, 1, sleep=30), rows(2, 2)]
    store = InMemoryCheckpointStore()
    sink = MemorySink()
    dlq = ListDLQ()
    summary = (
        Pipeline(IterableBatchSource(batches), id="timeout_run")
        .pipe(ProcessBatchMiddleware(faults.sleep_as_told, max_workers=2,
                                     max_in_flight_batches=2, timeout_s=1.5, name="gen"))
        .build(sink, config=DeliveryConfig(batch_size=10, checkpoint=store, dlq=dlq,
                                           failure_policy=FailurePolicy.LOG_AND_CONTINUE))
        .run_sync()
    )
    assert [r.record["id"] for r in dlq.records] == [0, 100]
    assert [r["id"] for r in sink.records] == [200, 201]
    assert (summary.records_written, summary.records_errored) == (2, 2)
    pool = summary.runtime["process_batch"]["gen"]
    assert pool["batches_timed_out"] == 1 and pool["batches_invalidated"] == 1
    assert pool["pool_recycles"] == 1
    checkpoint = asyncio.run(store.load("timeout_run"))
    assert checkpoint is not None and checkpoint.value == {"batch": 3, "row": 0}


def test_a_duck_typed_sink_with_write_arrow_batch_receives_record_batches(no_orphans):
    source = ArrowBatchSource([arrow_rows(2), arrow_rows(1)])
    sink = ArrowListSink()
    bound = (
        Pipeline(source, id="arrow_duck")
        .pipe(ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=1,
                                          name="arrow_doubler"))
        .build(sink, config=DeliveryConfig(batch_size=10))
    )
    plan = bound.explain().to_dict()
    assert plan["middleware_matrix"] == [
        {"index": 0, "name": "arrow_doubler", "data_plane": "arrow_batches"}]
    assert plan["sinks"][0]["selected_data_plane"] == "arrow_batches"
    summary = bound.run_sync()
    assert summary.records_written == 3
    assert [b.column("doubled").to_pylist() for b in sink.batches] == [[0.0, 2.0], [0.0]]


def test_a_duck_typed_sink_without_write_arrow_batch_still_gets_rows(no_orphans):
    sink = RowListSink()
    summary = (
        Pipeline(ArrowBatchSource([arrow_rows(2)]), id="row_duck")
        .pipe(ArrowProcessBatchMiddleware(faults.arrow_identity, max_workers=1))
        .build(sink, config=DeliveryConfig(batch_size=10))
        .run_sync()
    )
    assert summary.records_written == 2
    assert sink.records == [{"x": 0.0}, {"x": 1.0}]


# ----------------------------------------------------------------- import paths


def test_the_private_runner_and_codec_paths_import_and_name_their_replacements():
    from agora.core.runtime import _process, _process_codec
    from agora.middlewares import process

    assert _process.ProcessBatchError is ProcessBatchError
    assert process.ProcessBatchError is ProcessBatchError
    with pytest.raises(NotImplementedError, match=r"ProcessBatchMiddleware\(fn=…\)"):
        _process.ProcessPoolRunner(max_workers=1, middleware_name="test")
    for codec in (_process_codec.PythonObjectCodec, _process_codec.ArrowBatchCodec):
        with pytest.raises(NotImplementedError, match="pass records or a pyarrow.RecordBatch"):
            codec()
    assert issubclass(_process_codec.BatchCodecError, RuntimeError)
