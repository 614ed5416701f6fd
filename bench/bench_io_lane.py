"""Benchmark of the I/O lane against Little's bound and a plain async middleware.

Run ``python bench/bench_io_lane.py [--records N]``. A stage that awaits
``asyncio.sleep(0.01)`` per record goes through a whole pipeline (IterableSource →
stage → NullSink, default delivery):

* N=64 on the I/O lane vs Little's bound ``64 / 0.01 s = 6,400 records/s`` — the most
  any 64-slot stage with 10 ms calls can do; the ratio says what the runtime costs;
* N=64 with long-tailed calls (exponential, mean 10 ms, capped at 100 ms; the same
  seeded draws every run) vs Little's bound at their mean — how well a slow record's
  neighbours keep their slots busy while it holds the ordered commit back;
* N=1 on the I/O lane vs the same coroutine as a plain async ``Middleware`` (one record
  at a time) — the lane's own overhead when it brings no concurrency.

Measured once on this machine; JSON goes to ``bench/results/io_lane.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from agora import AsyncMiddleware, IterableSource, Middleware, NullSink, Pipeline

LATENCY_S = 0.01


class SleepOnLane(AsyncMiddleware):
    """Awaits ``LATENCY_S`` per record on the I/O lane."""

    def __init__(self, concurrency: int) -> None:
        self.name = f"sleep_lane_{concurrency}"
        self.concurrency = concurrency

    async def process(self, record: Any, ctx: Any) -> Any:
        await asyncio.sleep(LATENCY_S)
        return record


class TailOnLane(AsyncMiddleware):
    """Awaits a long-tailed latency per record (seeded: the same draws every run)."""

    def __init__(self, concurrency: int, records: int) -> None:
        self.name = f"tail_lane_{concurrency}"
        self.concurrency = concurrency
        rng = random.Random(11)
        self.latencies = [min(10 * LATENCY_S, rng.expovariate(1 / LATENCY_S))
                          for _ in range(records)]

    async def process(self, record: Any, ctx: Any) -> Any:
        await asyncio.sleep(self.latencies[record["id"]])
        return record


class SleepPlain(Middleware):
    """The same coroutine as an ordinary per-record middleware (no lane)."""

    name = "sleep_plain"

    async def process(self, record: Any, ctx: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(LATENCY_S)
        return record


def measure(mw: Any, records: int) -> dict[str, Any]:
    job = Pipeline(IterableSource([{"id": i} for i in range(records)])).pipe(mw).build(NullSink())
    started = time.perf_counter()
    summary = job.run_sync()
    elapsed = time.perf_counter() - started
    assert summary.records_written == records
    return {"subject": mw.name, "records": records, "seconds": round(elapsed, 3),
            "records_per_s": round(records / elapsed, 1),
            "peak_in_flight": summary.by_middleware[mw.name].get("peak_in_flight")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6400)
    parser.add_argument("--serial-records", type=int, default=200)
    args = parser.parse_args()
    lane64 = measure(SleepOnLane(64), args.records)
    tail = TailOnLane(64, args.records)
    tail64 = measure(tail, args.records)
    tail_bound = 64 / (sum(tail.latencies) / len(tail.latencies))
    lane1 = measure(SleepOnLane(1), args.serial_records)
    plain = measure(SleepPlain(), args.serial_records)
    bound = 64 / LATENCY_S
    result = {
        "machine": platform.platform(), "latency_s": LATENCY_S,
        "lane_64": lane64, "littles_bound_per_s": bound,
        "lane_64_vs_bound": round(lane64["records_per_s"] / bound, 3),
        "tail_64": tail64, "tail_littles_bound_per_s": round(tail_bound, 1),
        "tail_64_vs_bound": round(tail64["records_per_s"] / tail_bound, 3),
        "lane_1": lane1, "plain_async": plain,
        "lane_1_vs_plain": round(lane1["records_per_s"] / plain["records_per_s"], 3),
    }
    out = Path(__file__).parent / "results" / "io_lane.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
