"""What kind of failure an exception is: its class, how loudly to alert, and whether a
dead-letter queue may keep the record it happened to (the failure taxonomy).

A failure of the *record* (it cannot be encoded, a value breaks a constraint, a
transform raised on it) is the record's fault: a DLQ keeps it and the run goes on. A
failure of the *medium* (the database timed out, the connection dropped, the disk is
full) says nothing about the record: dead-lettering it would mark a healthy record as
poison, and during an outage would send the whole rest of the input to the DLQ. Such a
failure is not DLQ-eligible; at the sink stage the run stops with it and the records
are read again by the next run (see ``docs/contract.md``).

:func:`classify_failure` decides from the exception's type; a component that knows
better attaches its own decision to the exception it raises
(``exc.failure_decision = FailureDecision(…)``), and that decision is used as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from agora.errors import SourceRecordError

__all__ = ["AlertSeverity", "FailureClassification", "FailureDecision", "classify_failure"]

_E = TypeVar("_E", bound=StrEnum)


class FailureClassification(StrEnum):
    """What kind of failure it was, as one stable machine-readable word."""

    DESERIALIZATION = "deserialization"
    SERIALIZATION = "serialization"
    SCHEMA_EVOLUTION = "schema_evolution"
    SCHEMA_VALIDATION = "schema_validation"
    SCHEMA_REGISTRY_BINDING_MISMATCH = "schema_registry_binding_mismatch"
    SCHEMA_DRIFT = "schema_drift"
    CONSTRAINT_VIOLATION = "constraint_violation"
    TYPE_MISMATCH = "type_mismatch"
    CONNECTIVITY = "connectivity"
    TIMEOUT = "timeout"
    AUTHORIZATION = "authorization"
    CONFIGURATION = "configuration"
    UNKNOWN = "unknown"


class AlertSeverity(StrEnum):
    """How loudly an operator should hear about the failure."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureDecision:
    """One failure's classification and what it allows.

    ``retryable``: repeating the failed operation may succeed (the medium may come back).
    ``dlq_eligible``: the failure is the record's own, so a DLQ may keep the record in
    place of delivering it; False means the record is healthy and must be delivered
    again later, never dead-lettered. ``reason`` is a short text (by default the
    exception's type name) and ``details`` any JSON-ready facts a component adds.
    ``to_dict()`` is what a dead letter carries under ``details["failure"]``.

    Raises ``ValueError`` / ``TypeError`` at construction for a classification or
    severity that is not one of the enums' values, or ``details`` that is not a mapping.
    """

    classification: FailureClassification
    retryable: bool
    dlq_eligible: bool
    alert_severity: AlertSeverity
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A plugin may spell the enums as their strings ("timeout"): take those, refuse the
        # rest here rather than let a misspelt class reach every dead letter.
        object.__setattr__(self, "classification",
                           _member(FailureClassification, self.classification, "classification"))
        object.__setattr__(self, "alert_severity",
                           _member(AlertSeverity, self.alert_severity, "alert_severity"))
        if not isinstance(self.details, Mapping):
            raise TypeError(
                f"FailureDecision.details must be a dict of JSON-ready facts; got "
                f"{type(self.details).__name__} — pass details={{...}}"
            )
        object.__setattr__(self, "details", dict(self.details))

    def to_dict(self) -> dict[str, Any]:
        """The decision as a plain dict: enum values as their strings, ``details`` copied."""
        return {
            "classification": self.classification.value,
            "retryable": bool(self.retryable),
            "dlq_eligible": bool(self.dlq_eligible),
            "alert_severity": self.alert_severity.value,
            "reason": self.reason,
            "details": dict(self.details),
        }


def _member(enum: type[_E], value: object, name: str) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ValueError(
            f"FailureDecision.{name} must be one of {choices}; got {value!r} — pass "
            f"{enum.__name__}.<NAME> or its value"
        ) from None


def _decision(classification: FailureClassification, *, medium: bool,
              reason: str) -> FailureDecision:
    """A failure of the medium is worth retrying and never the record's fault; any other
    is the record's, and retrying it would fail the same way."""
    return FailureDecision(
        classification=classification,
        retryable=medium,
        dlq_eligible=not medium,
        alert_severity=AlertSeverity.WARNING if medium else AlertSeverity.ERROR,
        reason=reason,
    )


def classify_failure(exc: BaseException) -> FailureDecision:
    """The decision for ``exc``.

    A ``failure_decision`` attribute holding a :class:`FailureDecision` is returned as
    it is. Otherwise, by type: ``TimeoutError`` is ``timeout`` and ``ConnectionError`` or
    any other ``OSError`` is ``connectivity`` — both retryable, not DLQ-eligible,
    ``warning``; ``UnicodeDecodeError`` is ``deserialization`` and ``UnicodeEncodeError``
    ``serialization``; a ``SourceRecordError`` (a source could not read one record) is
    classified as the exception it wraps, or ``deserialization`` when it wraps none;
    anything else is ``unknown``. Those are DLQ-eligible, not retryable, ``error``.
    ``reason`` is the exception's type name. Never raises.
    """
    try:
        attached = getattr(exc, "failure_decision", None)
    except Exception:  # a broken property must not turn classification into a new failure
        attached = None
    if isinstance(attached, FailureDecision):
        return attached
    reason = type(exc).__name__
    if isinstance(exc, SourceRecordError):
        if exc.original is not None and exc.original is not exc:
            return classify_failure(exc.original)
        return _decision(FailureClassification.DESERIALIZATION, medium=False, reason=reason)
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return _decision(FailureClassification.TIMEOUT, medium=True, reason=reason)
    if isinstance(exc, OSError):  # ConnectionError included
        return _decision(FailureClassification.CONNECTIVITY, medium=True, reason=reason)
    if isinstance(exc, UnicodeDecodeError):
        return _decision(FailureClassification.DESERIALIZATION, medium=False, reason=reason)
    if isinstance(exc, UnicodeEncodeError):
        return _decision(FailureClassification.SERIALIZATION, medium=False, reason=reason)
    return _decision(FailureClassification.UNKNOWN, medium=False, reason=reason)
