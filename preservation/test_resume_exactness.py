"""Exact resume end to end (contract §3, §6, §7): runs cut short by ``max_records`` (which
trims a batch mid-way) and resumed from an SQLite checkpoint deliver every record exactly
once, in order, to a sink built with the default truncating mode — the runtime tells it
to continue its output on resume; drops are counted and passed on every lane, also when
they happen in a worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from agora import (
    DeliveryConfig,
    FilterMiddleware,
    IterableBatchSource,
    JsonLinesSink,
    Pipeline,
    SyncSQLiteCheckpointStore,
)
from preservation.audit import AuditingCheckpointStore, sink_ids
from preservation.faults import DropOn, Identity
from preservation.lanes import LANES, N, ROW_GROUP, covered, rows, source_for

PID = "exact"


def _chain(lane: str, through_workers: bool) -> tuple:
    if not through_workers:
        return ()
    from agora import ArrowProcessBatchMiddleware, ProcessBatchMiddleware

    cls = ArrowProcessBatchMiddleware if lane == "arrow" else ProcessBatchMiddleware
    return (cls(Identity(), max_workers=2, max_in_flight_batches=3),)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("lane", "through_workers"),
                         [(lane, False) for lane in LANES] + [("batches", True), ("arrow", True)])
def test_runs_cut_by_max_records_resume_exactly(tmp_path: Path, lane: str,
                                                through_workers: bool, no_orphans: None) -> None:
    out = tmp_path / "out.jsonl"
    cuts = [17, 20, 1, None]  # 17 and 38 fall inside a batch of 6 and a writer group of 4
    expected_cover = [17, 37, 38, N]
    for limit, cover in zip(cuts, expected_cover, strict=True):
        store = AuditingCheckpointStore(SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"),
                                        covered=covered(lane), sink_paths=[out], dlq_path=None)
        bound = Pipeline(source_for(lane), id=PID).pipe(*_chain(lane, through_workers)).build(
            JsonLinesSink(out), delivery=DeliveryConfig(checkpoint=store, checkpoint_every=5,
                                                         batch_size=ROW_GROUP))
        summary = bound.run_sync(max_records=limit)
        assert not store.violations, store.violations
        assert covered(lane)(summary.last_checkpoint_value) == cover, (limit, summary.last_checkpoint)
        assert sink_ids(out) == list(range(cover)), f"after max_records={limit}"


@pytest.mark.timeout(60)
def test_drops_in_a_worker_and_before_it_are_counted_and_passed(
    tmp_path: Path, no_orphans: None
) -> None:
    from agora import ProcessBatchMiddleware

    data = rows()
    out = tmp_path / "out.jsonl"
    dropped_before = {i for i in range(N) if i % 7 == 0}
    dropped_in_worker = {i for i in range(N) if i % 5 == 0} - dropped_before
    store = AuditingCheckpointStore(
        SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"), covered=lambda v: v["batch"] * 6,
        sink_paths=[out], dlq_path=None, excused=dropped_before | dropped_in_worker)
    summary = Pipeline(IterableBatchSource([data[i:i + 6] for i in range(0, N, 6)]),
                       id=PID).pipe(
        FilterMiddleware(lambda r: r["id"] not in dropped_before, name="pre"),
        ProcessBatchMiddleware(DropOn(ids=dropped_in_worker), max_workers=2,
                               max_in_flight_batches=2, name="proc"),
    ).build(JsonLinesSink(out), delivery=DeliveryConfig(checkpoint=store,
                                                          checkpoint_every=1)).run_sync()
    assert sink_ids(out) == [i for i in range(N) if i not in dropped_before | dropped_in_worker]
    assert summary.records_dropped == len(dropped_before) + len(dropped_in_worker)
    assert summary.by_middleware["proc"]["dropped"] == len(dropped_in_worker)
    assert summary.by_middleware["proc"]["in"] == N - len(dropped_before)  # stripped first
    assert not store.violations, store.violations
    assert store.saves[-1] == {"batch": N // 6, "row": 0}
