"""The demo job behind ``agora demo`` and the README's first command: a generated CSV →
an Arrow chain with a process-isolated transform → CSV and Parquet sinks, with a SQLite
checkpoint store and a SQLite DLQ.

``pipeline()`` is a factory, so the files the demo leaves behind can be inspected and
re-run: ``agora explain agora.demo:pipeline`` / ``agora run agora.demo:pipeline``
(directory from ``$AGORA_DEMO_DIR``, default ``./agora-demo``).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

if TYPE_CHECKING:  # for the annotation only: pipeline() imports the facade when called
    from agora.pipeline import BoundPipeline

__all__ = ["DEFAULT_ROWS", "enrich", "generate_csv", "pipeline", "prepare"]

DEFAULT_ROWS = 1_000_000
#: Rows per Arrow batch read from the CSV. Large enough that per-batch process overhead
#: is negligible, small enough that several batches are in flight without much memory.
DEMO_BATCH_ROWS = 50_000
MALFORMED_LINES = 2

_CITIES = ["Lisbon", "Oslo", "Kyoto", "Lagos", "Quito", "Perth", "Tunis", "Hanoi"]


def demo_dir() -> Path:
    return Path(os.environ.get("AGORA_DEMO_DIR", "agora-demo")).resolve()


def generate_csv(path: Path, rows: int = DEFAULT_ROWS, *, seed: int = 7) -> None:
    """Write ``rows`` order records plus ``MALFORMED_LINES`` malformed lines (wrong field
    count) so the run shows dead-lettering of bad input."""
    rng = random.Random(seed)
    half = rows // 2

    def table(start: int, stop: int) -> pa.Table:
        n = stop - start
        return pa.table({
            "order_id": pa.array(range(start, stop), pa.int64()),
            "customer": pa.array([f"cust-{rng.randrange(50_000):05d}" for _ in range(n)]),
            "city": pa.array([_CITIES[rng.randrange(len(_CITIES))] for _ in range(n)]),
            "quantity": pa.array([rng.randrange(1, 20) for _ in range(n)], pa.int32()),
            "unit_price": pa.array([round(rng.uniform(0.5, 250.0), 2) for _ in range(n)]),
            "discount": pa.array([rng.choice((0.0, 0.05, 0.1, 0.2)) for _ in range(n)]),
        })

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pa_csv.write_csv(table(0, half), fh)
        for i in range(MALFORMED_LINES):
            fh.write(f"{half + i},broken line without enough fields\n".encode())
        pa_csv.write_csv(table(half, rows), fh,
                         write_options=pa_csv.WriteOptions(include_header=False))


def enrich(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The process-isolated step: revenue, a per-order risk score (a few dozen vectorised
    kernels, to give the workers real CPU work), and a normalised city code."""
    qty = pc.cast(batch.column("quantity"), pa.float64())
    price = batch.column("unit_price")
    revenue = pc.multiply(pc.multiply(qty, price), pc.subtract(pa.scalar(1.0), batch.column("discount")))
    score = revenue
    for k in range(12):  # a small polynomial/trigonometric model of fraud risk
        score = pc.add(pc.sin(pc.multiply(score, pa.scalar(0.001 * (k + 1)))), pc.sqrt(pc.abs(score)))
    city_code = pc.utf8_upper(pc.utf8_slice_codeunits(batch.column("city"), 0, 3))
    return (batch.append_column("revenue", pc.round(revenue, 2))
            .append_column("risk", pc.round(score, 4))
            .append_column("city_code", city_code))


def is_large_order(batch: pa.RecordBatch) -> pa.Array:
    return pc.greater(batch.column("quantity"), pa.scalar(0, pa.int32()))


def pipeline(directory: str | os.PathLike[str] | None = None) -> BoundPipeline:
    """Build the demo ``BoundPipeline`` over ``directory`` (which must hold orders.csv)."""
    from agora import (
        ArrowCsvSource,
        ArrowFilterMiddleware,
        ArrowProcessBatchMiddleware,
        CsvSink,
        DeliveryConfig,
        ParquetSink,
        Pipeline,
        SinkFanOut,
        SQLiteCheckpointStore,
        SQLiteDLQSink,
    )

    base = Path(directory) if directory is not None else demo_dir()
    source = ArrowCsvSource(base / "orders.csv", batch_size=DEMO_BATCH_ROWS, on_malformed="dlq",
                            name="orders_csv")
    return (
        Pipeline(source, id="agora-demo")
        .pipe(ArrowFilterMiddleware(is_large_order, name="valid_quantity"),
              ArrowProcessBatchMiddleware(enrich, max_workers=2, max_in_flight_batches=4,
                                          timeout_s=60, name="enrich"))
        .fan_out(
            # Both file sinks encode with the GIL released: written side by side per batch.
            SinkFanOut([CsvSink(base / "orders_enriched.csv", name="csv_out"),
                        ParquetSink(base / "orders_enriched.parquet", name="parquet_out")],
                       sink_concurrency=2),
            delivery=DeliveryConfig(
                checkpoint=SQLiteCheckpointStore(base / "checkpoints.db"),
                dlq=SQLiteDLQSink(base / "dlq.db"),
                checkpoint_every=200_000,
            ),
        )
    )


def prepare(directory: Path, rows: int) -> None:
    """Fresh demo state: new input, no outputs, no checkpoint, no DLQ."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("orders_enriched.csv", "orders_enriched.parquet", "checkpoints.db",
                 "checkpoints.db-wal", "checkpoints.db-shm", "dlq.db", "dlq.db-wal", "dlq.db-shm"):
        target = directory / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # the Parquet output is a dataset folder
        else:
            target.unlink(missing_ok=True)
    generate_csv(directory / "orders.csv", rows)
