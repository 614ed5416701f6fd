"""The executor seam: what a process middleware asks of its executor (acquire a lease at
start, run batches through it, release it at stop, whatever the run's outcome), the
default pool per run, and worker start-up that does not depend on what else the driver
did with multiprocessing (checked by behaviour: whether workers inherited pyarrow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from agora import ProcessBatchMiddleware, WorkerPool
from agora.errors import ProcessBatchError, WorkerStartupError
from agora.process import Executor, Lease, LeaseSpec
from agora.process.executors import PerRunExecutor
from agora.process.zygote import stop_zygote, zygote_pid
from tests.process import faults
from tests.process.helpers import alive, context, rows, run, started

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


class RecordingExecutor:
    """Hands out the default executor's leases and records what the lane asked for."""

    def __init__(self) -> None:
        self.specs: list[LeaseSpec] = []
        self.leases: list[Lease] = []
        self.released = 0
        self.inner = PerRunExecutor()

    async def acquire(self, spec: LeaseSpec) -> Lease:
        self.specs.append(spec)
        lease = await self.inner.acquire(spec)
        self.leases.append(lease)
        recorder = self
        release = lease.release

        async def counted_release(grace_s: float) -> None:
            recorder.released += 1
            await release(grace_s)

        lease.release = counted_release  # type: ignore[method-assign]
        return lease


def test_the_lane_acquires_a_lease_with_its_parameters_and_releases_it_at_stop(
    no_orphans: None,
) -> None:
    executor = RecordingExecutor()
    assert isinstance(executor, Executor)
    mw = ProcessBatchMiddleware(faults.double_values, executor=executor, max_workers=3,
                                max_in_flight_batches=2, timeout_s=7, name="dbl",
                                max_pool_recycles=5)

    async def main() -> list[Any]:
        async with started(mw):
            return await mw.submit(0, rows(0))

    assert [r["value"] for r in run(main)] == [0, 2, 4]
    (spec,) = executor.specs
    assert (spec.name, spec.lane, spec.workers, spec.timeout_s, spec.max_pool_recycles) == (
        "dbl", "rows", 2, 7.0, 5)
    assert spec.fn_label == ("tests.process.faults", "double_values")
    assert executor.released == 1 and mw.metrics()["pool_state"] == "stopped"


def test_the_lease_is_released_even_when_a_batch_fails(no_orphans: None) -> None:
    executor = RecordingExecutor()
    mw = ProcessBatchMiddleware(faults.raise_value_error, executor=executor, name="bad")

    async def main() -> None:
        async with started(mw):
            with pytest.raises(ProcessBatchError, match="fn raised ValueError"):
                await mw.submit(0, rows(0))

    run(main)
    assert executor.released == 1 and mw.worker_pids() == []


def test_a_startup_failure_leaves_no_lease_and_no_worker(no_orphans: None) -> None:
    executor = RecordingExecutor()
    mw = ProcessBatchMiddleware(faults.LoadsNowhere(), executor=executor, name="nowhere")

    async def main() -> None:
        with pytest.raises(WorkerStartupError, match="'nowhere'"):
            await mw.on_start(context(mw.name))
        assert mw.worker_pids() == []
        await mw.on_stop(context(mw.name))  # nothing to release: a no-op

    run(main)
    assert executor.leases == [] and executor.released == 0


def test_the_default_executor_starts_a_fresh_pool_per_run_and_leaves_nothing(
    no_orphans: None,
) -> None:
    mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, max_workers=1)

    async def one_run() -> list[int]:
        async with started(mw):
            await mw.submit(0, rows(0))
            return mw.worker_pids()

    first, second = run(one_run), run(one_run)
    assert first != second and alive(first + second) == []


def test_worker_pool_and_the_default_are_executors() -> None:
    assert isinstance(WorkerPool(max_workers=1), Executor)
    assert isinstance(PerRunExecutor(), Executor)


# ------------------------------------------------------------------ start-up


