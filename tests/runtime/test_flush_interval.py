"""``batch_flush_interval_ms``: on the row lane a partial group that has waited that long
for a slow source is handed on — its records reach the sinks and the checkpoint while
the source is still stalled — and a bad value is refused when the config is built."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import AsyncMiddleware, DeliveryConfig, MemorySink, Pipeline
from agora.runtime.plan import make_plan
from tests.runtime.doubles import FlakySink, RecordingSource, RecordingStore


class StallingSource(RecordingSource):
    """Emits ``stall_after`` records, then waits until ``release`` is set (or ``patience``
    seconds pass, noted in ``waited_out``) before emitting the rest."""

    def __init__(self, n: int, *, stall_after: int, patience: float = 5.0) -> None:
        super().__init__([{"id": i} for i in range(n)])
        self.stall_after = stall_after
        self.patience = patience
        self.release: asyncio.Event | None = None
        self.waited_out = False
        self.seen_during_stall: list[int] = []

    async def _gen(self):
        self.release = asyncio.Event()
        while self.pos < len(self.units):
            if self.pos == self.stall_after:
                try:
                    await asyncio.wait_for(self.release.wait(), self.patience)
                except TimeoutError:
                    self.waited_out = True
            unit = self.units[self.pos]
            self.pos += 1
            yield unit


class ReleasingStore(RecordingStore):
    """Releases the source once a checkpoint at or past ``at`` is saved."""

    def __init__(self, source: StallingSource, at: int) -> None:
        super().__init__()
        self.source = source
        self.at = at

    def save(self, key: str, checkpoint: Any) -> None:
        super().save(key, checkpoint)
        if checkpoint.value >= self.at and self.source.release is not None:
            self.source.release.set()


def run(source: StallingSource, *, sink: Any = None, mw: tuple[Any, ...] = (),
        **delivery: Any) -> tuple[Any, ReleasingStore]:
    sink = sink if sink is not None else FlakySink()
    store = ReleasingStore(source, source.stall_after)
    (Pipeline(source).pipe(*mw) if mw else Pipeline(source)).build(
        sink, delivery=DeliveryConfig(checkpoint=store, **delivery)).run_sync()
    return sink, store


@pytest.mark.timeout(20)
def test_a_partial_group_reaches_sink_and_checkpoint_while_the_source_stalls():
    source = StallingSource(10, stall_after=3)
    sink, store = run(source, batch_size=50, checkpoint_every=1000, batch_flush_interval_ms=20)
    assert not source.waited_out  # the save of position 3 released the stalled source
    assert store.saves == [3, 10]
    assert [r["id"] for r in sink.rows] == list(range(10))


@pytest.mark.timeout(20)
def test_without_an_interval_the_partial_group_waits_for_the_source():
    source = StallingSource(10, stall_after=3, patience=0.2)
    sink, store = run(source, batch_size=50, checkpoint_every=1000)
    assert source.waited_out  # nothing was handed on while the source was stalled
    assert store.saves == [10]
    assert [r["id"] for r in sink.rows] == list(range(10))


@pytest.mark.timeout(20)
def test_flushing_keeps_source_order_and_full_groups_still_go_whole():
    source = StallingSource(25, stall_after=13)
    sink = MemorySink()
    _, store = run(source, sink=sink, batch_size=5, checkpoint_every=1000,
                   batch_flush_interval_ms=10)
    assert not source.waited_out
    assert [r["id"] for r in sink.records] == list(range(25))
    assert store.saves == [13, 25]  # 0-4, 5-9 whole; 10-12 flushed at the stall


class Echo(AsyncMiddleware):
    concurrency = 4

    async def process(self, record: dict[str, int], ctx: Any) -> Any:
        await asyncio.sleep(0)
        return record


@pytest.mark.timeout(20)
def test_finished_io_lane_work_is_committed_while_the_source_stalls():
    source = StallingSource(12, stall_after=5)
    sink, store = run(source, mw=(Echo(),), checkpoint_every=1000, batch_flush_interval_ms=15)
    assert not source.waited_out
    assert store.saves[0] == 5 and store.saves[-1] == 12
    assert [r["id"] for r in sink.rows] == list(range(12))


@pytest.mark.timeout(20)
def test_a_source_that_fails_while_a_pull_is_pending_still_raises_its_error():
    class Broken(StallingSource):
        async def _gen(self):
            yield {"id": 0}
            await asyncio.sleep(0.05)  # long enough for several flush deadlines
            raise OSError("source read failed after the stall")

    source = Broken(3, stall_after=99)
    with pytest.raises(OSError, match="after the stall"):
        run(source, batch_size=10, batch_flush_interval_ms=5)


@pytest.mark.parametrize("bad, error", [
    (0, ValueError), (-5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    (True, TypeError), ("500", TypeError),
])
def test_a_bad_flush_interval_is_refused_naming_the_field(bad: Any, error: type[Exception]):
    with pytest.raises(error, match="batch_flush_interval_ms"):
        DeliveryConfig(batch_flush_interval_ms=bad)


def test_a_flush_interval_accepts_ints_floats_and_none():
    assert DeliveryConfig(batch_flush_interval_ms=250).batch_flush_interval_ms == 250
    assert DeliveryConfig(batch_flush_interval_ms=0.5).batch_flush_interval_ms == 0.5
    assert DeliveryConfig().batch_flush_interval_ms is None


def test_explain_shows_the_flush_interval_on_the_row_lane():
    source = RecordingSource([{"id": 1}])
    plan = make_plan(pipeline_id="p", source=source, middleware=(), writer=MemorySink(),
                     max_records=None, batch_size=10, batch_flush_interval_ms=250)
    assert plan.explain.batch_flush_interval_ms == 250
    assert plan.explain.to_dict()["batch_flush_interval_ms"] == 250
    assert "a partial group waits at most 250 ms for the source" in str(plan.explain)
    plain = make_plan(pipeline_id="p", source=source, middleware=(), writer=MemorySink(),
                      max_records=None, batch_size=10)
    assert "partial group" not in str(plain.explain)


def test_bound_pipeline_explain_shows_the_configured_flush_interval():
    bound = Pipeline(RecordingSource([{"id": 1}])).build(
        MemorySink(), delivery=DeliveryConfig(batch_size=10, batch_flush_interval_ms=250))
    assert bound.explain().batch_flush_interval_ms == 250
    assert "a partial group waits at most 250 ms for the source" in str(bound.explain())
