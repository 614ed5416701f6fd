"""The cost of durability for Parquet output: how much checkpointing more often, and
fsyncing, cost a job.

* **job** — the demo job (``agora.demo``: CSV → Arrow filter → process-isolated
  ``enrich`` on 2 workers, SQLite checkpoint and DLQ) writing only its Parquet output, with
  ``checkpoint_every`` at 10k, 100k and end-only, ``ParquetSink(fsync=True/False)``, and
  the single-file layout at the demo's own interval for comparison. The CSV output is
  left out: it fsyncs on every flush whatever is measured here. One fresh state per run.
* **sink** — ``ParquetSink`` alone, ``--sink-rows`` demo-like rows written in 10k-row
  Arrow batches, ``flush()`` every 10k / 100k rows or only at ``close()``: the cost of
  one flush (seal a part: footer, fsync, rename, manifest) is the difference from the
  end-only run divided by the number of flushes.

Usage: ``python bench/bench_durability.py [--rows 4000000] [--sink-rows 1000000]
[--repeats 3] [--quick]``. Not run by the test suite. Figures are ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from agora import ParquetSink, Pipeline
from agora.demo import generate_csv
from agora.demo import pipeline as demo_pipeline

END_ONLY = 10**15  # larger than any input: one checkpoint, at the end of the stream
INTERVALS = {"10k": 10_000, "100k": 100_000, "end": END_ONLY}
SINK_BATCH = 10_000


def job_run(base: Path, every: int, *, fsync: bool, layout: str) -> dict[str, Any]:
    """One demo-like run from a fresh state; wall time and how many parts it sealed."""
    for name in ("out.parquet", "checkpoints.db", "checkpoints.db-wal", "checkpoints.db-shm",
                 "dlq.db", "dlq.db-wal", "dlq.db-shm"):
        target = base / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    demo = demo_pipeline(base)
    sink = ParquetSink(base / "out.parquet", name="parquet_out", fsync=fsync,
                       layout="file" if layout == "file" else "dataset")
    bound = (Pipeline(demo.source, id=demo.pipeline_id)
             .pipe(*demo.middleware)
             .fan_out([sink], delivery=dataclasses.replace(demo.delivery,
                                                           checkpoint_every=every)))
    start = time.perf_counter()
    summary = bound.run_sync()
    wall = time.perf_counter() - start
    parts = len(list((base / "out.parquet").glob("part-*.parquet"))) if layout == "dataset" \
        else None
    return {"wall_s": wall, "records_written": summary.records_written, "parts": parts}


def _demo_like_batch(rows: int) -> pa.RecordBatch:
    return pa.record_batch({
        "order_id": pa.array(range(rows), pa.int64()),
        "customer": pa.array([f"c{i % 5000:05d}" for i in range(rows)]),
        "city": pa.array(["Lisbon", "Oslo", "Kyoto", "Lagos"] * (rows // 4)),
        "quantity": pa.array([(i % 9) + 1 for i in range(rows)], pa.int32()),
        "price": pa.array([(i % 10_000) / 100 for i in range(rows)], pa.float64()),
        "risk": pa.array([(i % 97) / 97 for i in range(rows)], pa.float64()),
    })


def sink_run(path: Path, rows: int, every: int, *, fsync: bool) -> dict[str, Any]:
    """``ParquetSink`` alone: write ``rows`` rows, flushing every ``every`` rows."""
    shutil.rmtree(path, ignore_errors=True)
    batch = _demo_like_batch(SINK_BATCH)

    async def main() -> int:
        sink = ParquetSink(path, fsync=fsync)
        await sink.open()
        flushes = 0
        for written in range(SINK_BATCH, rows + 1, SINK_BATCH):
            await sink.write_arrow_batch(batch)
            if written % every == 0:
                await sink.flush()
                flushes += 1
        await sink.close()
        return flushes

    start = time.perf_counter()
    flushes = asyncio.run(main())
    return {"wall_s": time.perf_counter() - start, "flushes": flushes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="demo job input rows")
    parser.add_argument("--sink-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration")
    parser.add_argument("--quick", action="store_true",
                        help="200k job rows, 200k sink rows, one repeat")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.sink_rows, args.repeats = 200_000, 200_000, 1
    results: dict[str, Any] = {"rows": args.rows, "sink_rows": args.sink_rows,
                               "job": {}, "sink": {}}
    with tempfile.TemporaryDirectory(prefix="agora-durability-") as tmp:
        base = Path(tmp)
        print(f"generating {args.rows:,} demo rows", flush=True)
        generate_csv(base / "orders.csv", args.rows)
        configs = [(label, every, fsync, "dataset") for label, every in INTERVALS.items()
                   for fsync in (True, False)] + [("200k", 200_000, True, "file"),
                                                  ("200k", 200_000, True, "dataset")]
        sink_configs = [(label, every, fsync) for label, every in INTERVALS.items()
                        for fsync in (True, False)]
        sink_run(base / "sink.parquet", args.sink_rows, END_ONLY, fsync=True)  # warm-up
        job_walls: dict[str, list[float]] = {}
        sink_walls: dict[str, list[float]] = {}
        # Configurations interleaved within each repeat, medians reported: a neighbour's
        # burst of load then spreads over all of them instead of landing on one.
        for rep in range(args.repeats):
            for label, every, fsync, layout in configs:
                key = f"{layout} every={label} fsync={'on' if fsync else 'off'}"
                fig = job_run(base, every, fsync=fsync, layout=layout)
                results["job"][key] = fig
                job_walls.setdefault(key, []).append(fig["wall_s"])
                print(f"  [{rep + 1}] job  {key:<34} {fig['wall_s']:6.2f} s  parts "
                      f"{fig['parts']}", flush=True)
            for label, every, fsync in sink_configs:
                key = f"every={label} fsync={'on' if fsync else 'off'}"
                fig = sink_run(base / "sink.parquet", args.sink_rows, every, fsync=fsync)
                results["sink"][key] = fig
                sink_walls.setdefault(key, []).append(fig["wall_s"])
        for walls, section in ((job_walls, "job"), (sink_walls, "sink")):
            for key, values in walls.items():
                results[section][key]["wall_s"] = statistics.median(values)
                results[section][key]["walls"] = values
                fig = results[section][key]
                count = fig.get("flushes", fig.get("parts"))
                print(f"  {section:<4} {key:<36} median {fig['wall_s']:6.2f} s "
                      f"(flushes/parts {count})")
    for fsync in ("on", "off"):
        end = results["sink"][f"every=end fsync={fsync}"]["wall_s"]
        for label in ("10k", "100k"):
            fig = results["sink"][f"every={label} fsync={fsync}"]
            per = (fig["wall_s"] - end) / max(fig["flushes"], 1) * 1000
            results["sink"][f"every={label} fsync={fsync}"]["ms_per_flush"] = per
            print(f"  per flush, every {label:<4} fsync {fsync:<3}: {per:6.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
