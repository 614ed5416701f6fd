"""Fail-closed checkpoints (contract §7, §8): a corrupt, truncated, orphaned or foreign
checkpoint stops the run with ``CheckpointError`` before anything is opened or written —
never a silent restart from scratch, which would re-deliver everything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agora import (
    CheckpointError,
    DeliveryConfig,
    IterableSource,
    JsonLinesSink,
    Pipeline,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from preservation.crashloop import CrashLoop, prepare

PID = "integrity"
ROWS = [{"id": i} for i in range(20)]


def _bound(tmp_path: Path, *, source_name: str = "numbers") -> tuple[object, Path, Path]:
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.db"
    bound = Pipeline(IterableSource(ROWS, name=source_name), id=PID).build(
        JsonLinesSink(out),
        delivery=DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore(tmp_path / "ckpt.db"),
                                dlq=SQLiteDLQSink(dlq), checkpoint_every=5))
    return bound, out, dlq


def _finished_run(tmp_path: Path) -> None:
    bound, out, _ = _bound(tmp_path)
    assert bound.run_sync().records_written == len(ROWS)
    out.unlink()  # so "nothing written" below is simply "the file was not created"


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64) + b"definitely not an sqlite database" * 64)


def _truncate(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", [_garbage, _truncate], ids=["garbage", "zero-bytes"])
def test_a_damaged_checkpoint_refuses_to_start_and_writes_nothing(tmp_path: Path,
                                                                  damage: object) -> None:
    _finished_run(tmp_path)
    damage(tmp_path / "ckpt.db")  # type: ignore[operator]
    bound, out, dlq = _bound(tmp_path)
    dlq_before = dlq.read_bytes()
    with pytest.raises(CheckpointError, match="ckpt.db"):
        bound.run_sync()
    assert not out.exists(), "the sink was opened despite an untrustworthy checkpoint"
    assert dlq.read_bytes() == dlq_before


@pytest.mark.timeout(30)
def test_a_foreign_checkpoint_refuses_to_start_and_writes_nothing(tmp_path: Path) -> None:
    _finished_run(tmp_path)
    bound, out, _ = _bound(tmp_path, source_name="other-numbers")
    with pytest.raises(CheckpointError, match="foreign"):
        bound.run_sync()
    assert not out.exists()
    with SyncSQLiteCheckpointStore(tmp_path / "ckpt.db") as store:
        kept = store.load(PID)
    assert kept is not None and kept.source == "numbers" and kept.value == len(ROWS)


def _crashed_driver(tmp_path: Path) -> CrashLoop:
    prepare(tmp_path, lane="rows", n=1000, batch_size=10, checkpoint_every=50, seed=3)
    loop = CrashLoop(tmp_path)
    loop.run_driver("checkpoint_save:3")
    assert loop.crashes == 1, loop.history()
    return loop


def _remove_keeping_wal(path: Path) -> None:
    assert Path(f"{path}-wal").exists(), "SIGKILL should have left the -wal file behind"
    path.unlink()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("damage", [_garbage, _truncate, _remove_keeping_wal],
                         ids=["garbage", "zero-bytes", "deleted-with-wal-left"])
def test_damage_after_a_sigkill_makes_the_resume_fail_closed(tmp_path: Path, damage: object,
                                                             no_orphans: None) -> None:
    loop = _crashed_driver(tmp_path)
    out_before = (tmp_path / "out.jsonl").read_bytes()
    damage(tmp_path / "ckpt.db")  # type: ignore[operator]
    with pytest.raises(AssertionError, match="CheckpointError"):
        loop.run_driver(None)  # rc 1: the driver reports the run's exception
    assert (tmp_path / "out.jsonl").read_bytes() == out_before, "output changed"
