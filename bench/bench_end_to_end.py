"""End to end: the demo job through ``agora run`` against the same job written by hand.

Every figure is a whole process, as a user runs it:

* **e2e** — ``agora run agora.demo:pipeline`` (CSV → Arrow filter → process-isolated
  ``enrich`` on 2 workers → CSV + Parquet, SQLite checkpoint and DLQ) against
  ``bench/handwritten_demo.py`` (pyarrow + ``ProcessPoolExecutor``, same outputs, no
  checkpoint, no DLQ), interleaved, ``--repeats`` runs each, on the same ``--rows`` input;
  the ratio of the medians is the figure. Driver peak RSS is sampled with psutil; CPU is
  the whole process tree's (``RUSAGE_CHILDREN``).
* **rss** — the Agora job's driver peak RSS at ``--rows`` / 4 and at ``--rows``: it should
  not grow with the input.
* **durability** — the Agora job with ``checkpoint_every`` at 10k, 100k and end-only.
* **append** — one pipeline id, a SQLite checkpoint, ``--append-rows`` new CSV rows per run
  into one ``ParquetSink``, ``--append-runs`` runs: the last run's time against the first.

Usage: ``python bench/bench_end_to_end.py [--rows N] [--repeats K] [--quick]``. Results go
to ``bench/results/bench_end_to_end-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.csv as pa_csv

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIB = 1 << 20

TARGETS = {
    "e2e_wall_ratio": ("<=", 1.15),
    "driver_rss_growth": ("<=", 1.10),
    "append_last_vs_first": ("<=", 1.20),
}

_OUTPUTS = ("orders_enriched.csv", "orders_enriched.parquet", "hand_enriched.csv",
            "hand_enriched.parquet", "checkpoints.db", "checkpoints.db-wal",
            "checkpoints.db-shm", "dlq.db", "dlq.db-wal", "dlq.db-shm")


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd`` to completion; wall, tree CPU and the top process's peak RSS."""
    cpu0 = _cpu_children()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            ps = psutil.Process(proc.pid)
            while not done.wait(0.02):
                peak = max(peak, ps.memory_info().rss)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate(timeout=600)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err.decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": _cpu_children() - cpu0, "driver_peak_rss_mb": peak / MIB}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AGORA_BENCH_CHECKPOINT_EVERY", None)
    env["CI"] = "1"  # no progress line
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _clean(directory: Path) -> None:
    for name in _OUTPUTS:
        target = directory / name
        if target.is_dir():
            shutil.rmtree(target)  # ParquetSink's dataset folder
        else:
            target.unlink(missing_ok=True)


def agora_run(directory: Path, every: str | None = None) -> dict[str, float]:
    _clean(directory)
    extra = {"AGORA_DEMO_DIR": str(directory)}
    if every is not None:
        extra["AGORA_BENCH_CHECKPOINT_EVERY"] = every
    target = "bench.e2e_jobs:demo" if every is not None else "agora.demo:pipeline"
    return timed([sys.executable, "-m", "agora", "run", target], _env(**extra))


def hand_run(directory: Path) -> dict[str, float]:
    _clean(directory)
    return timed([sys.executable, str(HERE / "handwritten_demo.py"), str(directory)], _env())


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def make_input(directory: Path, rows: int) -> None:
    from agora.demo import generate_csv

    directory.mkdir(parents=True, exist_ok=True)
    generate_csv(directory / "orders.csv", rows)


