"""Crash safety with the checkpoint written in the background: the crash driver's row
pipeline saves its SQLite checkpoint on the checkpoint thread while the next unit is
written, and is SIGKILLed from that thread in the middle of a save — before the store
write (the next unit already in the sink, the position not yet durable) or right after
it (durable, its outcome not yet taken by the run). Rerun until it finishes, it loses
nothing, bounds duplicates as an inline save would, and dead-letters exactly the poison.

This file is also the driver for those runs: ``python -m
preservation.test_commit_overlap_crash WORKDIR`` runs ``preservation.driver`` with the
killing store in place of its checkpoint store."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agora import Checkpoint, DeliveryConfig, Pipeline, SyncSQLiteCheckpointStore
from preservation import driver
from preservation.crashloop import CrashLoop, prepare
from preservation.faults import CrashPoint
from preservation.test_crash_resume import BATCH, CHECKPOINT_EVERY, N, _check_loop

#: ``"<before|after>:<save number>"``: which background save SIGKILLs the driver, and when.
KILL_ENV = "AGORA_PRESERVATION_KILL_SAVE"
#: The file each kill appends the killing thread's name to (proof it was in the background).
MARKER = "killed-in-thread.txt"
#: How long the save thread waits before killing: long enough for the run to write the
#: next unit meanwhile (a unit of 25 rows takes well under this).
OVERLAP_S = 0.05

_DRIVER_BUILD = driver.build


class KillingBackgroundStore(SyncSQLiteCheckpointStore):
    """The SQLite store, saved on the checkpoint thread; SIGKILLs this process during save
    number ``count``, ``before`` or ``after`` the store write (see ``KILL_ENV``)."""

    def __init__(self, path: Path, workdir: Path, spec: str) -> None:
        super().__init__(path)
        self.workdir = workdir
        when, _, count = spec.partition(":") if spec else ("", "", "0")
        if when not in ("", "before", "after"):
            raise ValueError(f"{KILL_ENV} must be before:N or after:N; got {spec!r}")
        self.when = when
        self.count = int(count or 0)
        self.saves = 0

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.saves += 1
        due = self.saves == self.count
        if due and self.when == "before":
            self._kill()
        super().save(key, checkpoint)
        if due and self.when == "after":
            self._kill()

    def _kill(self) -> None:
        with open(self.workdir / MARKER, "a") as fh:
            fh.write(threading.current_thread().name + "\n")
        time.sleep(OVERLAP_S)
        os.kill(os.getpid(), signal.SIGKILL)


def build(workdir: Path, spec: dict[str, Any], crash: CrashPoint) -> Any:
    """The driver's row pipeline with ``KillingBackgroundStore`` as its checkpoint store."""
    bound = _DRIVER_BUILD(workdir, {**spec, "lane": "rows"}, crash)
    store = KillingBackgroundStore(workdir / "ckpt.db", workdir, os.environ.get(KILL_ENV, ""))
    delivery = DeliveryConfig(dlq=bound.delivery.dlq, checkpoint=store,
                              checkpoint_every=spec["checkpoint_every"],
                              batch_size=spec["batch_size"])
    return (Pipeline(bound.source, id=driver.PIPELINE_ID)
            .pipe(*bound.middleware)
            .build(bound.writer, delivery=delivery))


class SaveKillLoop(CrashLoop):
    """The crash loop, running this file as the driver; a plan entry is a ``KILL_ENV``
    value."""

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "preservation.test_commit_overlap_crash", str(self.workdir)]

    def _env(self, crash: str | None) -> dict[str, str]:
        env = super()._env(None)
        env.pop(KILL_ENV, None)
        if crash is not None:
            env[KILL_ENV] = crash
        return env


@pytest.mark.timeout(90)
@pytest.mark.parametrize("plan", [
    ["before:2", "before:5"],
    ["after:3", "after:1"],
    ["before:4", "after:6", "before:1"],
])
def test_sigkill_during_a_background_save_then_resume_loses_nothing(
        tmp_path: Path, plan: list[str], no_orphans: None) -> None:
    spec = prepare(tmp_path, lane="rows", n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=71 + len(plan))
    loop = SaveKillLoop(tmp_path)
    final = loop.run(plan)
    assert loop.crashes == len(plan), loop.history()  # every planned kill happened
    killers = (tmp_path / MARKER).read_text().split()
    assert len(killers) == len(plan)
    assert all(name.startswith("agora-checkpoint") for name in killers), killers
    _check_loop(tmp_path, "rows", spec, loop, final)


if __name__ == "__main__":
    driver.build = build  # the driver's main, with the killing store in place
    sys.exit(driver.main(sys.argv[1:]))
