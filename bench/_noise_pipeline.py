"""Whole-pipeline benchmark rows and the injected slowdown used to prove regressions are caught.

``bench_process_lanes.py`` times ``submit()`` directly; these rows time whole
``Pipeline.run_sync()`` calls (source, engine, checkpoints, the Arrow lane, a sink), so a
regression in the runtime around the lane shows up too. They reuse
``bench/bench_executors.py``'s run and hand-written loop.

``AGORA_BENCH_SLOWDOWN=0.25`` makes every measured pass of the subject (the lanes and the
pipeline, never the hand-written baselines) cost 25% more: after each pass the driver
busy-spins for 0.25 × the CPU time (driver and workers) a pass of that subject cost
when it was warmed up, so the extra work is proportional to what the pass costs, in CPU
time and — when the driver is the bottleneck — in wall time. It exists only to show that
the comparison catches a slowdown of that size.
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from bench._common import tree_cpu_s

SLOWDOWN_ENV = "AGORA_BENCH_SLOWDOWN"
FIXED_RUNS = 3  # 1-row runs per repeat of ``pipeline_fixed_*``


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


def spin_cpu(seconds: float) -> None:
    """Busy work in this thread for ``seconds`` of its own CPU time (not of the clock: on
    a busy machine a spin measured by the clock would do less work)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def slowed(run_once: Callable[[], int], calibration_s: float = 0.2) -> Callable[[], int]:
    """``run_once`` made ``injected_slowdown()`` costlier by busy work after each pass.

    The first call warms the subject up and measures the CPU time (whole process tree)
    of passes run for at least ``calibration_s`` and 3 passes, less what reading the CPU
    times costs; every pass then spins for the fraction of that per-pass cost.
    Calibrating once keeps psutil out of the timed passes.
    """
    fraction = injected_slowdown()
    if fraction == 0.0:
        return run_once
    cost_s: list[float] = []

    def run() -> int:
        if not cost_s:
            run_once()
            run_once()
            probe = tree_cpu_s()
            reading = tree_cpu_s() - probe  # one reading's own CPU, counted below once
            passes, before, started = 0, tree_cpu_s(), time.perf_counter()
            while passes < 3 or time.perf_counter() - started < calibration_s:
                run_once()
                passes += 1
            cost_s.append(max(0.0, tree_cpu_s() - before - reading) / passes)
        rows = run_once()
        spin_cpu(fraction * cost_s[0])
        return rows

    return run


def _costed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process-tree CPU seconds) of one call."""
    cpu0, started = tree_cpu_s(), time.perf_counter()
    fn()
    return time.perf_counter() - started, tree_cpu_s() - cpu0


def measure_pipeline(ctx: Any, batches: list[pa.RecordBatch], repeats: int) -> dict[str, Any]:
    """Whole ``run_sync()`` rows, each repeat interleaved: a 1-row run (per-run fixed
    cost), a full run over ``batches`` and the hand-written IPC loop over the same batches.

    Returns the per-repeat lists under ``repeats`` and their medians under ``medians``:
    ``pipeline_fixed_s`` (seconds per 1-row run, lower is better),
    ``pipeline_identity_vs_ppe_ipc`` (loop time / pipeline time, higher is better),
    ``pipeline_rows_per_second`` (steady throughput of the full run, higher is better),
    and their CPU-time forms (process tree, driver and workers): ``pipeline_fixed_cpu_s``
    and ``pipeline_identity_vs_ppe_ipc_cpu`` (loop CPU / pipeline CPU).
    """
    # imported here: bench_executors imports bench_process_lanes, which imports this module
    from bench.bench_executors import WORKERS, _ipc_bytes, _ppe_loop, _run

    table = pa.Table.from_batches(batches)
    tiny = table.slice(0, 1)
    fixed = slowed(lambda: _run(tiny, None) or 1)
    full = slowed(lambda: _run(table, None) or table.num_rows)
    payloads = [_ipc_bytes(b) for b in batches]
    out: dict[str, list[float]] = {
        "pipeline_fixed_s": [], "pipeline_identity_vs_ppe_ipc": [],
        "pipeline_rows_per_second": [], "pipeline_fixed_cpu_s": [],
        "pipeline_identity_vs_ppe_ipc_cpu": []}
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        fixed(), full(), _ppe_loop(pool, payloads)  # warm-up: zygote, imports, pool
        for _ in range(repeats):
            # three 1-row runs per repeat: workers that exit report CPU in 10 ms ticks
            fixed_s, fixed_cpu = (x / FIXED_RUNS for x in _costed(
                lambda: [fixed() for _ in range(FIXED_RUNS)]))
            run_s, run_cpu = _costed(full)
            loop_s, loop_cpu = _costed(lambda: _ppe_loop(pool, payloads))
            out["pipeline_fixed_s"].append(fixed_s)
            out["pipeline_fixed_cpu_s"].append(fixed_cpu)
            out["pipeline_identity_vs_ppe_ipc"].append(loop_s / run_s)
            out["pipeline_identity_vs_ppe_ipc_cpu"].append(loop_cpu / run_cpu)
            out["pipeline_rows_per_second"].append(table.num_rows / run_s)
    return {"rows": table.num_rows, "repeats": out,
            "medians": {k: statistics.median(v) for k, v in out.items()}}
