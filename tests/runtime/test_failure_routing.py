"""The committer's failure routing on its own: a unit's failures go to the DLQ or through
the failure policy, and a source failure is dead-lettered without ever replacing the
source's error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from agora import DeliveryConfig, DLQFailurePolicy, DLQRecord, FailurePolicy, WriteResult
from agora.records import DLQStage
from agora.runtime.failure_routing import FailureRouter, RunStop
from agora.runtime.units import Failure, Unit
from agora.sinks import MemorySink


class DiskFullDLQ(MemorySink):
    """A DLQ whose every write fails as a full disk would."""

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        raise OSError(28, "No space left on device", "/var/dlq/letters.jsonl")


def router(**config: Any) -> FailureRouter:
    return FailureRouter(config=DeliveryConfig(**config), pipeline_id="p", run_id="r1",
                         source_name="orders")


def failed_unit(record: Any) -> tuple[Unit, list[Failure]]:
    unit = Unit(seq=0, checkpoint={"offset": 7}, n_source=1, source_rows=[record])
    return unit, [Failure(DLQStage.MIDDLEWARE, "parse", ValueError("bad amount"), record)]


def test_a_failure_without_a_dlq_stops_a_fail_closed_run_with_the_records_own_error() -> None:
    r = router()
    unit, failures = failed_unit({"amount": "x"})
    with pytest.raises(RunStop) as stop:
        asyncio.run(r.route(unit, failures))
    assert stop.value.error is failures[0].error
    assert sum(r.failures.by_classification.values()) == 1
    assert r.uncaptured_continued == 0


def test_a_failure_without_a_dlq_is_counted_and_logged_under_log_and_continue(
        caplog: pytest.LogCaptureFixture) -> None:
    r = router(failure_policy=FailurePolicy.LOG_AND_CONTINUE)
    unit, failures = failed_unit({"amount": "x"})
    with caplog.at_level(logging.WARNING, logger="agora.delivery"):
        uncaptured = asyncio.run(r.route(unit, failures))
    assert uncaptured == failures
    assert r.uncaptured_continued == 1
    assert "not captured by a DLQ" in caplog.text and "bad amount" in caplog.text


def test_a_failure_captured_by_the_dlq_is_handled_and_names_where_it_happened() -> None:
    dlq = MemorySink("letters")
    r = router(dlq=dlq)
    unit, failures = failed_unit({"amount": "x"})

    async def go() -> list[Failure]:
        await dlq.open()
        return await r.route(unit, failures)

    assert asyncio.run(go()) == []
    assert r.dlq_writes == 1 and r.dlq_failures == 0
    (letter,) = dlq.records
    assert isinstance(letter, DLQRecord)
    assert (letter.source, letter.run_id, letter.checkpoint) == ("orders", "r1", {"offset": 7})
    assert letter.record == {"amount": "x"}


def test_a_dlq_that_cannot_capture_a_source_failure_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    r = router(dlq=DiskFullDLQ("letters"), dlq_failure_policy=DLQFailurePolicy.RAISE)
    with caplog.at_level(logging.ERROR, logger="agora.delivery"):
        asyncio.run(r.offer_source_failure(ConnectionError("feed closed"),
                                           checkpoint={"offset": 9}))
    assert r.dlq_failures == 1 and r.dlq_writes == 0
    assert "DLQ 'letters' failed to capture the failure of source 'orders'" in caplog.text
    assert "No space left on device" in caplog.text  # an OS error names the file
