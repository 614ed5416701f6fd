"""Benchmark of the process lanes against the physical floor and hand-written baselines.

Run ``python bench/bench_process_lanes.py --quick`` (about half a minute) or without
``--quick`` for the full run (adds the 1M-row lane throughput table). Everything is
measured in one run on this machine and reported as ratios, which travel between
machines far better than absolute rows/s:

* floor: two memcpy of one Arrow batch plus one pipe round trip, measured in a burst
  between the identity repeats (``bench/_lanes_measure.py``);
* Arrow lane, identity: vs a ProcessPoolExecutor loop shipping Arrow IPC bytes, and as
  a fraction of the floor (each repeat against the burst that follows it);
* row lane, cheap transform: vs a ProcessPoolExecutor loop shipping pickled rows;
* CPU-heavy (~80 ms/batch): Arrow lane vs the same transform serially in-process;
* timeout recovery: from the timeout firing to the next batch's result on a fresh pool;
* whole ``Pipeline.run_sync()`` calls (see ``bench/_noise_pipeline.py``): per-run fixed
  cost, steady throughput, and throughput vs the hand-written IPC loop.

Every ratio is measured ``--repeats`` times (5 by default), interleaved with its
reference, in wall time and in CPU time of the whole process tree (``*_cpu``); the JSON
keeps the per-repeat values under ``repeats`` so that ``bench/compare.py`` can judge a
change against the measured noise (it gates on the CPU figures).

Each lane run drives ``submit()`` directly with an ordered-commit window (results are
consumed strictly in source order and checked), as the runtime engine does. JSON goes
to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

try:  # run from a checkout without installing: the repo root holds the package
    import agora  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agora import ArrowProcessBatchMiddleware, ProcessBatchMiddleware, ProcessBatchError
from agora.middleware import MiddlewareContext
from agora.testing import calibrate_iterations

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._lanes_measure import (  # noqa: E402
    WINDOW,
    BackgroundLoad,
    FloorProbe,
    drive_lane,
    drive_ppe,
    paired,
    rate_of,
    serial,
    stats,
)
from bench._noise_pipeline import injected_slowdown, measure_pipeline  # noqa: E402

__all__ = ["BATCH_ROWS", "TARGETS", "WINDOW", "WORKERS", "BackgroundLoad", "arrow_cheap",
           "arrow_heavy", "arrow_identity", "drive_ppe", "make_batches", "ppe_ipc_call",
           "rows_cheap", "rows_heavy", "stats"]

BATCH_ROWS = 10_000
WORKERS = 2
TARGETS = {
    "arrow_identity_vs_ppe_ipc": 5.0,
    "arrow_identity_fraction_of_floor": 0.30,
    "rows_cheap_vs_ppe_pickle": 0.9,
    "arrow_heavy_vs_serial": 1.85,
    "timeout_recovery_s": 0.150,
}
_WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
_TWO = pa.scalar(2.0)  # prebuilt: pc.multiply with a bare float re-infers the scalar


# ------------------------------------------------------------------ data and transforms


def make_batches(rows: int) -> list[pa.RecordBatch]:
    """8 columns, ~60 bytes/row in Arrow; each batch owns compact buffers."""
    out = []
    for start in range(0, rows, BATCH_ROWS):
        ids = range(start, min(start + BATCH_ROWS, rows))
        out.append(
            pa.record_batch(
                {
                    "id": pa.array(ids, pa.int64()),
                    "a": pa.array([i * 7 % 1000 for i in ids], pa.int64()),
                    "b": pa.array([i % 100 for i in ids], pa.int32()),
                    "x": pa.array([i * 0.25 for i in ids], pa.float64()),
                    "y": pa.array([i * 0.5 for i in ids], pa.float64()),
                    "z": pa.array([i * 0.125 for i in ids], pa.float32()),
                    "s": pa.array([f"cat_{i % 10_000:04d}" for i in ids]),
                    "t": pa.array([_WORDS[i % 8] for i in ids]),
                }
            )
        )
    return out


def arrow_identity(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def arrow_cheap(batch: pa.RecordBatch) -> pa.RecordBatch:
    d = pc.add(pc.multiply(batch.column("x"), _TWO), pc.cast(batch.column("a"), pa.float64()))
    return batch.append_column("d", d)


def rows_cheap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "d": 2 * r["x"] + r["a"]} for r in rows]


def _spin(value: float, k: int) -> float:
    acc = value
    for _ in range(k):
        acc = (acc * 1.000001 + 0.5) % 1000.0
    return acc


def arrow_heavy(batch: pa.RecordBatch, k: int) -> pa.RecordBatch:
    h = [_spin(v, k) for v in batch.column("x").to_pylist()]
    return batch.append_column("h", pa.array(h, pa.float64()))


def rows_heavy(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    return [{**r, "h": _spin(r["x"], k)} for r in rows]


def sleep_if_told(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    time.sleep(rows[0].get("sleep", 0.0))
    return rows


def ppe_ipc_call(data: bytes, fn: Callable[[pa.RecordBatch], pa.RecordBatch]) -> bytes:
    """The hand-written baseline's worker side: IPC bytes in, IPC bytes out."""
    batch = ipc.open_stream(data).read_next_batch()
    return _ipc_bytes(fn(batch))


