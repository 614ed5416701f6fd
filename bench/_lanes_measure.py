"""How the process-lane benchmark measures: paired passes, their wall and CPU time, the floor.

``bench_process_lanes.py`` holds the data, the transforms and the sections; this module
holds the measuring. A *pass* is one run of a subject (a lane) or of its reference (a
hand-written loop, or the transform serially) over the same batches. A *repeat* measures
the subject and then its reference, each for at least ``min_s``, so a busy moment hits
both alike; each repeat yields one paired ratio in wall time and one in CPU time:

* wall: from the **median pass** of each side (a pass that waited for a core because
  another process held it is an outlier of that repeat, not the lane's speed);
* CPU: user+system seconds of the whole process tree (driver and workers) per row, from
  psutil, divided the other way round (reference CPU / subject CPU), so both ratios are
  "higher is better" and a subject doing 25% more work reads 1/1.25 of its old CPU ratio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import pyarrow as pa

from bench._common import tree_cpu_s
from bench._noise_pipeline import slowed

WINDOW = 4  # batches in flight, for the lanes and the baselines alike


@dataclass(frozen=True)
class Sample:
    """One side of one repeat: passes run back to back for at least ``min_s``."""

    rows_per_pass: int
    pass_s: list[float]
    cpu_s: float  # whole process tree, all passes together

    @property
    def rate(self) -> float:
        """rows/s of the median pass."""
        return self.rows_per_pass / statistics.median(self.pass_s)

    @property
    def cpu_per_row(self) -> float:
        return self.cpu_s / (self.rows_per_pass * len(self.pass_s))


def sample(run_once: Callable[[], int], min_s: float, min_passes: int = 3) -> Sample:
    """Passes of ``run_once`` for at least ``min_s`` and ``min_passes`` passes."""
    passes: list[float] = []
    rows = 0
    cpu0 = tree_cpu_s()
    started = time.perf_counter()
    while len(passes) < min_passes or time.perf_counter() - started < min_s:
        began = time.perf_counter()
        rows = run_once()
        passes.append(time.perf_counter() - began)
    return Sample(rows, passes, tree_cpu_s() - cpu0)


def rate_of(run_once: Callable[[], int], min_s: float) -> float:
    """rows/s of whole passes repeated for at least ``min_s`` (at least one pass)."""
    rows, started = 0, time.perf_counter()
    while True:
        rows += run_once()
        elapsed = time.perf_counter() - started
        if elapsed >= min_s:
            return rows / elapsed


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class BackgroundLoad:
    """CPU that processes other than this benchmark (and its children) used meanwhile,
    in cores: on a shared 2-core machine anything above ~0.1 understates every ratio
    that needs both cores."""

    def __enter__(self) -> BackgroundLoad:
        self._start = (time.perf_counter(), self._system_busy(), tree_cpu_s())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, ours = self._start
        wall = time.perf_counter() - wall
        other = (self._system_busy() - busy) - (tree_cpu_s() - ours)
        self.cores = max(0.0, other / wall) if wall > 0 else 0.0

    @staticmethod
    def _system_busy() -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(
            t, "softirq", 0.0
        )


class FloorProbe:
    """The physical floor of one worker hop, measured next to the lane it judges: two
    memcpy of the batch (into shared memory, and the result back) plus one pipe round
    trip to a live process. ``burst()`` takes many timings and returns their medians, so
    one probe per repeat sees the same machine state as that repeat's lane passes."""

    def __init__(self, ctx: Any, batch_bytes: int) -> None:
        self._src, self._dst = bytearray(os.urandom(batch_bytes)), bytearray(batch_bytes)
        self._parent, child = ctx.Pipe()
        self._server = ctx.Process(target=echo, args=(child,), daemon=True)
        self._server.start()
        child.close()

    def burst(self, copies: int = 200, trips: int = 300) -> dict[str, float]:
        """Median memcpy and round trip (µs) of one burst, and the floor they make."""
        copy_s, trip_s = [], []
        for _ in range(copies):
            started = time.perf_counter()
            self._dst[:] = self._src
            copy_s.append(time.perf_counter() - started)
        for _ in range(trips):
            started = time.perf_counter()
            self._parent.send_bytes(b"x")
            self._parent.recv_bytes()
            trip_s.append(time.perf_counter() - started)
        memcpy_us = statistics.median(copy_s) * 1e6
        rtt_us = statistics.median(trip_s) * 1e6
        return {"memcpy_batch_us": memcpy_us, "pipe_rtt_us": rtt_us,
                "floor_batch_us": 2 * memcpy_us + rtt_us}

    def close(self) -> None:
        self._parent.send_bytes(b"")
        self._server.join(5)
        if self._server.is_alive():  # an echo server that ignores the stop message
            self._server.kill()
            self._server.join(5)
        self._parent.close()


