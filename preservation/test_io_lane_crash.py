"""Crash safety with the I/O lane: the crash driver's row pipeline gets an async
enrichment stage with 16 records in flight that complete out of order and fail
transiently before a retry; SIGKILLed at seeded points and from outside, then rerun
until it finishes, it loses nothing, bounds duplicates, dead-letters exactly the poison.

This file is also the driver for those runs: ``python -m preservation.test_io_lane_crash
WORKDIR`` runs ``preservation.driver`` with the I/O stage added to its chain."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from agora import AsyncMiddleware, Pipeline, RetryPolicy
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

#: Records in flight in the enrichment stage.
CONCURRENCY = 16


class OutOfOrderEnrich(AsyncMiddleware):
    """Adds ``enriched``; later ids of each 16 answer first, and every 7th id fails its
    first call with a transient error (retried, so it is never dead-lettered)."""

    concurrency = CONCURRENCY
    retry = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.002)
    name = "enrich"

    def __init__(self) -> None:
        self.failed_once: set[int] = set()

    async def process(self, record: dict[str, Any], ctx: Any) -> Any:
        rid = int(record["id"])
        await asyncio.sleep(0.0002 * (CONCURRENCY - rid % CONCURRENCY))
        if rid % 7 == 0 and rid not in self.failed_once:
            self.failed_once.add(rid)
            raise ConnectionError(f"lookup service busy for {rid}")
        return {**record, "enriched": True}


def build(workdir: Path, spec: dict[str, Any], crash: CrashPoint) -> Any:
    """The driver's row pipeline with ``OutOfOrderEnrich`` appended to its chain."""
    bound = _DRIVER_BUILD(workdir, {**spec, "lane": "rows"}, crash)
    return (Pipeline(bound.source, id=driver.PIPELINE_ID)
            .pipe(*bound.middleware, OutOfOrderEnrich())
            .build(bound.writer, delivery=bound.delivery))


class IOCrashLoop(CrashLoop):
    """The crash loop, running this file as the driver."""

    def _argv(self) -> list[str]:
        return [sys.executable, "-m", "preservation.test_io_lane_crash", str(self.workdir)]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [61, 62])
def test_sigkill_at_seeded_points_with_the_io_lane_loses_nothing(
        tmp_path: Path, seed: int, no_orphans: None) -> None:
    spec = prepare(tmp_path, lane="rows", n=N, batch_size=BATCH,
                   checkpoint_every=CHECKPOINT_EVERY, seed=seed)
    loop = IOCrashLoop(tmp_path)
    final = loop.run(plan_crashes(seed, ROUNDS))
    assert loop.crashes >= 1, loop.history()
    _check_loop(tmp_path, "rows", spec, loop, final)
    enriched = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert enriched and all(r["enriched"] for r in enriched)


@pytest.mark.timeout(90)
def test_sigkill_from_outside_with_the_io_lane_loses_nothing(
        tmp_path: Path, no_orphans: None) -> None:
    check_outside_kills(tmp_path, IOCrashLoop(tmp_path), 63)


if __name__ == "__main__":
    driver.build = build  # the driver's main, with the I/O stage in the chain
    sys.exit(driver.main(sys.argv[1:]))
