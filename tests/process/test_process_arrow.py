"""Arrow lane: columnar round trips through shared memory, slices, growth, bad results."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from agora.errors import ProcessBatchError
from agora.process import ArrowProcessBatchMiddleware
from agora.process.shm import leftover_slot_paths
from tests.process import faults
from tests.process.helpers import gather, run, started

pytestmark = pytest.mark.timeout(60)


def table(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(range(n), pa.int64()),
            "x": pa.array([i * 0.5 for i in range(n)], pa.float64()),
            "s": pa.array([f"cat_{i % 1000:04d}" for i in range(n)]),
            "maybe": pa.array([None if i % 7 == 0 else i for i in range(n)], pa.int32()),
        }
    )


def test_identity_round_trip_returns_an_equal_batch_the_caller_owns(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_identity, max_workers=2)
    batch = table(10_000)

    async def main():
        async with started(mw):
            out = await mw.submit(0, batch)
            assert out.equals(batch)
            again = await mw.submit(1, table(10))  # reuses the same slots
            assert again.equals(table(10))
            assert out.equals(batch)  # the first result did not change under us
        assert out.equals(batch)  # …nor once the slots are gone

    run(main)


def test_sliced_batches_with_a_nonzero_offset_ship_only_their_rows(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=2)
    parent = table(50_000)

    async def main():
        async with started(mw):
            slices = [parent.slice(offset, 1_000) for offset in (1, 777, 49_000)]
            outs = await asyncio.gather(*(mw.submit(i, s) for i, s in enumerate(slices)))
            for piece, out in zip(slices, outs, strict=True):
                assert out.num_rows == 1_000
                assert out.column("id").equals(piece.column("id"))
                assert out.column("s").equals(piece.column("s"))
                assert out.column("maybe").equals(piece.column("maybe"))
                assert out.column("doubled").to_pylist() == [
                    x * 2 for x in piece.column("x").to_pylist()
                ]
            # Only the slice crossed the boundary, not the 50k-row parent buffers.
            assert mw.metrics()["transport_bytes_in"] < parent.nbytes / 4

    run(main)


def test_a_result_larger_than_its_slot_still_arrives_and_the_slot_grows(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_widen_eightfold, max_workers=1)
    batch = table(100_000)  # ~2.5 MB in; ~9 MB out, beyond the 1 MiB first output slot

    async def main():
        async with started(mw):
            for index in range(2):  # inline fallback first, then the grown slot
                out = await mw.submit(index, batch)
                assert out.num_rows == batch.num_rows
                assert out.column("x7").to_pylist()[:3] == [7.0, 7.5, 8.0]
            assert mw.metrics()["transport_bytes_out"] > 2 * 8 * 8 * 100_000

    run(main)


def test_an_empty_batch_goes_through_fn_so_the_schema_is_the_transformed_one(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=1)

    async def main():
        async with started(mw):
            out = await mw.submit(0, table(0))
            assert out.num_rows == 0 and "doubled" in out.schema.names

    run(main)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (faults.arrow_drop_first_row, "fn returned 9 rows for 10 input rows"),
        (faults.arrow_return_table, "fn returned Table; it must return a pyarrow.RecordBatch"),
    ],
)
def test_a_wrong_row_count_or_type_fails_the_batch(no_orphans, fn, expected):
    mw = ArrowProcessBatchMiddleware(fn, max_workers=1, name="cols")

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match=expected) as info:
                await mw.submit(4, table(10))
            assert info.value.batch_index == 4 and "'cols'" in str(info.value)

    run(main)


def test_submit_rejects_a_non_batch():
    mw = ArrowProcessBatchMiddleware(faults.arrow_identity)

    async def main():
        with pytest.raises(TypeError, match="takes a pyarrow.RecordBatch; got Table"):
            await mw.submit(0, pa.Table.from_batches([table(3)]))

    run(main)


def test_a_segfault_on_the_arrow_lane_fails_only_the_poisoned_batch(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_segfault_on_poison, max_workers=2)

    def batch(poison: bool) -> pa.RecordBatch:
        return pa.record_batch({"poison": pa.array([False, poison])})

    async def main():
        async with started(mw):
            results = await gather(*(mw.submit(i, batch(i == 1)) for i in range(3)))
            assert isinstance(results[1], ProcessBatchError)
            assert "SIGSEGV" in str(results[1])
            assert results[0].num_rows == results[2].num_rows == 2

    run(main)


def test_a_timed_out_arrow_batch_leaves_no_slot_behind(no_orphans):
    import os

    mw = ArrowProcessBatchMiddleware(faults.arrow_sleep_as_told, max_workers=1, timeout_s=0.3)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="timed out"):
                await mw.submit(0, pa.record_batch({"sleep": pa.array([30.0])}))
            out = await mw.submit(1, pa.record_batch({"sleep": pa.array([0.0])}))
            assert out.num_rows == 1
            assert len(leftover_slot_paths(os.getpid())) == 2  # only the live worker's
        assert leftover_slot_paths(os.getpid()) == []

    run(main)
