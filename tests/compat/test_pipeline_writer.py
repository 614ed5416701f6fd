"""A duck-typed sink with an async ``write_batch`` receives the row lane's groups of
``batch_size`` records (0.3.0's writer batch path), and ``summary.runtime`` reports the
hand-offs as ``writer_flush_*``."""

from __future__ import annotations

import asyncio
from typing import Any

from agora import DeliveryConfig, IterableSource, MemorySink, Pipeline


class BatchOnlySink:
    """Duck-typed sink that takes groups; a single-record ``write`` is counted (it should
    not be used once ``write_batch`` exists). ``reject`` names records whose group raises."""

    sink_name = "batches"

    def __init__(self, reject: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.single_writes = 0
        self.reject = reject

    async def open(self) -> None:
        pass

    async def write(self, record: int) -> None:
        self.single_writes += 1

    async def write_batch(self, records: list[int]) -> None:
        if self.reject & set(records):
            raise ValueError(f"batch {records} holds a rejected record")
        self.batches.append(list(records))

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


def test_groups_of_batch_size_reach_write_batch_with_the_tail_last() -> None:
    sink = BatchOnlySink()
    summary = Pipeline(IterableSource(list(range(7)))).build(
        sink, delivery=DeliveryConfig(batch_size=3)).run_sync()
    assert sink.batches == [[0, 1, 2], [3, 4, 5], [6]] and sink.single_writes == 0
    assert summary.records_written == 7
    runtime = summary.runtime
    assert (runtime.writer_flush_count, runtime.writer_flush_max_batch_size) == (3, 3)
    assert runtime.writer_flush_time_ms >= 0.0
    assert summary.writer.flushes == 3


def test_a_partial_group_goes_out_when_the_source_is_slow() -> None:
    async def slow() -> Any:
        for value in (1, 2):
            yield value
            await asyncio.sleep(0.05)

    class SlowSource(IterableSource):
        def __init__(self) -> None:
            super().__init__([], name="slow")

        async def stream(self) -> Any:  # type: ignore[override]
            async for value in slow():
                yield value

    sink = BatchOnlySink()
    summary = Pipeline(SlowSource()).build(
        sink, delivery=DeliveryConfig(batch_size=100, batch_flush_interval_ms=10)).run_sync()
    assert sink.batches == [[1], [2]] and summary.records_written == 2


def test_a_raising_write_batch_dead_letters_its_whole_group_and_nothing_else() -> None:
    dlq = MemorySink(name="dlq")
    sink = BatchOnlySink(reject=frozenset({4}))
    summary = Pipeline(IterableSource(list(range(6)))).build(
        sink, delivery=DeliveryConfig(batch_size=3, dlq=dlq)).run_sync()
    assert sink.batches == [[0, 1, 2]]
    assert sorted(rec.record for rec in dlq.records) == [3, 4, 5]
    assert all(rec.stage == "sink_write" and rec.sink == "batches" for rec in dlq.records)
    assert (summary.records_written, summary.records_errored) == (3, 3)


def test_no_write_means_no_writer_flush() -> None:
    runtime = Pipeline(IterableSource([1, 2])).filter(lambda r: False).build(
        MemorySink()).run_sync().runtime
    assert (runtime.writer_flush_count, runtime.writer_flush_max_batch_size) == (0, 0)
