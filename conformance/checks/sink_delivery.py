"""Sink delivery checks through the real runtime (SNK-DLV-*): every record written, a failing
record dead-lettered, fail-closed stops with the checkpoint short of the failure, and every
checkpoint save finds its records durable in the sink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conformance._agora import (
    ArrowBatchSource,
    BaseSink,
    DeliveryConfig,
    FailurePolicy,
    SyncInMemoryCheckpointStore,
    IterableSource,
    MemorySink,
    Pipeline,
    WriteResult,
)
from conformance.catalogue import sink_check
from conformance.checks._context import SinkContext
from conformance.checks._sink_ops import InjectedFault, assert_contains, assert_persisted
from conformance.data import canonical_row

__all__ = [
    "FailRecordSink",
    "check_checkpoint_gating_fail_closed",
    "check_checkpoint_saves_find_records_durable",
    "check_failing_record_dead_lettered",
    "check_rows_through_runtime",
]

_KEY = "conformance"


class FailRecordSink(BaseSink):
    """Delegates to the sink under test, but fails the records whose ``id`` is in
    ``fail_ids`` the way a sink reports a bad record (``WriteResult.failed`` in batch
    results, an exception from ``write``); those records never reach the inner sink.
    Declares exactly the inner sink's planes, so the runtime routes as it would."""

    def __init__(self, inner: BaseSink, fail_ids: Sequence[int]) -> None:
        self.inner = inner
        self.sink_name = inner.sink_name
        self.fail_ids = frozenset(fail_ids)
        spec = inner.data_plane_spec()
        self.accepted_data_planes = tuple(spec.accepted_planes)  # type: ignore[misc]
        self.native_data_planes = tuple(spec.native_planes)  # type: ignore[misc]

    def _poisoned(self, record: Any) -> bool:
        return isinstance(record, dict) and record.get("id") in self.fail_ids

    def _fault(self) -> InjectedFault:
        return InjectedFault(
            f"conformance: record refused on purpose by FailRecordSink({sorted(self.fail_ids)})"
        )

    async def open(self) -> None:
        await self.inner.open()

    async def flush(self) -> None:
        await self.inner.flush()

    async def close(self) -> None:
        await self.inner.close()

    async def write(self, record: Any) -> None:
        if self._poisoned(record):
            raise self._fault()
        await self.inner.write(record)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        keep = [r for r in records if not self._poisoned(r)]
        if len(keep) == len(records):
            return await self.inner.write_batch(records)
        inner = await self.inner.write_batch(keep)
        return self._merge([self._poisoned(r) for r in records], inner)

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        mask = pc.is_in(
            batch.column("id"), pa.array(sorted(self.fail_ids), batch.column("id").type)
        )
        poisoned = [bool(v) for v in mask.to_pylist()]
        if not any(poisoned):
            return await self.inner.write_arrow_batch(batch)
        inner = await self.inner.write_arrow_batch(batch.filter(pc.invert(mask)))
        return self._merge(poisoned, inner)

    def _merge(self, poisoned: list[bool], inner: list[WriteResult] | None) -> list[WriteResult]:
        passed = iter(inner) if inner is not None else None
        out: list[WriteResult] = []
        for bad in poisoned:
            if bad:
                out.append(WriteResult.failed(self._fault()))
            else:
                out.append(next(passed) if passed is not None else WriteResult.ok())
        return out


def _failing_setup(ctx: SinkContext, ns: Any, n: int, at: int) -> tuple[Any, list[Any]]:
    """(sink to run, source rows): the harness's invalid record inserted at index ``at``
    if it has one, else a FailRecordSink refusing row ``at``."""
    rows = ctx.rows(n)
    sink = ctx.build(ns)
    record = None
    if not ctx.harness.accepts_any_record:
        record = ctx.harness.invalid_record()
    if record is not None:
        return sink, rows[:at] + [record] + rows[at:]
    return FailRecordSink(sink, [rows[at]["id"]]), rows


@sink_check("SNK-DLV-01", "rows through the runtime are all written and persisted")
def check_rows_through_runtime(ctx: SinkContext) -> None:
    """contract §7: a run over a row source with ``batch_size`` grouping and checkpoints writes
    every record (``records_written``), ends with a checkpoint, and (with a read-back)
    persists exactly the source's records in order."""
    rows = ctx.rows(17)
    ns = ctx.namespace("runtime")
    store = SyncInMemoryCheckpointStore()
    bound = Pipeline(IterableSource(rows), id="conformance-rows").build(
        ctx.build(ns),
        delivery=DeliveryConfig(
            batch_size=4, checkpoint=store, checkpoint_key=_KEY, checkpoint_every=5
        ),
    )
    summary = bound.run_sync()
    assert summary.records_written == len(rows), (
        f"{ctx.name}: the runtime wrote {summary.records_written} of {len(rows)} records "
        f"(errored {summary.records_errored})"
    )
    saved = store.load(_KEY)
    assert saved is not None and saved.value == len(rows), (
        f"{ctx.name}: after a clean run the checkpoint is {saved and saved.value!r}, expected "
        f"the end of the source ({len(rows)})"
    )
    if ctx.can_read_back:
        assert_persisted(
            ctx, ns, rows, "IterableSource → runtime → sink", ordered=ctx.harness.ordered
        )


