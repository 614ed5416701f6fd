"""Import path kept for 0.3.0 programs: the error classes."""

from __future__ import annotations

from agora.errors import (
    AgoraError,
    CheckpointError,
    ContractError,
    DLQError,
    InternalError,
    LifecycleError,
    PipelineError,
    ProcessBatchError,
    ProcessPoolBrokenError,
    SourceRecordError,
    WorkerStartupError,
)

__all__ = [
    "AgoraError",
    "CheckpointError",
    "ContractError",
    "DLQError",
    "InternalError",
    "LifecycleError",
    "PipelineError",
    "ProcessBatchError",
    "ProcessPoolBrokenError",
    "SourceRecordError",
    "WorkerStartupError",
]
