"""The committer's rules (contract §7): offer each failure to the DLQ, apply the failure
policies, and advance the checkpoint only over the contiguous prefix of handled units —
after the sink and DLQ writes it covers have been flushed."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agora.config import (
    CheckpointFailurePolicy,
    DeliveryConfig,
    DLQFailurePolicy,
    FailurePolicy,
)
from agora.errors import AgoraError, CheckpointError, ContractError
from agora.protocols import DLQSink
from agora.records import Checkpoint, DLQRecord, DLQStage, safe_text
from agora.runtime.units import Failure, Unit
from agora.sinks.base import BaseSink

__all__ = ["Committer", "RunStop"]

log = logging.getLogger("agora.delivery")


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


def _attempts_of(f: Failure) -> dict[str, int]:
    """The retry count a failure carries, as DLQ record fields: ``attempt`` counts from 0
    (the first call), ``max_attempts`` is the retry policy's budget. Empty for failures
    of stages without a retry policy, whose records keep the defaults."""
    if f.attempt is None or f.max_attempts is None:
        return {}
    return {"attempt": f.attempt - 1, "max_attempts": f.max_attempts}


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
        ack: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.dlq = config.dlq
        self.store = config.checkpoint_store
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.source_name = source_name
        self.key = checkpoint_key
        self.sinks = sinks
        self.checkpoint_supported = checkpoint_supported
        self.handled_since_save = 0
        self.pending_checkpoint: Any = None
        self.has_pending = False
        self.last_checkpoint: Any = None
        self.checkpoint_saves = 0
        self.checkpoint_failures = 0
        self.dlq_writes = 0
        self.dlq_failures = 0
        self.uncaptured_continued = 0
        self.ack = ack  # the source's ack hook, called after each save
        self.ack_callbacks: list[Callable[[], Awaitable[None]]] = []  # of handled units
        self.acks = 0
        self.ack_failures = 0

    # -- failures ---------------------------------------------------------------------
    async def handle(self, unit: Unit) -> None:
        """Handle every failure of ``unit``; raise ``RunStop`` if the run must stop."""
        if unit.failures:
            await self._handle_failures(unit, unit.failures)
            unit.failures = []
        self.ack_callbacks.extend(unit.acks)
        self.handled_since_save += unit.n_source
        self.pending_checkpoint = unit.checkpoint
        self.has_pending = True
        if self.handled_since_save >= self.config.checkpoint_every:
            await self.save()

    async def _handle_failures(self, unit: Unit, failures: list[Failure]) -> None:
        for f in failures:
            if isinstance(f.error, AgoraError) and f.error.terminal:
                raise RunStop(f.error)  # the run cannot go on: never dead-letter these
        uncaptured: list[Failure] = list(failures)
        if self.dlq is not None:
            uncaptured = await self._offer_to_dlq(self.dlq, unit, failures)
        if not uncaptured:
            return
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
                    processed_record=f.processed_record if f.is_sink else None,
                    middleware=None if f.is_sink or f.stage is DLQStage.SOURCE_RECORD else f.component,
                    sink=f.component if f.is_sink else None,
                    **_attempts_of(f),
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
        """Make every write so far durable: sinks first, then the DLQ. A flush failure
        stops the run (the checkpoint must not pass records that may not be durable)."""
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

    async def save(self) -> None:
        """Flush outputs, durably save the checkpoint of the handled prefix, then ack it
        to the source (only once the outputs are durable: a flush or fail-closed save
        failure raises before the ack)."""
        if not self.has_pending:
            return
        value = self.pending_checkpoint
        await self._flush_and_store()
        await self._acknowledge(value)

    async def _acknowledge(self, value: Any) -> None:
        """Ack the saved prefix: the source's ``ack(value)``, then the per-record
        callbacks of the units it covers, in source order. Failures are logged only."""
        calls, self.ack_callbacks = self.ack_callbacks, []
        if self.ack is not None:
            calls.insert(0, functools.partial(self.ack, value))
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

    async def _flush_and_store(self) -> None:
        await self.flush_outputs()
        self.handled_since_save = 0
        self.has_pending = False
        if self.store is None or not self.checkpoint_supported:
            return
        value = self.pending_checkpoint
        try:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise CheckpointError(
                    f"source {self.source_name!r} returned a checkpoint that is not a JSON value "
                    f"({type(value).__name__}: {value!r:.80}); current_checkpoint() must return "
                    f"JSON-serialisable data"
                ) from exc
            self.store.save(
                self.key,
                Checkpoint(
                    pipeline_id=self.pipeline_id, run_id=self.run_id,
                    source=self.source_name, value=value,
                ),
            )
        except Exception as exc:
            self.checkpoint_failures += 1
            if self.config.checkpoint_failure_policy is CheckpointFailurePolicy.FAIL_CLOSED:
                raise RunStop(exc) from exc
            log.error("checkpoint save failed (checkpoint_failure_policy=log_and_continue): %s", exc)
            return
        self.checkpoint_saves += 1
        self.last_checkpoint = value
