"""Per-record delivery callbacks (``delivery_success_callback()``): one runs for every
record that was written or dead-lettered, never for a record that failed and that no DLQ
captured — and 0.3.0 subclasses of ``IterableSource`` that read ``self._records`` work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agora import (
    BaseSink,
    BaseSource,
    DeliveryConfig,
    FailurePolicy,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
    WriteResult,
)
from agora.planes import DataPlane, SourceDataPlaneSpec


class HookedRows(IterableSource):
    """0.3.0's way: a subclass iterating ``self._records`` and handing out, right after
    each record, a callback that notes it in ``acked``."""

    def __init__(self, records: list[Any]) -> None:
        super().__init__(records)
        self.acked: list[Any] = []
        self._current: Any = None

    def delivery_success_callback(self) -> Callable[[], Any] | None:
        current = self._current

        async def ack() -> None:
            self.acked.append(current)

        return ack

    async def stream(self) -> AsyncIterator[Any]:
        for record in self._records:
            self._current = record
            yield record


class RejectingSink(BaseSink):
    """Keeps rows; rejects those with ``rejects(row)`` true."""

    sink_name = "rejecting"

    def __init__(self, rejects: Callable[[Any], bool]) -> None:
        self.rejects = rejects
        self.rows: list[Any] = []

    def sink_capabilities(self) -> Any:
        from agora import SinkCapabilities
        planes = (DataPlane.PYTHON_ROWS, DataPlane.PYTHON_BATCHES)
        return SinkCapabilities(accepted_data_planes=planes, native_data_planes=planes)

    async def write(self, record: Any) -> None:
        if self.rejects(record):
            raise ValueError(f"rejected {record['id']}")
        self.rows.append(record)

    async def write_batch(self, records: list[Any]) -> list[WriteResult]:
        results = []
        for r in records:
            try:
                await self.write(r)
            except ValueError as exc:
                results.append(WriteResult.failed(exc))
            else:
                results.append(WriteResult.ok())
        return results


class BrokenDLQ(MemorySink):
    async def write_batch(self, records: list[Any]) -> Any:
        raise OSError("dlq is down")


def rows(n: int) -> list[dict[str, int]]:
    return [{"id": i} for i in range(n)]


def ids(records: list[Any]) -> list[int]:
    return [r["id"] for r in records]


def test_a_subclass_reading_records_acks_every_written_record() -> None:
    source = HookedRows(rows(3))
    sink = MemorySink()
    summary = Pipeline(source).build(sink).run_sync()
    assert summary.records_written == 3 and ids(source.acked) == [0, 1, 2]
    assert source._records == rows(3)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_uncaptured_failures_are_not_acked_the_others_are(batch_size: int) -> None:
    source = HookedRows(rows(6))
    sink = RejectingSink(lambda r: r["id"] in (1, 4))
    summary = Pipeline(source).build(sink, delivery=DeliveryConfig(
        batch_size=batch_size, failure_policy=FailurePolicy.LOG_AND_CONTINUE)).run_sync()
    assert (summary.records_written, summary.records_errored) == (4, 2)
    assert ids(source.acked) == [0, 2, 3, 5]


def test_an_uncaptured_middleware_failure_is_not_acked() -> None:
    def boom(r: dict[str, int]) -> dict[str, int]:
        if r["id"] == 2:
            raise ValueError("bad record")
        return r

    source = HookedRows(rows(4))
    Pipeline(source).pipe(MapMiddleware(boom)).build(MemorySink(), delivery=DeliveryConfig(
        failure_policy=FailurePolicy.LOG_AND_CONTINUE)).run_sync()
    assert ids(source.acked) == [0, 1, 3]


def test_dead_lettered_records_are_acked() -> None:
    source = HookedRows(rows(3))
    dlq = MemorySink(name="dlq")
    Pipeline(source).build(RejectingSink(lambda r: True),
                           delivery=DeliveryConfig(dlq=dlq)).run_sync()
    assert len(dlq.records) == 3 and ids(source.acked) == [0, 1, 2]


def test_records_a_failing_dlq_did_not_capture_are_not_acked() -> None:
    source = HookedRows(rows(3))
    Pipeline(source).build(RejectingSink(lambda r: r["id"] == 1), delivery=DeliveryConfig(
        dlq=BrokenDLQ(name="dlq"), failure_policy=FailurePolicy.LOG_AND_CONTINUE,
    )).run_sync()
    assert ids(source.acked) == [0, 2]


def test_equal_records_that_cannot_be_told_apart_are_all_withheld() -> None:
    same = {"id": 7}
    source = HookedRows([same, {"id": 8}, same])
    seen: list[Any] = []

    def second_same(r: Any) -> bool:
        seen.append(r)
        return r is same and seen.count(same) == 2

    sink = RejectingSink(second_same)
    Pipeline(source).build(sink, delivery=DeliveryConfig(
        batch_size=3, failure_policy=FailurePolicy.LOG_AND_CONTINUE)).run_sync()
    assert len(sink.rows) == 2  # the second `same` was rejected, the first written
    assert ids(source.acked) == [8]  # unsure which of the two failed: neither is acked


def test_a_batch_with_an_uncaptured_failure_is_not_acked() -> None:
    class HookedBatches(BaseSource):
        source_name = "batches"

        def __init__(self) -> None:
            self.acked: list[int] = []
            self.current = -1

        def data_plane_spec(self) -> SourceDataPlaneSpec:
            return SourceDataPlaneSpec.for_plane(self.source_name, DataPlane.PYTHON_BATCHES)

        def delivery_success_callback(self) -> Callable[[], Any]:
            batch = self.current

            async def ack() -> None:
                self.acked.append(batch)

            return ack

        async def stream_batches(self) -> AsyncIterator[Any]:
            for b in range(3):
                self.current = b
                yield [{"id": 2 * b}, {"id": 2 * b + 1}]

        async def stream(self) -> AsyncIterator[Any]:  # pragma: no cover - batch lane
            raise AssertionError("the batch lane reads stream_batches()")
            yield

    source = HookedBatches()
    Pipeline(source).build(RejectingSink(lambda r: r["id"] == 3), delivery=DeliveryConfig(
        failure_policy=FailurePolicy.LOG_AND_CONTINUE)).run_sync()
    assert source.acked == [0, 2]  # batch 1 held the record nobody captured
