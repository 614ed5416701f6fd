"""The demo job written by hand with pyarrow and a ProcessPoolExecutor — the baseline the
end-to-end benchmark compares ``agora run agora.demo:pipeline`` against.

Same input, same transform (``agora.demo.enrich`` and ``is_large_order``), same outputs
(one CSV and one Parquet file), 2 workers with 4 batches in flight, batches shipped as
Arrow IPC. What it leaves out is exactly what Agora adds: no checkpoint, no DLQ (malformed
lines are skipped), no ordered-commit bookkeeping, no crash safety.

Usage: ``python bench/handwritten_demo.py DIR`` (DIR holds ``orders.csv``).
"""

from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from agora.demo import DEMO_BATCH_ROWS, enrich, is_large_order

WORKERS = 2
IN_FLIGHT = 4
#: Bytes per CSV block: the demo's rows average ~50 bytes, so this gives batches close to
#: the Agora job's 50,000 rows.
BLOCK_BYTES = DEMO_BATCH_ROWS * 50


def _to_ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(data).read_next_batch()


def enrich_ipc(data: bytes) -> bytes:
    return _to_ipc(enrich(_from_ipc(data)))


def run(directory: Path) -> int:
    reader = pa_csv.open_csv(
        directory / "orders.csv",
        read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda row: "skip"),
    )
    csv_writer: pa_csv.CSVWriter | None = None
    pq_writer: pq.ParquetWriter | None = None
    rows = 0

    def write(result: pa.RecordBatch) -> None:
        nonlocal csv_writer, pq_writer, rows
        if csv_writer is None:
            csv_writer = pa_csv.CSVWriter(directory / "hand_enriched.csv", result.schema)
            pq_writer = pq.ParquetWriter(directory / "hand_enriched.parquet", result.schema)
        assert pq_writer is not None
        csv_writer.write_batch(result)
        pq_writer.write_batch(result)
        rows += result.num_rows

    pending: deque[Future[bytes]] = deque()
    with ProcessPoolExecutor(WORKERS, mp_context=get_context("forkserver")) as pool:
        for batch in reader:
            batch = batch.filter(is_large_order(batch))
            pending.append(pool.submit(enrich_ipc, _to_ipc(batch)))
            if len(pending) >= IN_FLIGHT:
                write(_from_ipc(pending.popleft().result()))
        while pending:
            write(_from_ipc(pending.popleft().result()))
    if csv_writer is not None:
        csv_writer.close()
    if pq_writer is not None:
        pq_writer.close()
    return rows


if __name__ == "__main__":
    total = run(Path(sys.argv[1]))
    print(f"hand-written job: {total} rows", file=sys.stderr)
