"""agora.WorkerPool: one pool of warm workers shared by middlewares and runs, with every
rule of the process lanes intact — timeouts and deaths recycle a generation, a broken or
busy generation is never kept, different fns never share a worker, and nothing is left
once the pool is closed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psutil
import pyarrow as pa
import pytest

from agora import (
    ArrowProcessBatchMiddleware,
    DeliveryConfig,
    FailurePolicy,
    IterableBatchSource,
    MemorySink,
    Pipeline,
    ProcessBatchMiddleware,
    WorkerPool,
)
from agora.errors import LifecycleError, ProcessBatchError, ProcessPoolBrokenError
from tests.process import faults
from tests.process.helpers import alive, context, rows, run, started

pytestmark = pytest.mark.timeout(60)


def _run_rows(mw: Any, batches: list[list[dict[str, Any]]], *more: Any,
              policy: FailurePolicy = FailurePolicy.FAIL_CLOSED) -> MemorySink:
    sink = MemorySink()
    pipeline = Pipeline(IterableBatchSource(batches, name="batches"), id="shared")
    for middleware in (mw, *more):
        pipeline = pipeline.pipe(middleware)
    pipeline.build(sink, delivery=DeliveryConfig(failure_policy=policy)).run_sync()
    return sink


def _pids(sink: MemorySink) -> set[int]:
    return {record["pid"] for record in sink.records}


def test_two_runs_reuse_the_same_warm_workers(no_orphans: None) -> None:
    with WorkerPool(max_workers=2) as pool:
        mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="tag")
        first = _pids(_run_rows(mw, [rows(b) for b in range(4)]))
        parked = set(pool.idle_pids())
        assert parked and first <= parked and pool.idle_workers() == 2
        assert mw.metrics()["pool_state"] == "idle"
        second = _pids(_run_rows(mw, [rows(b) for b in range(4)]))
        assert second <= parked, "the second run forked new workers instead of reusing"
        assert (pool.leases, pool.warm_leases) == (2, 1)
        assert mw.metrics()["batches_ok"] == 4, "metrics are per run, not cumulative"
    assert alive(sorted(parked)) == []
    assert pool.idle_workers() == 0


def test_two_middlewares_with_different_fns_get_generations_of_their_own(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=2) as pool:
        tag = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="tag")
        double = ProcessBatchMiddleware(faults.double_values, executor=pool, name="double")
        sink = _run_rows(tag, [rows(b) for b in range(3)], double)
        assert [r["value"] for r in sink.records[:3]] == [0, 2, 4]
        tag_pids = _pids(sink)
        assert pool.idle_workers() == 4
        assert tag_pids.isdisjoint(set(pool.idle_pids()) - tag_pids)
        # The next run of both reuses both generations: nothing new is forked.
        before = set(pool.idle_pids())
        _run_rows(tag, [rows(b) for b in range(3)], double)
        assert set(pool.idle_pids()) == before and pool.warm_leases == 2
    assert alive(sorted(before)) == []


def test_the_same_fn_in_two_middlewares_of_one_run_never_shares_a_generation(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=1) as pool:
        first = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="a")
        second = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="b")

        async def main() -> None:
            async with started(first), started(second):
                assert set(first.worker_pids()).isdisjoint(second.worker_pids())

        run(main)
        assert pool.idle_workers() == 2


def test_a_timeout_in_one_middleware_never_invalidates_another_s_batch(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=1) as pool:
        hangs = ProcessBatchMiddleware(faults.sleep_as_told, executor=pool, timeout_s=0.5,
                                       name="hangs")
        slow = ProcessBatchMiddleware(faults.sleep_as_told, executor=pool, name="slow")

        async def main() -> tuple[Any, Any]:
            async with started(hangs), started(slow):
                done = await asyncio.gather(
                    hangs.submit(0, rows(0, sleep=30)), slow.submit(0, rows(0, sleep=1.0)),
                    return_exceptions=True)
                return done[0], done[1]

        hung, survived = run(main)
        assert isinstance(hung, ProcessBatchError) and hung.timed_out
        assert isinstance(survived, list) and survived[0]["id"] == 0, survived
        assert slow.metrics()["batches_invalidated"] == 0
        assert hangs.metrics()["pool_recycles"] == 1 and slow.metrics()["pool_recycles"] == 0


def test_a_shared_arrow_lane_keeps_its_workers_across_runs(no_orphans: None) -> None:
    table = pa.table({"id": list(range(40))})
    with WorkerPool(max_workers=2) as pool:
        mw = ArrowProcessBatchMiddleware(faults.arrow_tag_with_worker_pid, executor=pool)
        seen = []
        for _ in range(2):
            sink = MemorySink()
            from agora import ArrowBatchSource

            Pipeline(ArrowBatchSource(table, batch_size=10), id="arrow").pipe(mw).build(
                sink).run_sync()
            assert sorted(r["id"] for r in sink.records) == list(range(40))
            seen.append(_pids(sink))
        assert seen[1] <= set(pool.idle_pids())


def test_a_timeout_on_a_shared_pool_recycles_and_the_next_run_gets_the_new_generation(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=1) as pool:
        mw = ProcessBatchMiddleware(faults.sleep_as_told, executor=pool, timeout_s=0.5,
                                    max_in_flight_batches=1, name="sleepy")

        async def main() -> tuple[list[int], list[int]]:
            async with started(mw):
                stuck = mw.worker_pids()
                with pytest.raises(ProcessBatchError, match="timed out") as info:
                    await mw.submit(0, rows(0, sleep=30))
                assert info.value.timed_out
                fresh = mw.worker_pids()
                assert (await mw.submit(1, rows(1)))[0]["pid"] in fresh
                return stuck, fresh

        stuck, fresh = run(main)
        assert alive(stuck) == [], "the timed-out generation was kept"
        assert set(pool.idle_pids()) == set(fresh)
        assert mw.metrics()["pool_recycles"] == 1
        sink = _run_rows(mw, [rows(5)])
        assert _pids(sink) <= set(fresh)


def test_a_worker_death_on_a_shared_pool_reruns_the_innocent_and_fails_the_poison(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=2) as pool:
        mw = ProcessBatchMiddleware(faults.sigkill_self_on_poison, executor=pool, name="k")

        async def main() -> list[Any]:
            async with started(mw):
                return list(await asyncio.gather(
                    mw.submit(0, rows(0, sleep=0.3)), mw.submit(1, rows(1, poison=True)),
                    return_exceptions=True))

        innocent, poison = run(main)
        assert isinstance(innocent, list) and innocent[0]["id"] == 0
        assert isinstance(poison, ProcessBatchError) and "worker died" in str(poison)
        assert mw.metrics()["worker_deaths"] >= 2


def test_a_broken_lease_is_never_kept_warm(no_orphans: None) -> None:
    with WorkerPool(max_workers=1) as pool:
        mw = ProcessBatchMiddleware(faults.sigkill_self_always, executor=pool,
                                    max_pool_recycles=1, name="doomed")

        async def main() -> None:
            async with started(mw):
                with pytest.raises(ProcessBatchError, match="kills its worker"):
                    await mw.submit(0, rows(0))
                with pytest.raises(ProcessPoolBrokenError, match="gave up"):
                    await mw.submit(1, rows(1))

        run(main)
        assert mw.metrics()["pool_state"] == "broken"
        assert pool.idle_workers() == 0


def test_a_cancelled_run_kills_its_busy_workers_instead_of_keeping_them(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=1) as pool:
        mw = ProcessBatchMiddleware(faults.sleep_as_told, executor=pool, name="slow")

        async def main() -> list[int]:
            ctx = context(mw.name)
            await mw.on_start(ctx)
            pids = mw.worker_pids()
            task = asyncio.ensure_future(mw.submit(0, rows(0, sleep=30)))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            started_at = time.monotonic()
            await mw.on_stop(ctx)
            assert time.monotonic() - started_at < 5
            return pids

        pids = run(main)
        assert pool.idle_workers() == 0 and alive(pids) == []


def test_a_worker_that_died_while_parked_is_replaced_at_the_next_lease(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=2) as pool:
        mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="tag")
        _run_rows(mw, [rows(0)])
        parked = pool.idle_pids()
        os.kill(parked[0], signal.SIGKILL)
        # Until the zygote has reaped it: a killed process's leader can be a zombie while
        # its other threads still hold its pipe open.
        deadline = time.monotonic() + 5
        while psutil.pid_exists(parked[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        sink = _run_rows(mw, [rows(b) for b in range(4)])
        assert len(sink.records) == 12
        assert mw.metrics()["worker_deaths"] == 0 and mw.metrics()["batches_failed"] == 0
        assert pool.warm_leases == 0, "a generation with a dead worker was reused"
        assert alive(parked) == []


def test_max_idle_workers_zero_keeps_nothing_warm(no_orphans: None) -> None:
    with WorkerPool(max_workers=1, max_idle_workers=0) as pool:
        mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool)
        pids = _pids(_run_rows(mw, [rows(0)]))
        assert pool.idle_workers() == 0 and alive(sorted(pids)) == []


def test_the_longest_idle_generation_is_evicted_over_the_idle_budget(
    no_orphans: None,
) -> None:
    with WorkerPool(max_workers=1, max_idle_workers=1) as pool:
        tag = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="tag")
        double = ProcessBatchMiddleware(faults.double_values, executor=pool, name="double")
        first = _pids(_run_rows(tag, [rows(0)]))
        _run_rows(double, [rows(0)])
        assert pool.idle_workers() == 1 and alive(sorted(first)) == []


def test_a_closed_pool_refuses_new_leases_naming_the_middleware(no_orphans: None) -> None:
    pool = WorkerPool(max_workers=1)
    pool.close()
    pool.close()  # idempotent
    mw = ProcessBatchMiddleware(faults.double_values, executor=pool, name="late")

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'late': its WorkerPool is closed"):
            await mw.on_start(context(mw.name))

    run(main)
    assert "closed" in repr(pool)


def test_closing_the_pool_while_a_lease_runs_stops_that_lease_at_its_end(
    no_orphans: None,
) -> None:
    pool = WorkerPool(max_workers=1)
    mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool, name="tag")

    async def main() -> list[int]:
        async with started(mw):
            pids = mw.worker_pids()
            pool.close()
            assert (await mw.submit(0, rows(0)))[0]["pid"] in pids
        return pids

    pids = run(main)
    assert pool.idle_workers() == 0 and alive(pids) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_workers": 0}, "max_workers must be an int >= 1; got 0"),
        ({"max_workers": True}, "max_workers must be an int >= 1; got True"),
        ({"max_workers": 1, "max_idle_workers": -1}, "max_idle_workers must be an int >= 0"),
    ],
)
def test_bad_worker_pool_arguments_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerPool(**kwargs)


def test_explain_names_the_executor() -> None:
    with WorkerPool(max_workers=1) as pool:
        shared = ProcessBatchMiddleware(faults.double_values, executor=pool)
        assert shared.describe()["executor"] == "WorkerPool"
    assert ProcessBatchMiddleware(faults.double_values).describe()["executor"] == "per-run"


def test_an_object_that_is_not_an_executor_is_rejected_at_construction() -> None:
    with pytest.raises(TypeError, match="'p': executor must be None .* got 'pool'"):
        ProcessBatchMiddleware(faults.double_values, executor="pool", name="p")  # type: ignore[arg-type]
