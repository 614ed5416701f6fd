"""The committer's rules: offer each failure to the DLQ, apply the failure policies, and
advance the checkpoint only over the contiguous prefix of handled units — after the sink
and DLQ writes it covers have been flushed.

A checkpoint save has two steps. The *flush* (every sink, then or alongside the DLQ)
runs on the event loop and finishes before anything else is committed. The *store
write* of the position that flush covers runs on a worker thread when the store allows
it (``saves_in_thread``), while the pipeline reads, transforms and writes the next
unit: that unit is not covered by the save in flight, so nothing that is not durable is
ever named by it.
At most one store write is in flight and it is waited for at the next unit's commit
point, so saves reach the store in source order and its outcome (a failure goes to
``checkpoint_failure_policy`` as an inline one would) is never left untaken. Acks to
the source follow the save they belong to.

A sink failure of the medium (``runtime/triage.py``) stops the run under every policy,
its unit unhandled. A source that raises while being read is offered to the DLQ here
too (the run then stops with the source's error). Per-record ack callbacks run only for records written or
dead-lettered: one that failed and that no DLQ captured is never acked.

The module is past 400 lines on purpose: failure routing, the ordered save and the acks
share one piece of state (what is handled, flushed, saved) and are read as one rule.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agora.config import (
    CheckpointFailurePolicy,
    DeliveryConfig,
    DLQFailurePolicy,
    FailurePolicy,
)
from agora.errors import AgoraError, CheckpointError, ContractError, SourceRecordError
from agora.failures import classify_failure
from agora.protocols import DLQSink
from agora.records import DLQ_STAGES, Checkpoint, DLQRecord, DLQStage, safe_text
from agora.runtime.triage import (
    FailureTally,
    decision_of,
    letter_fields,
    medium_failure,
    stop_error,
)
from agora.runtime.units import Failure, Unit
from agora.sinks.base import BaseSink

__all__ = ["CHECKPOINT_THREAD_PREFIX", "Committer", "RunStop"]

log = logging.getLogger("agora.delivery")

AckCallback = Callable[[], Awaitable[None]]


class RunStop(Exception):
    """Internal: carries the exception the run must stop with (raised as-is by run())."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _value_free_detail(err: BaseException) -> str:
    """The part of a DLQ failure's message that is safe to log: Agora's own messages and
    OS errors name files and components, never record values; any other exception (a
    redactor's, a third-party DLQ sink's, an encoder's) may quote the record, so only its
    type is logged."""
    if isinstance(err, (AgoraError, OSError)):
        return f": {safe_text(err)}"
    return " (message not logged: it may quote record values)"


def _acks_of_delivered(unit: Unit, uncaptured: list[Failure]) -> list[AckCallback]:
    """The unit's per-record ack callbacks, less those of records that failed and were
    captured by no DLQ (the run went on past them under ``log_and_continue``): such a
    record was neither delivered nor kept, so the source must not be told it was. A
    failed record is found among the unit's source rows by identity; when one cannot be
    (a batch unit, an Arrow row, a marker), no callback of the unit runs — an ack
    withheld can only make an upstream deliver again, one sent wrongly loses a record."""
    acks = unit.acks
    if uncaptured:
        rows = unit.source_rows
        if rows is None or len(rows) != len(acks):
            return []
        failed = {id(f.record) for f in uncaptured}
        if not failed <= {id(row) for row in rows}:
            return []
        acks = [cb for cb, row in zip(acks, rows, strict=True) if id(row) not in failed]
    return [cb for cb in acks if cb is not None]


