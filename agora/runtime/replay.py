"""Replay: re-send dead-lettered records through a pipeline's chain and writer.

::

    DLQ file ──► [select] ──► ReplaySource ──► chain ──► writer (sinks continue their output)
       ▲            │                            │
       │            └─ skipped: other pipeline,  └─ failed again ──► ReplayDLQ ──┐
       │               already replayed, raw       (one entry per record)        │
       │               lines, flagged values                                     │
       └──────── DLQLedger ◄── handled prefix ◄── ReplayMarks (checkpoint store) ◄┘

*Select* reads the file's entries and keeps the target pipeline's replayable ones.
*ReplaySource* emits them in the plane the pipeline's own source emits; its position is
the number of entries emitted. The engine runs the pipeline as usual, but with two
stand-ins in its delivery config: *ReplayMarks* as the checkpoint store — the engine saves
a position only after the sinks and the DLQ flushed everything before it, so marking the
entries before that position "replayed" at each save makes a replay idempotent even if it
is killed — and *ReplayDLQ* as the DLQ, which turns a failure back into an update of the
entry it came from (attempts + 1, latest error) instead of a new copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agora.config import DeliveryConfig
from agora.errors import PipelineError
from agora.middleware.base import AnyMiddleware
from agora.protocols import CheckpointStoreProtocol
from agora.planes import DataPlane, SourceDataPlaneSpec
from agora.records import (
    DEFAULT_MAX_VALUE_SIZE,
    Checkpoint,
    DLQRecord,
    json_restore,
    json_safe,
)
from agora.runtime.engine import Progress, run_pipeline
from agora.runtime.plan import WriterTarget, make_plan
from agora.runtime.replay_report import (
    ReplayPlan,
    ReplayReport,
    describe,
    refuse_foreign,
    select_entries,
)
from agora.sinks.base import BaseSink
from agora.sources.base import BaseSource
from agora.stores.dlq import SQLiteDLQSink
from agora.stores.dlq_jsonl import JsonLinesDLQSink
from agora.stores.dlq_state import DLQEntry, DLQLedger, ReplayFailure, open_ledger

__all__ = ["ReplayPlan", "ReplayReport", "run_replay", "select_entries"]

# Rows per emitted batch when the pipeline's source emits batches. A replay is usually
# small; this keeps one batch's memory modest while amortising per-batch costs (a worker
# round trip for process-isolated middleware).
REPLAY_BATCH_ROWS = 1024


# -- the stand-ins the engine runs with ------------------------------------------------------


class ReplaySource(BaseSource):
    """Emits the selected records in ``plane``; its position is the count emitted."""

    source_name = "dlq_replay"
    supports_checkpoint = True

    def __init__(self, rows: list[Any], plane: DataPlane) -> None:
        self.rows = rows
        self.plane = plane
        self._emitted = 0
        self._batch_starts: dict[int, int] = {}  # position after a batch → its first row

    def unit_start(self, end: int) -> int | None:
        """Where the batch that ends at ``end`` began (None on the row lane, where the
        runtime groups rows itself)."""
        return self._batch_starts.get(end)

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return SourceDataPlaneSpec.for_plane(self.source_name, self.plane)

    def current_checkpoint(self) -> int:
        return self._emitted

    async def stream(self) -> AsyncIterator[Any]:
        for row in self.rows:
            self._emitted += 1
            yield row

    async def stream_batches(self) -> AsyncIterator[Any]:
        table = None
        if self.plane is DataPlane.ARROW_BATCHES:
            import pyarrow as pa

            try:
                table = pa.Table.from_pylist(self.rows)
            except (TypeError, ValueError, pa.ArrowException) as exc:
                raise PipelineError(
                    f"replay: the dead-lettered records cannot form an Arrow table for this "
                    f"pipeline's Arrow source plane ({type(exc).__name__}); replay them into "
                    f"a row pipeline instead", stage="replay") from exc
        for start in range(0, len(self.rows), REPLAY_BATCH_ROWS):
            end = min(start + REPLAY_BATCH_ROWS, len(self.rows))
            if table is not None:
                batch: Any = table.slice(start, end - start).combine_chunks().to_batches()[0]
            else:
                batch = self.rows[start:end]
            self._emitted = end
            self._batch_starts[end] = start
            yield batch


def _canonical(value: Any) -> str:
    safe = json_safe(value)
    if isinstance(safe, dict):  # an Arrow row gains None for keys other rows had
        safe = {k: v for k, v in safe.items() if v is not None}
    return json.dumps(safe, sort_keys=True)


class ReplayMarks:
    """The checkpoint store of a replay run: each save marks the entries it covers.

    Claims go to the target's own checkpoint store (``fence``), so a replay and a run of
    the same pipeline — which write the same outputs — never overlap, in any process.
    """

    def __init__(self, ledger: DLQLedger, entries: Sequence[DLQEntry], failed: set[int],
                 fence: CheckpointStoreProtocol | None = None) -> None:
        self.ledger = ledger
        self.entries = entries
        self.failed = failed  # positions (indexes into entries) that failed again
        self.fence = fence
        self.saved = 0  # entries before this position are marked or recorded as failed
        self.marked = 0

    def open(self) -> None:
        if self.fence is not None:
            self.fence.open()

    def claim(self, key: str) -> None:
        if self.fence is not None:
            self.fence.claim(key)

    def release(self, key: str) -> None:
        if self.fence is not None:
            self.fence.release(key)

    def close(self) -> None:
        if self.fence is not None:
            self.fence.close()

    def load(self, key: str) -> None:
        return None  # a replay is not a position in the original source

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        end = int(checkpoint.value)
        ids = [self.entries[i].entry_id for i in range(self.saved, end) if i not in self.failed]
        self.ledger.mark_replayed(ids, checkpoint.run_id)
        self.marked += len(ids)
        self.saved = end


@dataclass(frozen=True)
class _ReplayFailure(DLQRecord):
    """A failure record tagged with the positions of the entries it belongs to."""

    positions: tuple[int, ...] = ()


class ReplayDLQ(BaseSink):
    """The DLQ of a replay run: updates the failing entries instead of adding records.

    The runtime applies the redactor before handing records here (see ``tagging``): the
    stored message is the redacted one. Durable at ``flush()``, like any DLQ.
    """

    sink_name = "dlq_replay"

    def __init__(self, ledger: DLQLedger, entries: Sequence[DLQEntry], source: ReplaySource,
                 marks: ReplayMarks, max_value_size: int) -> None:
        self.ledger = ledger
        self.entries = entries
        self.source = source
        self.rows = source.rows
        self.marks = marks
        self.max_value_size = max_value_size
        self._pending: dict[int, ReplayFailure] = {}
        self._canonical: dict[int, str] = {}

    def _canonical_row(self, i: int) -> str:
        if i not in self._canonical:
            self._canonical[i] = _canonical(self.rows[i])
        return self._canonical[i]

    def attribute(self, rec: DLQRecord) -> tuple[int, ...]:
        """Find the entries ``rec`` (unredacted) failed for; record a placeholder failure so
        they are never marked replayed, even if the redactor then raises.

        Candidates are the entries of the failing unit not yet saved: the row object the
        source emitted is matched by identity (rows, Python batches), else by content
        (Arrow rows)."""
        failed = self.marks.failed
        end = rec.checkpoint if isinstance(rec.checkpoint, int) else len(self.rows)
        end = min(end, len(self.rows))
        start = max(self.marks.saved, self.source.unit_start(end) or 0)
        window = [i for i in range(end - 1, start - 1, -1) if i not in failed]
        found = next((i for i in window if self.rows[i] is rec.record), None)
        if found is None:
            wanted = _canonical(rec.record)
            found = next((i for i in window if self._canonical_row(i) == wanted), None)
        # Unrecognisable (a custom Arrow middleware rewrote the row): every candidate is
        # kept in the DLQ — a later replay may re-send a record twice, but never loses one.
        positions = (found,) if found is not None else tuple(window)
        for i in positions:
            failed.add(i)
            self._pending[i] = ReplayFailure(
                self.entries[i].entry_id, rec.error_type,
                "<message not recorded: the dlq_redactor failed>", rec.run_id)
        return positions

    def tagging(self, redactor: Callable[[DLQRecord], DLQRecord] | None
                ) -> Callable[[DLQRecord], DLQRecord]:
        """The redactor the replay run uses: attribute first, then the user's redactor."""

        def tag(rec: DLQRecord) -> DLQRecord:
            positions = self.attribute(rec)
            out = rec if redactor is None else redactor(rec)
            if not isinstance(out, DLQRecord):
                return out  # the runtime reports the bad return value
            values = {f.name: getattr(out, f.name) for f in dataclasses.fields(DLQRecord)}
            return _ReplayFailure(**values, positions=positions)

        return tag

    async def write(self, record: Any) -> None:
        await self.write_batch([record])

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write")
        for rec in records:
            data = rec.to_dict(max_value_size=self.max_value_size)
            for i in getattr(rec, "positions", ()):
                self._pending[i] = ReplayFailure(self.entries[i].entry_id, data["error_type"],
                                                 data["error_message"], data["run_id"])

    async def flush(self) -> None:
        self._check_usable("flush")
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.ledger.record_failures(list(self._pending.values()))
            self._pending.clear()

    async def close(self) -> None:
        try:
            if self._pending:
                self._flush()
        finally:
            await super().close()


