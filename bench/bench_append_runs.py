"""Resumed-run cost: a daily job appending ``--rows`` new rows per run, ``--runs`` times,
into one ``ParquetSink`` with one pipeline id and a SQLite checkpoint.

Each run is a fresh ``BoundPipeline`` (as a scheduler would build it) over an input that
has grown by ``--rows`` rows; the checkpoint makes the run skip what earlier runs read.

* ``--inputs batches`` (output side): an ``ArrowBatchSource`` whose skipped batches cost
  next to nothing, so only the sink's own cost can grow with the output.
* ``--inputs csv`` (input side): an ``ArrowCsvSource`` over one CSV file that grows by
  ``--rows`` lines before each run (the append is not timed); the source's resume — its
  prefix check and reaching the first unread row — is what can grow with the input.

The figure is the last run's wall time over the first's (target ≤ 1.2 for the output
side, ≤ 1.15 for the input side); ``--layouts file`` measures the single-file layout for
comparison (it re-encodes the whole output at every close).

Usage: ``python bench/bench_append_runs.py [--runs 10] [--rows 1000000]
[--layouts dataset,file] [--inputs batches,csv]``. Not run by the test suite.
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
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from agora import (
    ArrowBatchSource,
    ArrowCsvSource,
    DeliveryConfig,
    ParquetSink,
    Pipeline,
    SQLiteCheckpointStore,
)
from agora.sources import BaseSource

Layout = Literal["dataset", "file"]
Inputs = Literal["batches", "csv"]
BATCH_ROWS = 50_000  # the demo's batch size
CHECKPOINT_EVERY = 200_000  # the demo's checkpoint interval
TARGET = 1.2
CSV_TARGET = 1.15
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


def _csv_rows(path: Path) -> int:
    """Data rows in a bench CSV (its lines minus the header; 0 before it exists)."""
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1)


def append_csv(path: Path, total: int, rows: int) -> None:
    """Append rows ``total - rows`` .. ``total - 1`` to the CSV at ``path`` (with a header
    when it starts the file), the way a daily export grows its file."""
    start = total - rows
    with open(path, "ab") as fh:
        for first in range(start, total, BATCH_ROWS):
            batch = next(batches(min(BATCH_ROWS, total - first)))
            ids = pc.add(batch.column(0), pa.scalar(first, pa.int64()))
            batch = pa.record_batch([ids, *batch.columns[1:]], names=batch.schema.names)
            pa_csv.write_csv(batch, fh, write_options=pa_csv.WriteOptions(
                include_header=first == 0))


def one_run(base: Path, total: int, layout: Layout, inputs: Inputs = "batches") -> dict[str, Any]:
    """One timed run over ``total`` input rows (a CSV input first grows to hold them)."""
    source: BaseSource
    if inputs == "csv":
        append_csv(base / "input.csv", total, total - _csv_rows(base / "input.csv"))
        source = ArrowCsvSource(base / "input.csv", batch_size=BATCH_ROWS, name="daily_csv")
    else:
        source = ArrowBatchSource(lambda: batches(total), name="daily")
    bound = Pipeline(source, id="daily-append").build(
        ParquetSink(base / "out.parquet", name="parquet_out", layout=layout),
        delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(base / "checkpoints.db"),
                                checkpoint_every=CHECKPOINT_EVERY),
    )
    start = time.perf_counter()
    cpu = time.process_time()
    summary = bound.run_sync()
    return {"wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "records_written": summary.records_written}


def append_runs(workdir: Path, runs: int, rows: int, layout: Layout,
                inputs: Inputs = "batches") -> dict[str, Any]:
    base = workdir / f"{inputs}-{layout}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    figures = []
    for i in range(runs):
        fig = one_run(base, (i + 1) * rows, layout, inputs)
        if fig["records_written"] != rows:
            raise SystemExit(f"run {i + 1} wrote {fig['records_written']} rows, not {rows}")
        figures.append(fig)
        print(f"  {inputs:<7} {layout:<7} run {i + 1:>2}: {fig['wall_s']:.2f} s wall, "
              f"{fig['cpu_s']:.2f} s CPU", flush=True)
    out = pq.read_table(base / "out.parquet", columns=["order_id"]).column("order_id")
    if len(out) != runs * rows or out.to_pylist() != list(range(runs * rows)):
        raise SystemExit(f"{inputs}/{layout}: the output does not hold each row exactly "
                         f"once, in order")
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


def input_kinds(spec: str) -> list[Inputs]:
    chosen: list[Inputs] = []
    for name in spec.split(","):
        if name not in ("batches", "csv"):
            raise SystemExit(f"--inputs takes 'batches' and/or 'csv'; got {name!r}")
        chosen.append("batches" if name == "batches" else "csv")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--layouts", default="dataset")
    parser.add_argument("--inputs", default="batches")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"runs": args.runs, "rows": args.rows}
    kinds = input_kinds(args.inputs)
    with tempfile.TemporaryDirectory(prefix="agora-append-") as tmp:
        # Untimed warm-up (imports, first allocations), so run 1 is not inflated and the
        # last/first ratio not flattered by it.
        for inputs in kinds:
            (Path(tmp) / f"warm-up-{inputs}").mkdir()
            one_run(Path(tmp) / f"warm-up-{inputs}", args.rows, "dataset", inputs)
        for inputs in kinds:
            for layout in layouts(args.layouts):
                print(f"{inputs} → {layout}: {args.runs} runs of {args.rows:,} new rows",
                      flush=True)
                key = layout if inputs == "batches" else f"{inputs}_{layout}"
                results[key] = append_runs(Path(tmp), args.runs, args.rows, layout, inputs)
    ok = True
    for inputs in kinds:
        target = TARGET if inputs == "batches" else CSV_TARGET
        for layout in layouts(args.layouts):
            key = layout if inputs == "batches" else f"{inputs}_{layout}"
            ratio = results[key]["last_vs_first"]
            ok &= layout != "dataset" or ratio <= target
            print(f"{inputs:<7} {layout:<7} last/first {ratio:.2f} "
                  f"(target ≤ {target} for the dataset layout)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
