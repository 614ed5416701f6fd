"""The I/O lane: runs one async per-record middleware with up to N records in flight,
retries transient failures, adapts N under backpressure, and writes the results back
into the unit in source order — the committer never sees a record still in flight.

A middleware that buffers what ``submit`` hands it (0.3.0's ``drain_pending(ctx)``
spelling) is told to drain whenever the lane stalls on it: every call in flight has
handed its record over and no more can start — the lane's slots are full, or the source
has ended (``end_of_input``) so nothing else will arrive. Until then it keeps what it
buffers, so it batches as it chose to."""

from __future__ import annotations

import asyncio
import bisect
import collections
import inspect
import random
import time
from dataclasses import dataclass
from typing import Any

from agora.middleware.base import Middleware, MiddlewareContext
from agora.middleware.io import Backpressure, RetryPolicy, io_call_of
from agora.records import DLQStage
from agora.runtime.interrupt import StopFlag
from agora.runtime.units import GONE, Failure, Unit

__all__ = ["IOLane"]

#: Latencies kept for the percentiles: the latest calls only, so memory stays flat on
#: long runs; 10,000 samples put p99 within a fraction of a percent.
LATENCY_SAMPLES = 10_000

#: Units an I/O-lane stage may hold per call slot, finished ones included. A record that
#: answers early waits, committed in source order, behind a slower one before it while
#: its slot already serves the next record; the calls only run dry once the slowest
#: record in flight has kept ``HOLD_PER_SLOT`` × ``concurrency`` units waiting — about
#: that many times the mean latency. Higher tolerates longer tails and holds more
#: records in memory (``max_buffer_size`` still caps them).
HOLD_PER_SLOT = 16


@dataclass(slots=True)
class _Outcome:
    value: Any
    error: BaseException | None
    attempt: int


class _Limiter:
    """A counting gate whose limit may change while records are in flight.

    A freed slot is handed straight to the longest waiter (first come, first served),
    so a waiter never finds its slot taken by a newcomer and the queue never rescans."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            raise  # a cancelled waiter stays queued; the hand-off skips it

    def release(self) -> None:
        self.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Hand free slots to waiters (after a release, or after the limit was raised)."""
        while self.in_flight < self.limit and self._waiters:
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self._take()
            fut.set_result(None)

    def _take(self) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)


