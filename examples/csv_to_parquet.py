"""CSV → process-isolated Arrow transform → Parquet, with a SQLite checkpoint and DLQ.

Shows: an Arrow lane end to end; a transform that runs in worker processes; malformed
CSV lines dead-lettered instead of stopping the job; a second run that resumes from the
checkpoint and reads nothing twice.

Run:  python examples/csv_to_parquet.py [--out DIR]     (default ./example-output/csv_to_parquet)
Then: agora dlq list DIR/dlq.db                          (the two malformed lines)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agora import (ArrowCsvSource, ArrowProcessBatchMiddleware, DeliveryConfig, ParquetSink,
                   Pipeline, SQLiteCheckpointStore, SQLiteDLQSink)

ROWS = 1_000


def write_input(path: Path) -> None:
    """A small orders CSV with two malformed lines (a missing and an extra field)."""
    lines = ["order_id,quantity,unit_price"]
    lines += [f"{i},{i % 9 + 1},{(i * 7) % 100 + 0.25}" for i in range(ROWS)]
    lines.insert(300, "broken,3")
    lines.insert(700, "999999,1,2.5,surplus")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_total(batch: pa.RecordBatch) -> pa.RecordBatch:
    # Runs in a worker process: it must be a top-level function of an importable module
    # (a lambda or a closure cannot be sent to another process).
    total = pc.multiply(pc.cast(batch["quantity"], pa.float64()), batch["unit_price"])
    return batch.append_column("total", pc.round(total, 2))


def build(out: Path):
    """The job over ``out``: input.csv → orders.parquet, state in checkpoints.db / dlq.db."""
    return (
        Pipeline(ArrowCsvSource(out / "input.csv", batch_size=250, on_malformed="dlq"),
                 id="csv-to-parquet")
        .pipe(ArrowProcessBatchMiddleware(add_total, max_workers=2, timeout_s=60))
        .build(ParquetSink(out / "orders.parquet"),
               delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(out / "checkpoints.db"),
                                       dlq=SQLiteDLQSink(out / "dlq.db"),
                                       checkpoint_every=500))
    )


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_input(out / "input.csv")
    job = build(out)
    print(job.explain())
    print(job.run_sync())         # 1,000 rows written, 2 malformed lines dead-lettered
    # A job built afresh, as after a restart, resumes from the checkpoint: nothing is
    # read or written twice.
    print(build(out).run_sync())


# The guard is required: worker processes re-import this module, and without it each of
# them would start the job again.
if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("example-output/csv_to_parquet"))
    main(parser.parse_args().out)
