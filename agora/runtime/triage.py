"""Sorting a unit's failures before the committer routes them: each failure's decision
(the failure taxonomy of ``agora.failures``), the run's counts per class and severity,
the fields of its dead letter, and the sink failure that stops the run because the
medium failed rather than the record."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agora.failures import FailureDecision, classify_failure
from agora.records import DLQStage
from agora.runtime.units import Failure

__all__ = ["FailureFigures", "FailureTally", "decision_of", "letter_fields", "medium_failure",
           "stop_error"]

#: Stages where the source itself failed: the dead letter names no middleware.
_SOURCE_STAGES = frozenset({DLQStage.SOURCE_RECORD, DLQStage.SOURCE_STREAM})


@dataclass(frozen=True)
class FailureFigures:
    """Every failure the run handled (dead-lettered, continued past, or the one that
    stopped it), counted by classification and by alert severity (see
    ``agora.FailureClassification`` / ``agora.AlertSeverity``); a class never met is
    absent rather than zero."""

    by_classification: Mapping[str, int] = field(default_factory=dict)
    by_severity: Mapping[str, int] = field(default_factory=dict)


class FailureTally:
    """The committer's running counts behind :class:`FailureFigures`."""

    __slots__ = ("by_classification", "by_severity")

    def __init__(self) -> None:
        self.by_classification: dict[str, int] = {}
        self.by_severity: dict[str, int] = {}

    def count(self, decision: FailureDecision) -> None:
        key = decision.classification.value
        self.by_classification[key] = self.by_classification.get(key, 0) + 1
        key = decision.alert_severity.value
        self.by_severity[key] = self.by_severity.get(key, 0) + 1

    def figures(self) -> FailureFigures:
        return FailureFigures(by_classification=dict(self.by_classification),
                              by_severity=dict(self.by_severity))


def decision_of(f: Failure) -> FailureDecision:
    """``f``'s decision, classified once and kept on the failure."""
    if f.decision is None:
        f.decision = classify_failure(f.error)
    return f.decision


def medium_failure(failures: Iterable[Failure]) -> Failure | None:
    """The first sink-stage failure that is not DLQ-eligible: the sink's medium failed
    (a timeout, a lost connection, a full disk), not the record. Only the sink stage
    stops the run for it — a middleware's failure stays a record failure whatever its
    class (the I/O lane's retry policy has already retried transient ones)."""
    for f in failures:
        if f.is_sink and not decision_of(f).dlq_eligible:
            return f
    return None


def stop_error(f: Failure) -> BaseException:
    """The exception a medium failure stops the run with: the sink's own (so callers
    catch the type they know), with a note saying why nothing was dead-lettered and how
    the next run picks up. The note is added once per exception object."""
    error = f.error
    decision = decision_of(f)
    who = "the router" if f.component == "router" else f"sink {f.component!r}"
    note = (
        f"agora: {who} failed with {type(error).__name__} (classified "
        f"{decision.classification.value}: a failure of the medium, not of the record), so "
        f"the run stopped instead of dead-lettering healthy records; the checkpoint does not "
        f"cover them, and a re-run once the medium is back resumes from the checkpoint and "
        f"delivers them (a sink that already wrote some may see them twice). "
        f"To treat this error as the record's fault, raise it with "
        f"exc.failure_decision = FailureDecision(..., dlq_eligible=True)."
    )
    if note not in getattr(error, "__notes__", ()):
        try:
            error.add_note(note)
        except Exception:  # pragma: no cover - an exception refusing notes is still raised
            pass
    return error


def letter_fields(f: Failure) -> dict[str, Any]:
    """The fields of ``f``'s dead letter that depend on the failure: who failed, what
    reached the sink, the retry count, and ``details`` — the decision under
    ``"failure"``, merged with the facts a program attached to its exception as
    ``dlq_details`` (a dict: its keys are kept and its own ``"failure"`` wins; any other
    value is kept under ``"provider_details"``)."""
    fields: dict[str, Any] = {
        "processed_record": f.processed_record if f.is_sink else None,
        "middleware": None if f.is_sink or f.stage in _SOURCE_STAGES else f.component,
        "sink": f.component if f.is_sink else None,
        "details": _details(f),
    }
    if f.attempt is not None and f.max_attempts is not None:
        # ``attempt`` counts from 0 (the first call); ``max_attempts`` is the budget.
        fields["attempt"] = f.attempt - 1
        fields["max_attempts"] = f.max_attempts
    return fields


def _details(f: Failure) -> dict[str, Any]:
    details: dict[str, Any] = {"failure": decision_of(f).to_dict()}
    try:
        own = getattr(f.error, "dlq_details", None)
    except Exception:  # a broken property must not cost the record its dead letter
        own = None
    if isinstance(own, Mapping):
        details.update(own)
    elif own is not None:
        details["provider_details"] = own
    return details
