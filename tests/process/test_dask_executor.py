"""``DaskExecutor``: the process lanes on a Dask cluster — order, timeouts, worker deaths,
the recycle budget, cancellation, start-up errors, the missing extra and no leftovers.

Most tests share one 2-worker ``LocalCluster`` (a module fixture: starting one costs about
a second); the fixture checks at the end that closing it leaves no process behind.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pytest

from agora import ArrowProcessBatchMiddleware, ProcessBatchError, ProcessBatchMiddleware
from agora.errors import LifecycleError, ProcessPoolBrokenError, WorkerStartupError
from agora.process.executor import Executor, LeaseSpec
from preservation import test_process_lanes as lanes
from preservation.test_process_lanes import SIZE, Harness, _ids
from preservation.audit import dlq_id, sink_ids
from agora.testing.faults import (
    Chain,
    KillWorkerOn,
    RaiseOn,
    ShortResultOn,
    SleepyTransform,
    WaitForFile,
)
from tests.conftest import assert_no_worker_processes
from tests.process import faults

distributed = pytest.importorskip("distributed")

from agora.process.dask_executor import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.timeout(60)
LANES = ("rows", "arrow")


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskExecutor]:
    """A 2-worker local cluster shared by the module; closed and checked at the end.

    The preservation ``Harness`` builds every middleware with the executor in
    ``lanes._executor[0]``; the fixture puts this cluster there."""
    with DaskExecutor(n_workers=2) as executor:
        lanes._executor[0] = executor  # type: ignore[call-overload]
        try:
            yield executor
        finally:
            lanes._executor[0] = None
    assert_no_worker_processes()


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _wait_for_workers(executor: DaskExecutor, n: int, within_s: float = 15.0) -> float:
    """Seconds until the cluster has ``n`` workers again (restarts are asynchronous)."""
    started = time.monotonic()
    executor.client.wait_for_workers(n, timeout=within_s)
    return time.monotonic() - started


# ----------------------------------------------------------------- construction


def test_import_agora_works_without_distributed_and_the_executor_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import agora\n"
        "try:\n"
        "    agora.DaskExecutor()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert "pip install 'agora[dask]'" in out.stdout
    assert "distributed" in out.stdout


def test_missing_distributed_in_process_raises_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"agora\[dask\]"):
        DaskExecutor()


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_n_workers_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="n_workers must be an int >= 1"):
        DaskExecutor(n_workers=bad)


def test_address_of_the_wrong_type_is_refused_naming_what_is_accepted() -> None:
    with pytest.raises(TypeError, match="scheduler address string"):
        DaskExecutor(42)


def test_an_address_where_no_scheduler_answers_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import agora.process.dask_executor as module

    monkeypatch.setattr(module, "CONNECT_TIMEOUT_S", 1.0)
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError) as info:
        DaskExecutor(f"tcp://127.0.0.1:{port}")
    assert f"tcp://127.0.0.1:{port}" in str(info.value)
    assert "scheduler is running" in str(info.value)


def test_the_executor_satisfies_the_executor_protocol(cluster: DaskExecutor) -> None:
    assert isinstance(cluster, Executor)
    assert cluster.owns_cluster
    assert len(cluster.worker_addresses()) == 2


# ----------------------------------------------------------------- results and order


@pytest.mark.parametrize("lane", LANES)
def test_results_are_committed_in_source_order_when_batches_finish_out_of_order(
    tmp_path: Path, lane: str, cluster: DaskExecutor
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    fn = Chain(RaiseOn("poison batch", batch=3, batch_size=SIZE),
               SleepyTransform(1.0, batch=0, batch_size=SIZE, log_dir=logs))
    h = Harness(tmp_path, lane, fn, max_workers=2, max_in_flight_batches=4, timeout_s=30)
    summary = h.bound.run_sync()
    done = [int(x) for x in (logs / "done.log").read_text().split()]
    assert done[0] != 0, f"vacuous: batch 0 finished first ({done}); nothing overtook it"
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 3]
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(3, 3)
    assert all("InjectedFault: poison batch" in r.error_message for r in dead)
    assert h.store.saves == list(range(1, 9)), "checkpoints must advance batch by batch"
    h.assert_audit_clean()
    metrics = summary.runtime["process_batch"]["proc"]
    assert metrics["executor"] == "dask" and metrics["batches_ok"] == 7
    assert 2 <= metrics["peak_in_flight"] <= 4  # at most two per worker thread


@pytest.mark.parametrize("lane", LANES)
def test_a_wrong_length_result_fails_its_batch_only(
    tmp_path: Path, lane: str, cluster: DaskExecutor
) -> None:
    h = Harness(tmp_path, lane, ShortResultOn(batch=1, batch_size=SIZE), batches=3,
                max_workers=2, max_in_flight_batches=2)
    h.bound.run_sync()
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(1, 1)
    expected = "one result per record" if lane == "rows" else "preserve the row count"
    assert all(expected in r.error_message for r in dead)
    assert sink_ids(h.out) == _ids(0, 0) + _ids(2, 2)


def test_arrow_slices_travel_as_their_own_rows(cluster: DaskExecutor) -> None:
    big = pa.RecordBatch.from_pydict({"x": pa.array(range(100_000), pa.float64())})
    mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled, max_workers=2,
                                     executor=cluster)

    async def main() -> pa.RecordBatch:
        await mw.on_start(_context(mw.name))
        try:
            return await mw.submit(0, big.slice(10, 5))
        finally:
            await mw.on_stop(_context(mw.name))

    out = asyncio.run(main())
    assert out.column("x").to_pylist() == list(range(10, 15))
    assert out.column("doubled").to_pylist() == [2.0 * v for v in range(10, 15)]
    # Only the slice's five rows crossed, not the 800 kB parent buffer.
    assert mw.metrics()["transport_bytes_in"] < 1_000


# ----------------------------------------------------------------- timeouts


@pytest.mark.parametrize("lane", LANES)
def test_a_timed_out_batch_is_dead_lettered_and_its_stuck_code_never_finishes(
    tmp_path: Path, lane: str, cluster: DaskExecutor
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    h = Harness(tmp_path, lane, SleepyTransform(4, batch=0, batch_size=SIZE, log_dir=logs),
                batches=4, max_workers=2, max_in_flight_batches=2, timeout_s=1.0)
    started = time.monotonic()
    summary = h.bound.run_sync()
    assert time.monotonic() - started < 4, "the run waited for the stuck code"
    assert (logs / "started-0").exists(), "vacuous: batch 0 never ran"
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(0, 0)
    assert all("timed out after 1 s" in r.error_message for r in dead)
    assert sink_ids(h.out) == _ids(1, 3)
    metrics = summary.runtime["process_batch"]["proc"]
    assert metrics["batches_timed_out"] == 1 and metrics["pool_recycles"] == 1
    assert metrics["batches_invalidated"] == 0  # the other worker's batches went on
    h.assert_audit_clean()
    # The worker running batch 0 was stopped: its code never reaches its end, so it can
    # neither commit late nor keep burning CPU.
    time.sleep(max(0.0, started + 4.5 - time.monotonic()))
    done = (logs / "done.log").read_text().split()
    assert "0" not in done, "the timed-out batch's code ran to its end"
    assert sink_ids(h.out) == _ids(1, 3)
    _wait_for_workers(cluster, 2)


def test_time_a_batch_waits_behind_another_on_its_worker_does_not_count_toward_its_timeout(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    with DaskExecutor(n_workers=1) as single:
        # Two batches of 1 s each on one worker thread: the second waits ~1 s queued
        # behind the first, so 2 s pass from its submission — past timeout_s=1.6 — while
        # its own run takes 1 s.
        shared = lanes._executor[0]
        lanes._executor[0] = single  # type: ignore[call-overload]
        try:
            h = Harness(tmp_path, "rows", SleepyTransform(1.0, log_dir=logs), batches=2,
                        max_workers=1, max_in_flight_batches=2, timeout_s=1.6)
            summary = h.bound.run_sync()
        finally:
            lanes._executor[0] = shared
    first, second = (logs / f"started-{i * SIZE}" for i in range(2))
    assert second.stat().st_mtime - first.stat().st_mtime > 0.8, "vacuous: not queued"
    assert h.dlq() == [] and sink_ids(h.out) == _ids(0, 1)
    assert summary.runtime["process_batch"]["proc"]["peak_in_flight"] == 2


def test_fail_closed_timeout_stops_the_run_with_the_original_error(
    tmp_path: Path, cluster: DaskExecutor
) -> None:
    h = Harness(tmp_path, "rows", SleepyTransform(30, batch=1, batch_size=SIZE), batches=3,
                dlq=False, max_workers=1, max_in_flight_batches=1, timeout_s=0.5)
    with pytest.raises(ProcessBatchError) as info:
        h.bound.run_sync()
    assert info.value.timed_out and info.value.batch_index == 1
    assert "'proc'" in str(info.value) and "timed out" in str(info.value)
    assert sink_ids(h.out) == _ids(0, 0)
    assert h.stored_batches() == 1
    _wait_for_workers(cluster, 2)


# ----------------------------------------------------------------- worker deaths


@pytest.mark.parametrize("lane", LANES)
def test_a_worker_death_reruns_the_innocent_and_dead_letters_the_poison(
    tmp_path: Path, lane: str, cluster: DaskExecutor
) -> None:
    once = tmp_path / "once"
    once.mkdir()
    # Batch 2 waits for batch 0's first (dying) attempt, so batch 0 has really run once
    # before the poison breaks anything — see the process-lane preservation test.
    fn = Chain(WaitForFile(once / "killed-0", batch=2, batch_size=SIZE, timeout_s=20),
               KillWorkerOn(batch=2, batch_size=SIZE),
               KillWorkerOn(batch=0, batch_size=SIZE, once_dir=once))
    h = Harness(tmp_path, lane, fn, batches=6, max_workers=2, max_in_flight_batches=2,
                timeout_s=30)
    summary = h.bound.run_sync()
    assert (once / "killed-0").exists(), "vacuous: batch 0 never killed a worker"
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(2, 2), "only the poison batch is dead-lettered"
    assert all("worker died" in r.error_message for r in dead)
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 2]
    # Batch 2 twice (first run, re-run alone), batch 0 once, plus any bystander.
    assert summary.runtime["process_batch"]["proc"]["worker_deaths"] >= 3
    h.assert_audit_clean()
    _wait_for_workers(cluster, 2)


def test_a_fn_that_kills_every_worker_breaks_the_lease_instead_of_flooding_the_dlq(
    tmp_path: Path, cluster: DaskExecutor
) -> None:
    h = Harness(tmp_path, "rows", KillWorkerOn(batch=range(20), batch_size=SIZE),
                batches=20, max_workers=2, max_in_flight_batches=2, timeout_s=30,
                max_pool_recycles=1)
    with pytest.raises(ProcessPoolBrokenError) as info:
        h.bound.run_sync()
    assert "max_pool_recycles=1" in str(info.value) and "worker died" in str(info.value)
    assert len(h.dlq()) <= 2 * SIZE, "the DLQ was flooded instead of the run stopping"
    assert not h.store.violations, h.store.violations
    _wait_for_workers(cluster, 2)


# ----------------------------------------------------------------- cancellation


def test_cancelling_the_run_stops_the_batch_on_the_cluster_promptly(
    tmp_path: Path, cluster: DaskExecutor
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    h = Harness(tmp_path, "rows", SleepyTransform(5, batch=0, batch_size=SIZE, log_dir=logs),
                batches=2, max_workers=1, max_in_flight_batches=1)
    before = set(cluster.worker_addresses())

    async def main() -> float:
        task = asyncio.create_task(h.bound.run())
        deadline = time.monotonic() + 20
        while not (logs / "started-0").exists():
            assert time.monotonic() < deadline, "batch 0 never started"
            await asyncio.sleep(0.05)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    took = asyncio.run(main())
    assert took < 3, f"cancellation took {took:.1f} s"
    assert sink_ids(h.out) == []
    time.sleep(5.5 - took)
    assert not (logs / "done.log").exists(), "the cancelled batch's code ran to its end"
    _wait_for_workers(cluster, 2)
    assert set(cluster.worker_addresses()) != before, "no worker was restarted"


def test_a_batch_cancelled_on_the_cluster_by_someone_else_fails_as_that_batch(
    tmp_path: Path, cluster: DaskExecutor
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    h = Harness(tmp_path, "rows", SleepyTransform(3, batch=1, batch_size=SIZE, log_dir=logs),
                batches=3, max_workers=2, max_in_flight_batches=2)

    def cancel_batch_1_when_it_runs() -> None:
        deadline = time.monotonic() + 20
        while not (logs / f"started-{SIZE}").exists():
            assert time.monotonic() < deadline, "batch 1 never started"
            time.sleep(0.02)
        keys = [k for ks in cluster.client.processing().values() for k in ks
                if str(k).startswith("agora-proc-1-")]
        assert keys, "vacuous: batch 1 is not on the cluster"
        cluster.client.cancel([distributed.Future(k, cluster.client) for k in keys],
                              force=True)

    canceller = threading.Thread(target=cancel_batch_1_when_it_runs)
    canceller.start()
    h.bound.run_sync()
    canceller.join(timeout=20)
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(1, 1)
    assert all("the Dask cluster cancelled it" in r.error_message for r in dead)
    assert sink_ids(h.out) == _ids(0, 0) + _ids(2, 2)
    h.assert_audit_clean()


def test_a_timeout_on_workers_without_a_nanny_still_fails_the_batch_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Threads in this process, no nanny: the stuck code cannot be stopped, but the batch
    # still fails on time, its result is never used, and a warning names the fix.
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  dashboard_address=":0") as threads:
        with DaskExecutor(threads.scheduler_address) as executor:
            shared = lanes._executor[0]
            lanes._executor[0] = executor  # type: ignore[call-overload]
            try:
                h = Harness(tmp_path, "rows", SleepyTransform(1.5, batch=0, batch_size=SIZE),
                            batches=2, max_workers=1, max_in_flight_batches=1,
                            timeout_s=0.3)
                with caplog.at_level("WARNING", logger="agora.process"):
                    summary = h.bound.run_sync()
            finally:
                lanes._executor[0] = shared
            time.sleep(1.5)  # let the stuck thread end before its cluster closes
    assert [dlq_id(r) for r in h.dlq()] == _ids(0, 0)
    assert sink_ids(h.out) == _ids(1, 1)
    assert summary.runtime["process_batch"]["proc"]["pool_recycles"] == 0
    assert any("run workers under a nanny" in r.getMessage() for r in caplog.records)


def test_a_released_lease_refuses_more_batches(cluster: DaskExecutor) -> None:
    spec = LeaseSpec(name="done", lane="rows", fn_bytes=pickle.dumps(faults.double_values),
                     fn_label=("m", "f"), workers=1, timeout_s=None, max_pool_recycles=8)

    async def main() -> None:
        lease = await cluster.acquire(spec)
        await lease.release(1.0)
        with pytest.raises(LifecycleError, match="'done'.*released"):
            await lease.run(0, pickle.dumps([{"id": 1, "value": 1}]))

    asyncio.run(main())


# ----------------------------------------------------------------- start-up and lifecycle


def _context(name: str) -> Any:
    from tests.process.helpers import context

    return context(name)


def test_a_fn_the_workers_cannot_import_fails_at_start_naming_the_middleware(
    cluster: DaskExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ghost = types.ModuleType("agora_ghost_module")
    exec("def fn(rows):\n    return rows\n", ghost.__dict__)
    monkeypatch.setitem(sys.modules, "agora_ghost_module", ghost)
    spec = LeaseSpec(name="ghostly", lane="rows", fn_bytes=pickle.dumps(ghost.fn),
                     fn_label=("agora_ghost_module", "fn"), workers=2, timeout_s=None,
                     max_pool_recycles=8)
    with pytest.raises(WorkerStartupError) as info:
        asyncio.run(cluster.acquire(spec))
    message = str(info.value)
    assert "'ghostly'" in message and "agora_ghost_module.fn" in message
    assert "install fn's module" in message


def test_a_closed_executor_refuses_a_lease_and_closing_twice_is_harmless() -> None:
    before = _children()
    executor = DaskExecutor(n_workers=1)
    assert _children() - before, "vacuous: the local cluster started no process"
    executor.close()
    executor.close()
    spec = LeaseSpec(name="late", lane="rows", fn_bytes=pickle.dumps(faults.double_values),
                     fn_label=("m", "f"), workers=1, timeout_s=None, max_pool_recycles=8)
    with pytest.raises(LifecycleError, match="'late'.*DaskExecutor is closed"):
        asyncio.run(executor.acquire(spec))
    _assert_gone(_children() - before)


def test_an_owned_cluster_leaves_no_scheduler_or_worker_process_after_a_run(
    tmp_path: Path,
) -> None:
    before = _children()
    with DaskExecutor(n_workers=1) as executor:
        started = _children() - before
        assert started, "vacuous: the local cluster started no process"
        mw = ProcessBatchMiddleware(faults.double_values, max_workers=1, executor=executor)
        h_rows = [{"id": i, "value": i} for i in range(3)]

        async def main() -> list[Any]:
            await mw.on_start(_context(mw.name))
            try:
                return await mw.submit(0, h_rows)
            finally:
                await mw.on_stop(_context(mw.name))

        assert [r["value"] for r in asyncio.run(main())] == [0, 2, 4]
    _assert_gone(started)


def test_an_existing_cluster_is_used_and_never_closed(cluster: DaskExecutor) -> None:
    for target in (cluster.scheduler_address, cluster.client):
        with DaskExecutor(target) as borrowed:
            assert not borrowed.owns_cluster
            assert borrowed.worker_addresses() == cluster.worker_addresses()
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=10) == 3


def _assert_gone(pids: set[int], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                 and "resource_tracker" not in " ".join(psutil.Process(p).cmdline())]
        if not alive:
            return
        assert time.monotonic() < deadline, f"processes left behind: {alive}"
        time.sleep(0.05)


def test_a_cluster_without_workers_fails_start_naming_the_middleware_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import agora.process.dask_executor as module

    monkeypatch.setattr(module, "WORKER_WAIT_S", 0.5)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        with DaskExecutor(empty.scheduler_address) as executor:
            spec = LeaseSpec(name="lonely", lane="rows",
                             fn_bytes=pickle.dumps(faults.double_values), fn_label=("m", "f"),
                             workers=1, timeout_s=None, max_pool_recycles=8)
            with pytest.raises(WorkerStartupError) as info:
                asyncio.run(executor.acquire(spec))
    message = str(info.value)
    assert "'lonely'" in message and "fewer than 1 worker(s)" in message
    assert "dask worker" in message


def test_a_worker_restarted_after_a_timeout_is_never_retired_by_the_local_cluster() -> None:
    import dask

    from agora.process._dask_ops import stop_worker_process

    # A plain LocalCluster closes the nanny of a worker that is still away when its
    # lost-worker timeout expires; with 0 s that is every restart.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "0s"}):
        with DaskExecutor(n_workers=1) as executor:
            [before] = executor.worker_addresses()
            executor.client.run(stop_worker_process, nanny=True)
            time.sleep(0.5)
            executor.client.wait_for_workers(1, timeout=15)
            [after] = executor.worker_addresses()
            assert after != before, "vacuous: the worker was not restarted"
