"""The pipeline id 0.3.0 programs see (the source's name when no ``id=`` is given), and
the checkpoint key that keeps id-less pipelines from resuming from each other."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from agora import (
    BoundPipeline,
    CheckpointError,
    DeliveryConfig,
    SyncInMemoryCheckpointStore,
    IterableSource,
    MapMiddleware,
    MemorySink,
    Pipeline,
    SyncSQLiteCheckpointStore,
    SQLiteDLQSink,
)
from tests.runtime.doubles import FlakySink

ROWS = [{"id": i} for i in range(6)]


def test_without_an_id_the_pipeline_is_named_after_its_source() -> None:
    pipeline = Pipeline(IterableSource(ROWS, name="orders"))
    assert pipeline._pipeline_id == "orders"
    dlq = MemorySink(name="dlq")
    bound = pipeline.pipe(MapMiddleware(lambda r: r, name="m")).build(
        FlakySink(fail=lambda r: r["id"] == 2),
        delivery=DeliveryConfig(checkpoint=SyncInMemoryCheckpointStore(), dlq=dlq))
    assert bound.pipeline_id == "orders" and bound.explain().pipeline_id == "orders"
    summary = bound.run_sync()
    assert summary.pipeline_id == "orders"
    assert summary.last_checkpoint is not None and summary.last_checkpoint.pipeline_id == "orders"
    assert [rec.pipeline_id for rec in dlq.records] == ["orders"]


def test_an_id_given_names_the_pipeline_and_keys_its_checkpoints() -> None:
    bound = Pipeline(IterableSource(ROWS), id="nightly").build(MemorySink())
    assert (bound.pipeline_id, bound.checkpoint_key) == ("nightly", "nightly")
    keyed = Pipeline(IterableSource(ROWS), id="nightly").build(
        MemorySink(), delivery=DeliveryConfig(checkpoint_key="k1"))
    assert keyed.checkpoint_key == "k1"
    assert keyed.run_sync().runtime["checkpoint_key"] == "k1"


def test_the_default_checkpoint_key_is_the_one_earlier_runs_saved_under() -> None:
    # The key of an id-less pipeline must not change, or its saved checkpoint is orphaned
    # and the next run silently starts over.
    bound = Pipeline(IterableSource(ROWS, name="orders")).pipe(
        MapMiddleware(lambda r: r, name="clean")).build(MemorySink(name="out"))
    digest = hashlib.sha256("\x1f".join(["orders", "clean", "out"]).encode()).hexdigest()[:10]
    assert bound.checkpoint_key == f"orders-{digest}"
    store = SyncInMemoryCheckpointStore()
    summary = Pipeline(IterableSource(ROWS, name="orders")).pipe(
        MapMiddleware(lambda r: r, name="clean")).build(
        MemorySink(name="out"), delivery=DeliveryConfig(checkpoint=store)).run_sync(max_records=4)
    assert summary.runtime["checkpoint_key"] == f"orders-{digest}"
    assert store.load(f"orders-{digest}") is not None


def test_two_id_less_pipelines_on_one_source_name_never_resume_from_each_other() -> None:
    store = SyncInMemoryCheckpointStore()
    config = DeliveryConfig(checkpoint=store)
    to_a, to_b = MemorySink(name="a"), MemorySink(name="b")
    first = Pipeline(IterableSource(ROWS)).build(to_a, delivery=config)
    second = Pipeline(IterableSource(ROWS)).build(to_b, delivery=config)
    assert first.pipeline_id == second.pipeline_id == "iterable"  # the same visible id…
    assert first.checkpoint_key != second.checkpoint_key  # …but their own checkpoints
    first.run_sync()
    summary = second.run_sync()
    assert summary.records_written == len(ROWS) and to_b.records == ROWS  # nothing skipped
    assert summary.checkpoint.resumed_from is None


def test_a_replay_claims_the_key_a_run_of_the_same_pipeline_claims(tmp_path: Path) -> None:
    def job() -> BoundPipeline:
        return Pipeline(IterableSource(ROWS)).build(
            FlakySink(name="out", fail=lambda r: r["id"] == 3),
            delivery=DeliveryConfig(dlq=SQLiteDLQSink(tmp_path / "dlq.db"),
                                    checkpoint=SyncSQLiteCheckpointStore(tmp_path / "c.db")))

    bound = job()
    assert bound.run_sync().dlq.writes == 1
    holder = SyncSQLiteCheckpointStore(tmp_path / "c.db")
    holder.claim(bound.checkpoint_key)  # as a run of this pipeline in progress would
    try:
        with pytest.raises(CheckpointError, match="in use"):
            asyncio.run(job().replay(tmp_path / "dlq.db"))
    finally:
        holder.close()
    assert asyncio.run(job().replay(tmp_path / "dlq.db")).sent == 1  # free again
