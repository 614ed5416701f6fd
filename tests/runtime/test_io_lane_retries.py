"""I/O-lane retries and backpressure: transient errors are retried with backoff, the
attempt count travels with the failure, an exhausted record fails exactly once, and
the adaptive limit moves down under latency or errors and back up when they fall."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import (
    AsyncMiddleware,
    Backpressure,
    DeliveryConfig,
    FailurePolicy,
    MiddlewareContext,
    Pipeline,
    PipelineError,
    RetryPolicy,
)
from agora.runtime.interrupt import StopFlag
from agora.runtime.io_lane import IOLane
from agora.runtime.units import GONE, Unit
from tests.runtime.doubles import FlakySink, RecordingSource
from tests.runtime.test_io_lane import MemoryDLQ, rows


class FlakyLookup(AsyncMiddleware):
    """Raises ``error`` on the first ``fail_times`` calls for each id in ``ids``."""

    concurrency = 4

    def __init__(self, *, ids: set[int], fail_times: int, error: type[Exception] = OSError,
                 retry: RetryPolicy | None = None) -> None:
        self.name = "lookup"
        self.ids = ids
        self.fail_times = fail_times
        self.error = error
        self.calls: dict[int, int] = {}
        if retry is not None:
            self.retry = retry

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        n = self.calls[record["id"]] = self.calls.get(record["id"], 0) + 1
        await asyncio.sleep(0)
        if record["id"] in self.ids and n <= self.fail_times:
            raise self.error(f"lookup of {record['id']} failed (call {n})")
        return record


FAST = dict(backoff_s=0.001, max_backoff_s=0.002)


def lane_over(mw: AsyncMiddleware, n: int) -> tuple[IOLane, Unit]:
    ctx = MiddlewareContext("p", "r", mw.name, 0, {"in": 0, "out": 0, "dropped": 0, "errored": 0})
    data = rows(n)
    return IOLane(mw, ctx, mw.concurrency), Unit(seq=0, checkpoint=n, n_source=n,
                                                 source_rows=data, values=list(data))


@pytest.mark.timeout(20)
def test_transient_errors_are_retried_until_the_call_succeeds():
    mw = FlakyLookup(ids={2, 5}, fail_times=2, retry=RetryPolicy(attempts=3, **FAST))
    sink = FlakySink()
    s = Pipeline(RecordingSource(rows(8))).pipe(mw).build(sink).run_sync()
    assert [r["id"] for r in sink.rows] == list(range(8))
    assert mw.calls[2] == mw.calls[5] == 3 and mw.calls[0] == 1
    assert s.by_middleware["lookup"]["retries"] == 4
    assert s.records_errored == 0


@pytest.mark.timeout(20)
def test_an_exhausted_record_fails_once_with_its_attempt_count():
    mw = FlakyLookup(ids={1}, fail_times=99, retry=RetryPolicy(attempts=3, **FAST))
    lane, unit = lane_over(mw, 4)
    asyncio.run(lane.apply(unit, StopFlag()))
    assert mw.calls[1] == 3
    assert unit.values[1] is GONE and unit.errored == 1
    [failure] = unit.failures
    assert (failure.record, failure.attempt, failure.max_attempts) == ({"id": 1}, 3, 3)
    assert "gave up on the record after attempt 3 of 3" in failure.error.__notes__[-1]
    assert lane.in_flight_tasks == 0 and lane.limiter.in_flight == 0


@pytest.mark.timeout(20)
def test_exhausted_record_reaches_the_dlq_once():
    dlq = MemoryDLQ()
    mw = FlakyLookup(ids={1, 6}, fail_times=99, retry=RetryPolicy(attempts=2, **FAST))
    sink = FlakySink()
    s = (Pipeline(RecordingSource(rows(8))).pipe(mw)
         .build(sink, delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert [d.record for d in dlq.rows] == [{"id": 1}, {"id": 6}]
    assert [r["id"] for r in sink.rows] == [0, 2, 3, 4, 5, 7]
    assert s.records_errored == 2 and s.by_middleware["lookup"]["retries"] == 2


@pytest.mark.timeout(20)
def test_a_non_transient_error_is_not_retried():
    mw = FlakyLookup(ids={0}, fail_times=1, error=ValueError,
                     retry=RetryPolicy(attempts=5, **FAST))
    lane, unit = lane_over(mw, 2)
    asyncio.run(lane.apply(unit, StopFlag()))
    assert mw.calls[0] == 1 and unit.failures[0].attempt == 1
    assert isinstance(unit.failures[0].error, ValueError)


@pytest.mark.timeout(20)
def test_the_deadline_bounds_a_record_s_retries():
    mw = FlakyLookup(ids={0}, fail_times=10_000,
                     retry=RetryPolicy(attempts=1000, backoff_s=0.01, max_backoff_s=0.01,
                                       jitter=0.0, deadline_s=0.1))
    lane, unit = lane_over(mw, 1)
    asyncio.run(lane.apply(unit, StopFlag()))
    assert 2 <= mw.calls[0] <= 11  # about 0.1 s / 0.01 s, never the 1,000 allowed
    assert unit.failures[0].attempt == mw.calls[0]


class Hangs(AsyncMiddleware):
    concurrency = 2
    retry = RetryPolicy(attempts=3, deadline_s=0.05)
    name = "hangs"

    async def process(self, record: Any, ctx: Any) -> Any:
        await asyncio.sleep(30)


@pytest.mark.timeout(20)
def test_the_deadline_cuts_a_call_that_hangs():
    lane, unit = lane_over(Hangs(), 2)
    asyncio.run(lane.apply(unit, StopFlag()))
    assert [type(f.error) for f in unit.failures] == [TimeoutError, TimeoutError]


@pytest.mark.timeout(20)
def test_fail_closed_reraises_the_original_error_after_retries():
    mw = FlakyLookup(ids={3}, fail_times=99, retry=RetryPolicy(attempts=2, **FAST))
    bound = (Pipeline(RecordingSource(rows(6))).pipe(mw)
             .build(FlakySink(), delivery=DeliveryConfig(failure_policy=FailurePolicy.FAIL_CLOSED)))
    with pytest.raises(OSError, match=r"lookup of 3 failed \(call 2\)"):
        bound.run_sync()


def test_backoff_doubles_is_capped_and_jitter_only_shortens_it():
    p = RetryPolicy(attempts=5, backoff_s=0.1, max_backoff_s=0.3, jitter=0.5)
    assert [p.delay(k, 0.0) for k in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    assert p.delay(2, 0.999) == pytest.approx(0.2 * (1 - 0.5 * 0.999))


@pytest.mark.parametrize("kw, what", [
    ({"attempts": 0}, "attempts must be an int >= 1"),
    ({"backoff_s": -1}, "backoff must be >= 0"),
    ({"jitter": 2}, "jitter must be within"),
    ({"deadline_s": 0}, "deadline_s must be > 0"),
])
def test_a_bad_retry_policy_is_refused(kw: dict[str, Any], what: str):
    with pytest.raises(PipelineError, match=what):
        RetryPolicy(**kw)


@pytest.mark.parametrize("kw, what", [
    ({"target_latency_s": 0}, "target_latency_s must be > 0"),
    ({"target_latency_s": 1, "min_limit": 0}, "min_limit must be an int >= 1"),
    ({"target_latency_s": 1, "window": 0}, "window must be an int >= 1"),
    ({"target_latency_s": 1, "max_error_rate": 1.5}, "max_error_rate must be within"),
])
def test_a_bad_backpressure_is_refused(kw: dict[str, Any], what: str):
    with pytest.raises(PipelineError, match=what):
        Backpressure.adaptive(**kw)


class SlowThenFast(AsyncMiddleware):
    """Slow (and failing every other call) for the first ``slow`` records, then fast."""

    concurrency = 8
    backpressure = Backpressure.adaptive(target_latency_s=0.005, window=4)
    name = "adaptive"

    def __init__(self, slow: int) -> None:
        self.slow = slow
        self.running = 0
        self.peaks: list[int] = []

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        self.running += 1
        self.peaks.append(self.running)
        try:
            if record["id"] < self.slow:
                await asyncio.sleep(0.02)
            else:
                await asyncio.sleep(0)
        finally:
            self.running -= 1
        return record


@pytest.mark.timeout(20)
def test_adaptive_backpressure_lowers_the_limit_under_latency_and_raises_it_after():
    mw = SlowThenFast(slow=32)
    sink = FlakySink()
    s = Pipeline(RecordingSource(rows(200))).pipe(mw).build(sink).run_sync()
    m = s.by_middleware["adaptive"]
    assert [r["id"] for r in sink.rows] == list(range(200))
    assert max(mw.peaks[40:80]) < 8  # the limit came down while calls were slow
    assert m["backpressure_moves"] >= 4
    assert m["limit"] == 8  # and went back up once they were fast again


@pytest.mark.timeout(20)
def test_adaptive_backpressure_lowers_the_limit_on_errors():
    class Failing(FlakyLookup):
        backpressure = Backpressure.adaptive(target_latency_s=10.0, window=4,
                                             max_error_rate=0.2)

    mw = Failing(ids=set(range(100)), fail_times=99)
    lane, unit = lane_over(mw, 16)
    asyncio.run(lane.apply(unit, StopFlag()))
    assert lane.limiter.limit == 1 and lane.moves >= 2
    assert unit.errored == 16


def test_latency_percentiles_keep_only_the_latest_samples(monkeypatch: pytest.MonkeyPatch):
    import agora.runtime.io_lane as io_lane

    monkeypatch.setattr(io_lane, "LATENCY_SAMPLES", 100)
    lane, _ = lane_over(FlakyLookup(ids=set(), fail_times=0), 1)
    for ms in range(1, 301):  # 1..300 ms; only 201..300 are kept
        lane._observe(ms / 1000, failed=False)
    assert len(lane._sorted) == len(lane._latencies) == 100
    assert lane.percentiles_ms() == (251.0, 296.0, 300.0)


def dead_letters(mw: AsyncMiddleware, dlq: Any, n: int = 6) -> list[Any]:
    (Pipeline(RecordingSource(rows(n))).pipe(mw)
     .build(FlakySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync())
    return list(dlq.rows)


@pytest.mark.timeout(20)
def test_an_exhausted_record_is_dead_lettered_with_its_attempt_count():
    mw = FlakyLookup(ids={2}, fail_times=99, retry=RetryPolicy(attempts=3, **FAST))
    [rec] = dead_letters(mw, MemoryDLQ())
    # attempt counts from 0: the third (last allowed) call is attempt 2 of 3
    assert (rec.record, rec.stage, rec.middleware) == ({"id": 2}, "middleware", "lookup")
    assert (rec.attempt, rec.max_attempts) == (2, 3)


@pytest.mark.timeout(20)
def test_a_non_transient_failure_is_dead_lettered_as_a_first_attempt():
    mw = FlakyLookup(ids={1}, fail_times=1, error=ValueError,
                     retry=RetryPolicy(attempts=4, **FAST))
    [rec] = dead_letters(mw, MemoryDLQ())
    assert (rec.attempt, rec.max_attempts, rec.error_type) == (0, 4, "ValueError")


@pytest.mark.timeout(20)
def test_a_lane_without_retries_still_says_its_single_attempt():
    mw = FlakyLookup(ids={0}, fail_times=1)  # default policy: one attempt, no retry
    [rec] = dead_letters(mw, MemoryDLQ())
    assert (rec.attempt, rec.max_attempts) == (0, 1)


@pytest.mark.timeout(20)
def test_attempt_counts_survive_the_json_lines_dlq(tmp_path: Any):
    from agora import JsonLinesDLQSink
    from agora.stores import read_dlq

    path = tmp_path / "dlq.jsonl"
    mw = FlakyLookup(ids={1, 4}, fail_times=99, retry=RetryPolicy(attempts=2, **FAST))
    (Pipeline(RecordingSource(rows(6))).pipe(mw)
     .build(FlakySink(), delivery=DeliveryConfig(dlq=JsonLinesDLQSink(path))).run_sync())
    back = list(read_dlq(path))
    assert [(r.record, r.attempt, r.max_attempts) for r in back] == [
        ({"id": 1}, 1, 2), ({"id": 4}, 1, 2)]


@pytest.mark.timeout(20)
def test_failures_outside_the_lane_keep_the_default_attempt_fields():
    from agora import MapMiddleware

    def boom(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 3:
            raise ValueError("no")
        return r

    dlq = MemoryDLQ()
    (Pipeline(RecordingSource(rows(5))).pipe(MapMiddleware(boom))
     .build(FlakySink(), delivery=DeliveryConfig(dlq=dlq)).run_sync())
    [rec] = dlq.rows
    assert (rec.attempt, rec.max_attempts) == (0, None)
