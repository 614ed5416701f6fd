"""Crash safety with source prefetch: the crash driver's CSV source is read ahead by up to
64 emissions (more than a checkpoint interval's worth of units can hold), so checkpoints
are saved while records sit in the read-ahead queue. SIGKILLed at seeded points and from
outside, then rerun until it finishes, it loses nothing, bounds duplicates as without a
read-ahead, and dead-letters exactly the poison.

This file is also the driver for those runs: ``python -m preservation.test_prefetch_crash
WORKDIR`` runs ``preservation.driver`` with the read-ahead switched on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from preservation import driver
from preservation.crashloop import CrashLoop, plan_crashes, prepare
from preservation.faults import CrashPoint
from preservation.test_crash_resume import (
    BATCH,
    CHECKPOINT_EVERY,
    N,
    ROUNDS,
    _check_loop,
    check_outside_kills,
)

#: The driver's own pipeline builder, kept before ``__main__`` swaps in ``build``.
_DRIVER_BUILD = driver.build

#: Emissions read ahead: past ``CHECKPOINT_EVERY`` records on the row lane, so a save
#: always happens with records queued that the source's own position already counts.
PREFETCH_LIMIT = 64


def build(workdir: Path, spec: dict[str, Any], crash: CrashPoint) -> Any:
    """The driver's pipeline, its source declaring ``supports_prefetch``."""
    bound = _DRIVER_BUILD(workdir, spec, crash)
    bound.source.supports_prefetch = True
    bound.source.prefetch_limit = PREFETCH_LIMIT
    return bound


class PrefetchCrashLoop(CrashLoop):
    """The crash loop, running this file as the driver."""

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "preservation.test_prefetch_crash", str(self.workdir)]


def test_the_driver_really_reads_ahead(tmp_path: Path) -> None:
    spec = prepare(tmp_path, lane="rows", n=500, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=70, sink_delay_s=0.0005)
    summary = build(tmp_path, spec, CrashPoint.from_env()).run_sync()
    assert summary.runtime.source_prefetch_enabled is True
    assert summary.runtime.source_prefetch_limit == PREFETCH_LIMIT
    assert summary.runtime.source_prefetch_max_depth > BATCH  # queued past a whole unit


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("lane", "seed"), [("rows", 71), ("batches", 72)])
def test_sigkill_at_seeded_points_with_prefetch_loses_nothing(
        tmp_path: Path, lane: str, seed: int, no_orphans: None) -> None:
    spec = prepare(tmp_path, lane=lane, n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed)
    loop = PrefetchCrashLoop(tmp_path)
    final = loop.run(plan_crashes(seed, ROUNDS))
    assert loop.crashes >= 1, loop.history()
    _check_loop(tmp_path, lane, spec, loop, final)


@pytest.mark.timeout(90)
def test_sigkill_from_outside_with_prefetch_loses_nothing(
        tmp_path: Path, no_orphans: None) -> None:
    check_outside_kills(tmp_path, PrefetchCrashLoop(tmp_path), 73)


if __name__ == "__main__":
    driver.build = build  # the driver's main, with the read-ahead switched on
    sys.exit(driver.main(sys.argv[1:]))
