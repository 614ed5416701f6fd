"""I/O-lane cancellation: cancelling run() or a SIGINT cancels every call in flight
promptly, no task outlives the run, and the checkpoint keeps exactly the handled prefix."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from agora import AsyncMiddleware, DeliveryConfig, SyncInMemoryCheckpointStore, MemorySink, Pipeline
from tests.runtime.doubles import RecordingSource

#: Records from this id on hang until cancelled; the ones before answer at once.
HANG_FROM = 10


class HangsFrom(AsyncMiddleware):
    """Answers records before ``HANG_FROM`` at once and hangs on the rest; ``on_full``
    runs once all ``concurrency`` slots hold a hanging call."""

    concurrency = 6
    name = "hangs"

    def __init__(self, on_full: Any) -> None:
        self.on_full = on_full
        self.hanging = 0
        self.cancelled = 0

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        if record["id"] < HANG_FROM:
            return record
        self.hanging += 1
        if self.hanging == self.concurrency:
            self.on_full()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return record


def bound_over(mw: HangsFrom, store: SyncInMemoryCheckpointStore, sink: MemorySink):
    return (Pipeline(RecordingSource([{"id": i} for i in range(100)]), id="io")
            .pipe(mw).build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1)))


@pytest.mark.timeout(20)
def test_cancelling_run_cancels_every_call_in_flight_and_leaves_no_task():
    store, sink = SyncInMemoryCheckpointStore(), MemorySink()
    full = asyncio.Event()
    mw = HangsFrom(full.set)
    bound = bound_over(mw, store, sink)

    async def main() -> set[asyncio.Task[Any]]:
        task = asyncio.create_task(bound.run())
        await asyncio.wait_for(full.wait(), 10)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2.0  # promptly, not after the 60 s calls
        return asyncio.all_tasks() - {asyncio.current_task()}

    left = asyncio.run(main())
    assert left == set()
    assert mw.cancelled == mw.hanging == 6
    assert [r["id"] for r in sink.records] == list(range(HANG_FROM))
    assert store.load("io").value == HANG_FROM
    assert bound.last_summary is not None and bound.last_summary.outcome == "interrupted"


@pytest.mark.timeout(20)
def test_sigint_twice_abandons_the_calls_in_flight_and_keeps_the_prefix():
    store, sink = SyncInMemoryCheckpointStore(), MemorySink()
    signals_sent: list[float] = []

    def interrupt_twice() -> None:
        loop = asyncio.get_running_loop()
        signals_sent.append(time.monotonic())
        loop.call_soon(signal.raise_signal, signal.SIGINT)  # stop reading, drain
        loop.call_later(0.05, signal.raise_signal, signal.SIGINT)  # abandon now

    mw = HangsFrom(interrupt_twice)
    bound = bound_over(mw, store, sink)
    with pytest.raises(KeyboardInterrupt):
        bound.run_sync()
    assert time.monotonic() - signals_sent[0] < 5.0
    assert mw.cancelled == mw.hanging == 6
    assert [r["id"] for r in sink.records] == list(range(HANG_FROM))
    assert store.load("io").value == HANG_FROM
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.timeout(20)
def test_one_sigint_lets_quick_calls_in_flight_commit():
    store, sink = SyncInMemoryCheckpointStore(), MemorySink()

    class Quick(AsyncMiddleware):
        concurrency = 4
        name = "quick"

        async def process(self, record: dict[str, int], ctx: Any) -> Any:
            if record["id"] == 20:
                asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGINT)
            await asyncio.sleep(0.01)
            return record

    bound = (Pipeline(RecordingSource([{"id": i} for i in range(100)]), id="q")
             .pipe(Quick()).build(sink, delivery=DeliveryConfig(checkpoint=store,
                                                                checkpoint_every=1)))
    with pytest.raises(KeyboardInterrupt):
        bound.run_sync()
    written = [r["id"] for r in sink.records]
    assert written == list(range(len(written))) and 20 < len(written) < 100
    assert store.load("q").value == len(written)  # calls in flight finished and committed
