"""Middleware lifecycle as 0.3.0 programs see it: a failed ``on_start`` is rolled back
with the middleware's own ``on_stop`` first; a failing ``on_stop`` is logged and reported
in the summary while every other stop hook, the sink close and the run's result stand."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agora import (
    CheckpointError,
    DeliveryConfig,
    InMemoryCheckpointStore,
    IterableSource,
    MemorySink,
    Middleware,
    MiddlewareContext,
    Pipeline,
)
from tests.runtime.doubles import FlakySink


class LoggedStage(Middleware[Any, Any]):
    """Passes records through and logs its hooks; ``fail_start`` / ``fail_stop`` make the
    hook raise after logging."""

    def __init__(self, name: str, log: list[str], *, fail_start: bool = False,
                 fail_stop: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_start = fail_start
        self.fail_stop = fail_stop

    async def on_start(self, ctx: MiddlewareContext) -> None:
        self.log.append(f"{self.name}.start")
        if self.fail_start:
            raise RuntimeError(f"{self.name} start broke")

    async def on_stop(self, ctx: MiddlewareContext) -> None:
        self.log.append(f"{self.name}.stop")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} stop broke")

    async def process(self, record: Any, ctx: MiddlewareContext) -> Any:
        return record


def test_a_failed_start_stops_that_middleware_then_the_started_ones_in_reverse() -> None:
    log: list[str] = []
    sink = FlakySink(log=log)
    bound = (Pipeline(IterableSource([1, 2]))
             .pipe(LoggedStage("a", log), LoggedStage("b", log, fail_start=True),
                   LoggedStage("c", log))
             .build(sink))
    with pytest.raises(RuntimeError, match="b start broke"):
        bound.run_sync()
    assert log == ["a.start", "b.start", "b.stop", "a.stop"]  # c never started; no sink opened


def test_a_failing_stop_hook_is_logged_and_the_run_returns_its_summary(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    sink = FlakySink(log=log)
    bound = (Pipeline(IterableSource([1, 2, 3]))
             .pipe(LoggedStage("first", log), LoggedStage("second", log, fail_stop=True))
             .build(sink))
    with caplog.at_level(logging.ERROR, logger="agora.engine"):
        summary = bound.run_sync()
    assert sink.rows == [1, 2, 3] and summary.records_written == 3
    assert summary.outcome == "completed" and summary.error is None
    # both hooks ran (reverse order) and the sink was still closed after them
    assert [e for e in log if e.endswith((".stop", ".close"))] == [
        "second.stop", "first.stop", "flaky.close"]
    failure = {"type": "RuntimeError", "message": "second stop broke"}
    assert summary.middleware_stop_failures == {"second": failure}
    assert summary.runtime["middleware_stop_failures"] == {"second": failure}
    assert summary.to_dict()["runtime"]["middleware_stop_failures"] == {"second": failure}
    assert "middleware second on_stop failed: RuntimeError: second stop broke" in str(summary)
    assert any("'second': on_stop failed" in r.getMessage() for r in caplog.records)


def test_a_failing_stop_hook_never_undoes_the_checkpoint() -> None:
    store = InMemoryCheckpointStore()
    log: list[str] = []
    bound = (Pipeline(IterableSource([1, 2, 3]), id="stops")
             .pipe(LoggedStage("m", log, fail_stop=True))
             .build(MemorySink(), delivery=DeliveryConfig(checkpoint=store)))
    first = bound.run_sync()
    assert first.last_checkpoint_value == 3 and first.middleware_stop_failures
    again = bound.run_sync()
    assert again.records_consumed == 0  # resumed past everything the first run wrote


def test_the_run_error_outranks_a_failing_stop_hook_which_is_still_reported() -> None:
    log: list[str] = []
    bound = (Pipeline(IterableSource([1, 2]))
             .pipe(LoggedStage("m", log, fail_stop=True))
             .build(FlakySink(log=log, fail=lambda r: r == 2)))
    with pytest.raises(ValueError, match="rejects 2"):
        bound.run_sync()
    assert "flaky.close" in log
    assert bound.last_summary is not None
    assert bound.last_summary.outcome == "failed"
    assert bound.last_summary.middleware_stop_failures["m"]["message"] == "m stop broke"


def test_a_failing_sink_close_is_still_the_run_error() -> None:
    bound = Pipeline(IterableSource([1])).build(FlakySink(fail_close=True))
    with pytest.raises(OSError, match="close failed"):
        bound.run_sync()  # a close may flush output: its failure is never only logged


def test_a_cancel_inside_a_stop_hook_still_runs_the_rest_of_shutdown() -> None:
    log: list[str] = []

    class CancelledStop(LoggedStage):
        async def on_stop(self, ctx: MiddlewareContext) -> None:
            self.log.append(f"{self.name}.stop")
            raise asyncio.CancelledError

    bound = (Pipeline(IterableSource([1]))
             .pipe(LoggedStage("outer", log), CancelledStop("inner", log))
             .build(FlakySink(log=log)))
    with pytest.raises(asyncio.CancelledError):
        bound.run_sync()
    assert [e for e in log if e.endswith((".stop", ".close"))] == [
        "inner.stop", "outer.stop", "flaky.close"]
    assert bound.last_summary is not None and bound.last_summary.middleware_stop_failures == {}


def test_the_foreign_checkpoint_check_runs_before_any_middleware_starts() -> None:
    store = InMemoryCheckpointStore()
    Pipeline(IterableSource([1], name="a"), id="shared").build(
        MemorySink(), delivery=DeliveryConfig(checkpoint=store)).run_sync()
    log: list[str] = []
    bound = (Pipeline(IterableSource([1], name="b"), id="shared").pipe(LoggedStage("m", log))
             .build(MemorySink(), delivery=DeliveryConfig(checkpoint=store)))
    with pytest.raises(CheckpointError, match="foreign"):
        bound.run_sync()
    assert log == []


def test_a_flush_failing_at_shutdown_is_raised_after_the_close_ran() -> None:
    events: list[str] = []

    class SecondFlushFails:
        """Duck-typed sink: the flush of the final checkpoint works, the one at shutdown
        raises."""

        sink_name = "second_flush"

        async def open(self) -> None:
            events.append("open")

        async def write(self, record: Any) -> None:
            events.append(f"write:{record}")

        async def flush(self) -> None:
            events.append("flush")
            if events.count("flush") == 2:
                raise OSError("disk gone at shutdown")

        async def close(self) -> None:
            events.append("close")

    bound = Pipeline(IterableSource([1])).build(SecondFlushFails())
    with pytest.raises(OSError, match="disk gone at shutdown"):
        bound.run_sync()
    assert events == ["open", "write:1", "flush", "flush", "close"]


def test_a_failed_start_closes_the_opened_sink_without_flushing_it() -> None:
    log: list[str] = []
    bound = Pipeline(IterableSource([1])).build(
        FlakySink(log=log), delivery=DeliveryConfig(dlq=FlakySink(name="dlq", log=log,
                                                                  fail_open=True)))
    with pytest.raises(OSError, match="dlq open failed"):
        bound.run_sync()
    assert log == ["flaky.open", "dlq.open", "flaky.close", "flaky.flush"]  # close's own flush