def _ipc_bytes(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


class Lane:
    """A started middleware plus a one-pass runner over ``batches``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, mw: Any, batches: Sequence[Any]):
        self.loop, self.mw, self.batches = loop, mw, batches
        self.ctx = MiddlewareContext("bench", "bench-run", mw.name, 0)

    def __enter__(self) -> Callable[[], int]:
        self.loop.run_until_complete(self.mw.on_start(self.ctx))
        return lambda: self.loop.run_until_complete(drive_lane(self.mw, self.batches))

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.mw.on_stop(self.ctx))


# ------------------------------------------------------------------ the sections


def floor_of(identity: dict[str, Any]) -> dict[str, Any]:
    """The floor as the median of the bursts taken between the identity repeats, and
    the lane's fraction of it per repeat (each repeat against its own burst)."""
    bursts = identity["between"]
    floor = {key: statistics.median(b[key] for b in bursts)
             for key in ("memcpy_batch_us", "pipe_rtt_us", "floor_batch_us")}
    fractions = [rate / (BATCH_ROWS / b["floor_batch_us"] * 1e6)
                 for rate, b in zip(identity["subject_rates"], bursts, strict=True)]
    return {**floor, "floor_rows_per_s": BATCH_ROWS / floor["floor_batch_us"] * 1e6,
            "bursts": bursts, "fraction_repeats_in_order": fractions,
            "fraction_repeats": sorted(fractions)}


def calibrate_heavy(batch: pa.RecordBatch, target_s: float = 0.080) -> int:
    """Iterations of ``arrow_heavy`` that cost ~``target_s`` per batch here."""
    return calibrate_iterations(functools.partial(arrow_heavy, batch), target_s, start=20)


def measure_recovery(loop: asyncio.AbstractEventLoop, reps: int) -> dict[str, Any]:
    """Time from the timeout firing to the next batch's result (fresh generation)."""
    timeout_s = 0.2
    mw = ProcessBatchMiddleware(sleep_if_told, max_workers=WORKERS, timeout_s=timeout_s,
                                name="recovery")
    ctx = MiddlewareContext("bench", "bench-run", mw.name, 0)
    loop.run_until_complete(mw.on_start(ctx))
    latencies = []

    async def once(index: int) -> float:
        fired_at = time.perf_counter() + timeout_s  # the hung batch is dispatched at once
        try:
            await mw.submit(index, [{"id": index, "sleep": 60}])
        except ProcessBatchError as exc:
            assert exc.timed_out
        await mw.submit(index + 1, [{"id": index + 1}])
        return time.perf_counter() - fired_at

    try:
        for rep in range(reps):
            latencies.append(loop.run_until_complete(once(2 * rep)))
    finally:
        loop.run_until_complete(mw.on_stop(ctx))
    metrics = mw.metrics()
    return {
        "timeout_s": timeout_s,
        "recovery_s_median": statistics.median(latencies),
        "recovery_s_repeats": latencies,
        "recovery_s_max": max(latencies),
        "recycle_s_mean": metrics["recycle_seconds"] / max(1, metrics["pool_recycles"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and reps")
    parser.add_argument("--targets-advisory", action="store_true",
                        help="report missed targets but exit 0 (regressions are compare.py's job)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved repeats of every ratio (5; at least 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON file to write (default: a timestamped file in bench/results/)")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error(f"--repeats must be at least 3 to measure noise; got {args.repeats}")
    reps, min_s = args.repeats, (0.2 if args.quick else 0.5)
    slowdown = injected_slowdown()
    if slowdown:
        print(f"injected slowdown: every measured lane/pipeline pass costs {slowdown:.0%} "
              "more CPU", flush=True)
    rows_total = 100_000 if args.quick else 200_000
    ctx = multiprocessing.get_context("forkserver")
    # The same preload the middleware asks for (the forkserver is shared, first come first
    # served), plus compute for the baselines' cheap transform.
    ctx.set_forkserver_preload(["pyarrow", "pyarrow.ipc", "pyarrow.compute", "ctypes",
                                "agora.process.worker"])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "mode": "quick" if args.quick else "full",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "pyarrow": pa.__version__, "platform": platform.platform()},
        "batch_rows": BATCH_ROWS, "workers": WORKERS, "window": WINDOW, "rows": rows_total,
        "repeats_per_ratio": reps, "injected_slowdown": slowdown,
    }
    arrow = make_batches(rows_total)
    pylist = [b.to_pylist() for b in arrow]
    probe = FloorProbe(ctx, len(_ipc_bytes(arrow[0])))
    pairs: dict[str, Any] = results.setdefault("pairs", {})

    def report(key: str, subject: str, baseline: str, pair: dict[str, Any]) -> None:
        pairs[key] = {"subject": subject, "baseline": baseline, **pair}
        a, b = pair["subject_rows_per_s"], pair["baseline_rows_per_s"]
        print(f"  {subject:<24} {a['median'] / 1e6:9.3f}M rows/s (min {a['min'] / 1e6:.3f}M,"
              f" max {a['max'] / 1e6:.3f}M)\n  {baseline:<24} {b['median'] / 1e6:9.3f}M rows/s"
              f" (min {b['min'] / 1e6:.3f}M, max {b['max'] / 1e6:.3f}M)"
              f"\n    -> ratio {pair['ratio']:.3f}, in CPU time {pair['cpu_ratio']:.3f}   "
              f"(other processes used {pair['background_cores']:.2f} cores meanwhile)",
              flush=True)

    lane_kw = {"max_workers": WORKERS, "max_in_flight_batches": WINDOW}
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=ctx) as pool:
        ipc_call = functools.partial(ppe_ipc_call, fn=arrow_identity)
        try:
            probe.burst()  # warm-up: the echo server's first wake-ups
            with Lane(loop, ArrowProcessBatchMiddleware(arrow_identity, **lane_kw),
                      arrow) as lane:
                report("arrow_identity", "arrow lane identity", "ppe + IPC bytes identity",
                       paired(lane, lambda: drive_ppe(
                           pool, ipc_call, arrow, _ipc_bytes,
                           lambda data: ipc.open_stream(data).read_next_batch()),
                           reps, min_s, between=probe.burst))
        finally:
            probe.close()
        floor = results["floor"] = floor_of(pairs["arrow_identity"])
        print(f"  floor, median of {reps} bursts between the repeats: "
              f"{floor['floor_batch_us']:.0f} us/batch (memcpy {floor['memcpy_batch_us']:.1f}"
              f" us x2 + pipe RTT {floor['pipe_rtt_us']:.1f} us) = "
              f"{floor['floor_rows_per_s'] / 1e6:.1f}M rows/s per dispatch stream; the lane "
              f"reached {floor['fraction_repeats'][0]:.2f}..{floor['fraction_repeats'][-1]:.2f}"
              f" of it", flush=True)
        with Lane(loop, ProcessBatchMiddleware(rows_cheap, **lane_kw), pylist) as lane:
            report("rows_cheap", "row lane cheap", "ppe + pickle cheap", paired(
                lane, lambda: drive_ppe(pool, rows_cheap, pylist, lambda b: b, lambda r: r),
                reps, min_s))

    k = results["heavy_k"] = calibrate_heavy(arrow[0])
    heavy = functools.partial(arrow_heavy, k=k)
    heavy_batches = arrow[: 8 if args.quick else 16]
    with Lane(loop, ArrowProcessBatchMiddleware(heavy, **lane_kw), heavy_batches) as lane:
        report("arrow_heavy", f"arrow lane heavy (k={k})", "serial in-process heavy",
               paired(lane, serial(heavy, heavy_batches), reps, 0.0, min_passes=1))

    results["recovery"] = measure_recovery(loop, 3 if args.quick else 5)
    print(f"  timeout recovery (timeout fires -> next batch's result on a fresh pool): "
          f"{results['recovery']['recovery_s_median'] * 1e3:.0f} ms median (max "
          f"{results['recovery']['recovery_s_max'] * 1e3:.0f} ms)", flush=True)

    pipe = results["pipeline"] = measure_pipeline(ctx, arrow, reps)
    med = pipe["medians"]
    print(f"  whole run_sync(): 1-row run {med['pipeline_fixed_s'] * 1e3:.1f} ms, "
          f"{pipe['rows']:,}-row run {med['pipeline_rows_per_second'] / 1e6:.2f}M rows/s "
          f"= {med['pipeline_identity_vs_ppe_ipc']:.2f}x the hand-written IPC loop", flush=True)

    if not args.quick:
        results["million_rows"] = million_row_table(loop, k)

    names = (("arrow_identity", "ppe_ipc"), ("rows_cheap", "ppe_pickle"),
             ("arrow_heavy", "serial"))
    results["repeats"] = {
        **{f"{key}_vs_{ref}": pairs[key]["ratio_repeats"] for key, ref in names},
        "arrow_identity_fraction_of_floor": floor["fraction_repeats_in_order"],
        **{f"{key}_vs_{ref}_cpu": pairs[key]["cpu_ratio_repeats"] for key, ref in names},
        "timeout_recovery_s": results["recovery"]["recovery_s_repeats"],
        **pipe["repeats"],
    }
    # every figure is the median of its repeats, so compare.py reads the same number
    ratios = results["ratios"] = {key: statistics.median(values)
                                  for key, values in results["repeats"].items()}
    print("\nratio                                measured   target   met")
    all_ok = True
    for key, value in ratios.items():
        target = TARGETS.get(key)
        if target is None:  # tracked for regressions, no target
            print(f"  {key:<34} {value:8.4g}")
            continue
        upper = key.endswith("_s")
        ok = value <= target if upper else value >= target
        all_ok &= ok
        print(f"  {key:<34} {value:8.3f} {'<=' if upper else '>='} {target:<6} "
              f"{'yes' if ok else 'NO'}")
    results["targets"] = TARGETS
    results["all_targets_met"] = all_ok
    out = args.out or (Path(__file__).resolve().parent / "results" /
                       f"bench_process_lanes-{results['mode']}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {out}")
    loop.close()
    return 0 if all_ok or args.targets_advisory else 1


def million_row_table(loop: asyncio.AbstractEventLoop, k: int) -> dict[str, Any]:
    """1M rows through both lanes, cheap and CPU-heavy, vs the same transform serially."""
    arrow = make_batches(1_000_000)
    pylist = [b.to_pylist() for b in arrow]
    table: dict[str, Any] = {}
    cases = {
        ("arrow", "cheap"): (arrow, arrow_cheap, ArrowProcessBatchMiddleware),
        ("arrow", "heavy"): (arrow, functools.partial(arrow_heavy, k=k),
                             ArrowProcessBatchMiddleware),
        ("rows", "cheap"): (pylist, rows_cheap, ProcessBatchMiddleware),
        ("rows", "heavy"): (pylist, functools.partial(rows_heavy, k=k), ProcessBatchMiddleware),
    }
    print("\n1M rows, one pass each          lane rows/s   serial rows/s   lane/serial")
    for (lane, transform), (batches, fn, cls) in cases.items():
        serial_rate = rate_of(serial(fn, batches), 0.0)
        mw = cls(fn, max_workers=WORKERS, max_in_flight_batches=WINDOW)
        with Lane(loop, mw, batches) as run_lane:
            lane_rate = rate_of(run_lane, 0.0)
        table[f"{lane}_{transform}"] = {"lane_rows_per_s": lane_rate,
                                        "serial_rows_per_s": serial_rate}
        print(f"  {lane:<5} {transform:<6}                {lane_rate / 1e6:10.3f}M "
              f"{serial_rate / 1e6:12.3f}M {lane_rate / serial_rate:12.2f}x", flush=True)
    return table


if __name__ == "__main__":
    sys.exit(main())
