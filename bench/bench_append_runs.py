"""Resumed-run cost: a daily job appending ``--rows`` new rows per run, ``--runs`` times,
into one ``ParquetSink`` with one pipeline id and a SQLite checkpoint.

Each run is a fresh ``BoundPipeline`` (as a scheduler would build it) over an
``ArrowBatchSource`` whose input has grown by ``--rows`` rows; the checkpoint makes the run
skip what earlier runs wrote, so only the sink's own cost can grow with the output. The
figure is the last run's wall time over the first's (target ≤ 1.2); ``--layouts file``
measures the single-file layout for comparison (it re-encodes the whole output at every
close).

Usage: ``python bench/bench_append_runs.py [--runs 10] [--rows 1000000]
[--layouts dataset,file]``. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agora import ArrowBatchSource, DeliveryConfig, ParquetSink, Pipeline, SQLiteCheckpointStore

Layout = Literal["dataset", "file"]
BATCH_ROWS = 50_000  # the demo's batch size
CHECKPOINT_EVERY = 200_000  # the demo's checkpoint interval
TARGET = 1.2
_CITIES = pa.array(["Lisbon", "Oslo", "Kyoto", "Lagos", "Quito", "Perth", "Tunis", "Hanoi"])


def _template() -> pa.RecordBatch:
    n = BATCH_ROWS
    return pa.record_batch({
        "order_id": pa.array(range(n), pa.int64()),
        "quantity": pa.array([(i % 9) + 1 for i in range(n)], pa.int32()),
        "price": pa.array([(i % 1000) / 10 for i in range(n)], pa.float64()),
        "city": _CITIES.take(pa.array([i % 8 for i in range(n)])),
    })


_TEMPLATE = _template()


def batches(total: int) -> Iterator[pa.RecordBatch]:
    """``total`` order-like rows in demo-sized batches; ids are unique and ascending. A
    batch costs one vector add, so the batches a resumed run skips cost next to nothing
    and only the sink's cost can grow from run to run."""
    for start in range(0, total, BATCH_ROWS):
        batch = _TEMPLATE.slice(0, min(BATCH_ROWS, total - start))
        ids = pc.add(batch.column(0), pa.scalar(start, pa.int64()))
        yield pa.record_batch([ids, *batch.columns[1:]], names=batch.schema.names)


def one_run(base: Path, total: int, layout: Layout) -> dict[str, Any]:
    bound = Pipeline(ArrowBatchSource(lambda: batches(total), name="daily"),
                     id="daily-append").build(
        ParquetSink(base / "out.parquet", name="parquet_out", layout=layout),
        delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(base / "checkpoints.db"),
                                checkpoint_every=CHECKPOINT_EVERY),
    )
    start = time.perf_counter()
    cpu = time.process_time()
    summary = bound.run_sync()
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "records_written": summary.records_written}


def append_runs(workdir: Path, runs: int, rows: int, layout: Layout) -> dict[str, Any]:
    base = workdir / layout
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    figures = []
    for i in range(runs):
        fig = one_run(base, (i + 1) * rows, layout)
        if fig["records_written"] != rows:
            raise SystemExit(f"run {i + 1} wrote {fig['records_written']} rows, not {rows}")
        figures.append(fig)
        print(f"  {layout:<7} run {i + 1:>2}: {fig['wall_s']:.2f} s wall, "
              f"{fig['cpu_s']:.2f} s CPU", flush=True)
    out = pq.read_table(base / "out.parquet", columns=["order_id"]).column("order_id")
    if len(out) != runs * rows or out.to_pylist() != list(range(runs * rows)):
        raise SystemExit(f"{layout}: the output does not hold each row exactly once, in order")
    walls = [f["wall_s"] for f in figures]
    return {"runs": figures, "last_vs_first": walls[-1] / walls[0],
            "max_vs_first": max(walls) / walls[0]}


def layouts(spec: str) -> list[Layout]:
    chosen: list[Layout] = []
    for name in spec.split(","):
        if name not in ("dataset", "file"):
            raise SystemExit(f"--layouts takes 'dataset' and/or 'file'; got {name!r}")
        chosen.append("dataset" if name == "dataset" else "file")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layouts", default="dataset")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"runs": args.runs, "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="agora-append-") as tmp:
        # Untimed warm-up (imports, first allocations), so run 1 is not inflated and the
        # last/first ratio not flattered by it.
        (Path(tmp) / "warm-up").mkdir()
        one_run(Path(tmp) / "warm-up", args.rows, "dataset")
        for layout in layouts(args.layouts):
            print(f"{layout}: {args.runs} runs of {args.rows:,} new rows", flush=True)
            results[layout] = append_runs(Path(tmp), args.runs, args.rows, layout)
    ok = True
    for layout in layouts(args.layouts):
        ratio = results[layout]["last_vs_first"]
        ok &= layout != "dataset" or ratio <= TARGET
        print(f"{layout:<7} last/first {ratio:.2f} (target ≤ {TARGET} for the dataset layout)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