class Committer:
    """Handles units strictly in source order and owns checkpoint saving."""

    def __init__(
        self,
        *,
        config: DeliveryConfig,
        pipeline_id: str,
        run_id: str,
        source_name: str,
        checkpoint_key: str,
        sinks: Sequence[BaseSink],
        checkpoint_supported: bool,
        flush_concurrency: int = 1,
        ack: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.dlq = config.dlq_sink
        self.store = config.checkpoint_store
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.source_name = source_name
        self.key = checkpoint_key
        self.sinks = sinks
        self.checkpoint_supported = checkpoint_supported
        self.flush_concurrency = flush_concurrency
        # A store that may save on a worker thread (the built-in SQLite store says so);
        # any other is called inline, on the loop, as its contract promises.
        self.saves_in_thread = getattr(self.store, "saves_in_thread", False) is True
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: _SaveInFlight | None = None
        self.ack = ack  # the source's ack hook, called once a save is durable
        self.ack_callbacks: list[Callable[[], Awaitable[None]]] = []  # of handled units
        self.acks = 0
        self.ack_failures = 0
        self.handled_since_save = 0
        self.pending_checkpoint: Any = None
        self.has_pending = False
        self.last_checkpoint: Any = None
        self.checkpoint_saves = 0
        self.checkpoint_failures = 0
        self.dlq_writes = 0
        self.dlq_failures = 0
        self.uncaptured_continued = 0
        self.failures = FailureTally()

    # -- failures ---------------------------------------------------------------------
    async def handle(self, unit: Unit) -> None:
        """Handle every failure of ``unit``; raise ``RunStop`` if the run must stop (a
        failure of the unit, or a background save that failed under fail-closed).

        A save still in flight is waited for here, at the next unit's commit point: so a
        save overlaps the writes of one unit at most, and a crash re-delivers no more than
        the inline save would allow (the checkpoint interval plus the unit in flight).
        The unit counts as handled first, so a cancel during that wait still leaves it
        to the run's final save."""
        uncaptured: list[Failure] = []
        if unit.failures:
            uncaptured = await self._handle_failures(unit, unit.failures)
            unit.failures = []
        self.handled_since_save += unit.n_source
        self.pending_checkpoint = unit.checkpoint
        if unit.acks:  # most sources take no per-record acks
            self.ack_callbacks.extend(_acks_of_delivered(unit, uncaptured))
        self.has_pending = True
        if self._in_flight is not None:
            await self.settle()
        if self.handled_since_save >= self.config.checkpoint_every:
            await self.save()

    async def _handle_failures(self, unit: Unit, failures: list[Failure]) -> list[Failure]:
        """Offer ``failures`` to the DLQ and apply the policies; the failures nobody
        captured that the run goes on past (``log_and_continue``). A sink failure of the
        medium stops the run first, whatever the policy: the unit stays unhandled."""
        for f in failures:
            self.failures.count(decision_of(f))
            if isinstance(f.error, AgoraError) and f.error.terminal:
                raise RunStop(f.error)  # the run cannot go on: never dead-letter these
        medium = medium_failure(failures)
        if medium is not None:
            raise RunStop(stop_error(medium))
        uncaptured: list[Failure] = list(failures)
        if self.dlq is not None:
            uncaptured = await self._offer_to_dlq(self.dlq, unit, failures)
        if not uncaptured:
            return []
        if self.config.failure_policy is FailurePolicy.FAIL_CLOSED:
            raise RunStop(uncaptured[0].error)
        self.uncaptured_continued += len(uncaptured)
        first = uncaptured[0]
        # With a DLQ configured, the records were meant for it (and its redactor): the
        # message of a third-party exception may quote record values, so it is not logged.
        detail = "" if self.dlq is not None else f": {first.error}"
        log.warning(
            "%d failure(s) not captured by a DLQ; continuing (failure_policy=log_and_continue); "
            "first: %s at %s %r%s",
            len(uncaptured), type(first.error).__name__, first.stage, first.component, detail,
        )
        return uncaptured

    async def offer_source_failure(self, error: Exception, *, checkpoint: Any) -> None:
        """The source raised while being read: with a DLQ set, dead-letter the failure so
        the DLQ says where and why reading stopped — ``source_record`` with the raw record
        when ``error`` is a ``SourceRecordError`` carrying one, else ``source_stream`` with
        no record. ``checkpoint`` is the source position at the failure (the error's own
        position wins when it gives one). The caller raises the source's error afterwards:
        nothing past a broken source can be read, so the run never goes on, and nothing
        here moves the saved checkpoint. A DLQ that fails to capture it is counted and
        logged, never raised in place of the source's error."""
        self.failures.count(classify_failure(error))
        if self.dlq is None or (isinstance(error, AgoraError) and error.terminal):
            return
        stage: DLQStage | str = DLQStage.SOURCE_STREAM
        record: Any = None
        if isinstance(error, SourceRecordError) and error.has_record:
            stage = DLQStage(error.stage) if error.stage in DLQ_STAGES else error.stage
            record = error.record
            if error.checkpoint is not None:
                checkpoint = error.checkpoint
        unit = Unit(seq=-1, checkpoint=checkpoint, n_source=0)
        try:
            await self._offer_to_dlq(
                self.dlq, unit, [Failure(stage, self.source_name, error, record)])
        except RunStop as stop:  # dlq_failure_policy=raise: the source's error still wins
            log.error("DLQ %r failed to capture the failure of source %r: %s%s",
                      self.dlq.sink_name, self.source_name, type(stop.error).__name__,
                      _value_free_detail(stop.error))

    async def _offer_to_dlq(self, dlq: DLQSink, unit: Unit,
                            failures: list[Failure]) -> list[Failure]:
        redactor = self.config.dlq_redactor
        records: list[DLQRecord] = []
        owners: list[Failure] = []
        uncaptured: list[Failure] = []
        dlq_error: BaseException | None = None
        for f in failures:
            try:
                rec = DLQRecord.from_exception(
                    f.error,
                    pipeline_id=self.pipeline_id,
                    run_id=self.run_id,
                    stage=f.stage,
                    source=self.source_name,
                    checkpoint=unit.checkpoint,
                    record=f.record,
                    original_record=f.record,  # the same object: stored once
                    **letter_fields(f),
                )
                if redactor is not None:
                    rec = redactor(rec)
                    if not isinstance(rec, DLQRecord):
                        raise ContractError(
                            f"dlq_redactor must return a DLQRecord; got {type(rec).__name__} "
                            f"— return rec.with_fields(...) with the masked fields"
                        )
            except Exception as exc:
                dlq_error = dlq_error or exc
                uncaptured.append(f)
                continue
            records.append(rec)
            owners.append(f)
        if records:
            try:
                results = await dlq.write_batch(records)
            except Exception as exc:
                dlq_error = dlq_error or exc
                uncaptured.extend(owners)
            else:
                if results is None:
                    self.dlq_writes += len(records)
                else:
                    for f, res in zip(owners, results, strict=False):
                        if res.written:
                            self.dlq_writes += 1
                        else:
                            dlq_error = dlq_error or res.error
                            uncaptured.append(f)
                    if len(results) != len(owners):
                        uncaptured.extend(owners[len(results):])
        if uncaptured:
            self.dlq_failures += len(uncaptured)
            err = dlq_error or RuntimeError("DLQ did not capture the record")
            if self.config.dlq_failure_policy is DLQFailurePolicy.RAISE:
                raise RunStop(err)
            log.error(
                "DLQ %r failed to capture %d record(s) (dlq_failure_policy=log_only): %s%s",
                dlq.sink_name, len(uncaptured), type(err).__name__,
                _value_free_detail(err),
            )
        return uncaptured

    # -- checkpoints ------------------------------------------------------------------
    async def flush_outputs(self) -> None:
        """Make every write so far durable: the sinks, then the DLQ — or, when the fan-out
        writes its sinks concurrently, up to ``flush_concurrency`` sinks at once with the
        DLQ alongside (each flush covers only what its own component wrote, so their order
        does not matter; the checkpoint waits for all of them). A flush failure stops the
        run with the first failing component's error, in sink order, DLQ last (the
        checkpoint must not pass records that may not be durable)."""
        if self.flush_concurrency > 1:
            await self._flush_concurrently()
            return
        for sink in self.sinks:
            try:
                await sink.flush()
            except Exception as exc:
                raise RunStop(exc) from exc
        if self.dlq is not None:
            try:
                await self.dlq.flush()
            except Exception as exc:
                raise RunStop(exc) from exc

    async def _flush_concurrently(self) -> None:
        gate = asyncio.Semaphore(self.flush_concurrency)

        async def gated(flush: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await flush()

        coros = [gated(sink.flush) for sink in self.sinks]
        if self.dlq is not None:
            coros.append(self.dlq.flush())
        tasks = [asyncio.ensure_future(c) for c in coros]
        cancelled = False
        while True:
            try:
                await asyncio.wait(tasks)
                break
            except asyncio.CancelledError:
                # A flush fsyncs on a thread that cannot be stopped: let every flush end
                # before the caller may close the files under it.
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        for task in tasks:
            exc = task.exception()
            if isinstance(exc, Exception):
                raise RunStop(exc) from exc
            if exc is not None:
                raise exc

    async def save(self, *, wait: bool = False) -> None:
        """Flush outputs, then durably save the checkpoint of the handled prefix, then ack
        it to the source.

        With a store that ``saves_in_thread``, the store write is started on a worker
        thread after the flush and this returns without waiting for it; ``wait=True``
        (the end of a run) returns only after it ended and its outcome was taken. A save
        in flight always ends before the next one starts. Acks come only after the save
        they follow ended (for a background save: when its outcome is taken), never for a
        prefix whose flush failed or whose save stopped the run. Raises ``RunStop`` if the
        run must stop: a flush failed, or a save (this one or the one before) failed under
        ``checkpoint_failure_policy=fail_closed``."""
        if self.has_pending:
            await self.flush_outputs()
            # Saves stay in order: never two in flight. Should this wait be cancelled,
            # the position stays pending, so the run's final save still covers it.
            await self.settle()
            self.handled_since_save = 0
            self.has_pending = False
            value = self.pending_checkpoint
            calls, self.ack_callbacks = self.ack_callbacks, []
            if self.store is not None and self.checkpoint_supported:
                checkpoint: Checkpoint | None = None
                try:
                    checkpoint = self._checkpoint_of(value)
                except CheckpointError as exc:
                    self._raise_if_fatal(self._outcome(value, exc))
                if checkpoint is not None and self.saves_in_thread:
                    # Acked when the background save's outcome is taken (``settle``).
                    self._start(value, checkpoint, calls)
                    if wait:
                        await self.settle()
                    return
                if checkpoint is not None:
                    try:
                        self.store.save(self.key, checkpoint)
                    except Exception as exc:
                        self._raise_if_fatal(self._outcome(value, exc))
                    else:
                        self._outcome(value, None)
            await self._acknowledge(value, calls)
        if wait:
            await self.settle()

    async def _acknowledge(self, value: Any, calls: list[Callable[[], Awaitable[None]]]
                           ) -> None:
        """Ack a durable prefix: the source's ``ack(value)``, then the per-record callbacks
        of the units it covers, in source order. Failures are logged only."""
        if self.ack is not None:
            calls = [functools.partial(self.ack, value), *calls]
        for call in calls:
            try:
                await call()
            except Exception as exc:
                # The records are durable whatever the source says; a lost ack can only
                # make an upstream redeliver them (at least once), so the run goes on.
                self.ack_failures += 1
                log.error("source %r: an ack failed after its records were made durable; "
                          "the run goes on (unacked records may be delivered again): %s%s",
                          self.source_name, type(exc).__name__, _value_free_detail(exc))
            else:
                self.acks += 1

    def _checkpoint_of(self, value: Any) -> Checkpoint:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"source {self.source_name!r} returned a checkpoint that is not a JSON value "
                f"({type(value).__name__}: {value!r:.80}); current_checkpoint() must return "
                f"JSON-serialisable data"
            ) from exc
        return Checkpoint(pipeline_id=self.pipeline_id, run_id=self.run_id,
                          source=self.source_name, value=value)

    def _start(self, value: Any, checkpoint: Checkpoint,
               acks: list[Callable[[], Awaitable[None]]]) -> None:
        assert self.store is not None and self._in_flight is None
        if self._executor is None:
            # One thread: the store sees one caller at a time, as on the loop.
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix=CHECKPOINT_THREAD_PREFIX)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.store.save, self.key, checkpoint)
        self._in_flight = _SaveInFlight(value, future, acks)

    async def settle(self) -> None:
        """Wait for the save in flight (if any) and take its outcome; ``RunStop`` if it
        failed under fail-closed. A cancellation while waiting is re-raised only after
        the save ended — a store write on a thread cannot be stopped half-way."""
        job = self._in_flight
        if job is None:
            return
        cancelled = False
        while not job.future.done():
            try:
                await asyncio.wait([job.future])
            except asyncio.CancelledError:
                cancelled = True
        stop = self._take_outcome()
        if cancelled:
            if stop is not None:
                log.error("checkpoint save failed while the run was being cancelled: %s: %s",
                          type(stop.error).__name__, stop.error)
            raise asyncio.CancelledError  # unacked: its records may be delivered again
        self._raise_if_fatal(stop)
        await self._acknowledge(job.value, job.acks)

    def _take_outcome(self) -> RunStop | None:
        """Count the finished save in flight; the ``RunStop`` to raise if it failed fatally."""
        job = self._in_flight
        assert job is not None and job.future.done()
        self._in_flight = None
        return self._outcome(job.value, job.future.exception())

    async def finish(self) -> None:
        """At shutdown, whatever ended the run: wait for the save in flight and release the
        save thread. A failure is counted and logged, never raised (the run already has
        its outcome); a save that failed after the run's last commit point under
        fail-closed was raised by ``save(wait=True)``."""
        try:
            if self._in_flight is not None:
                try:
                    await self.settle()
                except RunStop as stop:
                    log.error("checkpoint save failed while the run was stopping: %s: %s",
                              type(stop.error).__name__, stop.error)
                except asyncio.CancelledError:
                    pass  # the save ended (settle waits for it); shutdown must still run
        finally:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True)  # idle by now: the join is immediate

    def _outcome(self, value: Any, exc: BaseException | None) -> RunStop | None:
        """Count one save's outcome; the ``RunStop`` to raise if the run must stop."""
        if exc is None:
            self.checkpoint_saves += 1
            self.last_checkpoint = value
            return None
        self.checkpoint_failures += 1
        if self.config.checkpoint_failure_policy is CheckpointFailurePolicy.FAIL_CLOSED:
            return RunStop(exc)
        log.error("checkpoint save failed (checkpoint_failure_policy=log_and_continue): %s", exc)
        return None

    @staticmethod
    def _raise_if_fatal(stop: RunStop | None) -> None:
        if stop is not None:
            raise stop from stop.error


#: Name prefix of the thread that writes checkpoints in the background (tests look for
#: leftovers by it).
CHECKPOINT_THREAD_PREFIX = "agora-checkpoint"


class _SaveInFlight:
    """A store write running on the save thread: the position it names, and its future."""

    __slots__ = ("value", "future", "acks")

    def __init__(self, value: Any, future: asyncio.Future[None],
                 acks: list[Callable[[], Awaitable[None]]]) -> None:
        self.value = value
        self.future = future
        self.acks = acks  # the per-record callbacks to run once it succeeded
