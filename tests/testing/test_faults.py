"""Each fault injector fails exactly where it is told to, in-process and in a worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
import pytest

from agora import ProcessBatchError, ProcessBatchMiddleware
from agora.middleware import MiddlewareContext
from agora.testing import (
    Chain,
    DropOn,
    ExitWorkerOn,
    Identity,
    InjectedFault,
    KillWorkerOn,
    RaiseOn,
    SegfaultOn,
    ShortResultOn,
    SleepyTransform,
    WaitForFile,
    record_ids,
)


def batch(first: int, n: int = 3) -> list[dict[str, Any]]:
    return [{"id": first + i} for i in range(n)]


def test_record_ids_reads_dicts_lists_text_ids_and_arrow():
    assert record_ids({"id": 4}) == [4]
    assert record_ids([{"id": "7"}, {"id": 8}]) == [7, 8]
    assert record_ids(pa.record_batch({"id": pa.array([1, 2], pa.int64())})) == [1, 2]


def test_raise_on_fires_only_on_its_ids_with_an_injected_fault():
    fault = RaiseOn("bad row", ids={4})
    assert fault(batch(0)) == batch(0)
    with pytest.raises(InjectedFault, match=r"bad row \(ids \[3, 4, 5\]"):
        fault(batch(3))


def test_batch_targets_count_fixed_size_batches_from_zero():
    fault = RaiseOn(batch=2, batch_size=10)
    assert fault(batch(10)) == batch(10)
    with pytest.raises(InjectedFault):
        fault(batch(20))


def test_a_batch_target_without_a_batch_size_is_refused():
    with pytest.raises(ValueError,
                       match="RaiseOn: batch_size must be a positive int when batch= is given"):
        RaiseOn(batch=1)


def test_drop_and_short_result_change_only_their_targets():
    assert DropOn(ids={1})(batch(0)) == [{"id": 0}, None, {"id": 2}]
    assert ShortResultOn(ids={1})(batch(0)) == [{"id": 1}, {"id": 2}]
    assert ShortResultOn(ids={9})(batch(0)) == batch(0)
    arrow = pa.record_batch({"id": pa.array([0, 1, 2])})
    assert ShortResultOn(ids={0})(arrow).num_rows == 2


def test_sleepy_transform_logs_start_and_finish_order(tmp_path):
    sleepy = SleepyTransform(0, log_dir=tmp_path)
    Chain(Identity(), sleepy)(batch(5))
    sleepy(batch(9))
    assert (tmp_path / "started-5").exists() and (tmp_path / "started-9").exists()
    assert (tmp_path / "done.log").read_text() == "5\n9\n"


def _run_in_pool(fn: Any, batches: list[list[dict[str, Any]]],
                 deaths: list[int] | None = None) -> list[Any]:
    """Results of ``batches`` through a one-worker pool; appends its worker deaths to
    ``deaths``."""
    mw = ProcessBatchMiddleware(fn, max_workers=1, name="injected")

    async def main() -> list[Any]:
        ctx = MiddlewareContext(pipeline_id="p", run_id="r", middleware_name=mw.name,
                                middleware_index=0)
        await mw.on_start(ctx)
        try:
            return await asyncio.gather(*(mw.submit(i, b) for i, b in enumerate(batches)),
                                        return_exceptions=True)
        finally:
            await mw.on_stop(ctx)
            if deaths is not None:
                deaths.append(mw.metrics()["worker_deaths"])

    return asyncio.run(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("fault", "cause"), [
    (KillWorkerOn(ids={4}), "killed by SIGKILL"),
    (SegfaultOn(ids={4}), "killed by SIGSEGV"),
    (ExitWorkerOn(code=7, ids={4}), "exited with code 7"),
], ids=["kill", "segfault", "exit"])
def test_worker_killers_kill_only_on_their_batch(no_orphans, fault, cause):
    results = _run_in_pool(fault, [batch(0), batch(3), batch(6)])
    assert results[0] == batch(0) and results[2] == batch(6)
    assert isinstance(results[1], ProcessBatchError) and cause in str(results[1])


@pytest.mark.timeout(60)
def test_kill_worker_once_dies_on_the_first_attempt_only(no_orphans, tmp_path):
    deaths: list[int] = []
    results = _run_in_pool(KillWorkerOn(ids={4}, once_dir=tmp_path), [batch(0), batch(3)],
                           deaths)
    assert results == [batch(0), batch(3)]  # the re-run of batch 1 succeeded
    assert deaths == [1] and (tmp_path / "killed-3").exists()  # the first attempt died


def test_wait_for_file_returns_once_the_file_exists_and_ignores_other_batches(tmp_path):
    import threading

    marker = tmp_path / "go"
    wait = WaitForFile(marker, ids={4}, timeout_s=10)
    assert wait(batch(0)) == batch(0)  # not its batch: returns at once, file or not
    threading.Timer(0.05, marker.touch).start()
    assert wait(batch(3)) == batch(3)  # its batch: returned only after the file appeared
    assert marker.exists()


def test_wait_for_file_raises_an_injected_fault_when_the_file_never_appears(tmp_path):
    wait = WaitForFile(tmp_path / "never", batch=1, batch_size=3, timeout_s=0.05)
    with pytest.raises(InjectedFault, match="never.*did not appear within 0.05 s"):
        wait(batch(3))
