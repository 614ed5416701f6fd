"""Scaling of the Arrow process lane with workers and depth, and memory as input grows.

Run ``python bench/bench_scaling.py --quick`` (about half a minute) or without
``--quick`` (about a minute). Two sections, both whole pipelines through the
public API:

* **scaling**: ``ArrowBatchSource`` → ``ArrowProcessBatchMiddleware`` (a CPU-heavy
  transform, ~40-60 ms per 10k-row batch) → ``NullSink``, for max_workers ∈ {1, 2} ×
  max_in_flight_batches ∈ {1, 2, 4}, plus the same transform serially in-process and
  w=2, d=4 under the default ``max_buffer_size``. Configurations are measured
  round-robin, rep after rep, and each is reported as the median of its per-rep ratio
  to w=1, d=1 (a pool start per run is included, as a user pays it).
* **memory**: ``ArrowCsvSource`` over a generated CSV → ``ArrowProcessBatchMiddleware``
  (cheap transform, w=2, d=4) → ``CsvSink`` at N, 2N and 4N rows, each run in a fresh
  child process so allocator pools do not carry over; peak RSS of the main process and
  of its workers should stay flat (``growth`` = peak(4N) / peak(N)).

JSON goes to ``bench/results/`` (or ``--out``); ``bench/compare.py`` compares two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``agora`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa

from agora import (
    ArrowBatchSource,
    ArrowCsvSource,
    ArrowMapMiddleware,
    ArrowProcessBatchMiddleware,
    CsvSink,
    DeliveryConfig,
    NullSink,
    Pipeline,
)
from bench._common import ProcessTreeSampler, assert_no_workers_left
from bench.bench_process_lanes import BackgroundLoad, stats
from bench.transforms import (
    BATCH_ROWS,
    arrow_cheap,
    calibrate_k,
    make_batches,
    transform_pair,
    write_csv,
)

GRID = [(w, d) for w in (1, 2) for d in (1, 2, 4)]
#: A size is "flat" if its peak RSS is at most this multiple of the smallest size's. RSS
#: of a run this short moves by a few MiB between runs; growth with input would show as
#: roughly 2x and 4x.
FLAT_TOLERANCE = 1.25
CHILD_TIMEOUT_S = 180


# ------------------------------------------------------------------ scaling


def run_pipeline(batches: list[pa.RecordBatch], middleware: Any, delivery: DeliveryConfig) -> int:
    summary = (
        Pipeline(ArrowBatchSource(batches), id="bench-scaling")
        .pipe(middleware)
        .build(NullSink(), delivery=delivery)
        .run_sync()
    )
    if summary.records_written != sum(b.num_rows for b in batches):
        raise AssertionError(f"scaling run delivered {summary.records_written} rows")
    return summary.records_written


def timed_rate(batches: list[pa.RecordBatch], middleware: Any, delivery: DeliveryConfig) -> float:
    started = time.perf_counter()
    rows = run_pipeline(batches, middleware, delivery)
    return rows / (time.perf_counter() - started)


def measure_scaling(quick: bool) -> dict[str, Any]:
    batch_s, n_batches, reps = (0.050, 12, 5) if quick else (0.060, 20, 7)
    batches = make_batches(n_batches * BATCH_ROWS)
    k = calibrate_k(batches[0], batch_s)
    heavy, _ = transform_pair("heavy", k)

    def lane(w: int, d: int) -> tuple[Any, DeliveryConfig]:
        mw = ArrowProcessBatchMiddleware(heavy, max_workers=w, max_in_flight_batches=d)
        return mw, DeliveryConfig(max_buffer_size=d * BATCH_ROWS)

    # name -> (workers, depth, a fresh (middleware, delivery) per run); 0 workers = serial
    cases: dict[str, tuple[int, int, Any]] = {
        f"w{w}_d{d}": (w, d, lambda w=w, d=d: lane(w, d)) for w, d in GRID
    }
    cases["w2_d4_default_buffer"] = (
        2,
        4,
        lambda: (
            ArrowProcessBatchMiddleware(heavy, max_workers=2, max_in_flight_batches=4),
            DeliveryConfig(),
        ),
    )
    cases["serial"] = (0, 0, lambda: (ArrowMapMiddleware(heavy), DeliveryConfig()))
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _w, _d, make in cases.values():  # warm-up: first pool start, first imports
        timed_rate(batches[:2], *make())
    with BackgroundLoad() as load:
        for _ in range(reps):
            for name, (_w, _d, make) in cases.items():
                rates[name].append(timed_rate(batches, *make()))
    base = rates["w1_d1"]
    configs: dict[str, Any] = {}
    print(
        f"\nscaling: Arrow lane, heavy transform (k={k}, ~{batch_s * 1e3:.0f} ms/batch), "
        f"{n_batches} batches x {BATCH_ROWS} rows, {reps} reps, pool start included"
    )
    print(f"  {'config':<22} {'rows/s':>10} {'vs w1_d1':>9} {'vs serial':>10}")
    for name, values in rates.items():
        w, d, _make = cases[name]
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        vs_serial = statistics.median(v / s for v, s in zip(values, rates["serial"], strict=True))
        configs[name] = {
            "workers": w,
            "depth": d,
            "rows_per_s": stats(values),
            "ratio_to_w1_d1": ratio,
            "ratio_to_serial": vs_serial,
        }
        print(
            f"  {name:<22} {statistics.median(values) / 1e3:9.1f}k {ratio:8.2f}x {vs_serial:9.2f}x",
            flush=True,
        )
    print(f"  (other processes used {load.cores:.2f} cores meanwhile)")
    return {
        "heavy_k": k,
        "batch_s_target": batch_s,
        "batches": n_batches,
        "reps": reps,
        "batch_rows": BATCH_ROWS,
        "background_cores": round(load.cores, 3),
        "configs": configs,
    }


# ------------------------------------------------------------------ memory flatness


def memory_child(csv_path: Path, out_path: Path) -> dict[str, Any]:
    """One measured run in this (fresh) process: CSV → Arrow lane → CSV."""
    mw = ArrowProcessBatchMiddleware(arrow_cheap, max_workers=2, max_in_flight_batches=4)
    bound = (
        Pipeline(ArrowCsvSource(csv_path, batch_size=BATCH_ROWS), id="bench-memory")
        .pipe(mw)
        .build(CsvSink(out_path), delivery=DeliveryConfig(max_buffer_size=4 * BATCH_ROWS))
    )
    started = time.perf_counter()
    with ProcessTreeSampler() as sampler:
        summary = bound.run_sync()
    elapsed = time.perf_counter() - started
    return {
        "rows": summary.records_written,
        "elapsed_s": elapsed,
        "rows_per_s": summary.records_written / elapsed,
        **sampler.figures.as_dict(),
        "runtime_resources": summary.runtime.get("resources", {}),
    }


def run_child(csv_path: Path, out_path: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-child",
        str(csv_path),
        "--child-out",
        str(out_path),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"memory run over {csv_path.name} failed (exit {done.returncode}):"
            f"\n{done.stderr[-2000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_memory(quick: bool) -> dict[str, Any]:
    base_n = 100_000 if quick else 250_000
    sizes = [base_n, 2 * base_n, 4 * base_n]
    runs: dict[str, Any] = {}
    print(
        f"\nmemory: ArrowCsvSource -> ArrowProcessBatchMiddleware (cheap, w=2, d=4) -> "
        f"CsvSink, {BATCH_ROWS}-row batches, one fresh process per size"
    )
    print(
        f"  {'rows':>9} {'csv MB':>7} {'s':>6} {'main peak':>10} {'main start':>11} "
        f"{'workers peak':>13} {'total peak':>11}  (MiB)"
    )
    with tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp:
        for n in sizes:
            csv_path, out_path = Path(tmp) / f"in-{n}.csv", Path(tmp) / f"out-{n}.csv"
            size = write_csv(csv_path, n)
            run = run_child(csv_path, out_path)
            if run["rows"] != n:
                raise AssertionError(f"memory run over {n} rows delivered {run['rows']}")
            run["csv_bytes"] = size
            runs[str(n)] = run
            csv_path.unlink()
            out_path.unlink()
            print(
                f"  {n:>9} {size / 2**20:7.1f} {run['elapsed_s']:6.2f} "
                f"{run['main_peak_rss_mb']:10.1f} {run['main_start_rss_mb']:11.1f} "
                f"{run['workers_peak_rss_mb']:13.1f} {run['total_peak_rss_mb']:11.1f}",
                flush=True,
            )
    first, last = runs[str(sizes[0])], runs[str(sizes[-1])]
    growth = {
        key: last[f"{key}_mb"] / first[f"{key}_mb"]
        for key in ("main_peak_rss", "workers_peak_rss", "total_peak_rss")
    }
    flat = all(g <= FLAT_TOLERANCE for g in growth.values())
    print(
        "  growth peak(4N)/peak(N): "
        + ", ".join(f"{k} {v:.3f}" for k, v in growth.items())
        + f"  -> {'flat' if flat else 'NOT flat'} (tolerance {FLAT_TOLERANCE})"
    )
    return {
        "sizes": sizes,
        "runs": runs,
        "growth": growth,
        "flat": flat,
        "flat_tolerance": FLAT_TOLERANCE,
    }


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches, reps, rows")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: a timestamped file in bench/results/)",
    )
    parser.add_argument("--memory-child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:  # internal: one memory run, JSON on stdout
        print(json.dumps(memory_child(args.memory_child, args.child_out)))
        return 0
    results: dict[str, Any] = {
        "kind": "bench_scaling",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "mode": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pyarrow": pa.__version__,
            "platform": platform.platform(),
        },
    }
    results["scaling"] = measure_scaling(args.quick)
    results["memory"] = measure_memory(args.quick)
    assert_no_workers_left()
    out = args.out or (
        Path(__file__).resolve().parent
        / "results"
        / f"bench_scaling-{results['mode']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
