"""Run shutdown: a stop outranks a failing sink close; tasks handed back by `submit` are awaited and cancelled."""

from __future__ import annotations

import asyncio

import pytest

from agora import MapMiddleware, MemorySink, Middleware, Pipeline
from tests.runtime.doubles import FlakySink, RecordingSource

ROWS = [{"id": i} for i in range(4)]


def test_cancellation_survives_a_failing_sink_close() -> None:
    log: list[str] = []
    entered = asyncio.Event()

    class Stuck(MapMiddleware):
        async def process(self, record, ctx):  # type: ignore[no-untyped-def]
            entered.set()
            await asyncio.Event().wait()  # never set: only cancellation ends the run
            return record

    bound = (Pipeline(RecordingSource(ROWS, log=log)).pipe(Stuck(lambda r: r))
             .build(FlakySink(log=log, fail_close=True)))
    caught: list[BaseException] = []

    async def main() -> None:
        task = asyncio.create_task(bound.run())
        await asyncio.wait_for(entered.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await task
        caught.append(info.value)

    asyncio.run(main())
    # The close was attempted and its failure is kept as the cause, not lost.
    assert "flaky.close" in log and "source.close" in log
    cause = caught[0].__cause__
    assert isinstance(cause, Exception) and "close" in str(cause)


def test_a_failing_close_still_surfaces_when_nothing_stopped_the_run() -> None:
    bound = Pipeline(RecordingSource(ROWS)).build(FlakySink(fail_close=True))
    with pytest.raises(Exception) as info:
        asyncio.run(bound.run())
    assert not isinstance(info.value, asyncio.CancelledError)
    assert "close" in str(info.value)


class _TaskSubmitter(Middleware):
    """The older I/O-lane spelling whose ``submit`` hands back a task it started."""

    name = "task_submitter"
    min_concurrency = 4

    def __init__(self, block: bool) -> None:
        self.block = block
        self.started = 0
        self.all_started = asyncio.Event()
        self.cancelled: list[int] = []

    async def process(self, record, ctx):  # type: ignore[no-untyped-def]
        return record

    async def submit(self, record, ctx):  # type: ignore[no-untyped-def]
        self.started += 1
        if self.started >= 4:
            self.all_started.set()

        async def resolve() -> dict[str, int]:
            if not self.block:
                await asyncio.sleep(0)
                return {"id": record["id"] * 10}
            try:
                await asyncio.Future()
            except asyncio.CancelledError:
                self.cancelled.append(record["id"])
                raise
            return record

        return asyncio.create_task(resolve())


def test_a_task_handed_back_by_submit_is_awaited_for_the_record_s_result() -> None:
    sink = MemorySink()
    asyncio.run(Pipeline(RecordingSource(ROWS)).pipe(_TaskSubmitter(block=False))
                .build(sink).run())
    assert sink.records == [{"id": i * 10} for i in range(4)]


def test_cancelling_the_run_cancels_the_tasks_submit_handed_back() -> None:
    mw = _TaskSubmitter(block=True)
    bound = Pipeline(RecordingSource(ROWS)).pipe(mw).build(MemorySink())

    async def main() -> None:
        task = asyncio.create_task(bound.run())
        await asyncio.wait_for(mw.all_started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(mw.cancelled) == [0, 1, 2, 3]
