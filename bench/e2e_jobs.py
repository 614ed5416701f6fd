"""Pipelines the end-to-end benchmark runs through ``agora run`` (as a user would).

* ``demo``: the demo job (``agora.demo.pipeline``) over ``$AGORA_DEMO_DIR``, with
  ``checkpoint_every`` taken from ``$AGORA_BENCH_CHECKPOINT_EVERY`` when set (``end``
  means one save at the end of the stream).
* ``append_job``: ``$AGORA_BENCH_DIR/input.csv`` → one ``ParquetSink`` with a SQLite
  checkpoint — the daily-append job whose per-run cost must not grow with its output.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from agora import (
    ArrowCsvSource,
    BoundPipeline,
    DeliveryConfig,
    ParquetSink,
    Pipeline,
    SQLiteCheckpointStore,
)
from agora.demo import DEMO_BATCH_ROWS
from agora.demo import pipeline as demo_pipeline

#: ``checkpoint_every`` meaning "only at the end of the stream" (larger than any input).
END_ONLY = 10**15


def demo() -> BoundPipeline:
    bound = demo_pipeline()
    every = os.environ.get("AGORA_BENCH_CHECKPOINT_EVERY")
    if not every:
        return bound
    delivery = dataclasses.replace(
        bound.delivery, checkpoint_every=END_ONLY if every == "end" else int(every)
    )
    return (Pipeline(bound.source, id=bound.pipeline_id)
            .pipe(*bound.middleware)
            .fan_out(bound.sinks, delivery=delivery))


def append_job() -> BoundPipeline:
    base = Path(os.environ["AGORA_BENCH_DIR"])
    return Pipeline(
        ArrowCsvSource(base / "input.csv", batch_size=DEMO_BATCH_ROWS, name="daily_csv"),
        id="daily-append",
    ).build(
        ParquetSink(base / "out.parquet", name="parquet_out"),
        delivery=DeliveryConfig(checkpoint=SQLiteCheckpointStore(base / "checkpoints.db"),
                                checkpoint_every=200_000),
    )
