"""Crash safety (contract §7): the driver process is SIGKILLed at seeded points — after a
sink write, after the sinks are flushed, after a DLQ write, after the DLQ is committed
but before the checkpoint, right after a checkpoint — and rerun until it finishes. Then,
in Kafka ``test_bounce`` terms: nothing is missing, duplicates are bounded, the DLQ holds
exactly the poison records, sink and DLQ are disjoint, and the loop was not vacuous."""

from __future__ import annotations

import csv
import hashlib
import json
import signal
from pathlib import Path

import pytest

from agora import SyncSQLiteCheckpointStore
from preservation.audit import check_bounce, dlq_id, dlq_records, output_ids, sink_ids
from preservation.crashloop import CrashLoop, assert_no_tagged_processes, plan_crashes, prepare
from preservation.driver import OUTPUT_FILES, PIPELINE_ID

N = 3000
BATCH = 25
CHECKPOINT_EVERY = 100
ROUNDS = 3
#: Records a crash may duplicate: everything handled since the last durable checkpoint
#: (fewer than checkpoint_every before the save that was due) plus the unit in flight.
DUP_BOUND_PER_CRASH = CHECKPOINT_EVERY + BATCH


def _dlq_path(workdir: Path, lane: str) -> Path:
    return workdir / ("dlq.jsonl" if lane == "batches" else "dlq.db")


def _stored_checkpoint(workdir: Path) -> object:
    with SyncSQLiteCheckpointStore(workdir / "ckpt.db", create=False) as store:
        checkpoint = store.load(PIPELINE_ID)
    assert checkpoint is not None, "the finished run left no checkpoint"
    return checkpoint.value


def _end_position(workdir: Path, lane: str, spec: dict) -> object:
    data = (workdir / "input.csv").read_bytes()
    # At the end the source has consumed the whole input, and its fingerprint says so.
    consumed = {"input": {"consumed": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    if lane in ("rows", "batches"):
        return {"line": N + 1, "byte": len(data), **consumed}
    malformed = len(spec["malformed"])
    # ArrowCsvSource also records where a resume seeks to: here, the end of the file.
    seek = {"byte": len(data), "line": N + 1, "row": N - malformed, "malformed": malformed}
    return {"row": N - malformed, "malformed": malformed, **consumed, "seek": seek}


def check_outside_kills(tmp_path: Path, loop: CrashLoop, seed: int) -> None:
    """SIGKILL a row-lane run of ``loop``'s driver from outside at moments drawn from
    ``seed``, run it to completion, and check nothing was lost (duplicates bounded per
    crash). For the preservation files that rerun this loop with their own driver."""
    n, batch, every = 4000, 50, 200
    spec = prepare(tmp_path, lane="rows", n=n, batch_size=batch, checkpoint_every=every,
                   seed=seed, sink_delay_s=0.004)
    loop.run_killed_from_outside(seed, ROUNDS)
    assert loop.crashes >= 1, loop.history()
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    check_bounce(n=n, crashes=loop.crashes, sink=sink_ids(tmp_path / "out.jsonl"),
                 dlq=[dlq_id(r) for r in dlq_records(tmp_path / "dlq.db")],
                 poison=poison, dup_bound_per_crash=every + batch)


def _check_loop(workdir: Path, lane: str, spec: dict, loop: CrashLoop, final: dict) -> None:
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    dlq = [dlq_id(r) for r in dlq_records(_dlq_path(workdir, lane))]
    report = check_bounce(n=N, crashes=loop.crashes, sink=sink_ids(workdir / "out.jsonl"),
                          dlq=dlq, poison=poison, dup_bound_per_crash=DUP_BOUND_PER_CRASH)
    assert report.sink_duplicates <= loop.crashes * DUP_BOUND_PER_CRASH, loop.history()
    end = _end_position(workdir, lane, spec)
    assert final["last_checkpoint"] == end, loop.history()
    assert _stored_checkpoint(workdir) == end


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("lane", ["rows", "batches", "arrow"])
def test_sigkill_at_seeded_points_loses_nothing(tmp_path: Path, lane: str, seed: int,
                                                 no_orphans: None) -> None:
    spec = prepare(tmp_path, lane=lane, n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed)
    loop = CrashLoop(tmp_path)
    final = loop.run(plan_crashes(seed, ROUNDS))
    _check_loop(tmp_path, lane, spec, loop, final)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", ["sink_write:3", "sink_flush:2", "dlq_write:1",
                                   "dlq_flush:2", "checkpoint_save:2"])
def test_each_crash_point_alone_loses_nothing(tmp_path: Path, point: str,
                                              no_orphans: None) -> None:
    """One deterministic crash at every named point, on the row lane with a SQLite DLQ
    (whose dedupe keeps a replayed dead letter from being stored twice)."""
    spec = prepare(tmp_path, lane="rows", n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=5)
    loop = CrashLoop(tmp_path)
    final = loop.run([point])
    assert loop.crashes == 1, loop.history()
    _check_loop(tmp_path, "rows", spec, loop, final)
    rows = dlq_records(tmp_path / "dlq.db")
    assert len(rows) == len({dlq_id(r) for r in rows}), "a replayed dead letter was stored twice"


