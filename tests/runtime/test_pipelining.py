"""The engine's in-flight window: units overlap in process stages, commits stay in source
order, and max_buffer_size bounds what is held. Uses an in-process stand-in for a
process-isolated middleware (real worker pools are covered in tests/process and
preservation/)."""

from __future__ import annotations

import asyncio

from agora import BatchMiddleware, DataPlane, DeliveryConfig, MapMiddleware, Pipeline
from tests.runtime.doubles import FlakySink, RecordingSource


class OverlapProbe(BatchMiddleware):
    """Pretends to be process-isolated; later batches finish first."""

    process_isolated = True

    def __init__(self, window: int) -> None:
        self.name = "probe"
        self.max_in_flight_batches = window
        self.running = 0
        self.peak = 0
        self.finished: list[int] = []

    async def submit(self, batch_index: int, records):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.02 * (4 - batch_index % 4))
        self.running -= 1
        self.finished.append(batch_index)
        return [{**r, "seen": True} for r in records]

    def metrics(self) -> dict[str, int]:
        return {"peak_in_flight": self.peak}


BATCHES = [[{"id": b * 3 + i} for i in range(3)] for b in range(12)]


def run(window: int, **delivery):
    probe = OverlapProbe(window)
    order: list[int] = []
    sink = FlakySink()
    s = (Pipeline(RecordingSource(BATCHES, plane=DataPlane.PYTHON_BATCHES))
         .pipe(probe, MapMiddleware(lambda r: order.append(r["id"]) or r))
         .build(sink, delivery=DeliveryConfig(**delivery)).run_sync())
    return probe, order, sink, s


def test_units_overlap_up_to_the_window_and_commit_in_source_order():
    probe, order, sink, s = run(4)
    assert probe.peak == 4
    assert probe.finished[:4] != sorted(probe.finished[:4])  # completion really was out of order
    assert [r["id"] for r in sink.rows] == list(range(36)) == order  # suffix stage in order too
    assert s.records_written == 36


def test_max_buffer_size_bounds_what_is_held():
    probe, _, sink, _ = run(4, max_buffer_size=6)
    assert 1 < probe.peak <= 3  # at most max_buffer_size records plus one unit
    assert [r["id"] for r in sink.rows] == list(range(36))


def test_window_of_one_runs_one_unit_at_a_time():
    probe, _, _, _ = run(1)
    assert probe.peak == 1