PROBE = textwrap.dedent(
    """
    import json, sys
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from agora import IterableBatchSource, MemorySink, Pipeline, ProcessBatchMiddleware, WorkerPool
    from agora.process.zygote import zygote_pid
    from tests.process import faults


    def main() -> None:
        if sys.argv[1] == "foreign":
            # Someone else starts the interpreter's forkserver first, with its own
            # (default) preload list.
            ctx = multiprocessing.get_context("forkserver")
            with ProcessPoolExecutor(1, mp_context=ctx) as ppe:
                ppe.submit(sum, [1, 2]).result()
        pool = WorkerPool(max_workers=2)
        executor = pool if sys.argv[2] == "shared" else None
        mw = ProcessBatchMiddleware(faults.report_pyarrow_inherited, executor=executor)
        sink = MemorySink()
        batches = [[{"id": b}] for b in range(4)]
        Pipeline(IterableBatchSource(batches), id="probe").pipe(mw).build(sink).run_sync()
        print(json.dumps({
            "inherited": [r["pyarrow_inherited"] for r in sink.records],
            "zygote": zygote_pid(),
            "workers": sorted({r["pid"] for r in sink.records}),
            "idle": pool.idle_pids(),
        }))
        # Exit without closing the pool: its idle workers and the zygote must still go.


    if __name__ == "__main__":
        main()
    """
)


def _probe(tmp_path: Path, foreign: str, executor: str) -> dict[str, Any]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), foreign, executor], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _gone(pids: list[int], grace_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + grace_s
    while (living := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return living


@pytest.mark.parametrize("executor", ["default", "shared"])
@pytest.mark.parametrize("foreign", ["foreign", "alone"])
def test_workers_inherit_pyarrow_whoever_started_a_forkserver_first(
    tmp_path: Path, foreign: str, executor: str
) -> None:
    result = _probe(tmp_path, foreign, executor)
    assert result["inherited"] == [True] * 4, (
        "a worker imported pyarrow itself instead of inheriting it from Agora's zygote")
    if executor == "shared":
        assert result["idle"], "vacuous: the shared pool kept no idle worker"
    left = _gone([result["zygote"], *result["workers"], *result["idle"]])
    assert left == [], f"processes outlived the driver: {left}"


def test_stop_zygote_stops_it_and_the_next_pool_starts_a_new_one(no_orphans: None) -> None:
    mw = ProcessBatchMiddleware(faults.report_pyarrow_inherited, max_workers=1)

    async def one_run() -> list[Any]:
        async with started(mw):
            return await mw.submit(0, rows(0))

    run(one_run)
    first = zygote_pid()
    assert first is not None and psutil.pid_exists(first)
    stop_zygote()
    assert zygote_pid() is None and _gone([first]) == []
    stop_zygote()  # idempotent
    (record, *_) = run(one_run)
    assert record["pyarrow_inherited"] is True
    assert zygote_pid() not in (None, first)


KILLED_DRIVER = textwrap.dedent(
    """
    import os, signal

    from agora import IterableBatchSource, MemorySink, Pipeline, ProcessBatchMiddleware, WorkerPool
    from tests.process import faults

    if __name__ == "__main__":
        pool = WorkerPool(max_workers=2)
        mw = ProcessBatchMiddleware(faults.tag_with_worker_pid, executor=pool)
        Pipeline(IterableBatchSource([[{"id": 1, "value": 1}]])).pipe(mw).build(
            MemorySink()).run_sync()
        assert pool.idle_workers() == 2
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no finalizers, no close()
    """
)


def test_a_sigkilled_driver_leaves_neither_its_zygote_nor_idle_shared_workers(
    tmp_path: Path,
) -> None:
    (tmp_path / "driver.py").write_text(KILLED_DRIVER)
    report = tmp_path / "reaper.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "tests.process.reaper", str(report), "--", sys.executable,
         str(tmp_path / "driver.py")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False)
    data = json.loads(report.read_text())
    assert data["returncode"] == -9, data
    assert data["left"] == [], f"left behind by a killed driver: {data['left']}"
