"""FlakySink fails exactly the records it is told to, the way it is told to."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
import pytest

from agora import DataPlane, DeliveryConfig, IterableSource, MemorySink, Pipeline
from agora.testing import FlakySink, InjectedFault


def rows(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def test_rejected_records_get_failed_results_and_the_rest_is_written():
    events: list[str] = []
    sink = FlakySink(fail_on={2}, on_event=events.append)

    async def main() -> list[Any]:
        await sink.open()
        results = await sink.write_batch(rows(1, 2, 3))
        await sink.flush()
        await sink.close()
        return results

    results = asyncio.run(main())
    assert [r.written for r in results] == [True, False, True]
    assert isinstance(results[1].error, InjectedFault)
    assert "sink 'flaky(memory)' rejects record id=2" in str(results[1].error)
    assert sink.inner.records == rows(1, 3)
    assert events == ["sink_write", "sink_flush"]


def test_whole_call_raises_and_writes_nothing():
    sink = FlakySink(fail_on={2}, whole_call=True, name="strict")

    async def main() -> None:
        await sink.open()
        with pytest.raises(InjectedFault, match="'strict' rejects record id=2"):
            await sink.write_batch(rows(1, 2, 3))
        with pytest.raises(InjectedFault):
            await sink.write({"id": 2})
        await sink.write({"id": 4})
        await sink.close()

    asyncio.run(main())
    assert sink.inner.records == rows(4)


def test_arrow_batches_are_filtered_and_stay_arrow():
    sink = FlakySink(fail_on={1})
    batch = pa.record_batch({"id": pa.array([0, 1, 2], pa.int64()), "v": pa.array([5, 6, 7])})

    async def main() -> list[Any]:
        await sink.open()
        out = await sink.write_arrow_batch(batch)
        await sink.close()
        return out

    results = asyncio.run(main())
    assert [r.written for r in results] == [True, False, True]
    assert sink.inner.arrow_batch_calls == 1
    assert sink.inner.records == [{"id": 0, "v": 5}, {"id": 2, "v": 7}]


def test_it_declares_the_planes_of_the_sink_it_wraps():
    spec = FlakySink(MemorySink()).data_plane_spec()
    assert spec.accepted_planes == MemorySink().data_plane_spec().accepted_planes
    assert DataPlane.PYTHON_ROWS in spec.accepted_planes


def test_in_a_pipeline_nothing_is_lost_rejected_records_reach_the_dlq():
    sink = FlakySink(fail_on={3, 7})
    dlq = MemorySink("dlq")
    summary = (Pipeline(IterableSource(rows(*range(10))))
               .build(sink, delivery=DeliveryConfig(dlq=dlq)).run_sync())
    assert [r["id"] for r in sink.inner.records] == [0, 1, 2, 4, 5, 6, 8, 9]
    assert [d.record["id"] for d in dlq.records] == [3, 7]
    assert summary.records_written == 8
