"""Pool lifecycle: startup failures, stop with work in flight, a pool that breaks later,
idle deaths, metrics and error pickling."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal

import pyarrow as pa
import pytest

from agora.errors import ProcessBatchError
from agora.process import (
    ArrowProcessBatchMiddleware,
    ProcessBatchMiddleware,
    ProcessPoolBrokenError,
    WorkerStartupError,
)
from agora.process import pool as pool_module
from agora.testing import wait_for_path, wait_until_async
from tests.process import faults
from tests.process.helpers import alive, context, rows, run, started

pytestmark = pytest.mark.timeout(30)


def test_workers_that_never_report_ready_fail_the_start_in_bounded_time(
    no_orphans, monkeypatch
):
    monkeypatch.setattr(pool_module, "STARTUP_TIMEOUT_S", 0.5)
    mw = ProcessBatchMiddleware(faults.LoadsForever(), max_workers=1, name="slowpoke")

    async def main():
        with pytest.raises(WorkerStartupError, match="'slowpoke': workers did not start"):
            await mw.on_start(context(mw.name))
        assert mw.worker_pids() == []

    run(main)


def test_a_new_generation_that_cannot_load_fn_breaks_the_pool(no_orphans, tmp_path):
    marker = str(tmp_path / "gone")
    mw = ProcessBatchMiddleware(faults.LoadableUntil(marker), max_workers=1, timeout_s=0.3)

    async def main():
        async with started(mw):
            open(marker, "w").close()  # from now on a fresh worker cannot load fn
            with pytest.raises(ProcessBatchError, match="timed out"):
                await mw.submit(0, rows(0, sleep=30))
            with pytest.raises(ProcessPoolBrokenError, match="could not load fn") as info:
                await mw.submit(1, rows(1))
            assert "ImportError" in str(info.value)
            assert mw.metrics()["pool_state"] == "broken"

    run(main)


def test_stop_with_a_batch_still_awaited_fails_it_and_kills_its_worker(no_orphans, tmp_path):
    mw = ProcessBatchMiddleware(faults.MarkStartedThenSleepAsTold(str(tmp_path)), max_workers=1)

    async def main():
        ctx = context(mw.name)
        await mw.on_start(ctx)
        pids = mw.worker_pids()
        running = asyncio.ensure_future(mw.submit(0, rows(0, sleep=30)))
        queued = asyncio.ensure_future(mw.submit(1, rows(1)))
        await wait_for_path(tmp_path / "started-0")  # batch 0 runs, batch 1 waits
        await mw.on_stop(ctx)
        for task, cause in ((running, "stopped while this batch ran"),
                            (queued, "stopped before this batch ran")):
            with pytest.raises(ProcessBatchError, match=cause):
                await task
        assert alive(pids) == []
        assert mw.metrics()["pool_state"] == "stopped"

    run(main)


def test_a_worker_that_dies_while_idle_is_replaced_and_nothing_fails(no_orphans):
    mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, max_workers=2)

    async def main():
        async with started(mw):
            victim = mw.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            await wait_until_async(lambda: mw.metrics()["worker_deaths"] == 1,
                                   what="the pool to notice the idle worker's death")
            out = await mw.submit(0, rows(0))
            assert out[0]["pid"] != victim and victim not in mw.worker_pids()
            assert mw.metrics()["batches_failed"] == 0 and mw.metrics()["pool_recycles"] == 1

    run(main)


def test_metrics_are_json_ready_and_cover_the_run(no_orphans):
    import json

    mw = ArrowProcessBatchMiddleware(faults.arrow_identity, max_workers=2)

    async def main():
        async with started(mw) as ctx:
            await mw.submit(0, pa.record_batch({"x": pa.array([1.0, 2.0])}))
            # Stop only after the pool has sampled both workers' memory at least once.
            await wait_until_async(lambda: len(mw.metrics()["worker_peak_rss_by_pid"]) == 2,
                                   what="a psutil sample of both workers")
        metrics = mw.metrics()
        json.dumps(metrics)
        assert ctx.metrics == metrics
        for key in ("batches_submitted", "batches_ok", "batches_failed", "batches_timed_out",
                    "batches_invalidated", "worker_deaths", "pool_recycles",
                    "recycle_seconds", "peak_in_flight", "transport_bytes_in",
                    "transport_bytes_out", "worker_peak_rss_bytes", "worker_cpu_seconds"):
            assert key in metrics
        assert metrics["batches_ok"] == 1 and metrics["pool_state"] == "stopped"
        assert metrics["worker_peak_rss_bytes"] > 10_000_000  # a Python with pyarrow loaded
        assert len(metrics["worker_peak_rss_by_pid"]) == 2

    run(main)


def test_the_arrow_plain_entry_point_runs_fn_too(no_orphans):
    mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=1)

    async def main():
        async with started(mw) as ctx:
            out = await mw.process_arrow_batch(pa.record_batch({"x": pa.array([1.5])}), ctx)
            assert out.column("doubled").to_pylist() == [3.0]

    run(main)


def test_errors_keep_their_class_and_fields_across_pickling():
    broken = ProcessPoolBrokenError("gave up", middleware_name="m", batch_index=3, generation=9)
    again = pickle.loads(pickle.dumps(broken))
    assert type(again) is ProcessPoolBrokenError and again.terminal
    assert (again.middleware_name, again.batch_index, again.generation) == ("m", 3, 9)
    assert str(again) == str(broken)


def test_starting_twice_is_a_lifecycle_error(no_orphans):
    from agora.errors import LifecycleError

    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1)

    async def main():
        async with started(mw):
            with pytest.raises(LifecycleError, match="already started"):
                await mw.on_start(context(mw.name))

    run(main)
