"""Data and transforms shared by the pipeline benchmarks, importable by worker processes.

Worker processes unpickle a transform by its module path, so everything a benchmark
ships to a worker lives at module level here (or in ``bench.bench_process_lanes``,
whose data and transforms are reused so every benchmark moves the same bytes through
the same code): 8 columns, ~60 bytes/row in Arrow, ~620 bytes/row as ``list[dict]``.

* ``cheap``: one derived column ``d = 2*x + a`` (3 ``pyarrow.compute`` calls / a dict
  comprehension): transport dominates.
* ``heavy``: a pure-Python loop per row, ``k`` iterations calibrated so a batch costs a
  set time in this process: compute dominates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc

from agora.testing import calibrate_iterations

from bench.bench_process_lanes import (
    BATCH_ROWS,
    arrow_cheap,
    arrow_heavy,
    make_batches,
    ppe_ipc_call,
    rows_cheap,
    rows_heavy,
)

__all__ = [
    "BATCH_ROWS",
    "arrow_cheap",
    "arrow_heavy",
    "calibrate_k",
    "decode_ipc",
    "encode_ipc",
    "make_batches",
    "ppe_ipc_call",
    "rows_cheap",
    "rows_heavy",
    "transform_pair",
    "write_csv",
]


def calibrate_k(batch: pa.RecordBatch, target_s: float) -> int:
    """Iterations of the heavy loop that make ``arrow_heavy(batch, k)`` cost ~``target_s``
    here. Calibrated on the Arrow form; the row form costs a little more (per-row dict
    copies), which is part of what the row lane pays."""
    return calibrate_iterations(functools.partial(arrow_heavy, batch), target_s)


def transform_pair(kind: str, k: int) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(Arrow transform, row transform) of the same meaning; picklable by reference."""
    if kind == "cheap":
        return arrow_cheap, rows_cheap
    if kind == "heavy":
        return functools.partial(arrow_heavy, k=k), functools.partial(rows_heavy, k=k)
    raise ValueError(f"transform kind must be 'cheap' or 'heavy'; got {kind!r}")


def encode_ipc(batch: pa.RecordBatch) -> bytes:
    """One batch as an Arrow IPC stream (the hand-written baseline's wire format)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_ipc(data: bytes) -> pa.RecordBatch:
    return ipc.open_stream(data).read_next_batch()


def write_csv(path: Path, rows: int) -> int:
    """Write ``rows`` rows of the benchmark data to ``path`` as CSV; returns its size.

    Built batch by batch so generating a large file does not itself hold the table.
    """
    with pa_csv.CSVWriter(str(path), make_batches(BATCH_ROWS)[0].schema) as writer:
        for start in range(0, rows, 10 * BATCH_ROWS):
            for batch in make_batches(min(10 * BATCH_ROWS, rows - start)):
                # make_batches numbers ids from 0; shift them so ids stay unique
                ids = pa.array(range(start, start + batch.num_rows), pa.int64())
                writer.write_batch(batch.set_column(0, "id", ids))
    return path.stat().st_size
