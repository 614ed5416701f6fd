"""Process-isolated middleware end to end (contract §6, §7), on the row lane
(``ProcessBatchMiddleware``) and the Arrow lane (``ArrowProcessBatchMiddleware``), with
real worker processes, a JSON-lines sink, an SQLite DLQ and an audited SQLite checkpoint
store: timeouts recycle the pool and invalidate siblings, worker deaths re-run the
innocent and dead-letter the poison, commits follow source order whatever the completion
order, cancellation is prompt, ``fail_closed`` stops with the ``ProcessBatchError``, and no
worker outlives any test. Every test runs on both executors: the default pool per run and a
shared ``WorkerPool`` (closed at the end of the test, before the orphan check)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from agora import (
    AgoraError,
    DeliveryConfig,
    JsonLinesSink,
    Pipeline,
    ProcessBatchError,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
    WorkerPool,
)
from preservation.audit import AuditingCheckpointStore, dlq_id, dlq_records, sink_ids
from preservation.faults import (
    Chain,
    ExitWorkerOn,
    FlakySink,
    Identity,
    InjectedFault,
    KillWorkerOn,
    PacedBatchSource,
    RaiseOn,
    SegfaultOn,
    ShortResultOn,
    SleepyTransform,
    WaitForFile,
)

SIZE = 4  # records per batch
LANES = ("rows", "arrow")
PID = "process-lanes"


def _batches(lane: str, count: int) -> list[Any]:
    out = []
    for b in range(count):
        rows = [{"id": b * SIZE + i, "value": float(b)} for i in range(SIZE)]
        out.append(pa.RecordBatch.from_pylist(rows) if lane == "arrow" else rows)
    return out


EXECUTORS = ("default", "shared")
_executor: list[WorkerPool | None] = [None]


@pytest.fixture(autouse=True, params=EXECUTORS)
def executor(request: pytest.FixtureRequest, no_orphans: None) -> Iterator[WorkerPool | None]:
    """The executor every middleware of the test runs on: None (a pool per run) or a
    WorkerPool, closed before ``no_orphans`` checks that nothing is left."""
    pool = WorkerPool(max_workers=4) if request.param == "shared" else None
    _executor[0] = pool
    try:
        yield pool
    finally:
        _executor[0] = None
        if pool is not None:
            pool.close()


def _middleware(lane: str, fn: Any, **kw: Any) -> Any:
    from agora import ArrowProcessBatchMiddleware, ProcessBatchMiddleware

    cls = ArrowProcessBatchMiddleware if lane == "arrow" else ProcessBatchMiddleware
    return cls(fn, name="proc", executor=_executor[0], **kw)


class Harness:
    """One pipeline: paced batch source → process middleware → JSON-lines file sink, with
    an SQLite DLQ (optional) and an audited SQLite checkpoint store (saves every batch)."""

    def __init__(self, tmp_path: Path, lane: str, fn: Any, *, batches: int = 8,
                 delays: dict[int, float] | None = None, dlq: bool = True,
                 sink_fail: set[int] = frozenset(), **mw: Any) -> None:
        self.out = tmp_path / "out.jsonl"
        self.dlq_path = tmp_path / "dlq.db" if dlq else None
        self.n = batches * SIZE
        self.store = AuditingCheckpointStore(
            SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"), covered=lambda v: int(v) * SIZE,
            sink_paths=[self.out], dlq_path=self.dlq_path)
        self.sink = FlakySink(JsonLinesSink(self.out), fail_on=sink_fail, name="out")
        self.source = PacedBatchSource(_batches(lane, batches), delays=delays)
        self.bound = Pipeline(self.source, id=PID).pipe(_middleware(lane, fn, **mw)).build(
            self.sink,
            delivery=DeliveryConfig(
                checkpoint=self.store, checkpoint_every=1,
                dlq=SQLiteDLQSink(self.dlq_path) if dlq else None),
        )

    def dlq(self) -> list[Any]:
        return dlq_records(self.dlq_path) if self.dlq_path else []

    def assert_audit_clean(self) -> None:
        assert not self.store.violations, self.store.violations
        assert self.store.saves, "vacuous: no checkpoint was saved"

    def stored_batches(self) -> int:
        with SyncSQLiteCheckpointStore(self.store.inner.path) as store:
            checkpoint = store.load(PID)
        return 0 if checkpoint is None else int(checkpoint.value)


def _ids(first_batch: int, last_batch: int) -> list[int]:
    return list(range(first_batch * SIZE, (last_batch + 1) * SIZE))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_timeout_recycles_invalidates_the_running_sibling_and_later_batches_succeed(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    # Batches 0 and 1 both hang; batch 1 is submitted 0.5 s after batch 0, so when batch 0
    # times out batch 1 is still running on the same generation: it must be invalidated.
    logs = tmp_path / "logs"
    logs.mkdir()
    h = Harness(tmp_path, lane, SleepyTransform(60, batch={0, 1}, batch_size=SIZE,
                                                log_dir=logs),
                delays={1: 0.5}, max_workers=2, max_in_flight_batches=2, timeout_s=1.5)
    started = time.monotonic()
    summary = h.bound.run_sync()
    assert time.monotonic() - started < 30, "the run waited for the stuck worker's code"
    assert (logs / "started-4").exists(), "vacuous: batch 1 never ran alongside batch 0"
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(0, 1)
    assert {r.stage for r in dead} == {"batch_middleware"} and {r.middleware for r in dead} == {"proc"}
    assert {r.error_type for r in dead} == {"ProcessBatchError"}
    assert all("timed out" in r.error_message for r in dead[:SIZE])
    assert all("invalidated" in r.error_message for r in dead[SIZE:])
    assert all(isinstance(r.record, dict) for r in dead)  # Arrow rows dead-lettered as dicts
    assert sink_ids(h.out) == _ids(2, 7)  # later batches succeed on the fresh pool
    metrics = summary.runtime["process_batch"]["proc"]
    assert metrics["batches_timed_out"] == 1 and metrics["batches_invalidated"] == 1
    assert metrics["pool_recycles"] >= 1
    h.assert_audit_clean()
    assert h.stored_batches() == 8


KILLERS = {
    "sigkill": lambda: KillWorkerOn(batch=2, batch_size=SIZE),
    "segfault": lambda: SegfaultOn(batch=2, batch_size=SIZE),
    "exit": lambda: ExitWorkerOn(3, batch=2, batch_size=SIZE),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("killer", sorted(KILLERS))
@pytest.mark.parametrize("lane", LANES)
def test_worker_death_reruns_the_innocent_and_dead_letters_the_poison(
    tmp_path: Path, lane: str, killer: str, no_orphans: None
) -> None:
    # Batch 2 kills its worker every time (poison); batch 0 only on its first attempt
    # (an innocent whose worker died under it). Batch 2 waits for batch 0's first death,
    # so batch 0 has always run once before any pool break: had it been only dispatched
    # when batch 2 broke the pool, its first real run would be the lone re-run of a
    # suspect, and a suspect that dies alone is rightly judged the culprit.
    once = tmp_path / "once"
    once.mkdir()
    fn = Chain(WaitForFile(once / "killed-0", batch=2, batch_size=SIZE, timeout_s=20),
               KILLERS[killer](), KillWorkerOn(batch=0, batch_size=SIZE, once_dir=once))
    h = Harness(tmp_path, lane, fn, max_workers=2, max_in_flight_batches=4, timeout_s=30)
    summary = h.bound.run_sync()
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(2, 2), "only the poison batch is dead-lettered"
    assert all("worker died" in r.error_message for r in dead)
    assert {r.stage for r in dead} == {"batch_middleware"}
    assert (once / "killed-0").exists(), "vacuous: batch 0 never killed a worker"
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 2]
    assert summary.records_errored == SIZE and summary.records_written == h.n - SIZE
    assert summary.runtime["process_batch"]["proc"]["pool_recycles"] >= 2
    h.assert_audit_clean()
    assert h.stored_batches() == 8


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_a_fn_that_kills_every_worker_stops_the_run_instead_of_flooding_the_dlq(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    h = Harness(tmp_path, lane, KillWorkerOn(batch=range(30), batch_size=SIZE), batches=30,
                max_workers=2, max_in_flight_batches=2, timeout_s=30)
    with pytest.raises(ProcessBatchError) as info:
        h.bound.run_sync()
    assert "worker" in str(info.value)
    dead = h.dlq()
    assert len(dead) < h.n // 2, f"{len(dead)} of {h.n} records dead-lettered: DLQ flooded"
    assert not h.store.violations, h.store.violations
    assert h.stored_batches() < 30


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_commits_follow_source_order_when_batches_complete_out_of_order(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    fn = Chain(RaiseOn("poison batch", batch=3, batch_size=SIZE),
               SleepyTransform(1.0, batch=0, batch_size=SIZE, log_dir=logs))
    h = Harness(tmp_path, lane, fn, max_workers=4, max_in_flight_batches=4, timeout_s=30)
    h.bound.run_sync()
    done = [int(x) for x in (logs / "done.log").read_text().split()]
    assert done[0] != 0, f"vacuous: batch 0 finished first ({done}); nothing overtook it"
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 3]  # source order
    assert [dlq_id(r) for r in h.dlq()] == _ids(3, 3)
    assert h.store.saves == list(range(1, 9)), "checkpoints must advance batch by batch"
    h.assert_audit_clean()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_cancelling_the_run_terminates_sleeping_workers_promptly(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    h = Harness(tmp_path, lane, SleepyTransform(5.0, log_dir=logs), max_workers=2,
                max_in_flight_batches=2)

    async def main() -> float:
        task = asyncio.create_task(h.bound.run())
        deadline = time.monotonic() + 20
        while not any(logs.glob("started-*")):
            assert time.monotonic() < deadline, "no worker ever started a batch"
            assert not task.done(), task
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - cancelled_at

    took = asyncio.run(main())
    assert took < 3.0, f"cancellation took {took:.1f} s while workers slept 5 s"
    assert h.sink.state.value == "closed"
    assert sink_ids(h.out) == [] and h.stored_batches() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_fail_closed_timeout_stops_with_the_original_process_batch_error(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    h = Harness(tmp_path, lane, SleepyTransform(60, batch=3, batch_size=SIZE), dlq=False,
                max_workers=2, max_in_flight_batches=2, timeout_s=1.0)
    with pytest.raises(ProcessBatchError) as info:
        h.bound.run_sync()
    err = info.value
    assert err.timed_out and not err.invalidated and err.batch_index == 3
    assert err.middleware_name == "proc" and "proc" in str(err) and "3" in str(err)
    assert sink_ids(h.out) == _ids(0, 2)
    h.assert_audit_clean()
    assert h.stored_batches() == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_fail_closed_raise_in_fn_stops_with_a_process_batch_error_naming_the_cause(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    h = Harness(tmp_path, lane, RaiseOn("broken transform", batch=4, batch_size=SIZE),
                dlq=False, max_workers=2, max_in_flight_batches=2)
    with pytest.raises(AgoraError) as info:
        h.bound.run_sync()
    err = info.value
    assert isinstance(err, ProcessBatchError), type(err)
    assert err.batch_index == 4 and not err.timed_out
    assert "broken transform" in str(err) or "broken transform" in str(err.__cause__)
    assert sink_ids(h.out) == _ids(0, 3)
    h.assert_audit_clean()
    assert h.stored_batches() == 4


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_identity_through_workers_delivers_every_record_once(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    h = Harness(tmp_path, lane, Identity(), batches=20, max_workers=2, max_in_flight_batches=4)
    summary = h.bound.run_sync()
    assert sink_ids(h.out) == list(range(h.n)) and h.dlq() == []
    assert summary.records_written == h.n
    h.assert_audit_clean()
    assert h.store.saves == list(range(1, 21))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_a_sink_failure_stops_the_run_with_batches_still_in_the_workers(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    """Fail-closed on a sink error while later batches are still being computed: the
    sink's own exception comes out, nothing after the failed batch is committed, and the
    workers busy with later batches are stopped."""
    h = Harness(tmp_path, lane, SleepyTransform(0.3, batch=range(3, 20), batch_size=SIZE),
                batches=20, dlq=False, sink_fail={2 * SIZE + 1}, max_workers=2,
                max_in_flight_batches=4)
    with pytest.raises(InjectedFault, match=f"rejects record id={2 * SIZE + 1}"):
        h.bound.run_sync()
    assert set(sink_ids(h.out)) <= set(_ids(0, 2))
    assert h.stored_batches() == 2
    h.assert_audit_clean()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", LANES)
def test_a_wrong_length_result_is_that_batch_s_failure(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    h = Harness(tmp_path, lane, ShortResultOn(batch=5, batch_size=SIZE), max_workers=2,
                max_in_flight_batches=2)
    summary = h.bound.run_sync()
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(5, 5)
    assert {r.error_type for r in dead} == {"ProcessBatchError"}
    assert {r.stage for r in dead} == {"batch_middleware"}
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 5]
    assert summary.records_errored == SIZE
    h.assert_audit_clean()


@pytest.mark.timeout(60)
def test_an_unpicklable_record_fails_its_batch_and_is_still_dead_lettered(
    tmp_path: Path, no_orphans: None
) -> None:
    """A record that cannot cross the process boundary fails its batch (one DLQ record per
    input); the DLQ stores the record it cannot JSON-encode with a flagged fallback rather
    than dropping it (contract §6, §8)."""
    import threading

    h = Harness(tmp_path, "rows", Identity(), max_workers=2, max_in_flight_batches=2)
    h.source.batches[3][1] = {"id": 13, "value": threading.Lock()}
    summary = h.bound.run_sync()
    dead = h.dlq()
    assert [dlq_id(r) for r in dead] == _ids(3, 3)
    assert {r.stage for r in dead} == {"batch_middleware"}
    assert "pickle" in dead[0].error_message
    [odd] = [r for r in dead if not r.round_trippable]
    assert dlq_id(odd) == 13 and "lock" in str(odd.record["value"]).lower()
    assert summary.records_errored == SIZE
    assert sink_ids(h.out) == [i for i in range(h.n) if i // SIZE != 3]
    h.assert_audit_clean()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("lane", LANES)
def test_a_second_run_on_the_same_executor_after_a_timeout_loses_nothing(
    tmp_path: Path, lane: str, executor: WorkerPool | None
) -> None:
    # The same fn in two runs: on a WorkerPool the second run gets the first run's
    # (recycled, idle) generation back. Batch 2 hangs in both runs; everything else must
    # arrive exactly once, and batch 2 must be dead-lettered each time.
    hang = SleepyTransform(60, batch=2, batch_size=SIZE)
    for attempt in ("first", "second"):
        (tmp_path / attempt).mkdir()
        h = Harness(tmp_path / attempt, lane, hang, max_workers=2, max_in_flight_batches=2,
                    timeout_s=1.0)
        h.bound.run_sync()
        assert [dlq_id(r) for r in h.dlq()] == _ids(2, 2), attempt
        assert sink_ids(h.out) == [i for i in range(h.n) if i not in _ids(2, 2)], attempt
        h.assert_audit_clean()
    if executor is not None:
        assert executor.warm_leases == 1, "vacuous: the second run did not reuse workers"