@sink_check("SNK-DLV-02", "a failing record goes to the DLQ and the others are written")
def check_failing_record_dead_lettered(ctx: SinkContext) -> None:
    """contract §7: a record the sink fails (its own invalid record, or one refused by a
    fault-injecting wrapper) is offered to the DLQ (``stage="sink_write"``), counted
    errored, and the run continues: every other record is written and persisted, and the
    checkpoint reaches the end. Runs on the row lane and, for Arrow-native sinks, on the
    Arrow lane."""
    lanes = ["rows"]
    if "arrow-native" in ctx.capabilities():
        lanes.append("arrow")
    for lane in lanes:
        ns = ctx.namespace(f"dlq-{lane}")
        if lane == "rows":
            sink, source_rows = _failing_setup(ctx, ns, 12, 5)
            source: Any = IterableSource(source_rows)
        else:
            source_rows = ctx.rows(12)
            sink = FailRecordSink(ctx.build(ns), [source_rows[5]["id"]])
            source = ArrowBatchSource(pa.Table.from_pylist(source_rows), batch_size=4)
        dlq = MemorySink("conformance-dlq")
        store = SyncInMemoryCheckpointStore()
        summary = (
            Pipeline(source, id=f"conformance-dlq-{lane}")
            .build(
                sink,
                delivery=DeliveryConfig(
                    dlq=dlq, checkpoint=store, checkpoint_key=_KEY, batch_size=3, checkpoint_every=2
                ),
            )
            .run_sync()
        )
        where = f"{ctx.name} ({lane} lane)"
        assert summary.records_errored >= 1, f"{where}: no record was counted errored"
        assert summary.records_written + summary.records_errored == len(source_rows), (
            f"{where}: written {summary.records_written} + errored {summary.records_errored} "
            f"!= {len(source_rows)} records consumed"
        )
        dead = list(dlq.records)
        assert len(dead) == summary.records_errored, (
            f"{where}: {len(dead)} DLQ record(s) for {summary.records_errored} errored"
        )
        assert all(getattr(d, "stage", None) == "sink_write" for d in dead), (
            f"{where}: DLQ stages {[getattr(d, 'stage', None) for d in dead]}, expected sink_write"
        )
        poisoned = canonical_row(source_rows[5])
        dead_rows = [canonical_row(d.record) for d in dead]
        assert poisoned in dead_rows, f"{where}: the failing record is not in the DLQ"
        saved = store.load(_KEY)
        assert saved is not None, f"{where}: no checkpoint was saved"
        if ctx.can_read_back:
            written = [r for r in source_rows if canonical_row(r) not in set(dead_rows)]
            assert_persisted(ctx, ns, written, f"{lane} lane with one dead-lettered record")


@sink_check("SNK-DLV-03", "fail-closed: the run stops and the checkpoint never passes the failure")
def check_checkpoint_gating_fail_closed(ctx: SinkContext) -> None:
    """contract §7: with no DLQ and ``FAIL_CLOSED``, a failed record stops the run with an
    exception and the saved checkpoint does not cover it; every record the checkpoint
    does cover is persisted, and the failed record leaves nothing behind."""
    at = 7
    ns = ctx.namespace("failclosed")
    sink, source_rows = _failing_setup(ctx, ns, 14, at)
    store = SyncInMemoryCheckpointStore()
    bound = Pipeline(IterableSource(source_rows), id="conformance-gating").build(
        sink,
        delivery=DeliveryConfig(
            checkpoint=store,
            checkpoint_key=_KEY,
            checkpoint_every=2,
            batch_size=2,
            failure_policy=FailurePolicy.FAIL_CLOSED,
        ),
    )
    try:
        bound.run_sync()
    except Exception:
        pass
    else:
        raise AssertionError(
            f"{ctx.name}: the run completed although record {at} failed with no DLQ under "
            f"FAIL_CLOSED — was the failure reported as written?"
        )
    saved = store.load(_KEY)
    position = 0 if saved is None else saved.value
    assert isinstance(position, int) and position <= at, (
        f"{ctx.name}: the checkpoint advanced to {position!r}, past the failed record at {at}"
    )
    if ctx.can_read_back:
        actual = ctx.read_back(ns)
        assert_contains(ctx, actual, source_rows[:position], "records covered by the checkpoint")
        failed = ctx.canon([source_rows[at]])[0]
        assert failed not in actual, (
            f"{ctx.name}: the failed record was persisted although it was reported failed"
        )


class _ProbingStore(SyncInMemoryCheckpointStore):
    """A checkpoint store that, at every save, reads the sink back and records any row the
    checkpoint covers that is not yet persisted."""

    def __init__(self, ctx: SinkContext, ns: Any, rows: list[Any]) -> None:
        super().__init__()
        self.ctx, self.ns, self.rows = ctx, ns, rows
        self.violations: list[str] = []
        self.saves = 0

    def save(self, key: str, checkpoint: Any) -> None:
        self.saves += 1
        position = checkpoint.value
        try:
            actual = self.ctx.read_back(self.ns)
            assert_contains(self.ctx, actual, self.rows[:position], f"at checkpoint {position}")
        except AssertionError as exc:
            self.violations.append(str(exc))
        super().save(key, checkpoint)


@sink_check(
    "SNK-DLV-04",
    "every checkpoint save finds the records it covers durable in the sink",
    requires=("readable-before-close",),
)
def check_checkpoint_saves_find_records_durable(ctx: SinkContext) -> None:
    """contract §7: "handled" means durable — before a checkpoint covering a record is saved,
    the sink's writes for it are flushed. At each save the read-back must already hold
    every record the checkpoint covers."""
    rows = ctx.rows(20)
    ns = ctx.namespace("durable")
    store = _ProbingStore(ctx, ns, rows)
    Pipeline(IterableSource(rows), id="conformance-durable").build(
        ctx.build(ns),
        delivery=DeliveryConfig(
            checkpoint=store, checkpoint_key=_KEY, checkpoint_every=3, batch_size=3
        ),
    ).run_sync()
    assert store.saves > 1, (
        f"{ctx.name}: the run saved {store.saves} checkpoint(s); expected several"
    )
    assert not store.violations, "; ".join(store.violations[:3])
