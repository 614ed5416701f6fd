"""Import path kept for 0.3.0 programs and plugins: the failure taxonomy."""

from __future__ import annotations

from agora.failures import AlertSeverity, FailureClassification, FailureDecision, classify_failure

__all__ = ["AlertSeverity", "FailureClassification", "FailureDecision", "classify_failure"]
