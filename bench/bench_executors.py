"""Executors: what a whole ``Pipeline.run_sync()`` costs on the default pool per run and
on a shared ``agora.WorkerPool``, with and without a foreign forkserver started first.

Each scenario runs in a fresh interpreter (``--child``), because what matters is what the
process did with multiprocessing *before* Agora's first worker start:

* ``alone``   — nothing else used multiprocessing;
* ``foreign`` — a ``ProcessPoolExecutor`` on the ``forkserver`` context ran one task
  first, so the interpreter's shared forkserver exists with its default preload list.

Rows (seconds per whole ``run_sync()``; Arrow lane, identity ``fn``, 2 workers,
10k-row batches of 8 columns):

* ``first_run``        — the first run of the process (starts Agora's zygote);
* ``fixed_default`` / ``fixed_shared`` — per-run fixed cost: one 1-row batch, warm process;
* ``run_default`` / ``run_shared`` — ``--rows`` rows per run (100k by default);
* ``ppe_loop``         — the same batches through an already-warm hand-written
  ``ProcessPoolExecutor`` loop shipping Arrow IPC bytes (no checkpoint, no DLQ).

Targets (one run): ``fixed_default`` after a foreign forkserver ≤ 1.5× alone;
``run_shared`` ≤ 2× ``ppe_loop``. Not part of the test suite; run it once, on a quiet
machine: ``python bench/bench_executors.py [--rows N] [--repeats K]``. Results go to
``bench/results/bench_executors-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agora import (  # noqa: E402 - after the sys.path fix-up for running as a script
    ArrowBatchSource,
    ArrowProcessBatchMiddleware,
    NullSink,
    Pipeline,
    WorkerPool,
)
from bench.bench_process_lanes import (  # noqa: E402
    BATCH_ROWS,
    WINDOW,
    WORKERS,
    _ipc_bytes,
    arrow_identity,
    make_batches,
    ppe_ipc_call,
)

TARGETS = {
    "fixed_default_foreign_vs_alone": ("<=", 1.5),
    "run_shared_vs_ppe_loop": ("<=", 2.0),
}
SCENARIOS = ("alone", "foreign")


def _timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def _run(table: pa.Table, executor: WorkerPool | None) -> None:
    mw = ArrowProcessBatchMiddleware(arrow_identity, max_workers=WORKERS,
                                     max_in_flight_batches=WINDOW, executor=executor)
    source = ArrowBatchSource(table, batch_size=BATCH_ROWS)
    Pipeline(source, id="bench-executors").pipe(mw).build(NullSink()).run_sync()


def _ppe_loop(pool: ProcessPoolExecutor, payloads: list[bytes]) -> None:
    for data in pool.map(ppe_ipc_call, payloads, [arrow_identity] * len(payloads)):
        ipc.open_stream(data).read_next_batch()


def child(scenario: str, rows: int, repeats: int) -> dict[str, Any]:
    """One scenario in this (fresh) interpreter; returns its rows."""
    ctx = multiprocessing.get_context("forkserver")
    ppe: ProcessPoolExecutor | None = None
    if scenario == "foreign":
        ppe = ProcessPoolExecutor(WORKERS, mp_context=ctx)
        ppe.submit(sum, [1, 2]).result()
    batches = make_batches(rows)
    table = pa.Table.from_batches(batches)
    tiny = table.slice(0, 1)
    out: dict[str, Any] = {"scenario": scenario, "rows": rows, "repeats": repeats}
    started = time.perf_counter()
    _run(tiny, None)
    out["first_run"] = time.perf_counter() - started
    out["fixed_default"] = _timed(lambda: _run(tiny, None), repeats)
    out["run_default"] = _timed(lambda: _run(table, None), repeats)
    with WorkerPool(max_workers=WORKERS) as shared:
        _run(tiny, shared)  # warm it
        out["fixed_shared"] = _timed(lambda: _run(tiny, shared), repeats)
        _run(table, shared)  # a 100k run reuses the generation the slots grew in
        out["run_shared"] = _timed(lambda: _run(table, shared), repeats)
    if ppe is None:
        ppe = ProcessPoolExecutor(WORKERS, mp_context=ctx)
    with ppe:
        payloads = [_ipc_bytes(b) for b in batches]
        _ppe_loop(ppe, payloads)  # warm: workers started, pyarrow imported
        out["ppe_loop"] = _timed(lambda: _ppe_loop(ppe, payloads), repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.repeats)))
        return 0
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "cpus": os.cpu_count(), "workers": WORKERS,
                               "batch_rows": BATCH_ROWS, "scenarios": {}}
    for scenario in SCENARIOS:
        done = subprocess.run(
            [sys.executable, __file__, "--child", scenario, "--rows", str(args.rows),
             "--repeats", str(args.repeats)],
            capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        row = json.loads(done.stdout.strip().splitlines()[-1])
        results["scenarios"][scenario] = row
        print(f"{scenario:>8}: first run {row['first_run'] * 1e3:7.1f} ms")
        for key in ("fixed_default", "fixed_shared", "run_default", "run_shared", "ppe_loop"):
            t = row[key]
            print(f"{'':>8}  {key:<14} median {t['median'] * 1e3:7.1f} ms "
                  f"(min {t['min'] * 1e3:.1f}, max {t['max'] * 1e3:.1f})")
    alone, foreign = results["scenarios"]["alone"], results["scenarios"]["foreign"]
    ratios = {
        "fixed_default_foreign_vs_alone":
            foreign["fixed_default"]["median"] / alone["fixed_default"]["median"],
        "run_shared_vs_ppe_loop": alone["run_shared"]["median"] / alone["ppe_loop"]["median"],
    }
    results["ratios"] = ratios
    for key, value in ratios.items():
        op, target = TARGETS[key]
        print(f"{key}: {value:.2f} (target {op} {target})")
    out = args.out or HERE / "results" / f"bench_executors-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
