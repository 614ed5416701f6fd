"""Whole-pipeline benchmark rows and the injected slowdown used to prove regressions are caught.

``bench_process_lanes.py`` times ``submit()`` directly; these rows time whole
``Pipeline.run_sync()`` calls (source, engine, checkpoints, the Arrow lane, a sink), so a
regression in the runtime around the lane shows up too. They reuse
``bench/bench_executors.py``'s run and hand-written loop.

``AGORA_BENCH_SLOWDOWN=0.25`` makes every measured pass of the subject (the lanes and the
pipeline, never the hand-written baselines) 25% longer: after the pass, the benchmark
busy-spins for 0.25 × the pass's own time, so the extra work is proportional to what the
pass cost. It exists only to show that the comparison catches a slowdown of that size.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

SLOWDOWN_ENV = "AGORA_BENCH_SLOWDOWN"


def injected_slowdown() -> float:
    """The fraction from ``AGORA_BENCH_SLOWDOWN`` (0 when unset)."""
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 10.0:
        raise ValueError(f"{SLOWDOWN_ENV} must be a fraction between 0 and 10; got {raw!r} — "
                         f"unset it, or set e.g. {SLOWDOWN_ENV}=0.25 for a 25% slowdown")
    return value


def slowed(run_once: Callable[[], int]) -> Callable[[], int]:
    """``run_once`` made ``injected_slowdown()`` longer by busy work after each pass."""
    fraction = injected_slowdown()
    if fraction == 0.0:
        return run_once

    def run() -> int:
        started = time.perf_counter()
        rows = run_once()
        spin_until = time.perf_counter() + fraction * (time.perf_counter() - started)
        while time.perf_counter() < spin_until:  # CPU work, not a sleep: like slower code
            pass
        return rows

    return run


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure_pipeline(ctx: Any, batches: list[pa.RecordBatch], repeats: int) -> dict[str, Any]:
    """Whole ``run_sync()`` rows, each repeat interleaved: a 1-row run (per-run fixed
    cost), a full run over ``batches`` and the hand-written IPC loop over the same batches.

    Returns the per-repeat lists under ``repeats`` and their medians under ``medians``:
    ``pipeline_fixed_s`` (seconds per 1-row run, lower is better),
    ``pipeline_identity_vs_ppe_ipc`` (loop time / pipeline time, higher is better) and
    ``pipeline_rows_per_second`` (steady throughput of the full run, higher is better).
    """
    # imported here: bench_executors imports bench_process_lanes, which imports this module
    from bench.bench_executors import WORKERS, _ipc_bytes, _ppe_loop, _run

    table = pa.Table.from_batches(batches)
    tiny = table.slice(0, 1)
    fixed = slowed(lambda: _run(tiny, None) or 1)
    full = slowed(lambda: _run(table, None) or table.num_rows)
    payloads = [_ipc_bytes(b) for b in batches]
    out: dict[str, list[float]] = {"pipeline_fixed_s": [], "pipeline_identity_vs_ppe_ipc": [],
                                   "pipeline_rows_per_second": []}
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        fixed(), full(), _ppe_loop(pool, payloads)  # warm-up: zygote, imports, pool
        for _ in range(repeats):
            out["pipeline_fixed_s"].append(_timed(fixed))
            run_s = _timed(full)
            loop_s = _timed(lambda: _ppe_loop(pool, payloads))
            out["pipeline_identity_vs_ppe_ipc"].append(loop_s / run_s)
            out["pipeline_rows_per_second"].append(table.num_rows / run_s)
    return {"rows": table.num_rows, "repeats": out,
            "medians": {k: statistics.median(v) for k, v in out.items()}}
