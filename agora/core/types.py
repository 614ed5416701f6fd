"""Import path kept for 0.3.0 programs: the delivery settings and failure policies."""

from __future__ import annotations

from agora.config import (
    CheckpointFailurePolicy,
    DeliveryConfig,
    DLQFailurePolicy,
    FailurePolicy,
    SinkFailurePolicy,
)

__all__ = [
    "CheckpointFailurePolicy",
    "DLQFailurePolicy",
    "DeliveryConfig",
    "FailurePolicy",
    "SinkFailurePolicy",
]
