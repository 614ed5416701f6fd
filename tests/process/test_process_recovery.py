"""Timeouts and worker deaths: recycling, sibling invalidation, suspect isolation, the
recycle budget, and no surviving process (grandchildren included)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from agora.errors import ProcessBatchError
from agora.process import ProcessBatchMiddleware, ProcessPoolBrokenError
from agora.testing import wait_for_path, wait_until_async
from tests.process import faults
from tests.process.helpers import alive, gather, rows, run, started


@pytest.mark.timeout(30)
def test_timeout_recycles_the_generation_and_the_next_batch_succeeds(no_orphans):
    mw = ProcessBatchMiddleware(faults.sleep_as_told, max_workers=2, timeout_s=0.5)

    async def main():
        async with started(mw):
            old_pids = mw.worker_pids()
            started_at = time.monotonic()
            with pytest.raises(ProcessBatchError) as info:
                await mw.submit(0, rows(0, sleep=60))
            assert time.monotonic() - started_at < 10  # never waits for the stuck code
            err = info.value
            assert err.timed_out and not err.invalidated and err.generation == 1
            assert "timed out after 0.5 s" in str(err) and "batch 0" in str(err)
            out = await mw.submit(1, rows(1))
            assert out[0]["pid"] in mw.worker_pids()
            assert not set(mw.worker_pids()) & set(old_pids)  # a fresh generation
            assert mw.generation == 2
            assert alive(old_pids) == []  # the stuck generation is gone
            metrics = mw.metrics()
            assert metrics["batches_timed_out"] == 1 and metrics["pool_recycles"] == 1
            assert metrics["batches_ok"] == 1 and metrics["recycle_seconds"] > 0

    run(main)


@pytest.mark.timeout(30)
def test_siblings_of_a_timed_out_batch_are_invalidated_and_queued_batches_run_fresh(
    no_orphans, tmp_path
):
    mw = ProcessBatchMiddleware(
        faults.MarkStartedThenSleepAsTold(str(tmp_path)), max_workers=2,
        max_in_flight_batches=3, timeout_s=1.0,
    )

    async def main():
        async with started(mw):
            hung = asyncio.ensure_future(mw.submit(0, rows(0, sleep=60)))
            # Batch 1 is submitted only once batch 0 runs, so batch 0 times out first.
            await wait_for_path(tmp_path / "started-0")
            sibling = asyncio.ensure_future(mw.submit(1, rows(1, sleep=5)))
            queued = asyncio.ensure_future(mw.submit(2, rows(2)))  # waits for a worker
            results = await gather(hung, sibling, queued)
            assert isinstance(results[0], ProcessBatchError) and results[0].timed_out
            err = results[1]
            assert isinstance(err, ProcessBatchError)
            assert err.invalidated and not err.timed_out and err.generation == 1
            assert "invalidated" in str(err) and "batch 0 timed out" in str(err)
            assert results[2][0]["id"] == 200  # ran on the fresh generation
            metrics = mw.metrics()
            assert metrics["batches_invalidated"] == 1 and metrics["pool_recycles"] == 1

    run(main)


@pytest.mark.timeout(30)
def test_a_timeout_kills_the_grandchildren_of_the_stuck_worker(no_orphans, tmp_path):
    pid_file = str(tmp_path / "grandchild.pid")
    mw = ProcessBatchMiddleware(faults.SpawnGrandchildAndHang(pid_file), timeout_s=1.0)

    async def main():
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="timed out"):
                await mw.submit(0, rows(0))
            grandchild = int((tmp_path / "grandchild.pid").read_text())
            await wait_until_async(lambda: alive([grandchild]) == [], timeout_s=3,
                                   what=f"the stuck worker's grandchild {grandchild} to die")

    run(main)


@pytest.mark.timeout(30)
def test_kill_9_of_a_worker_mid_batch_reruns_the_innocent_batches_alone(no_orphans, tmp_path):
    mw = ProcessBatchMiddleware(faults.MarkStartedThenSleepAsTold(str(tmp_path)),
                                max_workers=2, max_in_flight_batches=3)

    async def main():
        async with started(mw):
            tasks = [asyncio.ensure_future(mw.submit(i, rows(i, sleep=0.8))) for i in range(3)]
            # Both workers are inside a batch (0 and 1) before one of them is killed.
            await wait_for_path(tmp_path / "started-0")
            await wait_for_path(tmp_path / "started-100")
            victim = mw.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            results = await gather(*tasks)
            # Nobody is to blame: every batch succeeds on the fresh pool.
            assert [r[0]["id"] for r in results] == [0, 100, 200]
            assert all(r[0]["pid"] != victim for r in results)
            metrics = mw.metrics()
            assert metrics["worker_deaths"] == 1 and metrics["pool_recycles"] == 1
            assert metrics["batches_ok"] == 3 and metrics["batches_failed"] == 0

    run(main)


@pytest.mark.timeout(30)
def test_a_crash_that_does_not_repeat_costs_nothing(no_orphans, tmp_path):
    mw = ProcessBatchMiddleware(faults.KillWorkerOnce(str(tmp_path)), max_workers=2)

    async def main():
        async with started(mw):
            batches = [rows(0), rows(1, poison=True), rows(2), rows(3)]
            results = await gather(*(mw.submit(i, b) for i, b in enumerate(batches)))
            assert results == batches
            assert mw.metrics()["worker_deaths"] == 1

    run(main)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("fn", "cause"),
    [
        (faults.segfault_on_poison, "killed by SIGSEGV, exit code -11"),
        (faults.sigkill_self_on_poison, "killed by SIGKILL, exit code -9"),
        (faults.os_exit_on_poison, "exited with code 3"),
        (faults.memory_error_on_poison, "MemoryError"),
    ],
    ids=["segfault", "sigkill", "os_exit", "memory_error"],
)
def test_only_the_batch_that_kills_its_worker_again_fails(no_orphans, fn, cause):
    mw = ProcessBatchMiddleware(fn, max_workers=2, max_in_flight_batches=3, name="risky")

    async def main():
        async with started(mw):
            results = await gather(
                mw.submit(0, rows(0, sleep=0.3)),
                mw.submit(1, rows(1, poison=True)),
                mw.submit(2, rows(2, sleep=0.3)),
            )
            poisoned = results[1]
            assert isinstance(poisoned, ProcessBatchError)
            assert not poisoned.timed_out and not poisoned.invalidated
            assert "worker died" in str(poisoned) and cause in str(poisoned)
            assert "'risky'" in str(poisoned) and "batch 1" in str(poisoned)
            assert [r[0]["id"] for r in (results[0], results[2])] == [0, 200]
            assert await mw.submit(3, rows(3)) is not None  # the pool is healthy again
            assert mw.metrics()["worker_deaths"] >= 2

    run(main)


@pytest.mark.timeout(30)
def test_a_transform_that_kills_every_worker_stops_after_the_recycle_budget(no_orphans):
    mw = ProcessBatchMiddleware(
        faults.sigkill_self_always, max_workers=2, max_in_flight_batches=4, max_pool_recycles=3
    )

    async def main():
        async with started(mw):
            results = await gather(*(mw.submit(i, rows(i)) for i in range(6)))
            assert all(isinstance(r, ProcessBatchError) for r in results)
            broken = [r for r in results if isinstance(r, ProcessPoolBrokenError)]
            assert broken, results
            assert "gave up after 3 consecutive pool recycles" in str(broken[0])
            assert "fix fn, or raise max_pool_recycles" in str(broken[0])
            # A broken pool is a recorded state: later batches fail fast, same reason.
            with pytest.raises(ProcessPoolBrokenError, match="gave up after 3"):
                await mw.submit(6, rows(6))
            assert mw.worker_pids() == []
            assert mw.metrics()["pool_recycles"] == 4

    run(main)


@pytest.mark.timeout(30)
def test_cancelled_submits_are_cleaned_up_promptly_by_on_stop(no_orphans, tmp_path):
    mw = ProcessBatchMiddleware(faults.MarkStartedThenSleepAsTold(str(tmp_path)),
                                max_workers=2, max_in_flight_batches=4)

    async def main():
        from tests.process.helpers import context

        ctx = context(mw.name)
        await mw.on_start(ctx)
        pids = mw.worker_pids()
        tasks = [asyncio.ensure_future(mw.submit(i, rows(i, sleep=5))) for i in range(4)]
        # Cancel only once both workers are busy, so running batches are cancelled too.
        await wait_for_path(tmp_path / "started-0")
        await wait_for_path(tmp_path / "started-100")
        for task in tasks:
            task.cancel()
        results = await gather(*tasks)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        began = time.monotonic()
        await mw.on_stop(ctx)
        assert time.monotonic() - began < 3.0
        assert alive(pids) == []

    run(main)


@pytest.mark.timeout(30)
def test_a_cancelled_queued_batch_never_runs_and_the_pool_goes_on(no_orphans, tmp_path):
    mw = ProcessBatchMiddleware(faults.MarkStartedThenSleepAsTold(str(tmp_path)),
                                max_workers=1, max_in_flight_batches=2)

    async def main():
        async with started(mw):
            first = asyncio.ensure_future(mw.submit(0, rows(0, sleep=0.3)))
            second = asyncio.ensure_future(mw.submit(1, rows(1)))
            # The only worker runs batch 0, so batch 1 is certainly still queued.
            await wait_for_path(tmp_path / "started-0")
            second.cancel()
            assert (await first)[0]["id"] == 0
            assert not (tmp_path / "started-100").exists()  # the cancelled batch never ran
            assert (await mw.submit(2, rows(2)))[0]["id"] == 200
            assert mw.metrics()["batches_submitted"] == 3
            assert mw.metrics()["batches_ok"] == 2

    run(main)