class IOLane:
    """One I/O-lane stage. Shared by every unit that passes the stage, so the bound on
    records in flight holds across units, not per unit."""

    def __init__(self, mw: Middleware, ctx: MiddlewareContext, concurrency: int) -> None:
        self.name = mw.name
        self.ctx = ctx
        self.call = io_call_of(mw)
        self.concurrency = concurrency
        retry = getattr(mw, "retry", None)
        self.retry: RetryPolicy = retry if isinstance(retry, RetryPolicy) else RetryPolicy()
        bp = getattr(mw, "backpressure", None)
        self.backpressure: Backpressure | None = bp if isinstance(bp, Backpressure) else None
        self.limiter = _Limiter(concurrency)
        self.retries = 0
        self.moves = 0
        # The latest samples in arrival order, and the same samples kept sorted (insort
        # is a memmove, microseconds), so percentiles are a lookup, not a sort per unit.
        self._latencies: collections.deque[float] = collections.deque()
        self._sorted: list[float] = []
        self._window_n = 0
        self._window_errors = 0
        self._window_latency = 0.0
        self._tasks: set[asyncio.Task[_Outcome]] = set()
        drain = getattr(mw, "drain_pending", None)
        self.drain: Any = drain if callable(drain) else None
        self.drains = 0  # drain_pending calls made
        self.input_ended = False  # set by end_of_input(): no unit after those in flight
        # Calls started whose submit() has not yet handed its record over (or ended
        # without): the lane drains only once none is left, so a drain never runs ahead
        # of a record it should have flushed.
        self._owing: set[asyncio.Task[_Outcome]] = set()
        self._handed_over = asyncio.Event()
        self._handed_over.set()
        if self.drain is not None:
            self.call = self._buffered_call(mw)
        self._publish()

    @property
    def in_flight_tasks(self) -> int:
        """Calls started and not yet finished (0 after every unit returns or is cancelled)."""
        return len(self._tasks)

    async def apply(self, unit: Unit, stop: StopFlag) -> None:
        """Run the stage over the unit's live records; results and failures land in the
        unit in source order. Cancelling this coroutine cancels and awaits every call it
        started, so no task outlives it."""
        values = unit.values
        assert values is not None
        c = self.ctx.metrics
        started: list[tuple[int, asyncio.Task[_Outcome]]] = []
        try:
            for i, value in enumerate(values):
                if value is GONE:
                    continue
                if stop.requested and stop.should_abandon():
                    unit.abandoned = True
                    break
                lim = self.limiter
                if self.drain is not None and lim.in_flight >= lim.limit:
                    await self.drain_if_stalled()
                await self.limiter.acquire()
                c["in"] += 1
                task = asyncio.create_task(self._one(value))
                if self.drain is not None:
                    self._owing.add(task)
                    self._handed_over.clear()
                self._tasks.add(task)
                task.add_done_callback(self._done)
                started.append((i, task))
            if unit.abandoned:
                await _cancel_all([t for _, t in started])
                return
            if started:
                lim = self.limiter
                if self.drain is not None and (self.input_ended or lim.in_flight >= lim.limit):
                    await self.drain_if_stalled()
                await asyncio.wait([t for _, t in started])
        except BaseException:
            await _cancel_all([t for _, t in started])
            raise
        finally:
            self._publish()
        for i, task in started:
            out = task.result()
            if out.error is not None:
                values[i] = GONE
                c["errored"] += 1
                unit.errored += 1
                src = unit.source_rows[i] if unit.source_rows is not None else None
                unit.failures.append(Failure(
                    DLQStage.MIDDLEWARE, self.name, out.error, src,
                    attempt=out.attempt, max_attempts=self.retry.attempts))
            elif out.value is None:
                values[i] = GONE
                unit.dropped += 1
                c["dropped"] += 1
            else:
                values[i] = out.value
                c["out"] += 1

    def _buffered_call(self, mw: Middleware) -> Any:
        """``submit`` split in two: hand the record over (counted, so a drain waits for
        it), then await the handle it gave back for the record's result."""
        submit = mw.submit  # type: ignore[attr-defined]  # drain_pending implies 0.3.0's submit spelling

        async def call(record: Any, ctx: MiddlewareContext) -> Any:
            try:
                handle = submit(record, ctx)
                if inspect.iscoroutine(handle):
                    handle = await handle
            finally:
                task = asyncio.current_task()
                if task is not None:
                    self._handed(task)  # a retry finds it handed over already
            if inspect.isawaitable(handle):
                return await handle
            return handle

        return call

    async def end_of_input(self) -> None:
        """No unit will follow those already dispatched: drain what the middleware holds
        now, and at the end of every unit still to reach this stage."""
        self.input_ended = True
        if self.drain is not None:
            await self.drain_if_stalled()

    async def drain_if_stalled(self) -> None:
        """Once every started call has handed its record over, ask the middleware to
        drain what it buffers. A failing drain is raised: the records it held are not
        handled, so the run stops without checkpointing them."""
        await asyncio.sleep(0)  # calls just created take their first step (into submit)
        await self._handed_over.wait()
        await asyncio.sleep(0)  # calls whose result is already there finish first
        if not self._tasks or all(t.done() for t in self._tasks):
            return  # nothing in flight waits on the middleware
        self.drains += 1
        out = self.drain(self.ctx)
        if inspect.isawaitable(out):
            await out

    async def _one(self, value: Any) -> _Outcome:
        """Call the middleware on one record, with retries; never raises an Exception."""
        policy = self.retry
        begun = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            t0 = time.perf_counter()
            try:
                if policy.deadline_s is None:
                    out = await _call(self.call, value, self.ctx)
                else:
                    left = policy.deadline_s - (time.monotonic() - begun)
                    async with asyncio.timeout(max(left, 0.0)):
                        out = await _call(self.call, value, self.ctx)
            except Exception as exc:
                self._observe(time.perf_counter() - t0, failed=True)
                if attempt < policy.attempts and policy.is_transient(exc):
                    wait = policy.delay(attempt, random.random())
                    if (policy.deadline_s is None
                            or time.monotonic() - begun + wait < policy.deadline_s):
                        self.retries += 1
                        await asyncio.sleep(wait)
                        continue
                exc.add_note(f"agora: middleware {self.name!r} gave up on the record "
                             f"after attempt {attempt} of {policy.attempts}")
                return _Outcome(None, exc, attempt)
            self._observe(time.perf_counter() - t0, failed=False)
            return _Outcome(out, None, attempt)

    def _done(self, task: asyncio.Task[_Outcome]) -> None:
        # Released here, not in the coroutine: a task cancelled before its first step
        # never runs its body, and its slot must come back all the same.
        self._tasks.discard(task)
        self._handed(task)
        self.limiter.release()

    def _handed(self, task: asyncio.Task[_Outcome]) -> None:
        self._owing.discard(task)
        if not self._owing:
            self._handed_over.set()

    def _observe(self, latency: float, *, failed: bool) -> None:
        self._latencies.append(latency)
        bisect.insort(self._sorted, latency)
        if len(self._latencies) > LATENCY_SAMPLES:
            old = self._latencies.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        bp = self.backpressure
        if bp is None:
            return
        self._window_n += 1
        self._window_errors += failed
        self._window_latency += latency
        if self._window_n < bp.window:
            return
        mean = self._window_latency / self._window_n
        error_rate = self._window_errors / self._window_n
        self._window_n = self._window_errors = 0
        self._window_latency = 0.0
        lim = self.limiter
        if mean > bp.target_latency_s or error_rate > bp.max_error_rate:
            new = max(bp.min_limit, lim.limit // 2)
        else:
            new = min(self.concurrency, lim.limit + 1)
        if new != lim.limit:
            lim.limit = new
            self.moves += 1
            lim.wake()

    def percentiles_ms(self) -> tuple[float, float, float]:
        """p50, p95, p99 of recent call latencies, in milliseconds (0 before any call)."""
        data = self._sorted
        if not data:
            return (0.0, 0.0, 0.0)

        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1000.0, 3)

        return (pick(0.50), pick(0.95), pick(0.99))

    def _publish(self) -> None:
        """Mirror the lane's figures into the stage's counters (``by_middleware[name]``)."""
        p50, p95, p99 = self.percentiles_ms()
        self.ctx.metrics.update({
            "lane": "io", "concurrency": self.concurrency, "limit": self.limiter.limit,
            "peak_in_flight": self.limiter.peak, "retries": self.retries,
            "backpressure_moves": self.moves, "drains": self.drains, "latency_p50_ms": p50,
            "latency_p95_ms": p95, "latency_p99_ms": p99,
        })


async def _call(call: Any, value: Any, ctx: MiddlewareContext) -> Any:
    out = call(value, ctx)
    if inspect.isawaitable(out):
        out = await out
    return out


async def _cancel_all(tasks: list[asyncio.Task[_Outcome]]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
