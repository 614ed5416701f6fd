"""MemorySink: collects every plane, copies caller dicts, enforces its lifecycle."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.records import DLQRecord
from agora.sinks.memory import MemorySink


def test_declares_all_three_planes_natively() -> None:
    spec = MemorySink().data_plane_spec()
    assert spec.native_planes == tuple(DataPlane)
    assert spec.selected_plane_for(DataPlane.ARROW_BATCHES) is DataPlane.ARROW_BATCHES
    assert spec.sink_name == "memory"


def test_collects_rows_batches_and_arrow_in_arrival_order() -> None:
    sink = MemorySink(name="m")
    batch = pa.record_batch({"x": [3, 4]})

    async def main() -> None:
        await sink.open()
        await sink.write({"x": 1})
        assert await sink.write_batch([{"x": 2}]) is None
        assert await sink.write_arrow_batch(batch) is None
        await sink.close()

    asyncio.run(main())
    assert sink.records == [{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}]
    assert sink.batches == [[{"x": 2}]]
    assert sink.arrow_batches == [batch]
    assert (sink.write_calls, sink.batch_calls, sink.arrow_batch_calls) == (1, 1, 1)
    assert sink.flushed and sink.closed and sink.flush_calls == 1


def test_caller_dicts_and_lists_are_copied() -> None:
    sink = MemorySink()
    row = {"a": 1}
    rows = [{"b": 2}]

    async def main() -> None:
        await sink.open()
        await sink.write(row)
        await sink.write_batch(rows)

    asyncio.run(main())
    row["a"] = 99
    rows[0]["b"] = 99
    rows.append({"c": 3})
    assert sink.records == [{"a": 1}, {"b": 2}]
    assert sink.batches == [[{"b": 2}]]


def test_dlq_records_are_stored_as_is() -> None:
    sink = MemorySink(name="dlq")
    record = DLQRecord(pipeline_id="p", run_id="r", stage="sink_write", error_type="E",
                       error_message="boom", source="s", checkpoint=1, record={"x": 1})

    async def main() -> None:
        await sink.open()
        await sink.write(record)
        await sink.flush()

    asyncio.run(main())
    assert sink.records == [record] and sink.records[0] is record


def test_flushed_tracks_unflushed_writes() -> None:
    sink = MemorySink()

    async def main() -> None:
        await sink.open()
        await sink.flush()
        assert sink.flushed
        await sink.write({"x": 1})
        assert not sink.flushed
        await sink.close()

    asyncio.run(main())
    assert sink.flushed


@pytest.mark.parametrize("op", ["write", "write_batch", "write_arrow_batch", "flush"])
def test_use_before_open_and_after_close_names_the_sink(op: str) -> None:
    sink = MemorySink(name="collector")
    args = {"write": ({"x": 1},), "write_batch": ([{"x": 1}],),
            "write_arrow_batch": (pa.record_batch({"x": [1]}),), "flush": ()}[op]

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'collector' before open"):
            await getattr(sink, op)(*args)
        await sink.open()
        await sink.close()
        with pytest.raises(LifecycleError, match="closed sink 'collector'"):
            await getattr(sink, op)(*args)

    asyncio.run(main())
    assert sink.records == []


def test_close_is_idempotent_and_allowed_before_open() -> None:
    sink = MemorySink()

    async def main() -> None:
        await sink.close()
        await sink.close()

    asyncio.run(main())
    assert sink.closed and sink.flush_calls == 0 and not sink.opened


def test_reopen_after_close_continues_collecting() -> None:
    sink = MemorySink()

    async def main() -> None:
        await sink.open()
        await sink.write({"run": 1})
        await sink.close()
        await sink.open()
        await sink.write({"run": 2})
        await sink.close()

    asyncio.run(main())
    assert sink.records == [{"run": 1}, {"run": 2}]


def test_arrow_batch_must_be_a_record_batch() -> None:
    sink = MemorySink(name="m")

    async def main() -> None:
        await sink.open()
        with pytest.raises(TypeError, match="'m'.*RecordBatch"):
            await sink.write_arrow_batch([{"x": 1}])

    asyncio.run(main())
    assert sink.records == []


def test_sliced_and_empty_arrow_batches() -> None:
    sink = MemorySink()
    parent = pa.record_batch({"x": [0, 1, 2, 3]})

    async def main() -> None:
        await sink.open()
        await sink.write_arrow_batch(parent.slice(2, 2))
        await sink.write_arrow_batch(parent.slice(0, 0))

    asyncio.run(main())
    assert sink.records == [{"x": 2}, {"x": 3}]
    assert [b.num_rows for b in sink.arrow_batches] == [2, 0]