@pytest.mark.timeout(60)
def test_resuming_a_finished_run_emits_nothing(tmp_path: Path, no_orphans: None) -> None:
    prepare(tmp_path, lane="arrow", n=N, batch_size=BATCH,
            checkpoint_every=CHECKPOINT_EVERY, seed=21)
    loop = CrashLoop(tmp_path)
    first = loop.run(["checkpoint_save:3"])
    assert loop.crashes == 1 and first["consumed"] > 0
    before = (tmp_path / "out.jsonl").read_bytes()
    dlq_before = len(dlq_records(tmp_path / "dlq.db"))
    again = json.loads(loop.run_driver(None).stdout.strip().splitlines()[-1])
    assert again["consumed"] == 0 and again["written"] == 0
    assert again["resumed_from"] == first["last_checkpoint"]
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert len(dlq_records(tmp_path / "dlq.db")) == dlq_before


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [31, 32])
def test_sigkill_with_process_workers_loses_nothing_and_leaves_no_worker(
    tmp_path: Path, seed: int, no_orphans: None
) -> None:
    """The Arrow process lane under driver kills: same guarantees, and the workers of each
    killed driver die with it (they are no longer our descendants, so they are found by
    an environment tag)."""
    spec = prepare(tmp_path, lane="arrow_process", n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed)
    loop = CrashLoop(tmp_path)
    plan = plan_crashes(seed, ROUNDS)
    for crash in [*plan, None]:
        proc = loop.run_driver(crash)
        assert_no_tagged_processes(loop.tag)
        if proc.returncode == 0:
            final = json.loads(proc.stdout.strip().splitlines()[-1])
            break
    _check_loop(tmp_path, "arrow_process", spec, loop, final)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("lane", "seed"), [("rows", 41), ("batches", 42), ("arrow", 43),
                                            ("arrow_process", 44)])
def test_sigkill_from_outside_at_random_moments_loses_nothing(
    tmp_path: Path, lane: str, seed: int, no_orphans: None
) -> None:
    """Kills that land wherever the driver happens to be — mid-write, mid-fsync, inside an
    SQLite commit — not only at the named points. A slow sink keeps the run long enough."""
    n, batch, every = 6000, 50, 200
    spec = prepare(tmp_path, lane=lane, n=n, batch_size=batch, checkpoint_every=every,
                   seed=seed, sink_delay_s=0.004)
    loop = CrashLoop(tmp_path)
    final = loop.run_killed_from_outside(seed, ROUNDS, check_processes=True)
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    check_bounce(n=n, crashes=loop.crashes, sink=sink_ids(tmp_path / "out.jsonl"),
                 dlq=[dlq_id(r) for r in dlq_records(_dlq_path(tmp_path, lane))],
                 poison=poison, dup_bound_per_crash=every + batch)
    assert final["last_checkpoint"] == _stored_checkpoint(tmp_path), loop.history()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", ["rows", "arrow_process"])
def test_sigint_stops_cleanly_and_the_resume_loses_nothing(
    tmp_path: Path, lane: str, no_orphans: None
) -> None:
    """Ctrl-C (SIGINT) mid-run: the driver exits 130 after shutting down (workers
    terminated, sink flushed and closed: the file ends in a whole line), and a resumed run
    completes the work with no loss."""
    n, batch, every = 6000, 50, 200
    spec = prepare(tmp_path, lane=lane, n=n, batch_size=batch, checkpoint_every=every,
                   seed=51, sink_delay_s=0.004)
    loop = CrashLoop(tmp_path)
    proc = loop.run_signalled(signal.SIGINT, 0.15)
    assert proc.returncode == 130, loop.history()
    assert "interrupted" in proc.stderr
    assert_no_tagged_processes(loop.tag)
    assert (tmp_path / "out.jsonl").read_bytes().endswith(b"\n")
    interrupted_at = len(sink_ids(tmp_path / "out.jsonl"))
    assert 0 < interrupted_at < n, "vacuous: the interrupt did not land mid-run"
    final = json.loads(loop.run_driver(None).stdout.strip().splitlines()[-1])
    assert final["resumed_from"] is not None
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    check_bounce(n=n, crashes=1, sink=sink_ids(tmp_path / "out.jsonl"),
                 dlq=[dlq_id(r) for r in dlq_records(_dlq_path(tmp_path, lane))],
                 poison=poison, dup_bound_per_crash=every + batch)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lane", ["rows", "arrow"])
@pytest.mark.parametrize("sink", ["csv", "parquet"])
def test_sigkill_with_csv_and_parquet_output_loses_nothing(tmp_path: Path, sink: str,
                                                           lane: str, no_orphans: None) -> None:
    """The same guarantees when the output is a CSV file (appended, one header) or a
    Parquet file (sealed parts merged on resume)."""
    seed = 61 if sink == "csv" else 62
    spec = prepare(tmp_path, lane=lane, n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed, sink=sink)
    loop = CrashLoop(tmp_path)
    final = loop.run(plan_crashes(seed, ROUNDS))
    out = tmp_path / OUTPUT_FILES[sink]
    if sink == "csv":
        with open(out, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert rows[0] == ["id", "name", "value"]
        assert rows.count(rows[0]) == 1, "header written more than once"
    poison = set(spec["malformed"]) | set(spec["middleware_poison"]) | set(spec["sink_poison"])
    check_bounce(n=N, crashes=loop.crashes, sink=output_ids(out),
                 dlq=[dlq_id(r) for r in dlq_records(_dlq_path(tmp_path, lane))],
                 poison=poison, dup_bound_per_crash=DUP_BOUND_PER_CRASH)
    assert final["last_checkpoint"] == _end_position(tmp_path, lane, spec), loop.history()
