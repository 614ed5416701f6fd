"""The crash-test driver: runs one pipeline described by ``<workdir>/spec.json`` to the
end, resuming from the checkpoint left by earlier (killed) runs, and SIGKILLs itself at
the crash point named in ``AGORA_PRESERVATION_CRASH`` (see ``faults.CrashPoint``).

Run as ``python -m preservation.driver WORKDIR`` from the repository root. Exit status
0 means the run finished (the run summary is printed as one JSON line), 1 means it
failed with an exception (printed), 130 that it was interrupted (SIGINT); a crash shows
as death by SIGKILL.

Lanes (``spec["lane"]``), each ending in a file sink (``spec["sink"]``: JSON lines by
default, CSV or Parquet) with SQLite checkpoints:

* ``rows``     ``CsvSource`` rows, writer batching, a raising ``MapMiddleware``, SQLite DLQ
* ``batches``  ``CsvSource`` Python batches, the same middleware per record, JSON-lines DLQ
* ``arrow``    ``ArrowCsvSource`` Arrow batches straight to an Arrow-native sink, SQLite DLQ
* ``arrow_process``  as ``arrow`` with an ``ArrowProcessBatchMiddleware`` in between
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from agora import (
    ArrowCsvSource,
    CsvSink,
    CsvSource,
    DeliveryConfig,
    JsonLinesDLQSink,
    JsonLinesSink,
    MapMiddleware,
    ParquetSink,
    Pipeline,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from preservation.faults import (
    CrashingCheckpointStore,
    CrashPoint,
    FlakyDLQ,
    FlakySink,
    Identity,
    RaiseOn,
)

__all__ = ["OUTPUT_FILES", "build", "main", "output_sink", "write_input"]

PIPELINE_ID = "preservation-driver"
#: Arrow CSV parse block: small enough that malformed rows interleave with batches.
ARROW_BLOCK_BYTES = 16 * 1024


def write_input(path: Path, n: int, malformed: set[int]) -> None:
    """A CSV of ``n`` records with ids ``0..n-1`` in order; ids in ``malformed`` get a line
    with the wrong field count (dead-lettered by the source)."""
    lines = ["id,name,value"]
    for i in range(n):
        lines.append(f"{i},broken" if i in malformed else f"{i},name-{i},{i * 7}")
    path.write_text("\n".join(lines) + "\n")


OUTPUT_FILES = {"jsonl": "out.jsonl", "csv": "out.csv", "parquet": "out.parquet"}


def output_sink(workdir: Path, kind: str) -> Any:
    """The file sink the records go to: ``jsonl`` (default), ``csv`` or ``parquet``.
    Each continues its output on resume (contract §4: the runtime calls ``resume_output``)."""
    path = workdir / OUTPUT_FILES[kind]
    if kind == "csv":
        return CsvSink(path, mode="a")
    if kind == "parquet":
        return ParquetSink(path, row_group_size=100)
    return JsonLinesSink(path, mode="a")


def build(workdir: Path, spec: dict[str, Any], crash: CrashPoint) -> Any:
    """The bound pipeline for ``spec`` in ``workdir`` (see the module docstring)."""
    lane = spec["lane"]
    size = spec["batch_size"]
    src = workdir / "input.csv"
    chain: list[Any] = []
    if lane == "rows":
        source: Any = CsvSource(src, on_malformed="dlq")
    elif lane == "batches":
        source = CsvSource(src, on_malformed="dlq", batch_size=size)
    else:
        source = ArrowCsvSource(src, on_malformed="dlq", batch_size=size,
                                block_size=ARROW_BLOCK_BYTES)
    if lane in ("rows", "batches"):
        chain.append(MapMiddleware(RaiseOn("poison record", ids=spec["middleware_poison"]),
                                   name="poison_check"))
    if lane == "arrow_process":
        from agora import ArrowProcessBatchMiddleware

        chain.append(ArrowProcessBatchMiddleware(Identity(), max_workers=2,
                                                 max_in_flight_batches=2, timeout_s=30))
    dlq_inner: Any = (JsonLinesDLQSink(workdir / "dlq.jsonl") if lane == "batches"
                      else SQLiteDLQSink(workdir / "dlq.db"))
    sink = FlakySink(output_sink(workdir, spec.get("sink", "jsonl")),
                     fail_on=spec["sink_poison"], delay_s=spec.get("sink_delay_s", 0.0),
                     on_event=crash.hit, name="out")
    delivery = DeliveryConfig(
        dlq=FlakyDLQ(dlq_inner, crash=crash),
        checkpoint=CrashingCheckpointStore(SyncSQLiteCheckpointStore(workdir / "ckpt.db"), crash),
        checkpoint_every=spec["checkpoint_every"],
        batch_size=size,
    )
    return Pipeline(source, id=PIPELINE_ID).pipe(*chain).build(sink, delivery=delivery)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m preservation.driver WORKDIR", file=sys.stderr)
        return 2
    workdir = Path(argv[0])
    spec = json.loads((workdir / "spec.json").read_text())
    bound = build(workdir, spec, CrashPoint.from_env())
    try:
        summary = bound.run_sync()
    except KeyboardInterrupt:
        print("driver run interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # reported to the parent test, which fails on it
        print(f"driver run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({
        "consumed": summary.records_consumed,
        "written": summary.records_written,
        "errored": summary.records_errored,
        "last_checkpoint": summary.last_checkpoint_value,
        "resumed_from": summary.runtime.get("resumed_from"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
