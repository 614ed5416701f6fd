"""The committer's failure routing: offer each failure to the DLQ and apply the failure
policies, and the ``RunStop`` that carries the error a run must stop with.

A sink failure of the medium (``runtime/triage.py``) stops the run under every policy,
its unit unhandled. A source that raises while being read is offered to the DLQ here
too (the run then stops with the source's error).
"""

from __future__ import annotations

import logging
from typing import Any

from agora.config import DeliveryConfig, DLQFailurePolicy, FailurePolicy
from agora.errors import AgoraError, ContractError, SourceRecordError
from agora.failures import classify_failure
from agora.protocols import DLQSink
from agora.records import DLQ_STAGES, DLQRecord, DLQStage, safe_text
from agora.runtime.triage import (
    FailureTally,
    decision_of,
    letter_fields,
    medium_failure,
    stop_error,
)
from agora.runtime.units import Failure, Unit

__all__ = ["FailureRouter", "RunStop", "value_free_detail"]

# The committer's logger: routing and the ordered save log under one name, as they did
# when they were one module, so a program filtering ``agora.delivery`` still sees both.
log = logging.getLogger("agora.delivery")


class RunStop(Exception):
    """Internal: carries the exception the run must stop with (raised as-is by run())."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def value_free_detail(err: BaseException) -> str:
    """The part of a DLQ failure's message that is safe to log: Agora's own messages and
    OS errors name files and components, never record values; any other exception (a
    redactor's, a third-party DLQ sink's, an encoder's) may quote the record, so only its
    type is logged."""
    if isinstance(err, (AgoraError, OSError)):
        return f": {safe_text(err)}"
    return " (message not logged: it may quote record values)"


class FailureRouter:
    """Routes the failures the committer hands it, in the order it hands them, and
    counts them (``failures`` by class and severity, DLQ writes and failures, failures
    continued past uncaptured)."""

    def __init__(self, *, config: DeliveryConfig, pipeline_id: str, run_id: str,
                 source_name: str) -> None:
        self.config = config
        self.dlq = config.dlq_sink
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.source_name = source_name
        self.dlq_writes = 0
        self.dlq_failures = 0
        self.uncaptured_continued = 0
        self.failures = FailureTally()

    async def route(self, unit: Unit, failures: list[Failure]) -> list[Failure]:
        """Offer ``failures`` to the DLQ and apply the policies; the failures nobody
        captured that the run goes on past (``log_and_continue``). A sink failure of the
        medium stops the run first, whatever the policy: the unit stays unhandled.
        Raises ``RunStop`` if the run must stop."""
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
                      value_free_detail(stop.error))

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
                value_free_detail(err),
            )
        return uncaptured
