"""The one place the conformance suite imports Agora from: the public facade only."""

from __future__ import annotations

from agora import (
    ArrowBatchSource,
    BaseSink,
    BaseSource,
    Checkpoint,
    CheckpointError,
    DataPlane,
    DLQRecord,
    DLQStage,
    DeliveryConfig,
    FailurePolicy,
    SyncInMemoryCheckpointStore,
    IterableSource,
    MemorySink,
    Pipeline,
    SinkDataPlaneSpec,
    SourceDataPlaneSpec,
    WriteResult,
    __version__,
)

__all__ = [
    "ArrowBatchSource",
    "BaseSink",
    "BaseSource",
    "Checkpoint",
    "CheckpointError",
    "DataPlane",
    "DLQRecord",
    "DLQStage",
    "DeliveryConfig",
    "FailurePolicy",
    "IterableSource",
    "MemorySink",
    "Pipeline",
    "SinkDataPlaneSpec",
    "SourceDataPlaneSpec",
    "SyncInMemoryCheckpointStore",
    "WriteResult",
    "agora_version",
]

agora_version = __version__
