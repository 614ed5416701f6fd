"""The I/O lane keeps its calls going: a finished call's slot serves the next record at
once, even while a slower record before it holds the commit back — and the commit,
the checkpoint and ``max_buffer_size`` still behave as if records ran one by one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import AsyncMiddleware, DeliveryConfig, Pipeline
from agora.runtime.io_lane import HOLD_PER_SLOT, _Limiter
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore


class SlowHead(AsyncMiddleware):
    """Record 0 waits until record ``release_at`` has *started* (or ``patience`` s pass);
    every other record answers at once. Records the calls started while 0 was open."""

    def __init__(self, concurrency: int, *, release_at: int, patience: float = 5.0) -> None:
        self.name = "lookup"
        self.concurrency = concurrency
        self.release_at = release_at
        self.patience = patience
        self.released: asyncio.Event | None = None
        self.started_while_head_open: list[int] = []
        self.head_open = False
        self.head_waited_out = False

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        if self.released is None:
            self.released = asyncio.Event()
        i = record["id"]
        if i == 0:
            self.head_open = True
            try:
                await asyncio.wait_for(self.released.wait(), self.patience)
            except TimeoutError:
                self.head_waited_out = True
            self.head_open = False
        else:
            if self.head_open:
                self.started_while_head_open.append(i)
            if i == self.release_at:
                self.released.set()
            await asyncio.sleep(0)
        return {**record, "done": True}


def rows(n: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(n)]


@pytest.mark.timeout(20)
def test_a_slow_record_does_not_stop_later_calls_from_starting():
    # Two slots; record 0 answers only once record 20 has started. Before the lane held
    # more than it ran, record 2 could not start until record 0 was committed.
    mw = SlowHead(2, release_at=20)
    sink, store = FlakySink(), RecordingStore()
    (Pipeline(RecordingSource(rows(40))).pipe(mw)
     .build(sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1)).run_sync())
    assert not mw.head_waited_out
    assert mw.started_while_head_open == list(range(1, 21))
    assert [r["id"] for r in sink.rows] == list(range(40))  # still committed in order
    assert store.saves == sorted(store.saves) and store.saves[-1] == 40


@pytest.mark.timeout(20)
def test_the_checkpoint_waits_for_the_slow_record_while_later_ones_finish():
    saved_while_open: list[Any] = []

    class Watch(SlowHead):
        async def process(self, record: dict[str, int], ctx: Any) -> Any:
            if self.head_open:
                saved_while_open.extend(store.saves)
            return await super().process(record, ctx)

    store = RecordingStore()
    mw = Watch(4, release_at=30)
    (Pipeline(RecordingSource(rows(40))).pipe(mw)
     .build(FlakySink(), delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
     .run_sync())
    assert len(mw.started_while_head_open) == 30
    assert saved_while_open == []  # nothing saved while record 0 was in flight


@pytest.mark.timeout(20)
def test_the_lane_holds_at_most_hold_per_slot_units_per_slot():
    # Record 0 never answers within the test's patience: the lane may run ahead by its
    # hold, no further, and then waits for record 0 (which finally times out and answers).
    mw = SlowHead(2, release_at=10_000, patience=0.5)
    sink = FlakySink()
    (Pipeline(RecordingSource(rows(2 * HOLD_PER_SLOT + 20))).pipe(mw)
     .build(sink, delivery=DeliveryConfig()).run_sync())
    assert mw.head_waited_out
    assert len(mw.started_while_head_open) == 2 * HOLD_PER_SLOT - 1
    assert [r["id"] for r in sink.rows] == list(range(2 * HOLD_PER_SLOT + 20))


@pytest.mark.timeout(20)
def test_max_buffer_size_still_caps_what_the_lane_runs_ahead():
    mw = SlowHead(8, release_at=10_000, patience=0.3)
    sink = FlakySink()
    (Pipeline(RecordingSource(rows(30))).pipe(mw)
     .build(sink, delivery=DeliveryConfig(max_buffer_size=5)).run_sync())
    assert mw.head_waited_out
    assert len(mw.started_while_head_open) == 5  # records 1-5: six held, then the head waits
    assert [r["id"] for r in sink.rows] == list(range(30))


def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on():
    async def main() -> None:
        lim = _Limiter(1)
        await lim.acquire()
        first = asyncio.create_task(lim.acquire())
        second = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0)  # both wait, in order
        lim.release()  # the slot goes to ``first`` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1)  # ``second`` got the slot ``first`` passed on
        assert (lim.in_flight, lim.peak) == (1, 1)
        lim.release()
        assert lim.in_flight == 0

    asyncio.run(main())


def test_a_cancelled_waiter_is_skipped_and_a_raised_limit_wakes_the_rest():
    async def main() -> None:
        lim = _Limiter(1)
        await lim.acquire()
        gone, a, b = (asyncio.create_task(lim.acquire()) for _ in range(3))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(gone, return_exceptions=True)
        lim.limit = 3  # what backpressure does when latency falls
        lim.wake()
        await asyncio.wait_for(asyncio.gather(a, b), 1)
        assert lim.in_flight == 3 and not lim._waiters

    asyncio.run(main())