def replay_delivery(delivery: DeliveryConfig, dlq: ReplayDLQ, marks: ReplayMarks
                    ) -> DeliveryConfig:
    """The target's delivery config with the replay stand-ins in place."""
    return dataclasses.replace(delivery, dlq=dlq, checkpoint=marks,
                               dlq_redactor=dlq.tagging(delivery.dlq_redactor))


def prepare_rows(entries: Sequence[DLQEntry]) -> list[Any]:
    """The records to re-send through the pipeline (a record's ``original_record`` when it
    carries one, else ``record``), with lossless encodings (bytes) undone."""
    return [json_restore(e.record.replay_payload("pipeline")) for e in entries]


async def run_replay(
    *,
    dlq: str | os.PathLike[str],
    pipeline_id: str,
    records_of: str | None = None,
    checkpoint_key: str | None = None,
    source_plane: DataPlane,
    middleware: Sequence[AnyMiddleware],
    writer: WriterTarget,
    sinks: Sequence[BaseSink],
    delivery: DeliveryConfig,
    stage: str | None = None,
    include_replayed: bool = False,
    dry_run: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> ReplayReport:
    """Replay the entries of ``dlq`` recorded for ``records_of`` (default ``pipeline_id``,
    the id the run uses) into the chain and writer given (see the module doc).
    ``checkpoint_key`` is the key a ``run()`` of the target claims (default
    ``pipeline_id``): the replay claims it too, so the two never overlap.

    Raises ``DLQError`` for a missing or unreadable DLQ, ``PipelineError`` when the DLQ
    holds only other pipelines' records, and — like ``run()`` — the original exception of
    a run that stops; what was handled before the last save stays marked.
    """
    name = os.fspath(dlq)
    ledger = open_ledger(dlq, writable=not dry_run)
    try:
        plan = select_entries(ledger.entries(), pipeline_id=records_of or pipeline_id,
                              stage=stage,
                              include_replayed=include_replayed)
        refuse_foreign(plan, name)
        base: dict[str, Any] = dict(dlq=name, pipeline_id=plan.pipeline_id, dry_run=dry_run,
                    already_replayed=plan.already_replayed, other_stages=plan.other_stages,
                    other_pipelines=plan.other_pipelines, not_replayable=plan.not_replayable)
        if dry_run:
            return ReplayReport(**base, run_id=None, sent=0, handled=0, failed_again=0,
                                would_send=tuple(describe(e) for e in plan.to_send))
        if not plan.to_send:
            return ReplayReport(**base, run_id=None, sent=0, handled=0, failed_again=0)
        rows = prepare_rows(plan.to_send)
        source = ReplaySource(rows, source_plane)
        marks = ReplayMarks(ledger, plan.to_send, set(), fence=delivery.checkpoint_store)
        max_value_size = (delivery.dlq.max_value_size
                          if isinstance(delivery.dlq, (SQLiteDLQSink, JsonLinesDLQSink))
                          else DEFAULT_MAX_VALUE_SIZE)
        replay_dlq = ReplayDLQ(ledger, plan.to_send, source, marks, max_value_size)
        config = replay_delivery(delivery, replay_dlq, marks)
        run_plan = make_plan(pipeline_id=pipeline_id, source=source, middleware=middleware,
                             writer=writer, max_records=None, batch_size=config.batch_size)
        for sink in sinks:  # continue what earlier runs wrote, as on a resumed run
            sink.resume_output()
        summary = await run_pipeline(pipeline_id=pipeline_id, source=source,
                                     middleware=middleware, writer=writer, plan=run_plan,
                                     config=config, progress=progress,
                                     checkpoint_key=checkpoint_key)
        failed = len(marks.failed)
        return ReplayReport(**base, run_id=summary.run_id, sent=len(rows),
                            handled=len(rows) - failed, failed_again=failed,
                            records_written=summary.records_written,
                            records_dropped=summary.records_dropped,
                            summary=summary.to_dict())
    finally:
        ledger.close()
