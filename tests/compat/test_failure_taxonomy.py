"""0.3.0's failure taxonomy: ``agora.core.failures`` classifies exceptions as 0.3.0 did, a
dead letter carries the decision under ``details["failure"]``, the summary counts
failures per class and severity, and a transient sink error stops the run instead of
reaching the DLQ."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agora import DeliveryConfig, IterableSource, Pipeline
from agora.core.failures import (
    AlertSeverity,
    FailureClassification,
    FailureDecision,
    classify_failure,
)
from agora.errors import SourceRecordError


class CollectDLQ:
    sink_name = "dlq"

    def __init__(self) -> None:
        self.records: list[Any] = []

    async def open(self) -> None:
        return None

    async def write(self, record: Any) -> None:
        self.records.append(record)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RaisingSink:
    """A duck-typed sink whose every write raises ``error``."""

    sink_name = "raising_sink"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def open(self) -> None:
        return None

    async def write(self, record: Any) -> None:
        raise self.error

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def test_enums_hold_0_3_0s_values() -> None:
    assert [c.value for c in FailureClassification] == [
        "deserialization", "serialization", "schema_evolution", "schema_validation",
        "schema_registry_binding_mismatch", "schema_drift", "constraint_violation",
        "type_mismatch", "connectivity", "timeout", "authorization", "configuration",
        "unknown"]
    assert [s.value for s in AlertSeverity] == ["info", "warning", "error", "critical"]


@pytest.mark.parametrize(("exc", "klass", "retryable", "eligible", "severity"), [
    (TimeoutError("t"), "timeout", True, False, "warning"),
    (ConnectionError("c"), "connectivity", True, False, "warning"),
    (ConnectionResetError("c"), "connectivity", True, False, "warning"),
    (FileNotFoundError("gone"), "connectivity", True, False, "warning"),
    (OSError("disk full"), "connectivity", True, False, "warning"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "deserialization", False, True, "error"),
    (UnicodeEncodeError("ascii", "é", 0, 1, "bad"), "serialization", False, True, "error"),
    (RuntimeError("sink broke"), "unknown", False, True, "error"),
    (ValueError("v"), "unknown", False, True, "error"),
])
def test_classify_failure_by_type(exc: BaseException, klass: str, retryable: bool,
                                  eligible: bool, severity: str) -> None:
    decision = classify_failure(exc)
    assert decision.classification == klass
    assert decision.retryable is retryable and decision.dlq_eligible is eligible
    assert decision.alert_severity == severity
    assert decision.reason == type(exc).__name__


def test_an_attached_decision_is_kept_as_given() -> None:
    own = FailureDecision(classification=FailureClassification.AUTHORIZATION, retryable=False,
                          dlq_eligible=False, alert_severity=AlertSeverity.CRITICAL,
                          reason="token expired", details={"scope": "write"})
    exc = RuntimeError("403")
    exc.failure_decision = own  # type: ignore[attr-defined]
    assert classify_failure(exc) is own


def test_an_attached_value_that_is_not_a_decision_is_ignored() -> None:
    exc = TimeoutError("t")
    exc.failure_decision = {"dlq_eligible": True}  # type: ignore[attr-defined]
    assert classify_failure(exc).classification == "timeout"


def test_a_broken_failure_decision_property_does_not_break_classification() -> None:
    class Odd(ValueError):
        @property
        def failure_decision(self) -> Any:
            raise RuntimeError("broken property")

    assert classify_failure(Odd("x")).classification == "unknown"


def test_a_source_record_error_is_classified_as_what_it_wraps_or_deserialization() -> None:
    wrapped = SourceRecordError(UnicodeEncodeError("ascii", "é", 0, 1, "bad"), record=b"\xe9")
    assert classify_failure(wrapped).classification == "serialization"
    malformed = SourceRecordError("csv", "in.csv:3", "2 fields, expected 3", hint=False)
    assert classify_failure(malformed).classification == "deserialization"
    assert classify_failure(malformed).dlq_eligible is True


def test_to_dict_is_plain_json_ready_data() -> None:
    decision = FailureDecision(classification="timeout", retryable=True,  # type: ignore[arg-type]
                               dlq_eligible=False, alert_severity="warning",  # type: ignore[arg-type]
                               details={"host": "db1"})
    assert decision.classification is FailureClassification.TIMEOUT
    assert decision.to_dict() == {"classification": "timeout", "retryable": True,
                                  "dlq_eligible": False, "alert_severity": "warning",
                                  "reason": None, "details": {"host": "db1"}}


def test_a_decision_with_an_unknown_class_or_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="classification must be one of deserialization"):
        FailureDecision(classification="flaky", retryable=True,  # type: ignore[arg-type]
                        dlq_eligible=False, alert_severity=AlertSeverity.INFO)
    with pytest.raises(ValueError, match="alert_severity must be one of info, warning"):
        FailureDecision(classification=FailureClassification.UNKNOWN, retryable=False,
                        dlq_eligible=True, alert_severity="loud")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="classification must be one of"):
        FailureDecision(classification=3, retryable=False,  # type: ignore[arg-type]
                        dlq_eligible=True, alert_severity=AlertSeverity.ERROR)


def test_a_decision_with_details_that_are_not_a_mapping_is_refused() -> None:
    with pytest.raises(TypeError, match="details must be a dict"):
        FailureDecision(classification=FailureClassification.UNKNOWN, retryable=False,
                        dlq_eligible=True, alert_severity=AlertSeverity.ERROR,
                        details=["x"])  # type: ignore[arg-type]


def test_sink_error_reaches_the_dlq_with_its_classification_and_is_counted() -> None:
    dlq = CollectDLQ()
    summary = asyncio.run(
        Pipeline(IterableSource([{"id": 1}]))
        .build(RaisingSink(RuntimeError("sink broke")),  # type: ignore[arg-type]
               config=DeliveryConfig(dlq=dlq))
        .run())
    [rec] = dlq.records
    assert rec.details["failure"]["classification"] == "unknown"
    assert rec.details["failure"]["alert_severity"] == "error"
    assert summary.runtime.failure_classification_counts == {"unknown": 1}
    assert summary.runtime.failure_alert_severity_counts == {"error": 1}


def test_transient_sink_error_is_not_misrouted_to_the_record_dlq() -> None:
    dlq = CollectDLQ()
    with pytest.raises(TimeoutError, match="backend unavailable"):
        asyncio.run(
            Pipeline(IterableSource([{"id": 1}]))
            .build(RaisingSink(TimeoutError("backend unavailable")),  # type: ignore[arg-type]
                   config=DeliveryConfig(dlq=dlq))
            .run())
    assert dlq.records == []
