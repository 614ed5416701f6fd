"""0.3.0's buffered middleware (``min_concurrency`` + ``submit`` handing back a future +
``drain_pending``): the I/O lane lets it batch, drains it when the lane stalls on it or
the source ends, stops the run on a failing drain without checkpointing what it held,
and reports ``buffered_stage_*`` figures. Every output is flushed as it closes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import (
    DeliveryConfig,
    SyncInMemoryCheckpointStore,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Middleware,
    MiddlewareContext,
    Pipeline,
)
from tests.runtime.doubles import FlakySink


class BufferUntil(Middleware[Any, Any]):
    """Holds submitted records until ``size`` are waiting (or it is drained), then resolves
    them all with ``record + add``; ``flushed`` lists the size of every non-empty flush."""

    def __init__(self, size: int, *, name: str = "buffer", add: int = 0,
                 fail_drain: bool = False) -> None:
        self.name = name
        self.min_concurrency = size
        self.size = size
        self.add = add
        self.fail_drain = fail_drain
        self.held: list[tuple[Any, asyncio.Future[Any]]] = []
        self.flushed: list[int] = []
        self.cancelled = 0

    async def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        return record  # not used on the I/O lane

    async def submit(self, record: Any, ctx: MiddlewareContext) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._count_cancel)
        self.held.append((record, future))
        if len(self.held) >= self.size:
            self._flush()
        return future

    async def drain_pending(self, ctx: MiddlewareContext) -> None:
        if self.fail_drain and self.held:
            raise RuntimeError(f"{self.name} cannot drain {len(self.held)} records")
        self._flush()

    def _flush(self) -> None:
        batch, self.held = self.held, []
        if batch:
            self.flushed.append(len(batch))
        for record, future in batch:
            if not future.done():
                future.set_result(record + self.add)

    def _count_cancel(self, future: asyncio.Future[Any]) -> None:
        self.cancelled += future.cancelled()


@pytest.mark.timeout(20)
def test_the_middleware_batches_as_it_chose_and_the_tail_is_drained_at_the_end() -> None:
    mw = BufferUntil(3)
    sink = MemorySink()
    summary = Pipeline(IterableSource(list(range(7)))).pipe(mw).build(sink).run_sync()
    assert sink.records == list(range(7)) and summary.records_written == 7
    assert mw.flushed == [3, 3, 1]  # two full batches, then the tail the source's end drained
    runtime = summary.runtime
    assert runtime.buffered_stage_limit == 3 and runtime.buffered_stage_max_in_flight == 3
    assert summary.by_middleware["buffer"]["drains"] >= 1  # at least the tail's
    assert "buffered_stage_drain_count" not in runtime  # 0.3.0 counted something else


@pytest.mark.timeout(20)
def test_chained_buffering_stages_drain_in_turn_and_keep_source_order() -> None:
    first, second = BufferUntil(2, name="first", add=10), BufferUntil(2, name="second", add=100)
    sink = MemorySink()
    summary = (Pipeline(IterableSource([0, 1, 2, 3, 4])).pipe(first, second)
               .pipe(MapMiddleware(lambda r: r, name="after")).build(sink).run_sync())
    assert sink.records == [110, 111, 112, 113, 114] and summary.records_written == 5
    assert sum(first.flushed) == sum(second.flushed) == 5


@pytest.mark.timeout(20)
def test_a_run_limited_by_max_records_drains_instead_of_waiting_for_more() -> None:
    def endless() -> Any:
        n = 0
        while True:
            yield n
            n += 1

    mw = BufferUntil(4)
    sink = MemorySink()
    summary = Pipeline(IterableSource(endless)).pipe(mw).build(sink).run_sync(max_records=3)
    assert sink.records == [0, 1, 2] and summary.records_consumed == 3
    assert mw.flushed == [3]


@pytest.mark.timeout(20)
def test_a_failing_drain_stops_the_run_and_checkpoints_nothing_it_held() -> None:
    store = SyncInMemoryCheckpointStore()
    mw = BufferUntil(2, fail_drain=True)
    log: list[str] = []
    sink = FlakySink(log=log)
    bound = Pipeline(IterableSource([0, 1, 2]), id="drain").pipe(mw).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    with pytest.raises(RuntimeError, match="buffer cannot drain 1 records"):
        bound.run_sync()
    assert sink.rows == [0, 1]  # the full batch went through; the held record did not
    checkpoint = store.load("drain")
    assert checkpoint is not None and checkpoint.value == 2  # the next run re-reads record 2
    assert mw.cancelled == 1  # the record it still held was given up, not left pending
    assert log[-2:] == ["flaky.close", "flaky.flush"] and "flaky.flush" in log[:-2]


@pytest.mark.timeout(20)
def test_a_cancelled_run_still_flushes_then_closes_each_output() -> None:
    log: list[str] = []
    entered = asyncio.Event()

    class Stuck(MapMiddleware):
        async def process(self, record: Any, ctx: MiddlewareContext) -> Any:
            entered.set()
            await asyncio.Event().wait()  # only the cancel ends it
            return record

    dlq = FlakySink(name="dlq", log=log)
    bound = Pipeline(IterableSource([1, 2])).pipe(Stuck(lambda r: r)).build(
        FlakySink(log=log), delivery=DeliveryConfig(dlq=dlq))

    async def main() -> None:
        task = asyncio.create_task(bound.run())
        await asyncio.wait_for(entered.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    shutdown = [e for e in log if not e.endswith(".open")]
    # nothing was written, yet each output is flushed before it is closed, DLQ first
    assert shutdown[:2] == ["dlq.flush", "dlq.close"]
    assert shutdown.index("flaky.flush") < shutdown.index("flaky.close")


def test_without_an_io_lane_stage_the_buffered_figures_are_zero() -> None:
    runtime = Pipeline(IterableSource([1])).build(MemorySink()).run_sync().runtime
    assert (runtime.buffered_stage_limit, runtime.buffered_stage_max_in_flight) == (0, 0)
