"""Jobs the interruption tests run in a child process and signal. Each writes the marker
file ``$JOB_DIR/started`` once ``$MARK_AFTER`` records went through its transform, so a
test knows the run is under way without sleeping; process-lane jobs also record every
worker's pid in ``$JOB_DIR/workers/``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from agora import (
    BoundPipeline,
    DeliveryConfig,
    IterableBatchSource,
    IterableSource,
    JsonLinesSink,
    MapMiddleware,
    Pipeline,
    ProcessBatchMiddleware,
    SyncSQLiteCheckpointStore,
)

ROWS = int(os.environ.get("ROWS", "3000"))
BATCH_ROWS = 20


def _dir() -> Path:
    return Path(os.environ["JOB_DIR"])


_seen = {"n": 0}


def slow_row(record: dict[str, Any]) -> dict[str, Any]:
    """In-process and synchronous: the event loop gets no turn while it runs."""
    time.sleep(0.002)
    _seen["n"] += 1
    if _seen["n"] == int(os.environ.get("MARK_AFTER", "100")):
        (_dir() / "started").touch()
    return record


def slow_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs in a worker process: records its pid, marks the start, sleeps per batch."""
    workers = _dir() / "workers"
    workers.mkdir(exist_ok=True)
    (workers / str(os.getpid())).touch()
    if batch[0]["id"] >= int(os.environ.get("MARK_AFTER", "100")):
        (_dir() / "started").touch()
    time.sleep(float(os.environ.get("BATCH_SLEEP_S", "0.05")))
    return batch


def _delivery() -> DeliveryConfig:
    return DeliveryConfig(checkpoint=SyncSQLiteCheckpointStore(_dir() / "ckpt.db"), checkpoint_every=50)


def in_process() -> BoundPipeline:
    return (Pipeline(IterableSource([{"id": i} for i in range(ROWS)], name="ids"), id="rows")
            .pipe(MapMiddleware(slow_row, name="slow"))
            .build(JsonLinesSink(_dir() / "out.jsonl"), delivery=_delivery()))


def process_lane() -> BoundPipeline:
    batches = [[{"id": i} for i in range(b, min(b + BATCH_ROWS, ROWS))]
               for b in range(0, ROWS, BATCH_ROWS)]
    return (Pipeline(IterableBatchSource(batches, name="id_batches"), id="lane")
            .pipe(ProcessBatchMiddleware(slow_batch, max_workers=2, max_in_flight_batches=4,
                                         name="slow_batch"))
            .build(JsonLinesSink(_dir() / "out.jsonl"), delivery=_delivery()))


def main(kind: str) -> int:
    """``run_sync()`` in a plain script: KeyboardInterrupt arrives after a clean shutdown."""
    bound = in_process() if kind == "in_process" else process_lane()
    try:
        bound.run_sync()
    except KeyboardInterrupt:
        assert bound.last_summary is not None
        print(json.dumps({"caught": "KeyboardInterrupt", "summary": bound.last_summary.to_dict()}))
        return 130
    assert bound.last_summary is not None
    print(json.dumps({"caught": None, "summary": bound.last_summary.to_dict()}))
    return 0