def append_rows(path: Path, start: int, rows: int) -> None:
    table = pa.table({"order_id": pa.array(range(start, start + rows), pa.int64()),
                      "qty": pa.array([(i % 19) + 1 for i in range(rows)], pa.int32()),
                      "city": pa.array(["Oslo", "Kyoto"] * (rows // 2) + ["Oslo"] * (rows % 2))})
    header = not path.exists()
    with open(path, "ab") as fh:
        pa_csv.write_csv(table, fh, write_options=pa_csv.WriteOptions(include_header=header))


def append_runs(workdir: Path, runs: int, rows: int) -> list[float]:
    base = workdir / "append"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    times = []
    for i in range(runs):
        append_rows(base / "input.csv", i * rows, rows)
        fig = timed([sys.executable, "-m", "agora", "run", "bench.e2e_jobs:append_job"],
                    _env(AGORA_BENCH_DIR=str(base)))
        times.append(fig["wall_s"])
        print(f"  append run {i + 1}: {fig['wall_s']:.2f} s", flush=True)
    return times


def verdict(name: str, value: float) -> str:
    op, bound = TARGETS[name]
    ok = value <= bound if op == "<=" else value >= bound
    return f"{name:<24} {value:8.3f} {op} {bound:<5} {'yes' if ok else 'NO'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="input rows (default 4M)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per job")
    parser.add_argument("--append-runs", type=int, default=10)
    parser.add_argument("--append-rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200k rows, 1 repeat, 3 append runs of 100k")
    parser.add_argument("--out", default=None, help="JSON file to write")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.append_runs, args.append_rows = 200_000, 1, 3, 100_000

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="agora-e2e-"))
    results: dict[str, Any] = {"rows": args.rows, "repeats": args.repeats,
                               "cpus": os.cpu_count(), "started": time.strftime("%F %T")}
    try:
        big, small = workdir / "big", workdir / "small"
        make_input(big, args.rows)
        make_input(small, args.rows // 4)

        print(f"e2e: {args.rows:,} rows, {args.repeats} interleaved runs each", flush=True)
        agora_runs, hand_runs = [], []
        for i in range(args.repeats):
            agora_runs.append(agora_run(big))
            hand_runs.append(hand_run(big))
            print(f"  run {i + 1}: agora {agora_runs[-1]['wall_s']:.2f} s, "
                  f"hand-written {hand_runs[-1]['wall_s']:.2f} s", flush=True)
        e2e = results["e2e"] = {
            "agora": agora_runs, "hand": hand_runs,
            "agora_wall_median_s": median_of(agora_runs, "wall_s"),
            "hand_wall_median_s": median_of(hand_runs, "wall_s"),
            "agora_cpu_median_s": median_of(agora_runs, "cpu_s"),
            "hand_cpu_median_s": median_of(hand_runs, "cpu_s"),
        }
        e2e["wall_ratio"] = e2e["agora_wall_median_s"] / e2e["hand_wall_median_s"]
        e2e["cpu_ratio"] = e2e["agora_cpu_median_s"] / e2e["hand_cpu_median_s"]

        small_fig = agora_run(small)
        rss = results["rss"] = {
            "rows_small": args.rows // 4, "rows_big": args.rows,
            "driver_peak_rss_small_mb": small_fig["driver_peak_rss_mb"],
            "driver_peak_rss_big_mb": median_of(agora_runs, "driver_peak_rss_mb"),
        }
        rss["growth"] = rss["driver_peak_rss_big_mb"] / rss["driver_peak_rss_small_mb"]

        print("durability: checkpoint_every 10k / 100k / end-only", flush=True)
        results["durability"] = {every: agora_run(big, every)
                                 for every in ("10000", "100000", "end")}

        print(f"append: {args.append_runs} runs of {args.append_rows:,} rows", flush=True)
        times = append_runs(workdir, args.append_runs, args.append_rows)
        # One run at each end is the figure; the medians of the first and last
        # three say whether it is the trend or one noisy run (a cold first run flatters it).
        k = min(3, len(times) // 2) or 1
        results["append"] = {
            "wall_s": times, "last_vs_first": times[-1] / times[0],
            "last_k_vs_first_k": statistics.median(times[-k:]) / statistics.median(times[:k]),
            "k": k,
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    ratios = results["ratios"] = {
        "e2e_wall_ratio": results["e2e"]["wall_ratio"],
        "driver_rss_growth": results["rss"]["growth"],
        "append_last_vs_first": results["append"]["last_vs_first"],
    }
    e2e = results["e2e"]
    print(f"\nagora run   wall {e2e['agora_wall_median_s']:.2f} s  CPU {e2e['agora_cpu_median_s']:.2f} s"
          f"\nhand-written wall {e2e['hand_wall_median_s']:.2f} s  CPU {e2e['hand_cpu_median_s']:.2f} s"
          f"\nCPU ratio {e2e['cpu_ratio']:.2f}; driver peak RSS "
          f"{results['rss']['driver_peak_rss_small_mb']:.0f} MiB at {args.rows // 4:,} rows, "
          f"{results['rss']['driver_peak_rss_big_mb']:.0f} MiB at {args.rows:,}")
    for every, fig in results["durability"].items():
        print(f"checkpoint_every={every:<7} wall {fig['wall_s']:.2f} s")
    app = results["append"]
    print(f"append: median of the last {app['k']} runs vs the first {app['k']}: "
          f"{app['last_k_vs_first_k']:.3f}")
    for name, value in ratios.items():
        print(verdict(name, value))
    out = Path(args.out) if args.out else (
        HERE / "results" / f"bench_end_to_end-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
