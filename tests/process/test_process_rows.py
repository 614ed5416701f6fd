"""Row lane: results, per-batch failures with precise messages, concurrency, metrics."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from agora.errors import ProcessBatchError
from agora.process import ProcessBatchMiddleware
from tests.process import faults
from tests.process.helpers import rows, run, started

pytestmark = pytest.mark.timeout(60)


def test_results_come_back_in_input_order_with_drops_as_none(no_orphans):
    mw = ProcessBatchMiddleware(faults.drop_odd_values, max_workers=2)

    async def main():
        async with started(mw):
            out = await mw.submit(0, rows(0, n=5))
            assert out == [rows(0, n=5)[0], None, rows(0, n=5)[2], None, rows(0, n=5)[4]]
            assert await mw.submit(1, []) == []  # nothing to send: no worker involved
            metrics = mw.metrics()
            assert metrics["batches_ok"] == 1
            assert metrics["transport_bytes_in"] > 0 and metrics["transport_bytes_out"] > 0

    run(main)


def test_work_runs_in_worker_processes_not_in_the_caller(no_orphans):
    mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, max_workers=2)

    async def main():
        async with started(mw):
            pids = set(mw.worker_pids())
            assert len(pids) == 2 and os.getpid() not in pids
            out = await mw.submit(0, rows(0))
            assert {row["pid"] for row in out} <= pids

    run(main)


def test_a_later_batch_can_finish_first_on_two_workers(no_orphans):
    mw = ProcessBatchMiddleware(faults.sleep_as_told, max_workers=2, max_in_flight_batches=2)
    finished: list[int] = []

    async def one(index: int, sleep: float):
        out = await mw.submit(index, rows(index, sleep=sleep))
        finished.append(index)
        return out

    async def main():
        async with started(mw):
            slow, fast = await asyncio.gather(one(0, 0.6), one(1, 0.0))
            # Each result belongs to its own batch, whatever the completion order.
            assert [r["id"] for r in slow] == [0, 1, 2]
            assert [r["id"] for r in fast] == [100, 101, 102]
            assert finished == [1, 0]
            assert slow[0]["pid"] != fast[0]["pid"]  # they really ran side by side
            assert mw.metrics()["peak_in_flight"] == 2

    run(main)


def test_more_batches_than_workers_queue_and_all_complete(no_orphans):
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=2, max_in_flight_batches=8)

    async def main():
        async with started(mw):
            results = await asyncio.gather(*(mw.submit(i, rows(i)) for i in range(8)))
            for i, out in enumerate(results):
                assert [r["value"] for r in out] == [0, 2, 4]
                assert out[0]["id"] == i * 100

    run(main)


def test_fn_raising_fails_the_batch_naming_middleware_index_and_cause(no_orphans):
    mw = ProcessBatchMiddleware(faults.raise_value_error, max_workers=1, name="enrich")

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError) as info:
                await mw.submit(7, rows(7))
            err = info.value
            assert err.middleware_name == "enrich" and err.batch_index == 7
            assert not err.timed_out and not err.invalidated and err.generation == 1
            assert "'enrich'" in str(err) and "batch 7" in str(err)
            assert "fn raised ValueError: bad record" in str(err)
            assert "raise_value_error" in str(err.__cause__)  # the worker's traceback
            # The worker survived: the pool still serves the next batch.
            assert mw.metrics()["pool_recycles"] == 0

    run(main)


def test_sys_exit_in_fn_is_a_failed_batch_not_a_dead_worker(no_orphans):
    mw = ProcessBatchMiddleware(faults.exit_via_sys_exit, max_workers=1)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="fn raised SystemExit: 4"):
                await mw.submit(0, rows(0))
            assert mw.metrics()["worker_deaths"] == 0

    run(main)


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (faults.return_one_too_few, "fn returned 2 results for 3 records"),
        (faults.return_a_dict, "fn returned dict; it must return a list"),
    ],
)
def test_a_result_of_the_wrong_length_or_type_fails_the_batch(no_orphans, fn, expected):
    mw = ProcessBatchMiddleware(fn, max_workers=1)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match=expected) as info:
                await mw.submit(3, rows(3))
            assert info.value.batch_index == 3

    run(main)


def test_an_unpicklable_payload_fails_that_batch_only(no_orphans):
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1, name="enrich")

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="could not be pickled") as info:
                await mw.submit(2, [{"value": 1, "lock": threading.Lock()}])
            assert info.value.batch_index == 2 and "'enrich'" in str(info.value)
            assert await mw.submit(3, rows(3)) == faults.double_values(rows(3))
            assert mw.metrics()["batches_failed"] == 1

    run(main)


def test_a_payload_the_worker_cannot_unpickle_fails_that_batch(no_orphans):
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="could not decode the batch"):
                await mw.submit(0, [faults.LoadsNowhere()])
            assert await mw.submit(1, rows(1)) == faults.double_values(rows(1))

    run(main)


def test_an_unpicklable_result_fails_the_batch(no_orphans):
    mw = ProcessBatchMiddleware(faults.return_unpicklable, max_workers=1)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="result could not be sent back"):
                await mw.submit(0, rows(0))

    run(main)


def test_a_batch_bigger_than_the_slots_grows_them(no_orphans):
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1)
    big = [{"id": i, "value": i, "pad": "x" * 200} for i in range(20_000)]  # ~5 MB pickled

    async def main():
        async with started(mw):
            for index in range(2):  # the second batch uses the grown slots
                out = await mw.submit(index, big)
                assert out[-1]["value"] == 2 * 19_999 and len(out) == len(big)

    run(main)


def test_the_plain_batch_entry_point_runs_fn_too(no_orphans):
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1)

    async def main():
        async with started(mw) as ctx:
            assert await mw.process_batch(rows(0), ctx) == faults.double_values(rows(0))
        assert ctx.metrics["batches_ok"] == 1  # on_stop publishes the counters

    run(main)


def test_fn_that_cannot_be_loaded_in_a_worker_fails_on_start(no_orphans):
    from agora.process import WorkerStartupError

    mw = ProcessBatchMiddleware(faults.LoadsNowhere(), max_workers=2, name="enrich")

    async def main():
        with pytest.raises(WorkerStartupError, match="'enrich'.*could not load fn"):
            async with started(mw):
                pass  # pragma: no cover

    run(main)
