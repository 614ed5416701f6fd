"""Concurrent fan-out writes (``SinkFanOut(sink_concurrency=N)``): sinks really written at
once, results per sink and per record unchanged, and a bad setting named clearly."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agora import DeliveryConfig, Pipeline, SinkFanOut
from agora.sinks import CsvSink, MemorySink
from agora.runtime.writer import writes_in_thread
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore

ROWS = [{"id": i} for i in range(10)]


class MeetingSink(FlakySink):
    """Written in a thread; each write waits until every sink of the batch is writing it,
    so the run only finishes if the fan-out really writes them at once."""

    writes_in_thread = True

    def __init__(self, barrier: threading.Barrier, **kw: Any) -> None:
        super().__init__(**kw)
        self.barrier = barrier
        self.threads: set[str] = set()

    async def write_batch(self, records: Any) -> Any:
        self.threads.add(threading.current_thread().name)
        self.barrier.wait(timeout=5)  # BrokenBarrierError if the writes ran one by one
        return await super().write_batch(records)


def _run(sinks: list[Any], concurrency: int, **delivery: Any) -> Any:
    store = delivery.pop("checkpoint", RecordingStore())
    bound = Pipeline(RecordingSource(ROWS), id="t").fan_out(
        SinkFanOut(sinks, sink_concurrency=concurrency),
        delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1, batch_size=5, **delivery))
    return bound.run_sync(), store


@pytest.mark.timeout(30)
def test_sinks_of_a_batch_are_written_at_once_in_threads() -> None:
    barrier = threading.Barrier(2)
    a, b = MeetingSink(barrier, name="a"), MeetingSink(barrier, name="b")
    summary, store = _run([a, b], 2)
    assert summary.records_written == 10
    assert a.rows == ROWS and b.rows == ROWS
    assert threading.main_thread().name not in a.threads | b.threads
    assert store.saves[-1] == 10


@pytest.mark.timeout(30)
def test_concurrency_one_writes_one_after_another() -> None:
    barrier = threading.Barrier(2)
    a, b = MeetingSink(barrier, name="a"), MeetingSink(barrier, name="b")
    with pytest.raises(threading.BrokenBarrierError):
        _run([a, b], 1, failure_policy="fail_closed")


@pytest.mark.timeout(30)
def test_per_record_failures_unchanged_under_concurrency() -> None:
    def odd(r: Any) -> bool:
        return r["id"] % 2 == 1

    def everything(r: Any) -> bool:
        return True

    def results(concurrency: int) -> tuple[Any, ...]:
        good, flaky, dead = (FlakySink(name="good"), FlakySink(name="flaky", fail=odd),
                             FlakySink(name="dead", fail=everything))
        flaky.writes_in_thread = True  # one in a thread, the others on the loop
        summary, store = _run([good, flaky, dead], concurrency,
                              failure_policy="log_and_continue")
        return (summary.records_written, summary.records_errored, good.rows, flaky.rows,
                dead.rows, store.saves)

    assert results(3) == results(1)
    assert results(3)[0] == 10


def test_all_sinks_failing_a_record_errors_it_under_concurrency() -> None:
    a = FlakySink(name="a", fail=lambda r: r["id"] == 3)
    b = FlakySink(name="b", fail=lambda r: r["id"] == 3)
    a.writes_in_thread = b.writes_in_thread = True
    summary, _ = _run([a, b], 2, failure_policy="log_and_continue")
    assert summary.records_written == 9 and summary.records_errored == 1


@pytest.mark.parametrize("bad", [0, -2, True, 1.5, "2"])
def test_bad_sink_concurrency_is_named(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"SinkFanOut sink_concurrency must be an int >= 1"):
        SinkFanOut([MemorySink(name="m")], sink_concurrency=bad)


def test_which_sinks_are_written_in_threads(tmp_path: Path) -> None:
    assert writes_in_thread(CsvSink(tmp_path / "x.csv", name="c"))
    assert not writes_in_thread(MemorySink(name="m"))  # not listed, no opt-in