def echo(conn: Any) -> None:
    while True:
        message = conn.recv_bytes()
        if not message:
            return
        conn.send_bytes(message)


def paired(subject: Callable[[], int], baseline: Callable[[], int], reps: int,
           min_s: float, between: Callable[[], Any] | None = None,
           min_passes: int = 3) -> dict[str, Any]:
    """Measure ``subject`` and ``baseline`` alternately (ABAB…) after one warm-up pass
    each. Per repeat: the wall ratio of their median passes, the CPU ratio (baseline CPU
    per row / subject CPU per row) and, when given, ``between()``'s result (a floor
    burst). The subject is slowed by ``AGORA_BENCH_SLOWDOWN`` when it is set."""
    subject = slowed(subject)
    subject()
    baseline()
    subs, bases, extra = [], [], []
    with BackgroundLoad() as load:
        for _ in range(reps):
            subs.append(sample(subject, min_s, min_passes))
            bases.append(sample(baseline, min_s, min_passes))
            if between is not None:
                extra.append(between())
    ratios = [a.rate / b.rate for a, b in zip(subs, bases, strict=True)]
    cpu_ratios = [b.cpu_per_row / a.cpu_per_row for a, b in zip(subs, bases, strict=True)]
    return {
        "subject_rows_per_s": stats([s.rate for s in subs]),
        "baseline_rows_per_s": stats([b.rate for b in bases]),
        "subject_rates": [s.rate for s in subs],
        "subject_cpu_us_per_row": stats([s.cpu_per_row * 1e6 for s in subs]),
        "baseline_cpu_us_per_row": stats([b.cpu_per_row * 1e6 for b in bases]),
        "ratio": statistics.median(ratios),
        "ratio_repeats": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_ratio_repeats": cpu_ratios,
        "between": extra,
        "background_cores": round(load.cores, 3),
    }


# ------------------------------------------------------------------ driving a lane


def check(batch_index: int, expected_rows: int, first_id: int, got: Any) -> None:
    if isinstance(got, pa.RecordBatch):
        ok = got.num_rows == expected_rows and got.column("id")[0].as_py() == first_id
    else:
        ok = len(got) == expected_rows and got[0]["id"] == first_id
    if not ok:
        raise AssertionError(f"batch {batch_index} came back wrong or out of order")


def first_id(batch: Any) -> int:
    return batch.column("id")[0].as_py() if isinstance(batch, pa.RecordBatch) else batch[0]["id"]


def n_rows(batch: Any) -> int:
    return batch.num_rows if isinstance(batch, pa.RecordBatch) else len(batch)


async def drive_lane(mw: Any, batches: Sequence[Any]) -> int:
    """Ordered commit over a window of in-flight ``submit()`` tasks, as the engine does."""
    window: deque[tuple[int, asyncio.Future[Any]]] = deque()
    rows = 0

    async def commit() -> None:
        nonlocal rows
        done_index, task = window.popleft()
        got = await task
        check(done_index, n_rows(batches[done_index]), first_id(batches[done_index]), got)
        rows += n_rows(got)

    for index, batch in enumerate(batches):
        window.append((index, asyncio.ensure_future(mw.submit(index, batch))))
        if len(window) >= WINDOW:
            await commit()
    while window:
        await commit()
    return rows


def drive_ppe(pool: concurrent.futures.Executor, call: Callable[[Any], Any],
              batches: Sequence[Any], encode: Callable[[Any], Any],
              decode: Callable[[Any], Any]) -> int:
    """The hand-written baseline: a FIFO window of executor futures, ordered commit."""
    window: deque[tuple[int, concurrent.futures.Future[Any]]] = deque()
    rows = 0

    def commit() -> None:
        nonlocal rows
        done_index, future = window.popleft()
        got = decode(future.result())
        check(done_index, n_rows(batches[done_index]), first_id(batches[done_index]), got)
        rows += n_rows(got)

    for index, batch in enumerate(batches):
        window.append((index, pool.submit(call, encode(batch))))
        if len(window) >= WINDOW:
            commit()
    while window:
        commit()
    return rows


def serial(fn: Callable[[Any], Any], batches: Sequence[Any]) -> Callable[[], int]:
    return lambda: sum(n_rows(fn(batch)) for batch in batches)
